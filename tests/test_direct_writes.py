"""Shared feedUpdates frames written straight to each socket by the fan-out (issue 16).

Real uvicorn servers in this event loop on the suite's embedded engine, real `websockets`
clients: the direct path is the one taken under uvicorn's websockets-sansio protocol
(DirectSink.frames_written counts its frames), framed by hand as `serve` runs (no
compression) and by websockets when compression was negotiated; a `complete` stops an
operation's frames at once; a client that stops reading is closed with 1013 while the
others carry on; under another websocket protocol the queue still delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aredis
from conftest import Account, GraphQLClient, LogRecords, rendered_clip
from test_sockets import wait_until
from test_subscriptions import Client, Server, follow
from test_subscriptions import serving as subscriptions_serving
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.server import ServerProtocol

from events.bus import FEED_CHANNEL, Listener, hub_for, publish
from resolvers.ids import decode_id, encode_id
from settings import Settings
from transport.direct import DirectSink, text_frame
from transport.sockets import socket_count_key

SHARED = "subscription { feedUpdates(kind: FOLLOWING) { id prompt } }"
# reads the author: executed per socket, its events through the queue
OWN = "subscription { feedUpdates(kind: FOLLOWING) { id author { handle } } }"


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, *, deflate: bool = False, ws: str = "auto", **overrides: Any
) -> AsyncIterator[Server]:
    """The app on a real uvicorn server in this event loop; by default as `serve` runs it
    (cli.py: the websockets-sansio protocol, without per-message compression)."""
    options = {"ws": ws, "ws_per_message_deflate": deflate}
    async with subscriptions_serving(settings, uvicorn_options=options, **overrides) as running:
        yield running


@pytest.fixture(scope="module")
async def server(settings: Settings) -> AsyncIterator[Server]:
    async with serving(settings, max_sockets_per_user=64) as running:
        yield running


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def _author_and_fans(
    gql: GraphQLClient, graph: Any, name: str, fans: int, *, prompt: str = "direct"
) -> tuple[Account, list[Account], str]:
    """An author followed by `fans` users, and a published clip of theirs (raw id)."""
    author = await gql.sign_up(f"{name}author")
    followers = [await gql.sign_up(f"{name}fan{i}") for i in range(fans)]
    for fan in followers:
        await follow(gql, fan.token, author.id)
    author_raw = decode_id(author.id, "User")
    now = int(time.time() * 1000)
    clip = await rendered_clip(graph, author_raw, now, prompt=prompt, publish=True)
    return author, followers, clip


async def _ring(redis: aredis.Redis, author: Account, clip: str) -> None:
    """The event publishClip sends (events/feed.py), for an already published clip."""
    await publish(redis, FEED_CHANNEL, {"clipId": clip, "authorId": decode_id(author.id, "User")})


def _feed_listeners(server: Server) -> list[Listener]:
    return list(hub_for(server.app.state.services.redis)._listeners.get(FEED_CHANNEL, ()))


@pytest.mark.parametrize("deflate", [False, True], ids=["as-served", "compressed"])
async def test_many_shared_subscribers_get_each_event_by_direct_writes(
    gql: GraphQLClient, settings: Settings, graph: Any, redis: aredis.Redis, deflate: bool
) -> None:
    """Framed by hand as served; by websockets (compressed) when the client negotiated it."""
    author, fans, clip = await _author_and_fans(gql, graph, f"many{int(deflate)}", 4)
    sockets_per_fan = 10
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(
            serving(settings, deflate=deflate, max_sockets_per_user=64)
        )
        clients = [
            await stack.enter_async_context(Client.open(server.url, fan.token))
            for fan in fans
            for _ in range(sockets_per_fan)
        ]
        for client in clients:
            await client.subscribe("s", SHARED)
        # and one selection per socket, on the first socket: its events take the queue
        await clients[0].subscribe("own", OWN)
        await server.listening(FEED_CHANNEL, len(clients) + 1)
        listeners = _feed_listeners(server)
        assert sum(listener.sink is not None for listener in listeners) == len(clients)
        negotiated = [c.ws.response.headers.get("Sec-WebSocket-Extensions") for c in clients]
        assert all(bool(header) is deflate for header in negotiated), negotiated

        before = DirectSink.frames_written
        await _ring(redis, author, clip)
        expected = {"id": encode_id("Clip", clip), "prompt": "direct"}
        # (on the first socket, "s" comes first: written in the fan-out's pass, while "own"
        # waits for its task)
        for client in clients:
            assert (await client.next("s"))["feedUpdates"] == expected
        own = (await clients[0].next("own"))["feedUpdates"]
        assert own == {"id": expected["id"], "author": {"handle": author.handle}}
        # every shared frame, and only those, went out by a direct write
        assert DirectSink.frames_written - before == len(clients)


async def test_a_completed_operation_gets_no_more_frames(
    gql: GraphQLClient, server: Server, graph: Any, redis: aredis.Redis
) -> None:
    author, (fan, other), first = await _author_and_fans(gql, graph, "done", 2)
    author_raw, now = decode_id(author.id, "User"), int(time.time() * 1000)
    later = [
        await rendered_clip(graph, author_raw, now, prompt=f"later {n}", publish=True)
        for n in range(3)
    ]
    hub = hub_for(server.app.state.services.redis)
    fan_raw = decode_id(fan.id, "User")
    async with (
        Client.open(server.url, fan.token) as client,
        Client.open(server.url, other.token) as control,
    ):
        await client.subscribe("s", SHARED)
        await client.subscribe("t", SHARED)
        await control.subscribe("s", SHARED)
        await server.listening(FEED_CHANNEL, 3)
        await _ring(redis, author, first)
        # either order: one synchronous pass writes both
        assert {(await client.message())["id"] for _ in range(2)} == {"s", "t"}
        await control.next("s")

        # held, the hub keeps the completed operation's listener while its task unwinds: the
        # window in which a fan-out still finds it
        async with hub._lock:
            await client.complete("s")
            mine = [listener for listener in _feed_listeners(server) if listener.key[0] == fan_raw]
            await wait_until(lambda: any(listener.sink.stopped() for listener in mine))
            before = DirectSink.frames_written
            await _ring(redis, author, later[0])
            await control.next("s")
            assert DirectSink.frames_written - before == 2  # t and the control, not s
        await wait_until(lambda: hub.listening(FEED_CHANNEL) == 2)

        # the id may be used again: a new operation, with its own frames, each event once
        await client.subscribe("s", SHARED)
        await server.listening(FEED_CHANNEL, 3)
        for clip in later[1:]:
            await _ring(redis, author, clip)
        seen: dict[str, list[str]] = {"s": [], "t": []}
        last = encode_id("Clip", later[-1])
        while last not in seen["s"] or last not in seen["t"]:
            message = await client.message()
            assert message["type"] == "next", message
            seen[message["id"]].append(message["payload"]["data"]["feedUpdates"]["id"])
        assert seen == {
            "s": [encode_id("Clip", c) for c in later[1:]],
            "t": [encode_id("Clip", c) for c in later],
        }


async def test_a_client_that_stops_reading_is_closed_with_1013_and_others_carry_on(
    gql: GraphQLClient, graph: Any, settings: Settings, redis: aredis.Redis
) -> None:
    logged = LogRecords()
    sockets_log = logging.getLogger("reelgraph.sockets")
    sockets_log.addHandler(logged)
    try:
        await _drop_a_stalled_reader(gql, graph, settings, redis)
    finally:
        sockets_log.removeHandler(logged)
    dropped = [r for r in logged.records if "does not read its events" in r.getMessage()]
    assert len(dropped) == 1, [r.getMessage() for r in logged.records]
    loud = [r for r in logged.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


async def _drop_a_stalled_reader(
    gql: GraphQLClient, graph: Any, settings: Settings, redis: aredis.Redis
) -> None:
    # frames of ~8 KB: four of them (the queue size) stay under uvicorn's high-water mark, so
    # the close frame goes out at once, behind them
    author, (slow, healthy), clip = await _author_and_fans(
        gql, graph, "stall", 2, prompt=secrets.token_urlsafe(6000)
    )
    async with serving(settings, subscription_queue_size=4) as running:
        # a small receive buffer, and a client that queues one message and then reads no more
        # (and sends no keep-alive of its own, which would give up first)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", running.port))
        async with (
            Client.open(running.url, slow.token, sock=sock, max_queue=1, ping_interval=None) as (
                stalled
            ),
            Client.open(running.url, healthy.token) as client,
        ):
            await stalled.subscribe("s", SHARED)
            await client.subscribe("s", SHARED)
            await running.listening(FEED_CHANNEL, 2)
            received = 0

            async def read() -> None:
                nonlocal received
                while True:
                    await client.next("s")
                    received += 1

            reader = asyncio.create_task(read())
            try:
                slot = socket_count_key(decode_id(slow.id, "User"), None)
                published, deadline = 0, time.monotonic() + 120
                while await redis.zcard(slot):  # dropped: its slot is given back
                    assert time.monotonic() < deadline, "the stalled client was never dropped"
                    for _ in range(20):
                        await _ring(redis, author, clip)
                    published += 20
                    # the healthy client keeps up: it is never the one judged slow
                    await wait_until(lambda n=published: received >= n or reader.done())
                    assert not reader.done(), reader
                # the others still get their events
                await _ring(redis, author, clip)
                await wait_until(lambda n=published + 1: received >= n or reader.done())
                assert received == published + 1
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            # the stalled client, reading again, finds the frames written before the close
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(stalled.ws.recv(), 60)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_under_another_protocol_shared_events_take_the_queue(
    gql: GraphQLClient, graph: Any, settings: Settings, redis: aredis.Redis
) -> None:
    author, (fan, other), clip = await _author_and_fans(gql, graph, "legacy", 2)
    async with (
        serving(settings, ws="websockets") as running,  # uvicorn's legacy protocol
        Client.open(running.url, fan.token) as a,
        Client.open(running.url, other.token) as b,
    ):
        await a.subscribe("s", SHARED)
        await b.subscribe("s", SHARED)
        await running.listening(FEED_CHANNEL, 2)
        assert all(listener.sink is None for listener in _feed_listeners(running))
        before = DirectSink.frames_written
        await _ring(redis, author, clip)
        got = [(await client.next("s"))["feedUpdates"] for client in (a, b)]
        assert got[0] == got[1] == {"id": encode_id("Clip", clip), "prompt": "direct"}
        assert DirectSink.frames_written == before


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70_000])
def test_a_hand_made_frame_is_the_frame_websockets_makes(size: int) -> None:
    conn = ServerProtocol()
    conn.state = State.OPEN  # past a handshake: what a served socket's connection is
    data = b"x" * size
    conn.send_text(data)
    assert text_frame(data) == b"".join(conn.data_to_send())
