"""Feeds and lineage on a seeded graph, through the real HTTP endpoint (issue 7).

Starts a real `reelgraph serve` (embedded FalkorDB/Redis, no worker) on a data folder, seeds
it while it runs with `reelgraph seed --users N --clips M` (or reuses a folder seeded by an
earlier run: `--data-dir D`), starts the bare route of benchmarks/bare_feed.py on the same
engine, then, in one run:

- remixTree of the biggest remix tree the seeder made (maxNodes = its size, up to 10,000) and
  forkDepth of the root of a depth-50 chain: about 20 sequential requests each (httpx), p50,
  on an idle engine;
- wrk (16 connections, 2 threads, --latency, --timeout 30s) on `/health`, then for each page
  (FOLLOWING signed in, FOR_YOU signed out and signed in; a viewer who follows about the
  mean and the one who follows the most) the GraphQL page and the bare route answering the
  same JSON through the same statements, alternating in --slices slices (req/s over all
  slices, the median slice's p50, the worst slice's p99); each page is 20 clips with
  author, counts and video. Each is requested once before wrk starts (a first FOR_YOU builds
  the popularity index). Beside each row, the CPU time per answered request of the process
  that answered (the API, or the bare route's) and of the embedded engine (Linux /proc), so
  a row says where its time went.

The biggest tree and the chain root are found from the remix edges, read once through the
running server's engine (the same way `reelgraph seed` reaches it).

    .venv/bin/python benchmarks/feeds_load.py --data-dir /tmp/feeds-bench  # 10k users, 100k clips
    .venv/bin/python benchmarks/feeds_load.py --users 500 --clips 5000 --seconds 5  # a smoke run

Needs `wrk` (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import ROOT, _gql, _port, start_server

sys.path.insert(0, str(ROOT))

PAGE = """query($k: FeedKind!) { feed(kind: $k, first: 20) { edges { node {
  id prompt likeCount author { handle followerCount } video { url } } } } }"""
TREE = """query($id: ID!, $n: Int) { remixTree(clipId: $id, maxNodes: $n) {
  size maxDepth truncated nodes { depth parentId clip { id } } } }"""
FORK_DEPTH = "query($id: ID!) { clip(id: $id) { id forkDepth } }"
LOG_IN = "mutation($h: String!, $p: String!) { logIn(handle: $h, password: $p) { accessToken } }"

WRK_POST = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%s
wrk.body = %s
-- a GraphQL error comes back as 200: count the answers that carry "errors"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) gql_errors = 0 end
function response(status, headers, body)
  if body and string.find(body, '"errors"', 1, true) then gql_errors = gql_errors + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("gql_errors") end
  io.write("GraphQL errors: " .. n .. "\\n")
end
"""


CONNECTIONS = [16]  # --connections


