"""Text-to-video with diffusers' LTX-Video pipeline, encoded with the shared MP4 writer.

A clip featuring a cameo is conditioned on the cameo's (decrypted, in-memory) reference frame
through LTX-Video's image-to-video pipeline, built from the same loaded components.

Frames go to the encoder as the VAE decodes them: the VAE's decode is replaced, for the
render, by a temporal-chunked decode (the VAE's own framewise decode, chunk by chunk) that
hands each finished chunk to a StreamingEncoder thread, so x264 works while the GPU decodes
the next chunk. Progress is honest: one report per denoising step, then per encoded frame.
"""

from __future__ import annotations

import gc
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from workers.renderers.base import (
    MIN_DURATION_S,
    ProgressCallback,
    RenderSpec,
    monotonic_progress,
    temp_mp4,
)
from workers.renderers.encode import AUDIO_SAMPLE_RATE, StreamingEncoder

if TYPE_CHECKING:
    from diffusers import LTXImageToVideoPipeline, LTXPipeline
    from PIL.Image import Image

__all__ = [
    "LANDSCAPE",
    "PORTRAIT",
    "DiffusersAVRenderer",
    "DiffusersRenderer",
    "RenderTimings",
    "streaming_decode",
]

PORTRAIT = (768, 512)  # (height, width): the feed is vertical
LANDSCAPE = (512, 768)

# share of the progress bar for denoising; decoding and encoding (overlapped) take the rest
_DENOISE_SHARE = 0.85
_ENCODED_AT = 0.99  # the last frame encoded; 1.0 once the file is complete


@dataclass
class RenderTimings:
    """Seconds spent in the last render, for benchmarks and logs."""

    load_s: float = 0.0
    pipeline_s: float = 0.0
    encode_s: float = 0.0  # waiting for the encoder after the pipeline returned
    cleanup_s: float = 0.0  # gc.collect() and emptying the CUDA cache after the job
    frames: int = 0


