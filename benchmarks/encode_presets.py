"""The H.264 encoder alone, on CPU: each x264 preset's speed and quality on a 5 s clip.

121 frames of 768x512 (a 5 s LTX clip at 24 fps, landscape) of moving content: the preview
renderer's picture (colour bands that scroll, text over them) with a grain texture panning
across it two pixels a frame (smooth gradients alone are too easy to encode), encoded
with encode_mp4 at each preset from ultrafast to medium with x264's own threading (threads=0,
one per core) and at a few CRFs; quality is PSNR (luma and chroma together, on yuv420p)
against the same frames decoded from a lossless encode (x264 qp=0), so what is measured is
the encoder's loss alone (without the visible mark, which is not part of what is compared).

Run: .venv/bin/python benchmarks/encode_presets.py [--crf 18 20 23 26] [--presets ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.renderers.base import RenderSpec
from workers.renderers.encode import encode_mp4
from workers.renderers.preview import PreviewRenderer

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
FRAMES = 121
HEIGHT, WIDTH = 512, 768


def source_frames() -> list[np.ndarray]:
    """121 yuv420p frames of the preview renderer's moving picture at 768x512."""
    renderer = PreviewRenderer(size=(HEIGHT, WIDTH))
    spec = RenderSpec(
        clip_id="bench",
        prompt="A corgi surfs a glassy wave at golden hour, spray glittering, slow motion",
        duration_s=6,
        moods=("dreamy",),
        seed=7,
    )
    digest = b"\x11" * 32
    rng = np.random.default_rng(7)
    grain = rng.normal(0, 10, (HEIGHT + 2 * FRAMES, WIDTH + 2 * FRAMES)).astype(np.float32)
    grain = (grain + np.roll(grain, 1, 0) + np.roll(grain, 1, 1)) / 2  # softer, like film
    out = []
    for i, frame in enumerate(renderer._frames(spec, digest, FRAMES)):  # one reused buffer
        frame = frame.copy()
        luma = (
            frame[:HEIGHT].astype(np.float32) + grain[2 * i : 2 * i + HEIGHT, 2 * i : 2 * i + WIDTH]
        )
        frame[:HEIGHT] = np.clip(luma, 0, 255).astype(np.uint8)
        out.append(frame)
    return out


def planes(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]


def psnr(reference: list[np.ndarray], test: list[np.ndarray]) -> float:
    assert len(reference) == len(test), (len(reference), len(test))
    mse = np.mean(
        [
            np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2)
            for a, b in zip(reference, test, strict=True)
        ]
    )
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def encode(frames, path: Path, **options) -> float:
    started = time.perf_counter()
    encode_mp4(iter(frames), path, fps=24, pixel_format="yuv420p", **options)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crf", type=int, nargs="+", default=[18, 20, 23])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    frames = source_frames()
    print(f"{FRAMES} frames of {WIDTH}x{HEIGHT}, {os.cpu_count()} CPUs, threads={args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        lossless = Path(tmp) / "lossless.mp4"
        # CRF 0 is lossless in 8-bit x264 (checked: PSNR against the source is infinite)
        encode_mp4(
            iter(frames), lossless, fps=24, pixel_format="yuv420p", preset="ultrafast", crf=0
        )
        reference = planes(lossless)
        assert psnr(frames, reference) == float("inf"), "the reference is not lossless"
        print("| preset | CRF | seconds | fps | PSNR dB | size KiB |")
        print("|---|---|---|---|---|---|")
        for preset in args.presets:
            for crf in args.crf:
                out = Path(tmp) / f"{preset}-{crf}.mp4"
                seconds = encode(frames, out, preset=preset, crf=crf, threads=args.threads)
                quality = psnr(reference, planes(out))
                size = out.stat().st_size / 1024
                print(
                    f"| {preset} | {crf} | {seconds:.2f} | {FRAMES / seconds:.0f} "
                    f"| {quality:.2f} | {size:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
