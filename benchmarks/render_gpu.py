"""Seconds per clip for the diffusers renderer on a real-size, random-weight LTX-Video 2B.

Random weights cost exactly what trained ones do, so this needs no download. Run on a GPU
machine from the repository root:

    python benchmarks/render_gpu.py --runs 4

The first run is a warm-up (CUDA kernels, allocator) and is left out of the summary.
`--tiny` swaps in the tiny test model at 64x96, a CPU smoke test of this script.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from workers.renderers.base import RenderSpec


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="clips to render, warm-up included")
    parser.add_argument("--steps", type=int, default=8, help="denoising steps per clip")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument(
        "--duration", type=int, default=5, help="seconds; 5 s at 24 fps gives 121 frames"
    )
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="reuse (or create) the random-weight pipeline here instead of a temp dir",
    )
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--tiny", action="store_true", help="tiny model at 64x96: a smoke test")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.tiny:
        args.height, args.width = 64, 96
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from workers.renderers.diffusion import DiffusersRenderer
    from workers.renderers.tiny_ltx import build_tiny_ltx_pipeline

    with tempfile.TemporaryDirectory(prefix="ltx-bench-") as scratch:
        model_dir = args.model_dir or Path(scratch) / "ltx"
        if not (model_dir / "model_index.json").exists():
            started = time.perf_counter()
            build_tiny_ltx_pipeline(model_dir, real_size=not args.tiny)
            print(
                f"built {'tiny' if args.tiny else 'real-size 2B'} pipeline in "
                f"{time.perf_counter() - started:.1f}s at {model_dir}"
            )

        renderer = DiffusersRenderer(
            str(model_dir),
            resolution=(args.height, args.width),
            fps=args.fps,
            num_inference_steps=args.steps,
            device=args.device,
            tmp_dir=Path(scratch),
        )
        frames = renderer.num_frames(args.duration)
        print(
            f"device={renderer.device} dtype={renderer.dtype} {args.width}x{args.height} "
            f"frames={frames} steps={args.steps}"
        )
        if renderer.device.type == "cuda":
            print(f"gpu={torch.cuda.get_device_name(renderer.device)}")
            torch.cuda.reset_peak_memory_stats()

        totals: list[float] = []
        for run in range(args.runs):
            spec = RenderSpec(
                clip_id=f"bench-{run}",
                prompt="A corgi surfs a glassy wave at golden hour, slow motion, cinematic",
                duration_s=args.duration,
                seed=run,
            )
            started = time.perf_counter()
            path = renderer.render(spec, lambda _: None)
            total = time.perf_counter() - started
            t = renderer.last_timings
            label = "warm-up" if run == 0 and args.runs > 1 else f"run {run}"
            print(
                f"{label}: {total:.2f}s/clip  load {t.load_s:.2f}s  pipeline {t.pipeline_s:.2f}s"
                f"  encode {t.encode_s:.2f}s  cleanup {t.cleanup_s:.2f}s"
                f"  ({t.frames} frames, {path.stat().st_size} bytes)"
            )
            path.unlink()
            if run > 0 or args.runs == 1:
                totals.append(total)

        print(
            f"mean {statistics.mean(totals):.2f}s/clip over {len(totals)} run(s)"
            f" (excluding warm-up), best {min(totals):.2f}s"
        )
        if renderer.device.type == "cuda":
            print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
