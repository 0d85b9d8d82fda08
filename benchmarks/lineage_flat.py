"""remixTree of a 10k-node tree over HTTP: the nodes list against RemixTree.flat (issue 16).

Starts a real `reelgraph serve --workers 1` (embedded FalkorDB/Redis, no worker) on a data
folder seeded by `reelgraph seed` (`--data-dir D`, reused; seeded here when it holds no graph
yet), finds the biggest remix tree, then, in one run, for each shape of the query (ids, depths
and parent ids; and the same with each clip's prompt and author handle; as `nodes` and as
`flat`) sends --runs sequential requests after a warm-up and reports p50 and p90, with the CPU
each request cost the API process and the embedded engine (Linux /proc), and the time of the
engine's statements alone as a client of the engine (the walk, and the prompts and handles of
the shown clips, by id and by a walk from the root: the tree reads them by the walk when it
shows at least half the whole tree), so a row says what the engine costs and what the API
costs.

    .venv/bin/python benchmarks/lineage_flat.py --data-dir /tmp/lineage-bench
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import ROOT, _port
from feeds_load import _children, _cpu_s, _graph_facts, _trees

sys.path.insert(0, str(ROOT))

SHAPES = {
    "nodes, ids": """query($id: ID!, $n: Int) { remixTree(clipId: $id, maxNodes: $n) {
      size maxDepth truncated nodes { depth parentId clip { id } } } }""",
    "flat, ids": """query($id: ID!, $n: Int) { remixTree(clipId: $id, maxNodes: $n) {
      size maxDepth truncated flat { ids parentIndexes depths } } }""",
    "nodes, + prompt and handle": """query($id: ID!, $n: Int) {
      remixTree(clipId: $id, maxNodes: $n) { size maxDepth truncated
        nodes { depth parentId clip { id prompt author { handle } } } } }""",
    "flat, + prompts and handles": """query($id: ID!, $n: Int) {
      remixTree(clipId: $id, maxNodes: $n) { size maxDepth truncated
        flat { ids parentIndexes depths prompts authorHandles } } }""",
}


def _start(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _port()
    argv = [sys.executable, "-m", "cli", "serve", "--workers", "1", "--port", str(port)]
    server = subprocess.Popen(
        [*argv, "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=base, timeout=30) as client:
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if client.get("/health").status_code == 200:
                    return server, base
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    os.killpg(server.pid, signal.SIGTERM)
    sys.exit("the server did not start")


def _engine_statements(data_dir: Path, root: str, ids: list[str], runs: int) -> dict[str, float]:
    """p50 ms of each statement the tree runs, sent by a client of the running engine."""
    from cli import _engine_for
    from graph import lineage
    from graph.driver import driver_for
    from settings import get_settings

    async def timed(db, work) -> float:
        await work(db)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            await work(db)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000

    async def read(settings) -> dict[str, float]:
        db = driver_for(settings)
        try:
            return {
                "walk (DESCENDANTS)": await timed(db, lambda d: lineage.descendants(d, [root])),
                "PROMPTS (by id)": await timed(db, lambda d: lineage.prompts(d, ids)),
                "AUTHOR_HANDLES (by id)": await timed(db, lambda d: lineage.author_handles(d, ids)),
                "PROMPTS_BELOW (what the tree uses)": await timed(
                    db, lambda d: lineage.prompts(d, ids, below=root)
                ),
                "AUTHOR_HANDLES_BELOW (what the tree uses)": await timed(
                    db, lambda d: lineage.author_handles(d, ids, below=root)
                ),
            }
        finally:
            await db.close()

    settings = get_settings().model_copy(update={"data_dir": data_dir})
    with _engine_for(settings) as engine:
        assert engine is not None and not engine[1], "no running server owns the folder"
        return asyncio.run(read(engine[0]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--max-nodes", type=int, default=10_000)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT), REELGRAPH_ENVIRONMENT="development")
    if not (args.data_dir / "db").exists():
        subprocess.run(
            [sys.executable, "-m", "cli", "seed", "--users", str(args.users), "--clips",
             str(args.clips), "--data-dir", str(args.data_dir)],
            cwd=ROOT, env=env, check=True,
        )  # fmt: skip
    server, base = _start(args.data_dir, env)
    try:
        from resolvers.ids import decode_id, encode_id

        _viewers, edges = _graph_facts(args.data_dir)
        root, size, _chain = _trees(edges)
        engine = next(iter(_children(server.pid)), None)
        variables = {"id": encode_id("Clip", root), "n": args.max_nodes}
        print(f"biggest tree: {size} clips; maxNodes {args.max_nodes}; {args.runs} requests each")
        print("| query | p50 | p90 | CPU ms/request: API, engine | nodes | bytes |")
        print("| --- | --- | --- | --- | --- | --- |")
        answers = {}
        with httpx.Client(base_url=base, timeout=120) as client:
            for name, query in SHAPES.items():
                body = {"query": query, "variables": variables}
                client.post("/graphql", json=body).raise_for_status()  # warm-up
                cpu = (_cpu_s(server.pid), _cpu_s(engine) if engine else 0.0)
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    response = client.post("/graphql", json=body)
                    times.append((time.perf_counter() - t0) * 1000)
                    response.raise_for_status()
                api_ms = (_cpu_s(server.pid) - cpu[0]) * 1000 / args.runs
                engine_ms = ((_cpu_s(engine) if engine else 0.0) - cpu[1]) * 1000 / args.runs
                data = response.json()
                assert not data.get("errors"), data["errors"]
                tree = data["data"]["remixTree"]
                answers[name] = tree
                count = len(tree["nodes"] if "nodes" in tree else tree["flat"]["ids"])
                deciles = statistics.quantiles(times, n=10)
                print(
                    f"| {name} | {statistics.median(times):.0f} ms | {deciles[8]:.0f} ms |"
                    f" {api_ms:.0f}, {engine_ms:.0f} | {count} | {len(response.content):,} |",
                    flush=True,
                )
        nodes = answers["nodes, + prompt and handle"]["nodes"]
        flat = answers["flat, + prompts and handles"]["flat"]
        same = [n["clip"]["id"] for n in nodes] == flat["ids"] and [
            n["clip"]["prompt"] for n in nodes
        ] == flat["prompts"]
        print(f"flat and nodes name the same clips in the same order: {same}")
        shown = [decode_id(i, "Clip") for i in flat["ids"]]
        for name, ms in _engine_statements(args.data_dir, root, shown, args.runs).items():
            print(f"engine statement {name}, from a client, p50: {ms:.1f} ms")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
