"""Errors over graphql-transport-ws follow the HTTP error policy: a contract code on every
error, unexpected ones masked in production as `Internal error` / INTERNAL with the request
id, and a log line naming that id with the traceback. Queries, mutations and subscriptions
(their source as well as each event), in `next` payloads and in `error` messages.

Each test talks to a real uvicorn server (production settings, so errors are masked) on the
suite's embedded engine. Faults are injected by making one of the app's own functions raise
an exception it does not expect; the graph and Redis are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aredis
import websockets
from conftest import GraphQLClient, LogRecords
from test_sockets import PROTOCOL, connected, init_frame, serving, subscribe

from events.notifications import record_notification
from resolvers import clips as clip_resolvers
from resolvers import notifications as notification_resolvers
from resolvers import users as user_resolvers
from resolvers.ids import decode_id, encode_id
from resolvers.pagination import encode_cursor
from schema.rate_limits import RateLimits
from settings import Settings
from transport import sockets

SECRET = "postgres://admin:hunter2@db.internal/reelgraph"  # what must never reach a client
USER = 'query { user(handle: "somebody") { handle } }'
FOLLOW = "mutation($id: ID!) { follow(userId: $id) { id } }"
BLOCK = "mutation($id: ID!) { blockUser(userId: $id) { id } }"
NOTIFICATIONS = "subscription($after: String) { notifications(after: $after) { kind clip { id } } }"
SHARED_FEED = "subscription { feedUpdates(kind: FOR_YOU) { id } }"
PROGRESS = "subscription($id: ID!) { renderProgress(clipId: $id) { state } }"


@pytest.fixture(scope="module")
async def url(settings: Settings) -> AsyncIterator[str]:
    async with serving(settings, environment="production") as ws_url:
        yield ws_url


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def error_log() -> Iterator[list[logging.LogRecord]]:
    """What the error policy logs (on its own logger: the app reconfigures the root one)."""
    handler = LogRecords()
    logger = logging.getLogger("reelgraph.errors")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(f"could not reach {SECRET}")


async def exploding_source(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
    raise RuntimeError(f"could not reach {SECRET}")
    yield  # an async generator, as the real sources are


async def first_message(ws: Any, op_id: str) -> dict:
    """The first `next`, `error` or `complete` message of an operation."""
    while True:
        async with asyncio.timeout(60):  # only against a hang
            message = json.loads(await ws.recv())
        if message.get("id") == op_id:
            return message


def errors_of(message: dict) -> list[dict]:
    """The errors an operation's message carries, whether a `next` or an `error` message."""
    if message["type"] == "error":
        return message["payload"]
    assert message["type"] == "next", message
    return message["payload"].get("errors", [])


def assert_internal(error: dict, log: list[logging.LogRecord], masked: bool = True) -> str:
    """An INTERNAL error carrying a request id that names a log line with the traceback;
    masked, its text says nothing of the fault. Returns the request id."""
    assert error["extensions"]["code"] == "INTERNAL", error
    request_id = error["extensions"].get("requestId")
    assert isinstance(request_id, str) and request_id, error
    if masked:
        assert error["message"] == "Internal error", error
        assert SECRET not in json.dumps(error) and "hunter2" not in json.dumps(error)
    else:
        assert SECRET in error["message"], error
    lines = [r for r in log if request_id in r.getMessage()]
    assert lines, f"no log line names request {request_id}"
    traced = [
        r for r in lines if r.exc_info and SECRET in logging.Formatter().formatException(r.exc_info)
    ]
    assert traced, "the log line must carry the fault's traceback"
    assert "Traceback" in logging.Formatter().formatException(traced[0].exc_info)
    return request_id


# -- unexpected errors ----------------------------------------------------------------------


async def test_a_query_fault_is_coded_masked_and_logged(
    url: str, monkeypatch: pytest.MonkeyPatch, error_log: list[logging.LogRecord]
) -> None:
    monkeypatch.setattr(user_resolvers, "user_by_handle", boom)
    async with connected(url) as ws:
        op_id = await subscribe(ws, USER)
        message = await first_message(ws, op_id)
        assert message["type"] == "next" and message["payload"]["data"] == {"user": None}
        [error] = errors_of(message)
        assert error["path"] == ["user"]
        assert_internal(error, error_log)
        assert (await first_message(ws, op_id))["type"] == "complete"


