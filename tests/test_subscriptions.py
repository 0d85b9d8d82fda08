"""Live subscriptions over real sockets: notifications (replay, then live), feed updates,
render progress with a real worker, visibility at delivery, the slow-client policy, pings,
and the npm `graphql-ws` reference client.

Each server is a real uvicorn server in this event loop (test_sockets.serving) on the
suite's embedded engine; clients are `websockets` clients or Node's `graphql-ws`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aredis
import uvicorn
import websockets
from conftest import (
    GraphQLClient,
    LogRecords,
    active_cameo,
    free_port,
    purge_render_queue,
    rendered_clip,
)
from gated_renderer import Gate
from test_render_worker import start_gated_worker
from test_sockets import wait_until
from websockets.exceptions import ConnectionClosed

from events.bus import FEED_CHANNEL, hub_for, notifications_channel
from events.notifications import record_notification
from resolvers.ids import decode_id, encode_id
from server import build_app
from settings import Settings
from tests.npm_harness import ensure_installed
from transport.sockets import socket_count_key

PROTOCOL = "graphql-transport-ws"
NOTIFICATIONS = """subscription($after: String) { notifications(after: $after) {
  id kind cursor createdAt actor { handle } clip { id state } } }"""
FEED = "subscription { feedUpdates(kind: FOLLOWING) { id prompt state author { handle } } }"
FEED_FOR_YOU = "subscription { feedUpdates(kind: FOR_YOU) { id } }"
PROGRESS = """subscription($id: ID!) { renderProgress(clipId: $id) {
  state progress clip { id state } } }"""
FOLLOW = "mutation($id: ID!) { follow(userId: $id) { id } }"
BLOCK = "mutation($id: ID!) { blockUser(userId: $id) { id } }"
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state } }"
CREATE = "mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"
POLL = """query($first: Int, $after: String) { notifications(first: $first, after: $after) {
  edges { cursor node { kind actor { handle } } } pageInfo { hasNextPage endCursor } } }"""
DRAFT_STATE = "query($id: ID!) { clip(id: $id) { state failureReason } }"
GRAPHQL_WS_DIR = Path(__file__).resolve().parent / "graphql_ws_client"


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, *, uvicorn_options: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[Server]:
    """The app on a real uvicorn server in this event loop (`uvicorn_options`: more of
    uvicorn.Config's arguments; `overrides`: settings)."""
    port = free_port()
    app = build_app(settings.model_copy(update=overrides))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        **(uvicorn_options or {}),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done())
    if task.done():
        task.result()
        raise RuntimeError("the server stopped while starting")
    try:
        yield Server(f"ws://127.0.0.1:{port}/graphql", port, app)
    finally:
        server.should_exit = True
        await task


@dataclass
class Server:
    url: str
    port: int
    app: Any

    async def listening(self, channel: str, count: int = 1) -> None:
        """Wait until `count` subscriptions on channel are live (Redis confirmed them)."""
        hub = hub_for(self.app.state.services.redis)
        await wait_until(lambda: hub.listening(channel) >= count)


@pytest.fixture(scope="module")
async def server(settings: Settings) -> AsyncIterator[Server]:
    async with serving(settings) as running:
        yield running


@pytest.fixture(scope="module")
def url(server: Server) -> str:
    return server.url


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


