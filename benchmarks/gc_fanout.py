"""The collector's settings in an API process holding many sockets (issue 16, both cores).

For each configuration (--configs), starts `reelgraph run --workers 1` (one API process, the
render worker beside it) on a fresh data folder with the collector set up that way at
start-up, then runs benchmarks/ws_fanout.py's measurement: --subscribers sockets subscribed
to `feedUpdates`, --rounds events each delivered to all of them, publish-to-receive p50 and
p99 over all sockets and rounds. Beside each row, what the API process's collector did
meanwhile (gc.callbacks): collections per generation, their total and longest pause.

A configuration is `before` (Python's defaults and no freeze: what start-up did before
server.settle_gc), or `freeze:G0,G1,G2` (settle_gc with those thresholds).

    .venv/bin/python benchmarks/gc_fanout.py --subscribers 2000 \\
        --configs before freeze:700,10,10 freeze:10000,10,10 freeze:50000,20,100
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ws_fanout import ROOT, measure, note, prepare, raise_fd_limit, serving_or_exit

# run in the API process: the configuration, and a record of every collection, written out
# when the process exits (uvicorn's graceful shutdown on SIGTERM, then a normal exit)
SERVER = """
import atexit, gc, json, sys, time
import server
config, stats_path, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
if config == "before":
    server.settle_gc = lambda: None
else:
    server.GC_THRESHOLDS = tuple(int(n) for n in config.split(":", 1)[1].split(","))
pauses = []  # [wall clock, generation, pause s] per collection
started = {}
def record(phase, info):
    if phase == "start":
        started["t"] = time.perf_counter()
    else:
        t0 = started.pop("t", None)
        if t0 is not None:
            pauses.append([time.time(), info["generation"], time.perf_counter() - t0])
gc.callbacks.append(record)
def dump():
    with open(stats_path, "w") as out:
        json.dump(pauses, out)
atexit.register(dump)
import cli
sys.exit(cli.main(argv))
"""


def start_server(data_dir: Path, port: int, config: str, stats: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        REELGRAPH_MAX_SOCKETS_PER_USER="1000000",
        REELGRAPH_SIGNUP_LIMIT_PER_ADDRESS="0",
        REELGRAPH_MUTATION_LIMIT_PER_USER="0",
        # the clips of the rounds are made at once (quotas, auth/quotas.py)
        REELGRAPH_MAX_ACTIVE_RENDERS_PER_USER="1000",
        REELGRAPH_DAILY_GENERATIONS="1000",
    )
    argv = ["run", "--workers", "1", "--port", str(port), "--data-dir", str(data_dir)]
    log = open(data_dir.parent / "server.log", "wb")  # the server's, until it exits
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, config, str(stats), *argv],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return serving_or_exit(server, f"http://127.0.0.1:{port}/health", "the server", 120)


def _pauses(stats: Path, since: float, until: float) -> dict:
    """Per generation, [collections, total ms, longest ms] between since and until."""
    data = [row for row in json.loads(stats.read_text()) if since <= row[0] <= until]
    row = {}
    for gen in (0, 1, 2):
        pauses = [pause for _at, g, pause in data if g == gen]
        row[f"gen{gen}"] = [
            len(pauses),
            round(sum(pauses) * 1000, 1),
            round(max(pauses, default=0) * 1000, 1),
        ]
    return row


def run_config(config: str, subscribers: list[int], users: int, rounds: int, clients: int) -> None:
    import redis

    from graph.embedded import EmbeddedServer
    from urls import unix_socket_url

    with tempfile.TemporaryDirectory(prefix="gc-fanout-") as tmp:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        data_dir = Path(tmp) / "data"
        stats = Path(tmp) / "gc.json"
        server = start_server(data_dir, port, config, stats)
        try:
            note(f"{config}: server up; preparing")
            author, tokens, clip_ids = prepare(port, users, rounds + 1)
            socket_path = EmbeddedServer.locate(data_dir)
            redis_client = redis.Redis.from_url(unix_socket_url(socket_path))
            api = psutil.Process(server.pid)
            baseline = api.memory_info().rss
            rows = []
            for n in subscribers:
                since = time.time()
                row = measure(
                    port, redis_client, tokens, clip_ids, author, n, clients, api, baseline
                )
                rows.append((row, since, time.time()))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        keep = ("subscribers", "samples", "p50_ms", "p99_ms", "max_ms", "rss_per_connection_kib")
        for row, since, until in rows:
            # the API process's collections from the first socket opened to the last round
            # received: [collections, total ms, longest ms] per generation
            gc_row = _pauses(stats, since, until) if stats.exists() else {}
            line = {"config": config, **{k: row[k] for k in keep}, "collections": gc_row}
            print(json.dumps(line), flush=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[2000])
    parser.add_argument("--configs", nargs="+", default=["before", "freeze:700,10,10"])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    raise_fd_limit()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for config in args.configs:
        run_config(config, args.subscribers, args.users, args.rounds, args.clients)


if __name__ == "__main__":
    main()
