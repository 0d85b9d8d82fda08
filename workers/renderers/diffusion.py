"""Text-to-video with diffusers' LTX-Video pipeline, encoded with the shared MP4 writer.

A clip featuring a cameo is conditioned on the cameo's (decrypted, in-memory) reference frame
through LTX-Video's image-to-video pipeline, built from the same loaded components.
"""

from __future__ import annotations

import gc
import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from workers.renderers.base import ProgressCallback, RenderSpec, monotonic_progress, temp_mp4
from workers.renderers.encode import AUDIO_SAMPLE_RATE, encode_mp4

if TYPE_CHECKING:
    from diffusers import LTXImageToVideoPipeline, LTXPipeline
    from PIL.Image import Image

__all__ = ["LANDSCAPE", "PORTRAIT", "DiffusersRenderer", "RenderTimings"]

PORTRAIT = (768, 512)  # (height, width): the feed is vertical
LANDSCAPE = (512, 768)

# share of the progress bar for denoising; decoding and encoding take the rest
_DENOISE_SHARE = 0.85
_DECODED_AT = 0.9


@dataclass
class RenderTimings:
    """Seconds spent in the last render, for benchmarks and logs."""

    load_s: float = 0.0
    pipeline_s: float = 0.0
    encode_s: float = 0.0
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
                started = time.perf_counter()
                frames = self._generate(pipe, spec, report)
                timings.pipeline_s = time.perf_counter() - started
                timings.frames = len(frames)
                report(_DECODED_AT)
                started = time.perf_counter()
                with temp_mp4(spec.clip_id, self.tmp_dir) as path:
                    n = len(frames)
                    encode_mp4(
                        iter(frames),
                        path,
                        fps=self.fps,
                        # silent track: every clip has audio, so players and hasAudio agree
                        audio=np.zeros((1, n * AUDIO_SAMPLE_RATE // self.fps), np.float32),
                        on_frame=lambda i: report(_DECODED_AT + (0.99 - _DECODED_AT) * i / n),
                        crf=18,
                        preset="veryfast",
                        mark=spec.author_handle or None,
                    )
                    report(1.0)
                timings.encode_s = time.perf_counter() - started
                return path
            finally:
                started = time.perf_counter()
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                timings.cleanup_s = time.perf_counter() - started

    def load(self) -> LTXPipeline:
        """Load the pipeline now (a worker may warm up before its first task); idempotent."""
        with self._lock:
            if self._pipe is None:
                from diffusers import LTXPipeline

                local = Path(self.model).is_dir()  # a folder never falls back to the hub
                pipe = LTXPipeline.from_pretrained(
                    self.model, dtype=self.dtype, local_files_only=local
                )
                pipe.to(self.device)
                pipe.set_progress_bar_config(disable=True)
                self._pipe = pipe
            return self._pipe

    def image_pipeline(self) -> LTXImageToVideoPipeline:
        """The image-to-video pipeline over the loaded components (no second copy in memory)."""
        with self._lock:
            if self._image_pipe is None:
                from diffusers import LTXImageToVideoPipeline

                # from_pipe casts the shared components to float32 unless told the dtype:
                # on a GPU that doubled memory and made renders six times slower
                self._image_pipe = LTXImageToVideoPipeline.from_pipe(self.load(), dtype=self.dtype)
                self._image_pipe.set_progress_bar_config(disable=True)
            return self._image_pipe

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

    def _generate(
        self, pipe: LTXPipeline, spec: RenderSpec, report: ProgressCallback
    ) -> np.ndarray:
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
        with torch.inference_mode():
            video = pipe(
                **conditioning,
                prompt=_prompt(spec),
                height=self.height,
                width=self.width,
                num_frames=self.num_frames(spec.duration_s),
                frame_rate=self.fps,
                num_inference_steps=steps,
                guidance_scale=self.guidance_scale,
                decode_timestep=self.decode_timestep,
                decode_noise_scale=self.decode_noise_scale,
                max_sequence_length=self.max_sequence_length,
                generator=generator,
                output_type="pt",
                callback_on_step_end=on_step_end,
            ).frames[0]
            # (frames, 3, H, W) floats in [0, 1] -> uint8 HxWx3 on the GPU; a 5 s float32
            # copy on the host would be ~570 MB
            video = (video * 255).round_().clamp_(0, 255).to(torch.uint8)
            return video.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _prompt(spec: RenderSpec) -> str:
    if not spec.moods:
        return spec.prompt
    return f"{spec.prompt.rstrip('. ')}. Mood: {', '.join(spec.moods)}."