class Client:
    """One graphql-transport-ws socket: subscribe, then read what each operation gets."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pings = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, token: str | None, **kwargs: Any) -> AsyncIterator[Client]:
        async with websockets.connect(url, subprotocols=[PROTOCOL], **kwargs) as ws:
            payload = {"authorization": f"Bearer {token}"} if token else {}
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            ack = json.loads(await ws.recv())
            assert ack["type"] == "connection_ack", ack
            yield cls(ws)

    async def subscribe(self, op_id: str, query: str, variables: dict | None = None) -> None:
        message = {"query": query, "variables": variables or {}}
        await self.ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": message}))

    async def message(self) -> dict:
        """The next message that is not a ping (pings are answered, as clients must)."""
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 60))
            if message["type"] == "ping":
                self.pings += 1
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            return message

    async def next(self, op_id: str) -> dict:
        message = await self.message()
        assert message["type"] == "next" and message["id"] == op_id, message
        assert not message["payload"].get("errors"), message
        return message["payload"]["data"]

    async def complete(self, op_id: str) -> None:
        await self.ws.send(json.dumps({"id": op_id, "type": "complete"}))


async def follow(gql: GraphQLClient, token: str, user_id: str) -> None:
    await gql.ok(FOLLOW, {"id": user_id}, token)


async def test_notifications_go_live_and_resume_after_a_reconnect(
    gql: GraphQLClient, server: Server
) -> None:
    url = server.url
    alice = await gql.sign_up("alice")
    channel = notifications_channel(decode_id(alice.id, "User"))
    fans = [await gql.sign_up(f"fan{i}") for i in range(5)]
    async with Client.open(url, alice.token) as client:
        await client.subscribe("n", NOTIFICATIONS)
        await server.listening(channel)  # live from now on: a follow made now must arrive
        await follow(gql, fans[0].token, alice.id)
        first = (await client.next("n"))["notifications"]
    assert first["kind"] == "NEW_FOLLOWER"
    assert first["actor"]["handle"] == fans[0].handle

    # missed while disconnected
    await follow(gql, fans[1].token, alice.id)
    await follow(gql, fans[2].token, alice.id)
    # following again is idempotent and does not notify again
    await follow(gql, fans[1].token, alice.id)

    async with Client.open(url, alice.token) as client:
        await client.subscribe("n", NOTIFICATIONS, {"after": first["cursor"]})
        replayed = [(await client.next("n"))["notifications"] for _ in range(2)]
        assert [n["actor"]["handle"] for n in replayed] == [fans[1].handle, fans[2].handle]
        await server.listening(channel)
        # then live, after the replay, with nothing twice
        await follow(gql, fans[3].token, alice.id)
        live = (await client.next("n"))["notifications"]
        assert live["actor"]["handle"] == fans[3].handle
        cursors = [first["cursor"], *(n["cursor"] for n in replayed), live["cursor"]]
        assert len(set(cursors)) == 4

    # polling clients read the same stream with the same cursors
    page = (await gql.ok(POLL, {"first": 2, "after": first["cursor"]}, alice.token))[
        "notifications"
    ]
    assert [e["node"]["actor"]["handle"] for e in page["edges"]] == [
        fans[1].handle,
        fans[2].handle,
    ]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = (await gql.ok(POLL, {"after": page["pageInfo"]["endCursor"]}, alice.token))[
        "notifications"
    ]
    assert [e["node"]["actor"]["handle"] for e in rest["edges"]] == [fans[3].handle]
    assert rest["pageInfo"]["hasNextPage"] is False


async def test_bad_cursors_and_anonymous_subscribers_get_coded_errors(
    gql: GraphQLClient, url: str
) -> None:
    alice = await gql.sign_up("alice")
    async with Client.open(url, alice.token) as client:
        await client.subscribe("bad", NOTIFICATIONS, {"after": "not-a-cursor"})
        message = await client.message()
        assert message["id"] == "bad"
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    async with Client.open(url, None) as client:
        await client.subscribe("anon", NOTIFICATIONS)
        message = await client.message()
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
    code, _ = await gql.error(POLL, {"after": "bm90LWEtY3Vyc29y"}, alice.token)
    assert code == "BAD_USER_INPUT"


async def test_a_block_after_subscribing_is_respected_at_delivery(
    gql: GraphQLClient, server: Server, redis: aredis.Redis
) -> None:
    alice, bob, carol = [await gql.sign_up(n) for n in ("alice", "bob", "carol")]
    raw = {a.handle: decode_id(a.id, "User") for a in (alice, bob, carol)}
    async with Client.open(server.url, alice.token) as client:
        await client.subscribe("n", NOTIFICATIONS)
        await server.listening(notifications_channel(raw[alice.handle]))
        await follow(gql, bob.token, alice.id)
        assert (await client.next("n"))["notifications"]["actor"]["handle"] == bob.handle
        await gql.ok(BLOCK, {"id": bob.id}, alice.token)
        # recorded while blocked: skipped at delivery; carol's, recorded after, arrives
        at = int(time.time() * 1000)
        await record_notification(
            redis,
            raw[alice.handle],
            "CLIP_REMIXED",
            {"clipId": None, "actorId": raw[bob.handle], "at": at},
        )
        await follow(gql, carol.token, alice.id)
        got = (await client.next("n"))["notifications"]
        assert got["actor"]["handle"] == carol.handle, got


async def test_feed_updates_bring_followed_authors_new_clips_only(
    gql: GraphQLClient, server: Server, graph: Any
) -> None:
    url = server.url
    viewer, author, stranger = [await gql.sign_up(n) for n in ("viewer", "author", "stranger")]
    await follow(gql, viewer.token, author.id)
    now = int(time.time() * 1000)
    drafts = {
        name: await rendered_clip(graph, decode_id(account.id, "User"), now, prompt=name)
        for name, account in (("by-stranger", stranger), ("first", author), ("second", author))
    }
    drafts["after-block"] = await rendered_clip(
        graph, decode_id(author.id, "User"), now, prompt="after-block"
    )
    clip_id = {name: encode_id("Clip", raw) for name, raw in drafts.items()}
    async with (
        Client.open(url, viewer.token) as client,
        Client.open(url, stranger.token) as everyone,
    ):
        await client.subscribe("f", FEED)
        await everyone.subscribe("all", FEED_FOR_YOU)
        await server.listening(FEED_CHANNEL, 2)
        # the stranger is not followed: nothing for FOLLOWING; the author's next clip arrives
        await gql.ok(PUBLISH, {"id": clip_id["by-stranger"]}, stranger.token)
        await gql.ok(PUBLISH, {"id": clip_id["first"]}, author.token)
        got = (await client.next("f"))["feedUpdates"]
        assert got["id"] == clip_id["first"]
        assert got["state"] == "PUBLISHED" and got["author"]["handle"] == author.handle
        # FOR_YOU takes anyone's, never one's own
        assert (await everyone.next("all"))["feedUpdates"]["id"] == clip_id["first"]
        # after a block, the blocker's clips stop (checked at delivery); others still come
        await gql.ok(BLOCK, {"id": viewer.id}, author.token)
        await gql.ok(PUBLISH, {"id": clip_id["after-block"]}, author.token)
        other = await gql.sign_up("other")
        await follow(gql, viewer.token, other.id)
        late = await rendered_clip(graph, decode_id(other.id, "User"), now, prompt="late")
        await gql.ok(PUBLISH, {"id": encode_id("Clip", late)}, other.token)
        assert (await client.next("f"))["feedUpdates"]["id"] == encode_id("Clip", late)


async def test_render_progress_follows_a_real_render_to_draft(
    gql: GraphQLClient, url: str, settings: Settings, tmp_path: Path
) -> None:
    purge_render_queue(settings)
    worker = start_gated_worker(settings, tmp_path / "worker.log")
    gate = Gate(settings.redis_url)
    try:
        author, other = await gql.sign_up("author"), await gql.sign_up("other")
        created = (await gql.ok(CREATE, {"input": {"prompt": "a slow sunrise"}}, author.token))[
            "createClip"
        ]
        raw_id = decode_id(created["id"], "Clip")
        assert (await asyncio.to_thread(gate.reached, raw_id))["point"] == "started"
        async with (
            Client.open(url, author.token) as client,
            Client.open(url, other.token) as stranger,
        ):
            await stranger.subscribe("p", PROGRESS, {"id": created["id"]})
            refused = await stranger.message()
            errors = refused["payload"] if refused["type"] == "error" else None
            errors = errors or refused["payload"]["errors"]
            assert errors[0]["extensions"]["code"] == "NOT_FOUND"

            await client.subscribe("n", NOTIFICATIONS)
            await client.subscribe("p", PROGRESS, {"id": created["id"]})
            # held at the gate: the first event is the current state
            first = await client.next("p")
            assert first["renderProgress"]["state"] == "RENDERING"
            gate.order(raw_id, 1, "render")
            events, finished = [first["renderProgress"]], None
            while True:
                message = await client.message()
                if message["id"] == "p" and message["type"] == "complete":
                    break
                assert message["type"] == "next", message
                data = message["payload"]["data"]
                if message["id"] == "n":
                    finished = data["notifications"]
                else:
                    events.append(data["renderProgress"])
            assert events[-1]["state"] == "DRAFT" and events[-1]["progress"] == 1.0
            progress = [e["progress"] for e in events]
            assert progress == sorted(progress)
            if finished is None:
                finished = (await client.next("n"))["notifications"]
            assert finished["kind"] == "RENDER_FINISHED"
            assert finished["clip"] == {"id": created["id"], "state": "DRAFT"}
    finally:
        gate.close()
        worker.stop()


async def test_a_cameo_owner_hears_of_a_draft_featuring_them_when_it_is_published(
    gql: GraphQLClient,
    server: Server,
    graph: Any,
    services: Any,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """The issue's newcomer scenario, over a real socket with a real render."""
    purge_render_queue(settings)
    worker = start_gated_worker(settings, tmp_path / "worker.log")
    gate = Gate(settings.redis_url)
    try:
        owner, author = await gql.sign_up("owner"), await gql.sign_up("author")
        owner_raw = decode_id(owner.id, "User")
        cameo = encode_id("Cameo", await active_cameo(graph, services.media, owner_raw))
        created = (
            await gql.ok(
                CREATE,
                {
                    "input": {
                        "prompt": "a walk on the moon",
                        "cameoIds": [cameo],
                        "durationSeconds": 1,
                    }
                },
                author.token,
            )
        )["createClip"]
        raw_id = decode_id(created["id"], "Clip")
        arrival = (await asyncio.to_thread(gate.reached, raw_id))["arrival"]
        gate.order(raw_id, arrival, "render")
        draft = await gql.wait_clip(DRAFT_STATE, author.token, created["id"], {"DRAFT", "FAILED"})
        assert draft["state"] == "DRAFT", draft
        async with Client.open(server.url, owner.token) as client:
            await client.subscribe("n", NOTIFICATIONS)
            await server.listening(notifications_channel(owner_raw))
            published = (await gql.ok(PUBLISH, {"id": created["id"]}, author.token))["publishClip"]
            assert published["state"] == "AWAITING_APPROVAL"
            got = (await client.next("n"))["notifications"]
        assert got["kind"] == "APPEARANCE_REQUESTED"
        assert got["actor"]["handle"] == author.handle
        assert got["clip"] == {"id": created["id"], "state": "AWAITING_APPROVAL"}
    finally:
        gate.close()
        worker.stop()