def _wrk(url: str, seconds: int, script: Path | None = None) -> dict:
    """wrk -t2 -cN with a 30 s timeout (FOR_YOU may be slow): req/s, p50, p99, errors."""
    c = f"-c{CONNECTIONS[0]}"
    cmd = ["wrk", "-t2", c, f"-d{seconds}s", "--timeout", "30s", "--latency", url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    gql_errors = re.search(r"GraphQL errors: (\d+)", out)
    timeouts = re.search(r"timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": lat.get("50"),
        "p99": lat.get("99"),
        "non2xx": int(errors.group(1)) if errors else 0,
        "timeouts": int(timeouts.group(1)) if timeouts else 0,
        "errors": int(gql_errors.group(1)) if gql_errors else 0,
    }


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0.0 where /proc cannot say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _timed_wrk(url: str, seconds: int, script: Path, answerer: int, engine: int | None) -> dict:
    """_wrk, with the CPU seconds the answering process and the engine spent meanwhile."""
    before = (_cpu_s(answerer), _cpu_s(engine) if engine else 0.0)
    result = _wrk(url, seconds, script)
    result["cpu_api"] = _cpu_s(answerer) - before[0]
    result["cpu_engine"] = (_cpu_s(engine) if engine else 0.0) - before[1]
    return result


def _script(tmp: Path, name: str, body: dict, token: str | None) -> Path:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    path = tmp / f"{name}.lua"
    path.write_text(WRK_POST % (auth, json.dumps(json.dumps(body))))
    return path


def _graph_facts(data_dir: Path) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """([(handle, follows) of the user who follows the most, and of one who follows about
    100 (the seeder's mean)], remix edges child -> parent), read through the running server's
    engine."""
    from cli import _engine_for
    from graph.driver import Cypher, driver_for
    from settings import get_settings

    # read-only and for this benchmark only (not product statements)
    most_follows = Cypher(
        "MATCH (u:User)-[:FOLLOWS]->(:User) "
        "RETURN u.handle AS handle, count(*) AS n ORDER BY n DESC LIMIT 1"
    )
    typical = Cypher(
        "MATCH (u:User)-[:FOLLOWS]->(:User) WITH u, count(*) AS n "
        "WHERE n >= 95 AND n <= 105 RETURN u.handle AS handle, n LIMIT 1"
    )
    remix_edges = Cypher(
        "MATCH (c:Clip)-[:REMIX_OF]->(p:Clip) "
        "WHERE c.state = 'PUBLISHED' AND p.state = 'PUBLISHED' RETURN c.id AS c, p.id AS p"
    )

    async def read(settings) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
        db = driver_for(settings)
        try:
            viewers = [
                (r["handle"], r["n"]) for q in (most_follows, typical) for r in await db.read(q)
            ]
            edges = [(r["c"], r["p"]) for r in await db.read(remix_edges)]
            return viewers, edges
        finally:
            await db.close()

    settings = get_settings().model_copy(update={"data_dir": data_dir})
    with _engine_for(settings) as engine:
        if engine is None or engine[1]:
            sys.exit("no running server owns the data folder")
        return asyncio.run(read(engine[0]))


def _trees(edges: list[tuple[str, str]]) -> tuple[str, int, str | None]:
    """(root of the biggest tree, its size with the root, root of a depth-50 chain or None)."""
    parent = dict(edges)
    children: dict[str, list[str]] = defaultdict(list)
    for c, p in edges:
        children[p].append(c)
    roots = {p for p in children if p not in parent}
    best, best_size, chain_root = "", 0, None
    for root in roots:
        size, depth, level = 1, 0, [root]
        while level:
            level = [c for n in level for c in children[n]]
            size += len(level)
            depth += bool(level)
        if size > best_size:
            best, best_size = root, size
        if depth >= 50 and chain_root is None:
            chain_root = root
    return best, best_size, chain_root


def _p50(client: httpx.Client, query: str, variables: dict, runs: int) -> tuple[float, dict]:
    _gql(client, query, variables)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        data = _gql(client, query, variables)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, data


def _start_bare(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "bare_feed.py"), "--data-dir", str(data_dir),
         "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base, timeout=30) as client:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                client.post("/bare/feed", json={"variables": {"k": "FOR_YOU"}})
                return proc, base
            except httpx.TransportError:
                time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    sys.exit("the bare route did not start")


def _same_json(client: httpx.Client, base: str, bare: str, kind: str, token: str | None) -> int:
    """The GraphQL page and the bare route answer the same clips (URLs aside: each signs its
    own); returns the number of clips."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"query": PAGE, "variables": {"k": kind}}
    graphql = client.post(f"{base}/graphql", json=body, headers=headers).json()
    plain = client.post(f"{bare}/bare/feed", json=body, headers=headers).json()

    def shape(answer: dict) -> list:
        edges = answer["data"]["feed"]["edges"]
        return [
            (e["node"]["id"], e["node"]["prompt"], e["node"]["likeCount"], e["node"]["author"],
             bool(e["node"]["video"]))
            for e in edges
        ]  # fmt: skip

    # FOR_YOU: two rankings a moment apart may differ (a clip published meanwhile)
    if kind == "FOLLOWING" and shape(graphql) != shape(plain):
        sys.exit(f"the bare route answers other clips than GraphQL for {kind}")
    return len(graphql["data"]["feed"]["edges"])


def _ms(value: str | None) -> float:
    """wrk's '1.25s', '850.12ms' or '900.00us' in milliseconds."""
    if not value:
        return float("nan")
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _merged(slices: list[dict], seconds: int) -> dict:
    """One row for several wrk slices: req/s over all of them, the median slice's p50, the
    worst slice's p99, counts summed."""
    p50s = sorted(_ms(r["p50"]) for r in slices)
    counted = ("requests", "non2xx", "timeouts", "errors", "cpu_api", "cpu_engine")
    out = {k: sum(r.get(k, 0) for r in slices) for k in counted}
    out["rps"] = out["requests"] / (seconds * len(slices))
    out["p50"] = f"{p50s[len(p50s) // 2]:.1f}ms"
    out["p99"] = f"{max(_ms(r['p99']) for r in slices):.1f}ms"
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--slices", type=int, default=3, help="GraphQL and bare alternate this many times"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="seeded once, reused by later runs (kept afterwards)"
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk's -c")
    args = parser.parse_args()
    CONNECTIONS[0] = args.connections
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="reelgraph-feeds-"))
    data_dir = args.data_dir or tmp / "d"
    marker = data_dir / f".feeds-seeded-{args.users}-{args.clips}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), REELGRAPH_ENVIRONMENT="development")
    # one address signs in and reads over and over: lift the rate limits
    for name in ("LOGIN_LIMIT_PER_HANDLE", "LOGIN_LIMIT_PER_ADDRESS", "MUTATION_LIMIT_PER_USER"):
        env[f"REELGRAPH_{name}"] = "0"
    os.environ.update(REELGRAPH_ENVIRONMENT="development")
    server, base = start_server(ROOT, data_dir, env)
    bare_proc = None
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            if marker.exists():
                print(f"reusing {data_dir} (seeded by an earlier run)", flush=True)
            else:
                t0 = time.monotonic()
                subprocess.run(
                    [sys.executable, "-m", "cli", "seed", "--users", str(args.users), "--clips",
                     str(args.clips), "--data-dir", str(data_dir)],
                    cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                )  # fmt: skip
                print(f"seeded in {time.monotonic() - t0:.0f} s", flush=True)
                marker.touch()
            viewers, edges = _graph_facts(data_dir)
            tree_root, tree_size, chain_root = _trees(edges)
            print(f"{len(edges)} remix edges; viewers {viewers}", flush=True)
            bare_proc, bare = _start_bare(data_dir, env)
            engine = next(iter(_children(server.pid)), None)  # the embedded engine, if any
            from graph.seed import SEED_PASSWORD
            from resolvers.ids import encode_id

            # lineage first, on an idle engine
            n = min(tree_size, 10_000)
            tree_ms, tree = _p50(
                client, TREE, {"id": encode_id("Clip", tree_root), "n": n}, args.runs
            )
            tree = tree["remixTree"]
            print(
                f"remixTree(maxNodes {n}) of the biggest tree ({tree_size} clips): p50"
                f" {tree_ms:.0f} ms over {args.runs} requests; size {tree['size']}, maxDepth"
                f" {tree['maxDepth']}, {len(tree['nodes'])} nodes, truncated {tree['truncated']}",
                flush=True,
            )
            if chain_root is None:
                print("no depth-50 chain in this graph", flush=True)
            else:
                fork_ms, fork = _p50(
                    client, FORK_DEPTH, {"id": encode_id("Clip", chain_root)}, args.runs
                )
                print(
                    f"forkDepth of a depth-50 chain root: p50 {fork_ms:.0f} ms over {args.runs}"
                    f" requests; forkDepth {fork['clip']['forkDepth']}",
                    flush=True,
                )

            tokens = [
                (
                    handle,
                    follows,
                    _gql(client, LOG_IN, {"h": handle, "p": SEED_PASSWORD})["logIn"]["accessToken"],
                )
                for handle, follows in viewers
            ]
            pages = []
            for _handle, follows, tok in reversed(tokens):  # the typical viewer first
                pages.append((f"FOLLOWING, {follows} follows", "FOLLOWING", tok))
            pages.append(("FOR_YOU, signed out", "FOR_YOU", None))
            for _handle, follows, tok in reversed(tokens):
                pages.append((f"FOR_YOU, {follows} follows", "FOR_YOU", tok))
            for name, kind, tok in pages:
                t0 = time.perf_counter()
                clips = _same_json(client, base, bare, kind, tok)
                print(
                    f"{name}: {clips} clips; GraphQL and bare, one request each (cold):"
                    f" {(time.perf_counter() - t0) * 1000:.0f} ms",
                    flush=True,
                )
            fast_path = os.environ.get("REELGRAPH_FAST_PATH", "on")
            print(
                f"wrk -t2 -c{args.connections} -d{args.seconds}s --timeout 30s --latency;"
                f" REELGRAPH_FAST_PATH={fast_path}",
                flush=True,
            )
            print(
                "| endpoint | req/s | requests | p50 | p99 | non-2xx | GraphQL errors | timeouts"
                " | req/s vs /health | req/s vs bare | CPU ms/request: answering process, engine |"
            )
            print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)

            def row(name: str, r: dict, health: float, bare_rps: float | None) -> None:
                cells = [f"{r['rps']:.1f}", r["requests"], r["p50"], r["p99"], r["non2xx"]]
                cells += [r["errors"], r["timeouts"], f"{r['rps'] / health:.1%}"]
                cells.append(f"{r['rps'] / bare_rps:.0%}" if bare_rps else "")
                if r.get("requests") and "cpu_api" in r:
                    per = 1000 / r["requests"]
                    cells.append(f"{r['cpu_api'] * per:.0f}, {r['cpu_engine'] * per:.0f}")
                else:
                    cells.append("")
                print(f"| {name} | " + " | ".join(map(str, cells)) + " |", flush=True)

            health = _wrk(f"{base}/health", args.seconds)
            row("`/health`", health, health["rps"], None)
            # GraphQL and bare alternate in slices, so a change of load on the machine (it
            # is shared) falls on both alike
            slice_s = max(1, args.seconds // args.slices)
            for name, kind, tok in pages:
                body = {"query": PAGE, "variables": {"k": kind}}
                script = _script(tmp, f"{kind}{len(name)}", body, tok)
                graphql, plain = [], []
                for _ in range(args.slices):
                    graphql.append(
                        _timed_wrk(f"{base}/graphql", slice_s, script, server.pid, engine)
                    )
                    plain.append(
                        _timed_wrk(f"{bare}/bare/feed", slice_s, script, bare_proc.pid, engine)
                    )
                graphql_all, plain_all = _merged(graphql, slice_s), _merged(plain, slice_s)
                row(f"{name}, GraphQL", graphql_all, health["rps"], plain_all["rps"])
                row(f"{name}, bare route", plain_all, health["rps"], None)
            health = _wrk(f"{base}/health", args.seconds)
            row("`/health` again", health, health["rps"], None)
    finally:
        if bare_proc is not None:
            os.killpg(bare_proc.pid, signal.SIGTERM)
            bare_proc.wait(timeout=60)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