async def test_a_mutation_fault_is_coded_masked_and_logged(
    url: str, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch, error_log: list
) -> None:
    ann, bob = await gql.sign_up("ann"), await gql.sign_up("bob")
    monkeypatch.setattr(user_resolvers, "follow", boom)
    async with connected(url, ann.token) as ws:
        message = await first_message(ws, await subscribe(ws, FOLLOW, {"id": bob.id}))
        [error] = errors_of(message)
        assert error["path"] == ["follow"]
        assert_internal(error, error_log)


async def test_a_fault_before_execution_is_an_error_message_coded_masked_and_logged(
    url: str, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch, error_log: list
) -> None:
    """The mutation rate limit (an on_execute hook) fails: nothing ran, an `error` message."""
    ann, bob = await gql.sign_up("ann"), await gql.sign_up("bob")
    monkeypatch.setattr(RateLimits, "mutations", boom)
    async with connected(url, ann.token) as ws:
        message = await first_message(ws, await subscribe(ws, FOLLOW, {"id": bob.id}))
        assert message["type"] == "error", message
        [error] = message["payload"]
        assert_internal(error, error_log)
        # the socket stays open for the next operation
        monkeypatch.undo()
        message = await first_message(ws, await subscribe(ws, "{ viewer { handle } }"))
        assert message["payload"] == {"data": {"viewer": {"handle": ann.handle}}}


async def test_a_fault_in_a_subscriptions_source_is_coded_masked_and_logged(
    url: str, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch, error_log: list
) -> None:
    ann = await gql.sign_up("ann")
    monkeypatch.setattr(notification_resolvers, "notifications_subscription", exploding_source)
    async with connected(url, ann.token) as ws:
        op_id = await subscribe(ws, NOTIFICATIONS)
        [error] = errors_of(await first_message(ws, op_id))
        assert_internal(error, error_log)


async def test_a_fault_resolving_an_event_is_coded_masked_and_logged(
    url: str,
    gql: GraphQLClient,
    redis: aredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    error_log: list,
) -> None:
    """The event arrives; its one failing field is null, with a masked INTERNAL error."""
    ann = await gql.sign_up("ann")
    raw = decode_id(ann.id, "User")
    payload = {"clipId": "some-clip", "actorId": None, "at": 1}
    first = await record_notification(redis, raw, "CLIP_REMOVED", payload)
    await record_notification(redis, raw, "CLIP_REMIXED", payload)
    monkeypatch.setattr(clip_resolvers, "visible_clip", boom)
    async with connected(url, ann.token) as ws:
        op_id = await subscribe(ws, NOTIFICATIONS, {"after": encode_cursor(first)})
        message = await first_message(ws, op_id)
        assert message["type"] == "next", message
        assert message["payload"]["data"] == {
            "notifications": {"kind": "CLIP_REMIXED", "clip": None}
        }
        [error] = errors_of(message)
        assert error["path"] == ["notifications", "clip"]
        assert_internal(error, error_log)


async def test_a_fault_in_a_shared_feeds_source_is_coded_masked_and_logged(
    url: str, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch, error_log: list
) -> None:
    """feedUpdates of only shared fields runs once for every socket: its own path."""
    ann = await gql.sign_up("ann")
    monkeypatch.setattr(notification_resolvers, "shared_feed_payloads", exploding_source)
    async with connected(url, ann.token) as ws:
        op_id = await subscribe(ws, SHARED_FEED)
        message = await first_message(ws, op_id)
        assert message["type"] == "next" and message["payload"]["data"] is None, message
        [error] = errors_of(message)
        assert_internal(error, error_log)
        assert (await first_message(ws, op_id))["type"] == "complete"


async def test_a_fault_outside_execution_is_an_error_message_coded_masked_and_logged(
    url: str, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch, error_log: list
) -> None:
    """A fault in the socket's own code around an operation: an `error` message, not a bare
    `complete`, and the socket stays open."""
    ann = await gql.sign_up("ann")
    monkeypatch.setattr(sockets, "shared_feed", boom)
    async with connected(url, ann.token) as ws:
        message = await first_message(ws, await subscribe(ws, SHARED_FEED))
        assert message["type"] == "error", message
        [error] = message["payload"]
        assert_internal(error, error_log)
        monkeypatch.undo()
        message = await first_message(ws, await subscribe(ws, "{ viewer { handle } }"))
        assert message["payload"] == {"data": {"viewer": {"handle": ann.handle}}}


