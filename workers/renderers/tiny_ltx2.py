"""Build an LTX-2 (audio and video) pipeline with random weights, fully offline.

For tests (tiny) and GPU benchmarks (the real transformer, VAEs and vocoder sizes). Nothing is
downloaded: the Gemma tokenizer is a byte-fallback BPE vocabulary built in code, the Gemma 3
text encoder is built from a config (one small layer either way: its width is what the
connectors see), and every diffusers model comes from a config.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

__all__ = ["REAL_LTX2_TRANSFORMER", "build_tiny_ltx2_pipeline"]

# LTX-2's transformer at full size (48 layers, 4096-wide video and 2048-wide audio streams):
# the shapes that set its cost; the benchmark builds it with random weights
REAL_LTX2_TRANSFORMER: dict[str, Any] = {
    "in_channels": 128,
    "out_channels": 128,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "cross_attention_dim": 4096,
    "audio_in_channels": 128,
    "audio_out_channels": 128,
    "audio_num_attention_heads": 32,
    "audio_attention_head_dim": 64,
    "audio_cross_attention_dim": 2048,
    "num_layers": 48,
    "caption_channels": 3840,
    "rope_type": "split",
}

TINY_LTX2_TRANSFORMER: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 16,
    "audio_in_channels": 4,
    "audio_out_channels": 4,
    "audio_num_attention_heads": 2,
    "audio_attention_head_dim": 4,
    "audio_cross_attention_dim": 8,
    "num_layers": 1,
    "qk_norm": "rms_norm_across_heads",
    "rope_double_precision": False,
    "rope_type": "split",
}

# the real compression ratios (32x spatial, 8x temporal) so frame rules match production
TINY_LTX2_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (8, 8, 8, 8),
    "decoder_block_out_channels": (8, 16, 32),  # halved by each 2x upsampler, as in the real one
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "timestep_conditioning": False,
    "patch_size": 4,
    "patch_size_t": 1,
    "encoder_causal": True,
    "decoder_causal": False,
    # reflect padding needs more than one latent pixel; the tiny sizes have one or two
    "decoder_spatial_padding_mode": "zeros",
    # as the real config states them (the default would count the patch twice)
    "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
}

TINY_AUDIO_VAE: dict[str, Any] = {
    "base_channels": 4,
    "output_channels": 2,
    "ch_mult": (1,),
    "num_res_blocks": 1,
    "attn_resolutions": None,
    "in_channels": 2,
    "resolution": 32,
    "latent_channels": 2,
    "norm_type": "pixel",
    "causality_axis": "height",
    "dropout": 0.0,
    "mid_block_add_attention": False,
    "sample_rate": 16000,
    "mel_hop_length": 160,
    "is_causal": True,
    "mel_bins": 8,
}


def _tokenizer(max_length: int = 256):
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    # Gemma's layout: <pad>=0, <eos>=1, <bos>=2, <unk>=3, then byte-fallback tokens and
    # printable characters: any text tokenizes, and nothing needs merges
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    pieces = specials + [f"<0x{b:02X}>" for b in range(256)]
    pieces += ["\u2581", *(string.ascii_letters + string.digits + string.punctuation)]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    return GemmaTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _text_encoder(hidden_size: int, vocab_size: int):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    config = Gemma3Config(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "sliding_window": 64,
            "max_position_embeddings": 512,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
        },
        mm_tokens_per_image=4,
    )
    return Gemma3ForConditionalGeneration(config)


def build_tiny_ltx2_pipeline(path: Path, *, real_size: bool = False, seed: int = 0) -> Path:
    """Save a random-weight LTX2Pipeline to path and return path.

    real_size=True builds LTX-2's transformer, video VAE, audio VAE, vocoder and text
    connectors at full size (their classes' defaults, the released model's shapes; bf16, on
    CUDA when available). The Gemma 3 text encoder keeps the real width (3840) but one layer:
    a 12B encoder's one forward per prompt is not what the benchmark measures.
    """
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    path = Path(path)
    device = "cuda" if real_size and torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if real_size else torch.float32
    hidden = int(REAL_LTX2_TRANSFORMER["caption_channels"]) if real_size else 32
    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            text_encoder = _text_encoder(hidden, len(tokenizer))
            layers = text_encoder.config.text_config.num_hidden_layers
            if real_size:
                transformer = LTX2VideoTransformer3DModel(**REAL_LTX2_TRANSFORMER)
                connectors = LTX2TextConnectors(
                    caption_channels=hidden, text_proj_in_factor=layers + 1
                )
                vae = AutoencoderKLLTX2Video(
                    spatial_compression_ratio=32, temporal_compression_ratio=8
                )
                audio_vae = AutoencoderKLLTX2Audio()
                vocoder = LTX2Vocoder(
                    in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins
                )
            else:
                transformer = LTX2VideoTransformer3DModel(
                    **{**TINY_LTX2_TRANSFORMER, "caption_channels": hidden}
                )
                connectors = LTX2TextConnectors(
                    caption_channels=hidden,
                    text_proj_in_factor=layers + 1,
                    video_connector_num_attention_heads=4,
                    video_connector_attention_head_dim=8,
                    video_connector_num_layers=1,
                    video_connector_num_learnable_registers=None,
                    audio_connector_num_attention_heads=4,
                    audio_connector_attention_head_dim=8,
                    audio_connector_num_layers=1,
                    audio_connector_num_learnable_registers=None,
                    connector_rope_base_seq_len=32,
                    rope_double_precision=False,
                    rope_type="split",
                )
                vae = AutoencoderKLLTX2Video(**TINY_LTX2_VAE)
                audio_vae = AutoencoderKLLTX2Audio(**TINY_AUDIO_VAE)
                vocoder = LTX2Vocoder(
                    in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins,
                    hidden_channels=32,
                    out_channels=2,
                    # 160 samples per mel frame: 16 kHz out of 100 mel frames a second, as
                    # the real one makes 24 kHz (x240), so sound lasts as long as the video
                    upsample_kernel_sizes=[8, 8, 20],
                    upsample_factors=[4, 4, 10],
                    resnet_kernel_sizes=[3],
                    resnet_dilations=[[1, 3, 5]],
                    output_sampling_rate=16000,
                )
    finally:
        torch.set_default_dtype(previous_dtype)
    pipe = LTX2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False),
        vae=vae,
        audio_vae=audio_vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        connectors=connectors,
        transformer=transformer,
        vocoder=vocoder,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    del pipe, transformer, vae, audio_vae, vocoder, text_encoder, connectors
    if device == "cuda":
        torch.cuda.empty_cache()
    return path
