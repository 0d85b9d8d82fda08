"""Fan-out of one event to N websocket subscribers on one API process (issue 9).

Starts `reelgraph run` (one API process and a render worker) on a fresh data folder, makes
an author and --users followers, renders and publishes --rounds + 1 clips, then for each N:
- client processes (--clients of them, apart from the server, so their cost is not the
  server's) open N sockets, spread over the followers, each subscribed to
  `feedUpdates(kind: FOLLOWING)`;
- a warm-up event is published until every socket has it (every subscription is then live);
- each round publishes one clip's event the way publishClip does (events.feed.clip_published's
  message on Redis pub/sub) and waits until every socket has received it.
Reports publish-to-receive latency over all sockets and rounds (p50, p99, max) and the API
process's resident memory per connection (its RSS after the sockets are open and
subscribed, less its RSS before, over N). Both sides raise their open-file limit.

    .venv/bin/python benchmarks/ws_fanout.py --subscribers 1000 5000 10000

--server vanilla|reelgraph|both (issue 16 item 4): vanilla measures
benchmarks/vanilla_fanout_app.py (plain Strawberry on Litestar and uvicorn, one Redis pub/sub
broadcaster, no auth or visibility) with the same client processes, frames and measurement,
on the same Redis (with `both`, the embedded one `reelgraph run` started; with vanilla alone,
an embedded Redis started here and made-up clip ids). `both` measures reelgraph then vanilla
for each N in the same run. A round that is not delivered to every socket within
--round-timeout is noted and the run goes on; a table of both servers ends the output.

    .venv/bin/python benchmarks/ws_fanout.py --subscribers 1000 --rounds 3 --server both
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROTOCOL = "graphql-transport-ws"
FEED = "subscription { feedUpdates(kind: FOLLOWING) { id } }"
PASSWORD = "benchmark-password"


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _gql(client: httpx.Client, query: str, variables: dict, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    ).json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


def _sign_up(client: httpx.Client, handle: str) -> tuple[str, str]:
    data = _gql(
        client,
        "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken user { id } } }",
        {"i": {"handle": handle, "displayName": handle, "password": PASSWORD}},
    )
    return data["signUp"]["user"]["id"], data["signUp"]["accessToken"]


def start_server(data_dir: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        REELGRAPH_MAX_SOCKETS_PER_USER="1000000",
        REELGRAPH_SIGNUP_LIMIT_PER_ADDRESS="0",
        REELGRAPH_MUTATION_LIMIT_PER_USER="0",
        # the publisher makes one clip a round: past the quota and the in-flight cap
        REELGRAPH_MAX_ACTIVE_RENDERS_PER_USER="10000",
        REELGRAPH_DAILY_GENERATIONS="1000000",
    )
    log = open(data_dir.parent / "server.log", "wb")  # the server's, until it exits
    # one API process, so the memory read from it is the one process that holds the sockets
    server = subprocess.Popen(
        [
            sys.executable,
            *("-m", "cli", "run", "--workers", "1", "--port", str(port)),
            *("--data-dir", str(data_dir)),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the child inherits the raised open-file limit
    )
    return serving_or_exit(server, f"http://127.0.0.1:{port}/health", "the server", 90)


def serving_or_exit(
    process: subprocess.Popen, url: str, what: str, within_s: float
) -> subprocess.Popen:
    """process, once `url` answers 200; else the process group is stopped and the
    benchmark exits saying `what` did not start."""
    deadline = time.monotonic() + within_s
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if client.get(url).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    sys.exit(f"{what} did not start")


def start_vanilla(log_path: Path, port: int, redis_url: str) -> subprocess.Popen:
    """benchmarks/vanilla_fanout_app.py on `port`, subscribed to the feed channel of
    `redis_url`; returns once it answers a query."""
    log = open(log_path, "wb")  # the app's, until it exits
    app = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "vanilla_fanout_app.py"),
            *("--port", str(port), "--redis-url", redis_url),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the child inherits the raised open-file limit
    )
    url = f"http://127.0.0.1:{port}/graphql?query=%7B%20health%20%7D"
    return serving_or_exit(app, url, f"the vanilla app (its log: {log_path})", 90)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare(port: int, users: int, clips: int) -> tuple[str, list[str], list[str]]:
    """(author raw id, follower tokens, published clip raw ids)."""
    from resolvers.ids import decode_id

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        author_id, author_token = _sign_up(client, f"author_{port}")
        tokens = []
        for i in range(users):
            _, token = _sign_up(client, f"fan{i}_{port}")
            _gql(
                client,
                "mutation($id: ID!) { follow(userId: $id) { id } }",
                {"id": author_id},
                token,
            )
            tokens.append(token)
        created = [
            _gql(
                client,
                "mutation($i: CreateClipInput!) { createClip(input: $i) { id } }",
                {"i": {"prompt": f"benchmark clip {n}", "durationSeconds": 1}},
                author_token,
            )["createClip"]["id"]
            for n in range(clips)
        ]
        for clip_id in created:
            while True:
                state = _gql(
                    client,
                    "query($id: ID!) { clip(id: $id) { state } }",
                    {"id": clip_id},
                    author_token,
                )["clip"]["state"]
                if state == "DRAFT":
                    break
                if state == "FAILED":
                    raise RuntimeError("a benchmark clip failed to render")
                time.sleep(0.1)
            _gql(
                client,
                "mutation($id: ID!) { publishClip(clipId: $id) { id } }",
                {"id": clip_id},
                author_token,
            )
    return decode_id(author_id, "User"), tokens, [decode_id(c, "Clip") for c in created]


def client_process(
    url: str,
    tokens: list[str],
    count: int,
    clip_ids: list[str],
    received: mp.Array,
    opened: mp.Value,
    stop: mp.Event,
    results: mp.Queue,
) -> None:
    """Open `count` sockets, subscribe each, and note when each first gets each clip."""
    raise_fd_limit()
    import websockets

    from resolvers.ids import encode_id

    # the project's server sends Relay global ids, the vanilla app the raw ones
    index = {encode_id("Clip", c): i for i, c in enumerate(clip_ids)}
    index.update({c: i for i, c in enumerate(clip_ids)})
    times: list[list[float | None]] = [[None] * len(clip_ids) for _ in range(count)]
    counted = [False] * count

    async def one(n: int) -> None:
        for attempt in range(6):  # as a real client would: reconnect, with backoff
            try:
                await listen(n)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt == 5:  # reported; the run then times out waiting for it
                    print(f"socket {n}: {exc!r}", file=sys.stderr, flush=True)
                    return
                await asyncio.sleep(0.5 * 2**attempt)

    async def listen(n: int) -> None:
        token = tokens[n % len(tokens)]
        async with websockets.connect(
            url, subprotocols=[PROTOCOL], open_timeout=120, ping_interval=None, max_queue=None
        ) as ws:
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
            await ws.send(json.dumps(init))
            await ws.recv()
            payload = {"query": FEED}
            await ws.send(json.dumps({"id": "f", "type": "subscribe", "payload": payload}))
            if not counted[n]:
                counted[n] = True
                with opened.get_lock():
                    opened.value += 1
            async for raw in ws:
                now = time.time()
                message = json.loads(raw)
                if message["type"] == "ping":
                    await ws.send('{"type":"pong"}')
                    continue
                if message["type"] != "next":
                    continue
                i = index[message["payload"]["data"]["feedUpdates"]["id"]]
                if times[n][i] is None:
                    times[n][i] = now
                    with received.get_lock():
                        received[i] += 1

    async def main() -> None:
        tasks = []
        for n in range(count):
            tasks.append(asyncio.create_task(one(n)))
            if n % 50 == 49:
                await asyncio.sleep(0.1)  # a connect rate a loaded server takes
        await asyncio.to_thread(stop.wait)  # a multiprocessing Event: waited on in a thread
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    results.put(times)


def note(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def wait_for(condition, what: str, within_s: float = 600) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


CLIENT = ["websockets"]  # --client


def measure(
    port: int,
    redis_client: object,
    tokens: list[str],
    clip_ids: list[str],
    author: str,
    n: int,
    clients: int,
    api: psutil.Process,
    rss_baseline: int,
    round_timeout_s: float | None = None,
) -> dict:
    """One N on the server at `port`. A round not delivered to every socket within
    round_timeout_s is noted and the next one sent; without it, that is an error."""
    from events.bus import FEED_CHANNEL, publish_sync

    url = f"ws://127.0.0.1:{port}/graphql"
    ctx = mp.get_context("spawn")
    received = ctx.Array("i", len(clip_ids))
    opened = ctx.Value("i", 0)
    stop = ctx.Event()
    results = ctx.Queue()
    shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    if CLIENT[0] == "lean":
        from lean_ws_client import lean_client_process

        target, extra = lean_client_process, (FEED,)
    else:
        target, extra = client_process, ()
    procs = [
        ctx.Process(
            target=target,
            args=(url, tokens, share, clip_ids, received, opened, stop, results, *extra),
        )
        for share in shares
    ]

    def ring(i: int) -> float:
        t0 = time.time()
        publish_sync(FEED_CHANNEL, {"clipId": clip_ids[i], "authorId": author}, redis_client)
        return t0

    for proc in procs:
        proc.start()
    try:
        note(f"{n}: opening sockets")
        wait_for(lambda: opened.value >= n, f"{n} sockets to open")
        note(f"{n}: sockets open; warming up")
        # warm-up: ring clip 0 until every socket has it, so every subscription is live
        deadline = time.monotonic() + 600
        while received[0] < n:
            ring(0)
            inner = time.monotonic() + 5
            while received[0] < n and time.monotonic() < inner:
                time.sleep(0.01)
            if time.monotonic() > deadline:
                raise RuntimeError("not every subscription went live")
        rss_after = api.memory_info().rss
        sent = {}
        for i in range(1, len(clip_ids)):
            sent[i] = ring(i)
            if round_timeout_s is None:
                wait_for(lambda i=i: received[i] >= n, f"round {i}")
                continue
            try:
                wait_for(lambda i=i: received[i] >= n, f"round {i}", round_timeout_s)
            except RuntimeError:
                note(
                    f"{n}: round {i}: {received[i]} of {n} sockets had it after {round_timeout_s} s"
                )
        stop.set()
        times = []
        per_client = []  # one list per client process: a lagging client shows up here
        for _ in procs:
            got = results.get(timeout=300)
            times.extend(got)
            per_client.append(
                sorted((row[i] - sent[i]) * 1000 for row in got for i in sent if row[i] is not None)
            )
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    latencies = sorted(
        (row[i] - sent[i]) * 1000 for row in times for i in sent if row[i] is not None
    )
    q = statistics.quantiles(latencies, n=100)
    return {
        "subscribers": n,
        "samples": len(latencies),
        "p50_ms": round(q[49], 1),
        "p99_ms": round(q[98], 1),
        "max_ms": round(latencies[-1], 1),
        "client_p50_p99_ms": [
            [round(statistics.quantiles(c, n=100)[k], 1) for k in (49, 98)]
            for c in per_client
            if len(c) > 1
        ],
        "round_p50_max_ms": [
            [round(statistics.median(r), 1), round(max(r), 1)]
            for i in sent
            if (r := [(row[i] - sent[i]) * 1000 for row in times if row[i] is not None])
        ],
        "api_rss_mib": round(rss_after / 2**20, 1),
        # against the RSS before any socket ever opened: memory freed by an earlier, smaller
        # run stays in the process and is reused, so this is the honest per-socket cost
        "rss_per_connection_kib": round((rss_after - rss_baseline) / n / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--users", type=int, default=20, help="followers the sockets belong to")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument(
        "--client",
        choices=["websockets", "lean"],
        default="websockets",
        help="websockets: a websockets connection per socket; lean: benchmarks/lean_ws_client.py",
    )
    parser.add_argument("--server-log", type=Path, help="keep the server's log here")
    parser.add_argument(
        "--server",
        choices=["reelgraph", "vanilla", "both"],
        help="which server(s) to measure; given, rows name the server and a table ends the run",
    )
    parser.add_argument(
        "--round-timeout", type=float, default=120, help="with --server: seconds per round"
    )
    args = parser.parse_args()
    CLIENT[0] = args.client
    raise_fd_limit()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    if args.server is not None:
        compare(args)
        return

    import redis

    from graph.embedded import EmbeddedServer
    from urls import unix_socket_url

    with tempfile.TemporaryDirectory(prefix="ws-fanout-") as tmp:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        data_dir = Path(tmp) / "data"
        server = start_server(data_dir, port)
        try:
            note("server up; signing up, following, rendering and publishing clips")
            author, tokens, clip_ids = prepare(port, args.users, args.rounds + 1)
            socket_path = EmbeddedServer.locate(data_dir)
            redis_client = redis.Redis.from_url(unix_socket_url(socket_path))
            api = psutil.Process(server.pid)
            baseline = api.memory_info().rss
            for n in args.subscribers:
                row = measure(
                    port, redis_client, tokens, clip_ids, author, n, args.clients, api, baseline
                )
                print(json.dumps(row), flush=True)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
            if args.server_log:
                shutil.copy(Path(tmp) / "server.log", args.server_log)


def compare(args: argparse.Namespace) -> None:
    """--server: the project's server, the vanilla app, or both one after the other for
    each N, with the same clients and measurement; one JSON row each, then a table."""
    import redis

    from graph.embedded import EmbeddedServer
    from urls import unix_socket_url

    servers = ["reelgraph", "vanilla"] if args.server == "both" else [args.server]
    rows: list[dict] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ws-fanout-")))
        data_dir = tmp / "data"
        ports: dict[str, int] = {}
        if "reelgraph" in servers:
            ports["reelgraph"] = free_port()
            server = start_server(data_dir, ports["reelgraph"])
            stack.callback(_stop, server, tmp / "server.log", args.server_log)
            note("server up; signing up, following, rendering and publishing clips")
            author, tokens, clip_ids = prepare(ports["reelgraph"], args.users, args.rounds + 1)
            socket_path = EmbeddedServer.locate(data_dir)
        else:
            # no project server: an embedded Redis alone, and clip ids nobody needs to read
            embedded = EmbeddedServer(data_dir)
            embedded.start()
            stack.callback(embedded.stop)
            socket_path = embedded.socket_path
            author = str(uuid.uuid4())
            tokens = ["unused"]  # the vanilla app ignores connection_init's payload
            clip_ids = [str(uuid.uuid4()) for _ in range(args.rounds + 1)]
        redis_url = unix_socket_url(socket_path)
        redis_client = redis.Redis.from_url(redis_url)
        processes = {}
        if "reelgraph" in servers:
            processes["reelgraph"] = psutil.Process(server.pid)
        if "vanilla" in servers:
            ports["vanilla"] = free_port()
            app = start_vanilla(tmp / "vanilla.log", ports["vanilla"], redis_url)
            stack.callback(_stop, app, None, None)
            processes["vanilla"] = psutil.Process(app.pid)
            note(f"vanilla app up on port {ports['vanilla']}")
        baselines = {name: proc.memory_info().rss for name, proc in processes.items()}
        for n in args.subscribers:
            for name in servers:
                note(f"{name}: {n} subscribers")
                row = measure(
                    ports[name],
                    redis_client,
                    tokens,
                    clip_ids,
                    author,
                    n,
                    args.clients,
                    processes[name],
                    baselines[name],
                    args.round_timeout,
                )
                expected = n * args.rounds
                row = {"server": name, **row, "expected": expected}
                row["all_delivered"] = row["samples"] == expected
                print(json.dumps(row), flush=True)
                rows.append(row)
    print()
    print("| server | N | p50 | p99 | max | all delivered? | RSS per socket |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        delivered = "yes" if row["all_delivered"] else f"no ({row['samples']} of {row['expected']})"
        print(
            f"| {row['server']} | {row['subscribers']:,} | {row['p50_ms']} ms "
            f"| {row['p99_ms']} ms | {row['max_ms']} ms | {delivered} "
            f"| {row['rss_per_connection_kib']} KiB |"
        )


def _stop(proc: subprocess.Popen, log: Path | None, keep: Path | None) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    if log is not None and keep is not None:
        shutil.copy(log, keep)


if __name__ == "__main__":
    main()
