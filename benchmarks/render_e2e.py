"""End-to-end render latency on the embedded default: createClip -> DRAFT, and its parts.

Starts a real `reelgraph serve` and `reelgraph worker` on a fresh data folder, creates N
clips one after another over HTTP, and reports per clip: the wall time from createClip to
DRAFT (seen by polling), and the renderer's own time measured in-process on the same spec.
The difference is what lies outside the pipeline: queueing, probe, store, graph writes.

    .venv/bin/python benchmarks/render_e2e.py --clips 10 --duration 5

The GPU check runs the same path with the diffusers renderer on a real-size random-weight
LTX-Video 2B built by benchmarks/render_gpu.py (`--model-dir DIR` keeps it):

    python benchmarks/render_e2e.py --renderer diffusers --model DIR --resolution 512x768 \
        --steps 8 --clips 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from served import ROOT, gql, reelgraph_run

sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--renderer", default="preview", choices=["preview", "diffusers"])
    parser.add_argument("--model", default="", help="diffusers: a local pipeline folder")
    parser.add_argument("--resolution", default="768x512", help="diffusers: height x width")
    parser.add_argument("--steps", type=int, default=8, help="diffusers: denoising steps")
    args = parser.parse_args()

    with reelgraph_run(
        "reelgraph-bench-",
        REELGRAPH_RENDERER=args.renderer,
        REELGRAPH_MODEL=args.model,
        REELGRAPH_DIFFUSERS_RESOLUTION=args.resolution,
        REELGRAPH_DIFFUSERS_STEPS=str(args.steps),
        HF_HUB_OFFLINE="1",
    ) as (base, _):
        time.sleep(3)  # the worker starts beside the server; the warm-up clip waits for it
        token = gql(
            base,
            'mutation { signUp(input: {handle: "bench", displayName: "B", password: "benchmark"})'
            " { accessToken } }",
            {},
        )["signUp"]["accessToken"]
        latencies = []
        for i in range(args.clips + 1):
            start = time.perf_counter()
            clip = gql(
                base,
                "mutation($p: String!, $d: Int) { createClip(input: {prompt: $p,"
                " durationSeconds: $d}) { id } }",
                {"p": f"benchmark clip {i}", "d": args.duration},
                token,
            )["createClip"]
            while True:
                state = gql(base, "query($id: ID!) { clip(id: $id) { state } }", clip, token)
                if state["clip"]["state"] in ("DRAFT", "FAILED"):
                    break
                time.sleep(0.01)
            if i:  # the first clip warms the worker
                latencies.append(time.perf_counter() - start)

    from settings import Settings
    from workers.renderers import RenderSpec, get_renderer

    size = Settings(_env_file=None, diffusers_resolution=args.resolution).diffusers_size
    renderer = get_renderer(args.renderer, args.model, resolution=size, steps=args.steps)
    render_times = []
    for i in range(-1, args.clips):  # -1: warm-up
        spec = RenderSpec(clip_id=f"b{i}", prompt=f"benchmark clip {i}", duration_s=args.duration)
        start = time.perf_counter()
        renderer.render(spec, lambda _f: None).unlink()
        if i >= 0:
            render_times.append(time.perf_counter() - start)

    e2e, render = statistics.median(latencies), statistics.median(render_times)
    print(f"clips: {args.clips} x {args.duration} s, {args.renderer} renderer")
    spread = f"min {min(latencies):.3f}, max {max(latencies):.3f}"
    print(f"createClip -> DRAFT  median {e2e:.3f} s  ({spread})")
    print(f"renderer alone       median {render:.3f} s")
    print(f"outside the renderer median {e2e - render:.3f} s ({(e2e - render) / e2e:.0%})")


if __name__ == "__main__":
    main()
