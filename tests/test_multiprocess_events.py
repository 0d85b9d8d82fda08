"""Events across API processes: real `reelgraph serve` processes sharing one Redis.

- two servers on the suite's embedded engine: a subscriber on one, the publisher on the
  other; a disconnect, events missed meanwhile, a reconnect with `after` that gets exactly
  those, then live ones again;
- `reelgraph serve --workers 2` on a data folder of its own: two API processes on one port
  over the one embedded engine it starts, serving subscriptions, and stopping cleanly;
- `reelgraph serve` without --workers: REELGRAPH_API_PROCESSES processes, and --workers 1
  overriding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis.asyncio as aredis
import websockets
from conftest import ROOT, GraphQLClient, api_env, free_port
from test_sockets import wait_until

from events.bus import notifications_channel
from resolvers.ids import decode_id
from resolvers.pagination import encode_cursor
from settings import Settings

PROTOCOL = "graphql-transport-ws"
NOTIFICATIONS = """subscription($after: String) { notifications(after: $after) {
  kind cursor actor { handle } } }"""
FOLLOW = "mutation($id: ID!) { follow(userId: $id) { id } }"
SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) {
  accessToken user { id handle } } }"""


@contextlib.contextmanager
def reelgraph(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A `reelgraph` command in its own process (group), stopped with SIGTERM at the end."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


async def healthy(port: int, proc: subprocess.Popen, log: Path) -> None:
    async def up() -> bool:
        assert proc.poll() is None, f"the server exited; see {log}"
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(up)


async def post(port: int, query: str, variables: dict, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": query, "variables": variables},
            headers=headers,
        )
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


@contextlib.asynccontextmanager
async def subscribed(port: int, token: str, after: str | None = None) -> AsyncIterator[Any]:
    url = f"ws://127.0.0.1:{port}/graphql"
    async with websockets.connect(url, subprotocols=[PROTOCOL]) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": NOTIFICATIONS, "variables": {"after": after}}
        await ws.send(json.dumps({"id": "n", "type": "subscribe", "payload": payload}))
        yield ws


async def notification(ws: Any) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        assert message["type"] == "next", message
        return message["payload"]["data"]["notifications"]


async def live(redis: aredis.Redis, user_id: str, count: int = 1) -> None:
    """Wait until `count` API processes listen on the user's channel (confirmed by Redis)."""
    channel = notifications_channel(user_id)

    async def listening() -> bool:
        return dict(await redis.pubsub_numsub(channel)).get(channel, 0) >= count

    await wait_until(listening)


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_a_subscriber_on_one_server_hears_the_other_and_resumes_after_a_reconnect(
    gql: GraphQLClient, settings: Settings, redis: aredis.Redis, tmp_path: Path
) -> None:
    ports = free_port(), free_port()
    env = api_env(settings)
    with (
        reelgraph(["serve", "--port", str(ports[0])], env, tmp_path / "a.log") as a,
        reelgraph(["serve", "--port", str(ports[1])], env, tmp_path / "b.log") as b,
    ):
        await healthy(ports[0], a, tmp_path / "a.log")
        await healthy(ports[1], b, tmp_path / "b.log")
        alice = await gql.sign_up("alice")
        fans = [await gql.sign_up(f"fan{i}") for i in range(4)]
        alice_raw = decode_id(alice.id, "User")
        subscriber, publisher = ports

        async with subscribed(subscriber, alice.token) as ws:
            await live(redis, alice_raw)
            await post(publisher, FOLLOW, {"id": alice.id}, fans[0].token)
            first = await notification(ws)
        assert first["actor"]["handle"] == fans[0].handle

        # missed while no socket was open
        for fan in fans[1:3]:
            await post(publisher, FOLLOW, {"id": alice.id}, fan.token)

        async with subscribed(subscriber, alice.token, after=first["cursor"]) as ws:
            missed = [await notification(ws), await notification(ws)]
            assert [n["actor"]["handle"] for n in missed] == [fans[1].handle, fans[2].handle]
            await live(redis, alice_raw)
            await post(publisher, FOLLOW, {"id": alice.id}, fans[3].token)
            assert (await notification(ws))["actor"]["handle"] == fans[3].handle
        assert a.poll() is None and b.poll() is None


def _api_processes(proc: subprocess.Popen) -> list[psutil.Process]:
    """uvicorn's worker processes under `serve --workers N` (multiprocessing spawns them)."""
    children = psutil.Process(proc.pid).children(recursive=True)
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


async def test_serve_workers_runs_several_api_processes_over_one_engine(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGRAPH_")}
    env["REELGRAPH_TRACE_STATEMENTS"] = os.environ["REELGRAPH_TRACE_STATEMENTS"]
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    args = ["serve", "--workers", "2", "--port", str(port), "--data-dir", str(data_dir)]
    with reelgraph(args, env, log) as proc:
        await healthy(port, proc, log)
        await wait_until(lambda: len(_api_processes(proc)) == 2)
        accounts = []
        for name in ("alice", "bob"):
            variables = {
                "input": {
                    "handle": f"{name}_{port}",
                    "displayName": name,
                    "password": "correct horse battery",
                }
            }
            accounts.append((await post(port, SIGN_UP, variables))["signUp"])
        alice, bob = accounts
        # several sockets: the processes share one listening socket, each takes some. They
        # replay from the start of the stream, so each gets the event, live or replayed
        start = encode_cursor("0-0")
        async with contextlib.AsyncExitStack() as stack:
            connections = [
                await stack.enter_async_context(subscribed(port, alice["accessToken"], start))
                for _ in range(4)
            ]
            await post(port, FOLLOW, {"id": alice["user"]["id"]}, bob["accessToken"])
            for ws in connections:
                assert (await notification(ws))["actor"]["handle"] == bob["user"]["handle"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()[-3000:]


async def test_serve_starts_the_api_processes_setting_unless_workers_is_given(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGRAPH_")}
    env["REELGRAPH_TRACE_STATEMENTS"] = os.environ["REELGRAPH_TRACE_STATEMENTS"]
    env["REELGRAPH_API_PROCESSES"] = "2"
    data_dir = tmp_path / "data"
    for given, expected in ([], 2), (["--workers", "1"], 0):
        port, log = free_port(), tmp_path / f"serve{len(given)}.log"
        args = ["serve", *given, "--port", str(port), "--data-dir", str(data_dir)]
        with reelgraph(args, env, log) as proc:
            await healthy(port, proc, log)
            if expected:
                await wait_until(lambda p=proc, n=expected: len(_api_processes(p)) == n)
            else:  # one process serves itself: nothing spawned
                assert _api_processes(proc) == []
            said = "(2 API processes)" if expected else "(1 API process)"
            assert said in log.read_text()
            health = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/health")
            assert health.json()["status"] == "ok"
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        # a clean stop: one process re-raises the SIGTERM after draining (cli.serve)
        assert proc.returncode in (0, 128 + signal.SIGTERM), log.read_text()[-3000:]