async def test_a_client_that_stops_reading_is_dropped_and_others_carry_on(
    gql: GraphQLClient, settings: Settings, redis: aredis.Redis
) -> None:
    """Dropped once, with one log line however many subscriptions the socket held."""
    logged = LogRecords()
    # on the loggers themselves, as tests/test_sockets.py's socket_log: the app reconfigures
    # the root one, and propagation above these is not ours to rely on
    loggers = [logging.getLogger(name) for name in ("reelgraph.sockets", "reelgraph.errors")]
    for logger in loggers:
        logger.addHandler(logged)
    try:
        await _drop_a_stalled_client(gql, settings, redis)
    finally:
        for logger in loggers:
            logger.removeHandler(logged)
    # at most one line (none when the client's own keep-alive gave up first on a slow
    # machine), and never a traceback per subscription
    dropped = [r for r in logged.records if "does not read its events" in r.getMessage()]
    assert len(dropped) <= 1, [r.getMessage() for r in dropped]
    loud = [r for r in logged.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [(r.getMessage(), repr(r.exc_info and r.exc_info[1])) for r in loud]


async def _drop_a_stalled_client(
    gql: GraphQLClient, settings: Settings, redis: aredis.Redis
) -> None:
    slow, healthy = await gql.sign_up("slow"), await gql.sign_up("healthy")
    slow_raw, healthy_raw = decode_id(slow.id, "User"), decode_id(healthy.id, "User")
    async with serving(settings, subscription_queue_size=4) as running:
        ws_url = running.url
        # a small receive buffer, and a client that queues one message and then reads no more
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", running.port))
        async with (
            Client.open(ws_url, slow.token, sock=sock, max_queue=1) as stalled,
            Client.open(ws_url, healthy.token) as client,
        ):
            for n in range(20):  # each overflows: still one socket dropped, one line
                await stalled.subscribe(f"n{n}", NOTIFICATIONS)
            await client.subscribe("n", NOTIFICATIONS)
            await running.listening(notifications_channel(healthy_raw))
            slot = socket_count_key(slow_raw, None)
            payload = {"clipId": None, "at": 1}
            deadline = time.monotonic() + 120
            while await redis.zcard(slot):  # the server dropped it: its slot is given back
                assert time.monotonic() < deadline, "the stalled client was never dropped"
                for _ in range(200):
                    await record_notification(redis, slow_raw, "CLIP_REMOVED", payload)
            # the server stays healthy: the other subscriber still gets its events
            await record_notification(redis, healthy_raw, "CLIP_REMOVED", payload)
            assert (await client.next("n"))["notifications"]["kind"] == "CLIP_REMOVED"
            http_url = ws_url.replace("ws://", "http://").removesuffix("/graphql")
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{http_url}/health")).status_code == 200
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(stalled.ws.recv(), 60)


async def test_idle_sockets_get_keep_alive_pings(gql: GraphQLClient, settings: Settings) -> None:
    alice = await gql.sign_up("alice")
    async with (
        serving(settings, socket_ping_interval_s=0.05) as running,
        Client.open(running.url, alice.token) as client,
    ):
        message = json.loads(await asyncio.wait_for(client.ws.recv(), 30))
        assert message == {"type": "ping"}


def _node() -> str:
    return ensure_installed(
        GRAPHQL_WS_DIR, "graphql-ws", why="the graphql-ws interoperability test"
    )


async def test_the_graphql_ws_reference_client_subscribes_receives_and_completes(
    gql: GraphQLClient, server: Server
) -> None:
    url = server.url
    node = _node()
    alice, fan = await gql.sign_up("alice"), await gql.sign_up("fan")
    proc = await asyncio.create_subprocess_exec(
        node,
        str(GRAPHQL_WS_DIR / "client.mjs"),
        url,
        alice.token,
        cwd=GRAPHQL_WS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        # the client says when its subscription is acknowledged and listening
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert json.loads(line) == {"event": "subscribed"}, line
        await server.listening(notifications_channel(decode_id(alice.id, "User")))
        await follow(gql, fan.token, alice.id)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert events[0]["event"] == "next"
    assert events[0]["data"]["notifications"]["kind"] == "NEW_FOLLOWER"
    assert events[0]["data"]["notifications"]["actor"]["handle"] == fan.handle
    assert events[-1] == {"event": "complete"}


SHARED_FEED = """subscription Shared($kind: FeedKind!) { feedUpdates(kind: $kind) {
  __typename id prompt state moods createdAt publishedAt renderProgress failureReason } }"""
# the same fields through a fragment: not shared (schema/notifications.py), run per socket
OWN_FEED = """subscription { feedUpdates(kind: FOLLOWING) { ...Shown } }
fragment Shown on Clip { __typename id prompt state moods createdAt publishedAt
  renderProgress failureReason }"""


async def test_shared_feed_updates_match_the_per_socket_path_and_respect_blocks(
    gql: GraphQLClient, server: Server, graph: Any
) -> None:
    author = await gql.sign_up("sharedauthor")
    fans = [await gql.sign_up(f"sharedfan{i}") for i in range(3)]
    for fan in fans:
        await follow(gql, fan.token, author.id)
    author_raw = decode_id(author.id, "User")
    now = int(time.time() * 1000)
    first, second = [
        encode_id("Clip", await rendered_clip(graph, author_raw, now, prompt=f"shared {n}"))
        for n in (1, 2)
    ]
    variables = {"kind": "FOLLOWING"}
    hub = hub_for(server.app.state.services.redis)
    async with (
        Client.open(server.url, fans[0].token) as a,
        Client.open(server.url, fans[1].token) as b,
        Client.open(server.url, fans[2].token) as own,
    ):
        await a.subscribe("s", SHARED_FEED, variables)
        await b.subscribe("s", SHARED_FEED, variables)
        await own.subscribe("o", OWN_FEED)
        await server.listening(FEED_CHANNEL, 3)
        # two sockets in the shared group (their listeners carry its plan), one on its own
        keys = [listener.key for listener in hub._listeners[FEED_CHANNEL]]
        shared = [key for key in keys if len(key) > 2]
        assert len(shared) == 2 and shared[0][2].key == shared[1][2].key, keys
        await gql.ok(PUBLISH, {"id": first}, author.token)
        got_a, got_b, got_own = await a.next("s"), await b.next("s"), await own.next("o")
        assert got_a == got_b == got_own, (got_a, got_own)
        assert got_a["feedUpdates"]["id"] == first
        assert got_a["feedUpdates"]["state"] == "PUBLISHED"
        # a block made after subscribing: the blocked member of the group gets nothing more
        await gql.ok(BLOCK, {"id": fans[0].id}, author.token)
        await gql.ok(PUBLISH, {"id": second}, author.token)
        assert (await b.next("s"))["feedUpdates"]["id"] == second
        assert (await own.next("o"))["feedUpdates"]["id"] == second
        # a's next event is a later clip by someone else it follows: the blocker's was skipped
        other = await gql.sign_up("sharedother")
        await follow(gql, fans[0].token, other.id)
        late = await rendered_clip(graph, decode_id(other.id, "User"), now, prompt="late")
        await gql.ok(PUBLISH, {"id": encode_id("Clip", late)}, other.token)
        assert (await a.next("s"))["feedUpdates"]["id"] == encode_id("Clip", late)
        # a selection the shared path does not take is still refused by the schema's gates
        await a.subscribe("dup", "subscription { feedUpdates { " + "id " * 21 + "} }")
        refused = await a.message()
        assert refused["type"] == "error" and refused["id"] == "dup", refused
