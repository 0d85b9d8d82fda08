"""The real `reelgraph serve` process: persistence across restarts, data-folder ownership,
health, clean shutdown on SIGTERM/SIGINT, the one websocket protocol offered, how many API
processes it starts, and the collector set up in each."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import websockets
from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def server(data_dir: Path, stop_signal: int = signal.SIGTERM, **settings: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGRAPH_")}
    env["REELGRAPH_TRACE_STATEMENTS"] = os.environ["REELGRAPH_TRACE_STATEMENTS"]
    env.update(settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # bounds a stuck start only (processes spawn)
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(stop_signal)
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode in (0, 128 + stop_signal, -stop_signal), out.decode()
    # the embedded engine went down with it: no orphan holds the folder
    assert not (data_dir / "run" / "socket.path").exists()


def _gql(base: str, query: str, variables: dict | None = None, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = httpx.post(
        f"{base}/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    ).json()
    assert not body.get("errors"), body
    return body["data"]


SIGN_UP = """mutation($h: String!) {
  signUp(input: {handle: $h, displayName: "P", password: "persist-me"}) { accessToken user { id } }
}"""


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_data_survives_a_restart(tmp_path: Path, stop_signal: int) -> None:
    data_dir = tmp_path / "data"
    with server(data_dir, stop_signal) as base:
        first = _gql(base, SIGN_UP, {"h": "persisted"})["signUp"]
        other = _gql(base, SIGN_UP, {"h": "followee"})["signUp"]
        _gql(
            base,
            "mutation($id: ID!) { follow(userId: $id) { id } }",
            {"id": other["user"]["id"]},
            first["accessToken"],
        )
    with server(data_dir) as base:
        data = _gql(base, '{ user(handle: "persisted") { id followingCount } }')
        assert data["user"] == {"id": first["user"]["id"], "followingCount": 1}
        # the signing secret persisted too: the old access token still works
        viewer = _gql(base, "{ viewer { id } }", token=first["accessToken"])
        assert viewer["viewer"]["id"] == first["user"]["id"]


def test_two_data_folders_do_not_interfere(tmp_path: Path) -> None:
    with server(tmp_path / "a") as a, server(tmp_path / "b") as b:
        _gql(a, SIGN_UP, {"h": "only_in_a"})
        assert _gql(b, '{ user(handle: "only_in_a") { id } }')["user"] is None
        _gql(b, SIGN_UP, {"h": "only_in_a"})  # the same handle is free in b


def test_a_second_server_on_the_same_folder_fails_clearly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with server(data_dir):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "serve",
                "--port",
                str(free_port()),
                "--data-dir",
                str(data_dir),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert "in use by another reelgraph server" in result.stderr


def test_health_answers_only_while_the_engine_answers(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with server(data_dir) as base:
        assert httpx.get(f"{base}/health").json() == {"status": "ok", "graph": "ok", "redis": "ok"}
        # take the embedded engine away underneath the server
        redis_pid = int((data_dir / "run" / "redis.pid").read_text())
        os.kill(redis_pid, signal.SIGKILL)
        time.sleep(0.3)
        response = httpx.get(f"{base}/health")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"


async def test_only_graphql_transport_ws_is_offered(tmp_path: Path) -> None:
    with server(tmp_path / "data") as base:
        url = base.replace("http", "ws") + "/graphql"
        token = _gql(base, SIGN_UP, {"h": "socket_user"})["signUp"]["accessToken"]
        for payload in ({}, {"authorization": f"Bearer {token}"}):
            async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
                assert ws.subprotocol == "graphql-transport-ws"
                await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
                assert json.loads(await ws.recv())["type"] == "connection_ack"
        # a bad token in connection_init closes the socket with 4403, as the contract says
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
            init = {"type": "connection_init", "payload": {"authorization": "Bearer forged"}}
            await ws.send(json.dumps(init))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 4403
        with pytest.raises(websockets.exceptions.WebSocketException):
            async with websockets.connect(url, subprotocols=["graphql-ws"]) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                await ws.recv()


async def test_one_size_limit_for_http_bodies_and_socket_frames(tmp_path: Path) -> None:
    limit = 64_000
    with server(tmp_path / "data", REELGRAPH_MAX_REQUEST_BYTES=str(limit)) as base:

        def body(pad: int) -> dict:
            return {"query": "query($p: String) { __typename }", "variables": {"p": "x" * pad}}

        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.post("/graphql", json=body(limit + 1000))).status_code == 413
            assert (await http.post("/graphql", json=body(limit // 2))).status_code == 200
        url = base.replace("http", "ws") + "/graphql"
        async with websockets.connect(
            url, subprotocols=["graphql-transport-ws"], max_size=None
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            under = {"id": "1", "type": "subscribe", "payload": body(limit // 2)}
            await ws.send(json.dumps(under))  # under the limit: answered, the socket stays
            assert json.loads(await ws.recv())["id"] == "1"
            over = {"id": "2", "type": "subscribe", "payload": body(limit + 1000)}
            await ws.send(json.dumps(over))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                while True:  # bounded: a server that keeps the socket fails, not hangs
                    await asyncio.wait_for(ws.recv(), 60)
            assert closed.value.rcvd.code == 1009  # message too big


def test_graphiql_in_development(tmp_path: Path) -> None:
    with server(tmp_path / "data") as base:
        page = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()


def test_api_processes_default_to_the_cores_up_to_four(tmp_path: Path) -> None:
    from settings import Settings

    default = Settings.model_fields["api_processes"].default_factory()
    assert default == min(len(os.sched_getaffinity(0)), 4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGRAPH_")}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env={**env, "REELGRAPH_API_PROCESSES": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "REELGRAPH_API_PROCESSES" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--workers", "0", "--port", "0"],
        cwd=ROOT,
        env={**env, "REELGRAPH_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "--workers must be at least 1" in result.stderr


async def test_an_api_process_freezes_what_start_up_made(settings) -> None:
    """An API process of `reelgraph serve` (build_app(serving=True), as cli.api_app builds
    each) ends its start-up with server.settle_gc: what start-up made is frozen out of the
    collector's scans, and the collector runs with server.GC_THRESHOLDS."""
    from litestar.testing import AsyncTestClient

    from server import GC_THRESHOLDS, build_app

    before = gc.get_threshold()
    gc.unfreeze()
    try:
        async with AsyncTestClient(build_app(settings, serving=True)) as client:
            assert gc.get_freeze_count() > 0 and gc.get_threshold() == GC_THRESHOLDS
            assert (await client.get("/health")).status_code == 200
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
