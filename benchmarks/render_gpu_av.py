"""GPU seconds per 5 s clip, video-only (LTX-Video 2B) and audio-video (LTX-2 19B), with each
speed lever on and off, in one run: random-weight models at real size, built from configs
(random weights cost exactly what trained ones do; nothing is downloaded).

Levers, each measured against the baseline (all off) and all together:
  compile   torch.compile of the transformer, its warm-up paid before timing (as a worker
            pays it at start, in worker_process_init, before its first task)
  fp8       FP8 weights and activations on Hopper (torchao Float8DynamicActivationFloat8Weight);
            skipped with a message without torchao or below compute capability 8.9
  chunked   VAE decode in temporal chunks handed to the encoder as they come (on) or the
            whole clip decoded, then encoded (off)
  resident  the pipeline kept loaded between tasks (on), or loaded from disk for each (off)

Per variant: the render's seconds (spec to finished MP4: the worker's part of queued-to-DRAFT
but for the graph writes, measured by benchmarks/render_e2e.py), the pipeline's seconds, and
the share outside the model (load, the encoder's tail, probing and hashing the file, cleanup)
against the issue's goal: 1.0 s a clip, under 15% outside the model.

    python benchmarks/render_gpu_av.py                # GPU: both models, every lever
    python benchmarks/render_gpu_av.py --only av      # the audio-video model alone
    python benchmarks/render_gpu_av.py --tiny         # CPU smoke test: tiny models, 64x96
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from media.probe import probe_video
from workers.renderers.base import RenderSpec

LEVERS = ("compile", "fp8", "chunked", "resident")


@dataclass
class Result:
    model: str
    variant: str
    seconds: list[float]
    pipeline_s: list[float]
    outside_s: list[float]
    note: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed clips per variant")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--only", choices=("video", "av"), help="one model only")
    parser.add_argument("--tiny", action="store_true", help="tiny models at 64x96 on CPU")
    parser.add_argument("--model-dir", type=Path, help="keep the built models here")
    args = parser.parse_args(argv)
    args.size = (64, 96) if args.tiny else (512, 768)
    return args


def fp8_unavailable(torch) -> str | None:
    """Why FP8 cannot be measured here, or None."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    if torch.cuda.get_device_capability() < (8, 9):
        return f"compute capability {torch.cuda.get_device_capability()} has no FP8"
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "torchao is not installed"
    return None


def apply_levers(renderer, levers: set[str], torch) -> None:
    pipe = renderer.load()
    if "fp8" in levers:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

        quantize_(pipe.transformer, Float8DynamicActivationFloat8WeightConfig())
    if "compile" in levers:
        pipe.transformer.compile(fullgraph=False, dynamic=False)
    renderer.decode_chunk_frames = 48 if "chunked" in levers else None


def render_once(renderer, spec: RenderSpec) -> tuple[float, float]:
    started = time.perf_counter()
    path = renderer.render(spec, lambda _: None)
    probe_video(path)  # what the worker does next: read the file's facts, hash it
    total = time.perf_counter() - started
    path.unlink()
    return total, renderer.last_timings.pipeline_s


