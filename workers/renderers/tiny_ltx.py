"""Build an LTX-Video pipeline with random weights, fully offline, for tests and benchmarks.

Nothing here downloads anything: the T5 tokenizer is a character-level Unigram vocabulary built
in code, and every model is constructed from a config.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

__all__ = ["build_tiny_ltx_pipeline"]

# LTX-Video 2B (0.9.0 through 0.9.6): the transformer's own defaults, spelled out
REAL_TRANSFORMER: dict[str, Any] = {
    "in_channels": 128,
    "out_channels": 128,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 32,
    "attention_head_dim": 64,
    "cross_attention_dim": 2048,
    "num_layers": 28,
    "activation_fn": "gelu-approximate",
    "qk_norm": "rms_norm_across_heads",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 4096,  # T5-XXL's d_model
    "attention_bias": True,
    "attention_out_bias": True,
}

# the 0.9.5+ VAE (as in diffusers' scripts/convert_ltx_to_diffusers.py): 32x spatial, 8x temporal
REAL_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "block_out_channels": (128, 256, 512, 1024, 2048),
    "down_block_types": ("LTXVideo095DownBlock3D",) * 4,
    "decoder_block_out_channels": (256, 512, 1024),
    "layers_per_block": (4, 6, 6, 2, 2),
    "decoder_layers_per_block": (5, 5, 5, 5),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "timestep_conditioning": True,
    "patch_size": 4,
    "patch_size_t": 1,
    "resnet_norm_eps": 1e-6,
    "scaling_factor": 1.0,
    "encoder_causal": True,
    "decoder_causal": False,
    "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
}

# tiny, but with the real compression ratios (32x spatial, 8x temporal) so frame and size
# rules are exercised exactly as in production
TINY_TRANSFORMER: dict[str, Any] = {
    **REAL_TRANSFORMER,
    "in_channels": 8,
    "out_channels": 8,
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 16,
    "num_layers": 1,
    "caption_channels": 32,
}

TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 8,
    "block_out_channels": (8, 8, 8, 8),
    "down_block_types": ("LTXVideoDownBlock3D",) * 4,
    "decoder_block_out_channels": (8, 8, 8, 8),
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1, 1),
    "spatio_temporal_scaling": (True, True, True, False),
    "decoder_spatio_temporal_scaling": (True, True, True, False),
    "decoder_inject_noise": (False, False, False, False, False),
    "downsample_type": ("conv",) * 4,
    "upsample_residual": (False, False, False, False),
    "upsample_factor": (1, 1, 1, 1),
    "timestep_conditioning": False,
    "patch_size": 4,
    "patch_size_t": 1,
    "resnet_norm_eps": 1e-6,
    "scaling_factor": 1.0,
    "encoder_causal": True,
    "decoder_causal": False,
}


def _tokenizer(max_length: int = 128):
    from transformers import T5TokenizerFast

    # T5's layout: <pad>=0, </s>=1, <unk>=2, then pieces; every character alone and after
    # a word boundary, so any ASCII text tokenizes and nothing maps to <unk> needlessly
    chars = string.ascii_letters + string.digits + string.punctuation
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("\u2581" + c, -2.5) for c in chars]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=max_length)


def _text_encoder(d_model: int, vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",  # as in T5 v1.1, which LTX uses
        dropout_rate=0.0,
    )
    return T5EncoderModel(config)


def build_tiny_ltx_pipeline(path: Path, *, real_size: bool = False, seed: int = 0) -> Path:
    """Save a random-weight LTXPipeline to path and return path.

    real_size=True builds the LTX-Video 2B transformer and 0.9.5 VAE (bf16 on disk, built on
    CUDA when available); the text encoder stays a one-layer T5 whose width matches the
    transformer's caption projection either way.
    """
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    path = Path(path)
    transformer_cfg = REAL_TRANSFORMER if real_size else TINY_TRANSFORMER
    vae_cfg = REAL_VAE if real_size else TINY_VAE
    device = "cuda" if real_size and torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if real_size else torch.float32

    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    previous_dtype = torch.get_default_dtype()
    # build straight in the target dtype: casting afterwards makes diffusers warn, and a
    # float32 2B model would need twice the memory
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            text_encoder = _text_encoder(transformer_cfg["caption_channels"], len(tokenizer))
            transformer = LTXVideoTransformer3DModel(**transformer_cfg)
            vae = AutoencoderKLLTXVideo(**vae_cfg)
    finally:
        torch.set_default_dtype(previous_dtype)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False)
    pipe = LTXPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    del pipe, transformer, vae, text_encoder
    if device == "cuda":
        torch.cuda.empty_cache()
    return path
