"""Throughput and latency of the GraphQL endpoint against /health, in one run, with wrk.

Starts a real `reelgraph serve` (embedded FalkorDB/Redis, no worker) on a fresh data folder
from the code at --code-dir (this checkout by default, or an older checkout for a before/after
comparison), seeds one user followed by 20 users who follow each other a little, then drives
with wrk (16 connections, 2 threads) in turn:

- `/health` (the floor: one graph ping and one Redis ping per request),
- a page of 20 followers with their follower/following counts (the issue's measure),
- /health while 8 clients send, over and over, a 5 KB document of 490 `viewer { id }`
  fields (how much one abusive document costs everyone else).

    .venv/bin/python benchmarks/api_load.py                       # this checkout
    .venv/bin/python benchmarks/api_load.py --code-dir /tmp/before  # an older checkout

Needs `wrk` (Debian: apt-get install wrk). Numbers from one run are compared as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

FOLLOWERS = """query($h: String!) { user(handle: $h) { followers(first: 20) { edges { node {
  id handle displayName followerCount followingCount } } } } }"""
ABUSE = "{ " + " ".join(["viewer { id }"] * 490) + " }"

WRK_POST = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = %s
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gql(client: httpx.Client, query: str, variables: dict, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    data = body.json()
    if data.get("errors"):
        raise RuntimeError(data["errors"])
    return data["data"]


def _sign_up(client: httpx.Client, handle: str) -> tuple[str, str]:
    data = _gql(
        client,
        """mutation($i: SignUpInput!) { signUp(input: $i) { accessToken user { id } } }""",
        {"i": {"handle": handle, "displayName": handle.title(), "password": "bench password"}},
    )["signUp"]
    return data["accessToken"], data["user"]["id"]


def _seed(client: httpx.Client) -> str:
    _token, star_id = _sign_up(client, "star")
    fans = [_sign_up(client, f"fan{i:02d}") for i in range(20)]
    follow = "mutation($id: ID!) { follow(userId: $id) { id } }"
    for i, (token, _) in enumerate(fans):
        _gql(client, follow, {"id": star_id}, token)
        for _, other in fans[i + 1 : i + 4]:  # a few follows among fans, so counts vary
            _gql(client, follow, {"id": other}, token)
    return "star"


def start_server(
    code_dir: Path, data_dir: Path, env: dict[str, str]
) -> tuple[subprocess.Popen, str]:
    """`reelgraph serve` from code_dir on a free port; returns once /health answers 200."""
    port = _port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "cli", "serve", "--workers", "1"),
            *("--port", str(port), "--data-dir", str(data_dir)),
        ],
        cwd=code_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base, timeout=30) as client:
        while True:
            try:
                if client.get("/health").status_code == 200:
                    return server, base
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                os.killpg(server.pid, signal.SIGTERM)
                sys.exit("the server did not start")
            time.sleep(0.2)


def _wrk(url: str, seconds: int, script: Path | None = None, connections: int = 16) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "20s", "--latency", url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"timeout (\d+)", out)
    return {
        "timeouts": int(timeouts.group(1)) if timeouts else 0,
        "rps": rps,
        "p50": lat.get("50"),
        "p99": lat.get("99"),
        "non2xx": int(errors.group(1)) if errors else 0,
    }


def _script(tmp: Path, name: str, body: dict) -> Path:
    path = tmp / f"{name}.lua"
    path.write_text(WRK_POST % json.dumps(json.dumps(body)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code-dir", type=Path, default=ROOT)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="reelgraph-bench-"))
    env = dict(os.environ, PYTHONPATH=str(args.code_dir), REELGRAPH_ENVIRONMENT="development")
    # the benchmark signs up 21 users from one address: lift the sign-up limit if there is one
    env.update(REELGRAPH_SIGNUP_LIMIT_PER_ADDRESS="0", REELGRAPH_MUTATION_LIMIT_PER_USER="0")
    env.update(dict(item.split("=", 1) for item in args.env))
    server, base = start_server(args.code_dir, tmp / "d", env)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            handle = _seed(client)
            page = _gql(client, FOLLOWERS, {"h": handle})
            assert len(page["user"]["followers"]["edges"]) == 20
            client.post("/graphql", json={"query": ABUSE})  # warm-up
            t0 = time.perf_counter()
            abusive = client.post("/graphql", json={"query": ABUSE})
            abuse_single_s = time.perf_counter() - t0

        followers = _script(tmp, "followers", {"query": FOLLOWERS, "variables": {"h": handle}})
        abuse = _script(tmp, "abuse", {"query": ABUSE})
        rows = {"health": _wrk(f"{base}/health", args.seconds)}
        rows["followers page"] = _wrk(f"{base}/graphql", args.seconds, followers)
        rows["health (again)"] = _wrk(f"{base}/health", args.seconds)
        # /health with 8 clients hammering the abusive document at the same time
        hog = subprocess.Popen(
            ["wrk", "-t1", "-c8", f"-d{args.seconds + 2}s", "-s", str(abuse), f"{base}/graphql"],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(1)
        beside = []  # one /health at a time: how long each waits behind the abusive documents
        with httpx.Client(base_url=base, timeout=60) as client:
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                t0 = time.perf_counter()
                client.get("/health")
                beside.append(time.perf_counter() - t0)
        hog.wait()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"code: {args.code_dir}  wrk -t2 -c16 -d{args.seconds}s")
    print(
        f"490-field document, one request: {abuse_single_s * 1000:.0f} ms, "
        f"status {abusive.status_code}, {abusive.text[:120]!r}"
    )
    print("| endpoint | req/s | p50 | p99 | non-2xx | timeouts |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        cells = [f"{r['rps']:.0f}", r["p50"], r["p99"], r["non2xx"], r["timeouts"]]
        print(f"| {name} | " + " | ".join(map(str, cells)) + " |")
    beside.sort()
    print(
        f"/health beside 8 clients sending the 490-field document: {len(beside)} requests, "
        f"median {beside[len(beside) // 2] * 1000:.0f} ms, max {beside[-1] * 1000:.0f} ms"
    )
    floor = (rows["health"]["rps"] + rows["health (again)"]["rps"]) / 2
    print(f"followers page / health: {rows['followers page']['rps'] / floor:.1%}")


if __name__ == "__main__":
    main()