class DiffusersRenderer:
    """LTX-Video text-to-video; the pipeline loads on the first render, not at construction."""

    name = "diffusers"

    def __init__(
        self,
        model: str,
        *,
        resolution: tuple[int, int] = PORTRAIT,
        fps: int = 24,
        num_inference_steps: int = 8,
        guidance_scale: float = 1.0,
        decode_timestep: float = 0.05,
        decode_noise_scale: float = 0.025,
        max_sequence_length: int = 128,
        device: str | None = None,
        tmp_dir: Path | None = None,
        decode_chunk_frames: int | None = 48,
    ) -> None:
        height, width = resolution
        if height <= 0 or width <= 0 or height % 32 or width % 32:
            raise ValueError(f"resolution {resolution} must be positive multiples of 32")
        if num_inference_steps < 1:
            raise ValueError("num_inference_steps must be at least 1")
        self.model = model
        self.height, self.width = height, width
        self.fps = fps
        self.num_inference_steps = num_inference_steps
        # distilled checkpoints run without classifier-free guidance (1.0 skips the second pass)
        self.guidance_scale = guidance_scale
        self.decode_timestep = decode_timestep
        self.decode_noise_scale = decode_noise_scale
        self.max_sequence_length = max_sequence_length
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.tmp_dir = tmp_dir
        # frames per VAE decode chunk (a multiple of 8, overlapping the next by 8); None
        # decodes the whole clip at once, then encodes
        if decode_chunk_frames is not None and (
            decode_chunk_frames < 16 or decode_chunk_frames % 8
        ):
            raise ValueError("decode_chunk_frames must be a multiple of 8, at least 16")
        self.decode_chunk_frames = decode_chunk_frames
        self.last_timings = RenderTimings()
        self._pipe: LTXPipeline | None = None
        self._image_pipe: LTXImageToVideoPipeline | None = None
        self._lock = threading.RLock()  # one pipeline, one render (or load) at a time

    def num_frames(self, duration_s: int) -> int:
        """The 8k+1 frame count (per the VAE's temporal ratio) closest to duration_s * fps."""
        ratio = self._pipe.vae_temporal_compression_ratio if self._pipe is not None else 8
        k = max(1, round((duration_s * self.fps - 1) / ratio))
        return k * ratio + 1

    def render(self, spec: RenderSpec, on_progress: ProgressCallback) -> Path:
        report = monotonic_progress(on_progress)
        with self._lock:
            timings = RenderTimings()
            self.last_timings = timings
            try:
                report(0.0)
                started = time.perf_counter()
                pipe = self.load()
                timings.load_s = time.perf_counter() - started
                n = self.num_frames(spec.duration_s)
                with temp_mp4(spec.clip_id, self.tmp_dir) as path:
                    encoder = self._encoder(path, spec, n)
                    try:

                        def encoded() -> None:
                            done = encoder.frames_done
                            report(_DENOISE_SHARE + (_ENCODED_AT - _DENOISE_SHARE) * done / n)

                        def sink(frames: np.ndarray) -> None:
                            encoder.put(frames)
                            timings.frames += len(frames)
                            encoded()

                        started = time.perf_counter()
                        audio = self._generate(pipe, spec, report, sink)
                        timings.pipeline_s = time.perf_counter() - started
                        started = time.perf_counter()
                        encoder.end_frames(self._audio_track(audio, n))
                        while not encoder.wait(0.05):
                            encoded()
                        encoder.finish()
                        encoded()
                    except BaseException:
                        encoder.abort()
                        raise
                    report(1.0)
                timings.encode_s = time.perf_counter() - started
                return path
            finally:
                started = time.perf_counter()
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                timings.cleanup_s = time.perf_counter() - started

    def _encoder(self, path: Path, spec: RenderSpec, n: int) -> StreamingEncoder:
        # a silent track: every clip has audio, so players and hasAudio agree
        silence = np.zeros((1, n * AUDIO_SAMPLE_RATE // self.fps), np.float32)
        return StreamingEncoder(path, fps=self.fps, audio=silence, mark=spec.author_handle or None)

    def _audio_track(self, audio: torch.Tensor | None, n_frames: int) -> np.ndarray | None:
        """The late audio track for the encoder (None: the silent one was given up front)."""
        return None

    def load(self) -> LTXPipeline:
        """Load the pipeline now (a worker may warm up before its first task); idempotent."""
        with self._lock:
            if self._pipe is None:
                local = Path(self.model).is_dir()  # a folder never falls back to the hub
                pipe = self._pipeline_class().from_pretrained(
                    self.model, dtype=self.dtype, local_files_only=local
                )
                pipe.to(self.device)
                pipe.set_progress_bar_config(disable=True)
                self._pipe = pipe
            return self._pipe

    def warm_up(self) -> None:
        """Load the pipeline and render one short throwaway clip, so the first user's clip
        does not pay for first-call costs (kernel selection, allocator growth, and compiled
        graphs when the transformer is compiled). A worker calls it once per process, before
        it takes a task."""
        self.load()
        spec = RenderSpec(clip_id="warm-up", prompt="warm-up", duration_s=MIN_DURATION_S)
        path = self.render(spec, lambda _progress: None)
        path.unlink(missing_ok=True)

    def image_pipeline(self) -> LTXImageToVideoPipeline:
        """The image-to-video pipeline over the loaded components (no second copy in memory)."""
        with self._lock:
            if self._image_pipe is None:
                # from_pipe casts the shared components to float32 unless told the dtype:
                # on a GPU that doubled memory and made renders six times slower
                self._image_pipe = self._pipeline_class(image=True).from_pipe(
                    self.load(), dtype=self.dtype
                )
                self._image_pipe.set_progress_bar_config(disable=True)
            return self._image_pipe

    def _pipeline_class(self, *, image: bool = False) -> type:
        from diffusers import LTXImageToVideoPipeline, LTXPipeline

        return LTXImageToVideoPipeline if image else LTXPipeline

    def _reference_image(self, spec: RenderSpec) -> Image | None:
        """The first featured cameo's first reference frame, fitted to the output size."""
        from PIL import Image as PILImage
        from PIL import ImageOps

        for cameo in spec.cameos:
            for frame in cameo.frames:
                try:
                    with PILImage.open(io.BytesIO(frame)) as image:
                        return ImageOps.fit(image.convert("RGB"), (self.width, self.height))
                except (OSError, ValueError):
                    continue
        return None

    def _call_options(self) -> dict:
        """Model-specific arguments to the pipeline call."""
        return {
            "decode_timestep": self.decode_timestep,
            "decode_noise_scale": self.decode_noise_scale,
        }

    def _generate(
        self,
        pipe: LTXPipeline,
        spec: RenderSpec,
        report: ProgressCallback,
        sink: Callable[[np.ndarray], None],
    ) -> torch.Tensor | None:
        """Run the pipeline, handing decoded uint8 frames to sink as they come; returns the
        pipeline's audio (None for a video-only model)."""
        steps = self.num_inference_steps
        reference = self._reference_image(spec)
        conditioning: dict = {}
        if reference is not None:
            pipe = self.image_pipeline()
            conditioning["image"] = reference

        def on_step_end(_pipe, step: int, _timestep, callback_kwargs: dict) -> dict:
            # a RenderCancelled raised here unwinds out of the denoising loop at once,
            # skipping the VAE decode
            report(_DENOISE_SHARE * (step + 1) / steps)
            return callback_kwargs

        # manual_seed takes 0..2**64-1; any int seed from a client maps into that range
        generator = torch.Generator(device=self.device).manual_seed(spec.seed % 2**64)
        vae = pipe.vae
        vae.decode = streaming_decode(vae, sink, self.decode_chunk_frames)
        try:
            with torch.inference_mode():
                output = pipe(
                    **conditioning,
                    **self._call_options(),
                    prompt=_prompt(spec),
                    height=self.height,
                    width=self.width,
                    num_frames=self.num_frames(spec.duration_s),
                    frame_rate=self.fps,
                    num_inference_steps=steps,
                    guidance_scale=self.guidance_scale,
                    max_sequence_length=self.max_sequence_length,
                    generator=generator,
                    output_type="pt",
                    callback_on_step_end=on_step_end,
                )
        finally:
            del vae.decode  # the class's own decode again
        return getattr(output, "audio", None)


class DiffusersAVRenderer(DiffusersRenderer):
    """LTX-2 text-to-audio+video: the model makes the soundtrack with the pictures, in sync.

    The prompt goes to the model as written (with the moods appended, as for LTX-Video), so
    dialogue in double quotes (`The chef shouts, "Order up!"`) and sound cues (`waves crash,
    gulls cry`, or `[sound: a door slams]`) reach LTX-2's Gemma text encoder unchanged; LTX-2
    is trained on captions that describe speech and sound that way. A featured cameo
    conditions the first frame through LTX2ImageToVideoPipeline over the same components.

    The sound is decoded after the pictures (the pipeline's order): the video is encoded
    while the VAE decodes, and the AAC track, trimmed or padded to the video's exact length
    (less than a frame either way), is muxed when it comes.
    """

    name = "diffusers-av"

    def __init__(self, model: str, **options: Any) -> None:
        options.setdefault("decode_timestep", 0.0)  # LTX-2's own defaults
        options.setdefault("decode_noise_scale", None)
        options.setdefault("max_sequence_length", 256)
        super().__init__(model, **options)

    def _pipeline_class(self, *, image: bool = False) -> type:
        from diffusers import LTX2ImageToVideoPipeline, LTX2Pipeline

        return LTX2ImageToVideoPipeline if image else LTX2Pipeline

    def _call_options(self) -> dict:
        # a distilled checkpoint: one transformer pass per step, for video and audio alike
        # (no classifier-free, spatio-temporal or modality guidance passes)
        one_pass = {
            "stg_scale": 0.0,
            "modality_scale": 1.0,
            "guidance_rescale": 0.0,
            "audio_guidance_scale": self.guidance_scale,
            "audio_stg_scale": 0.0,
            "audio_modality_scale": 1.0,
            "audio_guidance_rescale": 0.0,
            "spatio_temporal_guidance_blocks": None,
        }
        if self.guidance_scale > 1.0:
            one_pass = {}  # a full (non-distilled) checkpoint: the pipeline's own defaults
        return {
            **one_pass,
            "decode_timestep": self.decode_timestep,
            "decode_noise_scale": self.decode_noise_scale,
        }

    def _encoder(self, path: Path, spec: RenderSpec, n: int) -> StreamingEncoder:
        vocoder = self.load().vocoder.config
        return StreamingEncoder(
            path,
            fps=self.fps,
            audio_channels=min(2, int(vocoder.out_channels)),
            sample_rate=int(vocoder.output_sampling_rate),
            mark=spec.author_handle or None,
        )

    def _audio_track(self, audio: torch.Tensor | None, n_frames: int) -> np.ndarray:
        if audio is None:
            raise RuntimeError("the audio-video pipeline returned no audio")
        rate = int(self.load().vocoder.config.output_sampling_rate)
        pcm = audio[0].float().cpu().numpy()[:2]  # (channels, samples)
        want = round(n_frames * rate / self.fps)
        if pcm.shape[1] >= want:
            return np.ascontiguousarray(pcm[:, :want])
        return np.pad(pcm, ((0, 0), (0, want - pcm.shape[1])))


def _to_uint8(decoded: torch.Tensor) -> np.ndarray:
    """(1, 3, F, H, W) VAE output in [-1, 1] -> F x H x W x 3 uint8 on the host, converted on
    the device (as the pipeline's postprocess would, then to bytes): a float copy of a 5 s
    clip on the host would be ~570 MB."""
    video = ((decoded[0].float() / 2 + 0.5).clamp_(0, 1) * 255).round_().to(torch.uint8)
    return video.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def streaming_decode(
    vae, sink: Callable[[np.ndarray], None], chunk_frames: int | None
) -> Callable[..., Any]:
    """A stand-in for vae.decode that hands decoded frames to sink chunk by chunk.

    Chunks follow the VAE's own framewise decode (AutoencoderKLLTXVideo and
    AutoencoderKLLTX2Video _temporal_tiled_decode: tiles of chunk_frames overlapping by 8
    frames, each blended into the one before), so the frames equal what that decode returns;
    each chunk is final as soon as its tile is decoded. chunk_frames None, or a clip no
    longer than one chunk, decodes at once. The pipeline gets back only the last frame (it
    post-processes what decode returns; the frames already went to sink).
    """
    from diffusers.models.autoencoders.vae import DecoderOutput

    def decode(z: torch.Tensor, temb: torch.Tensor | None = None, *args, **kwargs):
        return_dict = kwargs.pop("return_dict", True)
        extra = kwargs  # causal=... for LTX-2's VAE
        t_ratio = vae.temporal_compression_ratio
        num_frames = z.shape[2]
        num_sample_frames = (num_frames - 1) * t_ratio + 1
        min_latent = (chunk_frames or 0) // t_ratio
        if chunk_frames is None or num_frames <= min_latent:
            last = vae._decode(z, temb, **extra).sample
            sink(_to_uint8(last))
        else:
            stride = chunk_frames - 8
            stride_latent = stride // t_ratio
            blend = chunk_frames - stride
            previous = None
            emitted = 0
            for i in range(0, num_frames, stride_latent):
                tile = z[:, :, i : i + min_latent + 1]
                min_h = vae.tile_sample_min_height // vae.spatial_compression_ratio
                min_w = vae.tile_sample_min_width // vae.spatial_compression_ratio
                if vae.use_tiling and (tile.shape[-1] > min_w or tile.shape[-2] > min_h):
                    decoded = vae.tiled_decode(tile, temb, return_dict=True, **extra).sample
                else:
                    decoded = vae.decoder(tile, temb, **extra)
                if i > 0:
                    decoded = decoded[:, :, :-1]
                    chunk = vae.blend_t(previous, decoded, blend)[:, :, :stride]
                else:
                    chunk = decoded[:, :, : stride + 1]
                previous = decoded
                chunk = chunk[:, :, : num_sample_frames - emitted]
                if chunk.shape[2]:
                    sink(_to_uint8(chunk))
                    emitted += chunk.shape[2]
                last = chunk if chunk.shape[2] else last
        last = last[:, :, -1:]
        return (last,) if not return_dict else DecoderOutput(sample=last)

    return decode


def _prompt(spec: RenderSpec) -> str:
    if not spec.moods:
        return spec.prompt
    return f"{spec.prompt.rstrip('. ')}. Mood: {', '.join(spec.moods)}."