async def test_outside_production_the_message_is_kept_and_still_coded_and_logged(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, error_log: list
) -> None:
    monkeypatch.setattr(user_resolvers, "user_by_handle", boom)
    async with serving(settings, environment="development") as dev_url, connected(dev_url) as ws:
        [error] = errors_of(await first_message(ws, await subscribe(ws, USER)))
        assert_internal(error, error_log, masked=False)


# -- request ids ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connected_as(url: str, request_id: str) -> AsyncIterator[Any]:
    """A socket whose upgrade request named its X-Request-Id."""
    headers = {"X-Request-Id": request_id}
    async with websockets.connect(url, subprotocols=[PROTOCOL], additional_headers=headers) as ws:
        await ws.send(init_frame(None))
        assert json.loads(await ws.recv()) == {"type": "connection_ack"}
        yield ws


async def test_each_operation_on_a_socket_has_its_own_request_id(
    url: str, monkeypatch: pytest.MonkeyPatch, error_log: list
) -> None:
    """Like an HTTP request, each operation is named apart; the socket's X-Request-Id (the
    client's, when it sent a sane one) prefixes the ids of its operations."""
    monkeypatch.setattr(user_resolvers, "user_by_handle", boom)
    async with connected_as(url, "client-sock-42") as ws:
        ids = []
        for _ in range(3):
            [error] = errors_of(await first_message(ws, await subscribe(ws, USER)))
            ids.append(assert_internal(error, error_log))
    assert len(set(ids)) == 3, ids
    assert all(i.startswith("client-sock-42:") for i in ids), ids
    async with connected(url) as one, connected(url) as two:
        [a] = errors_of(await first_message(one, await subscribe(one, USER)))
        [b] = errors_of(await first_message(two, await subscribe(two, USER)))
    assert assert_internal(a, error_log) != assert_internal(b, error_log)


# -- client errors keep their code and message ------------------------------------------------


async def test_client_errors_over_a_socket_keep_their_code_and_message(
    url: str, gql: GraphQLClient, error_log: list
) -> None:
    ann, bob = await gql.sign_up("ann"), await gql.sign_up("bob")
    await gql.ok(BLOCK, {"id": bob.id}, ann.token)
    nobody = encode_id("User", "01NOBODY0000000000000000000")
    missing_clip = encode_id("Clip", "01NOCLIP0000000000000000000")
    cases = [
        (bob.token, FOLLOW, {"id": ann.id}, "FORBIDDEN", "this user has blocked you"),
        (bob.token, FOLLOW, {"id": nobody}, "NOT_FOUND", "no such user"),
        (bob.token, PROGRESS, {"id": missing_clip}, "NOT_FOUND", "no such clip of yours"),
        (bob.token, NOTIFICATIONS, {"after": "nope"}, "BAD_USER_INPUT", "invalid cursor"),
        (None, NOTIFICATIONS, {}, "UNAUTHENTICATED", None),
    ]
    for token, query, variables, code, text in cases:
        async with connected(url, token) as ws:
            [error] = errors_of(await first_message(ws, await subscribe(ws, query, variables)))
        assert error["extensions"]["code"] == code, (query, error)
        if text is not None:
            assert error["message"] == text, error
        assert "requestId" not in error["extensions"], error
    # a document strawberry refuses before it is parsed: the client's fault too
    async with connected(url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "id": "empty", "payload": {"query": ""}}))
        message = await first_message(ws, "empty")
    assert message["type"] == "error", message
    assert [e["extensions"]["code"] for e in message["payload"]] == ["BAD_USER_INPUT"]
    assert not [r for r in error_log if r.levelno >= logging.ERROR]


def test_a_send_refused_because_the_client_left_is_not_a_fault() -> None:
    """The ASGI spec has the server raise an OSError for a send on a connection the client
    closed (uvicorn: ClientDisconnected, whichever websocket implementation it runs). An
    operation failing so is not logged as an unexpected error; a RuntimeError of the app's
    own still is. (A CI run once logged one traceback per subscription of a client whose own
    keep-alive dropped the connection while the server was writing to it.)"""
    from uvicorn.protocols.utils import ClientDisconnected

    assert sockets._socket_gone(ClientDisconnected())
    assert sockets._socket_gone(
        RuntimeError("Unexpected ASGI message 'websocket.send', after sending 'websocket.close'")
    )
    assert not sockets._socket_gone(RuntimeError("a fault of the app's own"))
    assert not sockets._socket_gone(OSError("a file or connection of the app's own"))
    assert not sockets._socket_gone(ValueError("a fault of the app's own"))
