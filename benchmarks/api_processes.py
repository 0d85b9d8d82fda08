"""One API process against one per core: a feed page through the real HTTP endpoint (issue 16).

On a data folder seeded by `reelgraph seed` (`--data-dir D`; see feeds_load.py), starts
`reelgraph serve --workers N` for each N of --processes in turn (one server owns a folder),
--rounds times over (1, 2, 1, 2, ...: a change of load on a shared machine falls on both),
and runs wrk (2 threads, --latency) against `/health`, a FOLLOWING page of a viewer who
follows about the mean, and a signed-out FOR_YOU page (feeds_load.py's page: 20 clips with
author, counts and video), at each of --connections. Each page is warmed for 2 s first.
Beside each row, the CPU time per answered request of all API processes together and of
the embedded engine (Linux /proc).

    .venv/bin/python benchmarks/api_processes.py --data-dir /tmp/feeds-bench
"""

from __future__ import annotations

import argparse
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
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import ROOT, _gql, _port
from feeds_load import LOG_IN, PAGE, WRK_POST, _cpu_s, _graph_facts

sys.path.insert(0, str(ROOT))


def _start(data_dir: Path, env: dict[str, str], processes: int) -> tuple[subprocess.Popen, str]:
    port = _port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--workers", str(processes), "--port",
         str(port), "--data-dir", str(data_dir)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    with httpx.Client(base_url=base, timeout=30) as client:
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            os.killpg(server.pid, signal.SIGTERM)
            sys.exit("the server did not start")
    # every API process up (they accept on one socket: /health may answer before all are)
    while processes > 1 and len(_api_pids(server)) < processes:
        time.sleep(0.2)
    return server, base


def _api_pids(server: subprocess.Popen) -> list[int]:
    """The processes that answer requests: the server itself, or its spawned API processes."""
    children = psutil.Process(server.pid).children(recursive=True)
    spawned = [c.pid for c in children if "spawn_main" in " ".join(c.cmdline())]
    return spawned or [server.pid]


def _engine_pid(server: subprocess.Popen) -> int | None:
    for child in psutil.Process(server.pid).children(recursive=True):
        if "redis" in child.name() or "falkor" in " ".join(child.cmdline()).lower():
            return child.pid
    return None


def _wrk(url: str, seconds: int, connections: int, script: Path | None) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    gql_errors = re.search(r"GraphQL errors: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": lat.get("50"),
        "p99": lat.get("99"),
        "errors": (int(errors.group(1)) if errors else 0)
        + (int(gql_errors.group(1)) if gql_errors else 0),
    }


def _ms(value: str | None) -> float:
    if value is None:
        return float("nan")
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True, help="a seeded folder")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    env = dict(os.environ, PYTHONPATH=str(ROOT), REELGRAPH_ENVIRONMENT="development")
    for name in ("LOGIN_LIMIT_PER_HANDLE", "LOGIN_LIMIT_PER_ADDRESS", "MUTATION_LIMIT_PER_USER"):
        env[f"REELGRAPH_{name}"] = "0"
    tmp = Path(tempfile.mkdtemp(prefix="reelgraph-processes-"))
    results: dict[tuple, list[dict]] = defaultdict(list)
    viewer: tuple[str, int] | None = None
    try:
        for _round in range(args.rounds):
            for processes in args.processes:
                server, base = _start(args.data_dir, env, processes)
                try:
                    if viewer is None:
                        viewers, _edges = _graph_facts(args.data_dir)
                        viewer = viewers[-1]  # one who follows about the mean
                    from graph.seed import SEED_PASSWORD

                    with httpx.Client(base_url=base, timeout=120) as client:
                        variables = {"h": viewer[0], "p": SEED_PASSWORD}
                        token = _gql(client, LOG_IN, variables)["logIn"]["accessToken"]
                    scripts = {}
                    for kind, tok in (("FOLLOWING", token), ("FOR_YOU", None)):
                        body = {"query": PAGE, "variables": {"k": kind}}
                        auth = f'wrk.headers["Authorization"] = "Bearer {tok}"' if tok else ""
                        path = tmp / f"{kind}.lua"
                        path.write_text(WRK_POST % (auth, json.dumps(json.dumps(body))))
                        scripts[kind] = path
                    apis, engine = _api_pids(server), _engine_pid(server)
                    endpoints = [("/health", "/health", None)] + [
                        (f"{kind} page", "/graphql", script) for kind, script in scripts.items()
                    ]
                    for name, path, script in endpoints:
                        _wrk(base + path, 2, 4, script)  # warm every process
                        for connections in args.connections:
                            cpu = [sum(_cpu_s(p) for p in apis), _cpu_s(engine) if engine else 0]
                            row = _wrk(base + path, args.seconds, connections, script)
                            row["cpu_api"] = sum(_cpu_s(p) for p in apis) - cpu[0]
                            row["cpu_engine"] = (_cpu_s(engine) if engine else 0) - cpu[1]
                            results[name, connections, processes].append(row)
                            line = {"processes": processes, "endpoint": name}
                            line.update(connections=connections, **row)
                            print(json.dumps(line), flush=True)
                finally:
                    os.killpg(server.pid, signal.SIGTERM)
                    server.wait(timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nwrk -t2 -d{args.seconds}s --latency; {args.rounds} rounds (median req/s, worst p99)")
    print("| endpoint | connections | API processes | req/s | p50 | p99 | errors |"
          " CPU ms/request: API, engine |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (name, connections, processes), rows in results.items():
        per = [1000 / r["requests"] for r in rows if r["requests"]]
        api = statistics.median(r["cpu_api"] * p for r, p in zip(rows, per, strict=False))
        eng = statistics.median(r["cpu_engine"] * p for r, p in zip(rows, per, strict=False))
        p50 = statistics.median(_ms(r["p50"]) for r in rows)
        p99 = max(_ms(r["p99"]) for r in rows)
        print(
            f"| {name} | {connections} | {processes} | "
            f"{statistics.median(r['rps'] for r in rows):,.0f} | {p50:.1f} ms | {p99:.1f} ms | "
            f"{sum(r['errors'] for r in rows)} | {api:.1f}, {eng:.1f} |"
        )


if __name__ == "__main__":
    main()