def measure(kind, model_dir: Path, name: str, levers: set[str], args, scratch: Path, torch):
    def fresh():
        return kind(
            str(model_dir),
            resolution=args.size,
            num_inference_steps=args.steps,
            device="cpu" if args.tiny else None,
            tmp_dir=scratch,
        )

    renderer = fresh()
    apply_levers(renderer, levers, torch)
    spec = RenderSpec(clip_id="warm", prompt='A chef says "ready" [sound: sizzling]', duration_s=1)
    renderer.render(spec, lambda _: None).unlink()  # warm-up: kernels, compile, allocator
    renderer.render(
        RenderSpec(clip_id="warm2", prompt="warm", duration_s=args.duration), lambda _: None
    ).unlink()
    result = Result(
        model=name,
        variant="+".join(sorted(levers)) or "baseline",
        seconds=[],
        pipeline_s=[],
        outside_s=[],
    )
    for run in range(args.runs):
        spec = RenderSpec(
            clip_id=f"bench-{run}",
            prompt='A corgi surfs at golden hour. A surfer shouts, "Go!" [sound: waves crash]',
            duration_s=args.duration,
            seed=run,
        )
        load_s = 0.0
        if "resident" not in levers:  # a fresh process's worth of loading, per task
            del renderer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            started = time.perf_counter()
            renderer = fresh()
            apply_levers(renderer, levers - {"compile"}, torch)  # no warm-up without residency
            load_s = time.perf_counter() - started
        total, pipeline_s = render_once(renderer, spec)
        total += load_s
        result.seconds.append(total)
        result.pipeline_s.append(pipeline_s)
        result.outside_s.append(total - pipeline_s)
    del renderer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def variants(skip_fp8: str | None) -> list[set[str]]:
    all_on = set(LEVERS) - ({"fp8"} if skip_fp8 else set())
    each = [{"resident", lever} for lever in LEVERS if lever != "resident"]
    chosen = [{"resident"}, set(), *each, all_on]
    if skip_fp8:
        chosen = [v for v in chosen if "fp8" not in v]
    unique: list[set[str]] = []
    for v in chosen:
        if v not in unique:
            unique.append(v)
    return unique


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from workers.renderers.diffusion import DiffusersAVRenderer, DiffusersRenderer
    from workers.renderers.tiny_ltx import build_tiny_ltx_pipeline
    from workers.renderers.tiny_ltx2 import build_tiny_ltx2_pipeline

    skip_fp8 = fp8_unavailable(torch)
    if skip_fp8:
        print(f"fp8: skipped ({skip_fp8})")
    if torch.cuda.is_available() and not args.tiny:
        print(f"gpu={torch.cuda.get_device_name()}")
    models = [
        ("video", "LTX-Video 2B", DiffusersRenderer, build_tiny_ltx_pipeline),
        ("av", "LTX-2 19B audio-video", DiffusersAVRenderer, build_tiny_ltx2_pipeline),
    ]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="av-bench-") as tmp:
        scratch = Path(tmp)
        root = args.model_dir or scratch
        for key, name, kind, build in models:
            if args.only and args.only != key:
                continue
            name = f"{name} (tiny)" if args.tiny else name
            model_dir = root / f"{key}-{'tiny' if args.tiny else 'real'}"
            if not (model_dir / "model_index.json").exists():
                started = time.perf_counter()
                build(model_dir, real_size=not args.tiny)
                print(f"built {name} in {time.perf_counter() - started:.1f}s", flush=True)
            for levers in variants(skip_fp8):
                if args.tiny and "compile" in levers:
                    continue  # compiling on CPU measures nothing and takes minutes
                try:
                    result = measure(kind, model_dir, name, levers, args, scratch, torch)
                except Exception as exc:  # one lever failing must not cost the whole run
                    print(f"{name} {sorted(levers)}: failed: {exc!r}", flush=True)
                    continue
                results.append(result)
                print_row(result, flush=True)
            if torch.cuda.is_available():
                print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
                torch.cuda.reset_peak_memory_stats()
    return 0


def print_row(r: Result, flush: bool = False) -> None:
    mean = statistics.mean(r.seconds)
    outside = statistics.mean(r.outside_s) / mean
    goal = "meets" if mean <= 1.0 and outside < 0.15 else "misses"
    print(
        f"| {r.model} | {r.variant} | {mean:.2f} | {min(r.seconds):.2f} "
        f"| {statistics.mean(r.pipeline_s):.2f} | {outside:.0%} | {goal} |",
        flush=flush,
    )


if __name__ == "__main__":
    print("| model | levers | s/clip mean | best | pipeline s | outside model | 1 s goal |")
    print("|---|---|---|---|---|---|---|")
    raise SystemExit(main())
