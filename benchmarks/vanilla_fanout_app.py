"""The vanilla baseline for benchmarks/ws_fanout.py (issue 16 item 4): plain Strawberry.

A Strawberry schema served by Strawberry's own Litestar integration
(`strawberry.litestar.make_graphql_controller`, graphql-transport-ws only) under uvicorn with
the settings `reelgraph serve` uses (cli.py `_uvicorn_config`: one process, deflate off, the
same frame size limit, info logging). No reelgraph code is imported: this is what the
textbook app would do with the same Redis channel, so the comparison shows what the
project's socket layer costs or saves against it.

`Subscription.feedUpdates(kind)` is the idiomatic async generator: it yields a
`Clip(id=message["clipId"])` for each message on the channel the project's feed publishes
on (`events.bus.FEED_CHANNEL`, copied here as a string). It does less than the project's
server, so it is a lower bound on the work, not a like-for-like feature set:
- no authentication (the connection_init payload is accepted and ignored), no visibility
  checks (no audience read, no blocks, no removal), `kind` is ignored, every subscriber
  gets every event;
- no slow-consumer policy: each subscription's queue is unbounded;
- the id is the raw clip id, not a Relay global id;
- Python's default garbage collector settings (the project's API process freezes its
  start-up heap and raises the thresholds, server.settle_gc).
Each event still runs one GraphQL execution of the selection per subscription, which is
what Strawberry does for every subscriber.

Redis: one pub/sub connection per process (a broadcaster), whose reader task decodes each
message once and puts it on every live subscription's asyncio.Queue. One pub/sub connection
per subscription would mean 10,000 Redis connections at 10k subscribers: Redis's default
maxclients is 10,000 (fewer where its open-file limit is lower), it would hold 10,000 more
file descriptors on both sides and write each message 10,000 times. So the common idiom
(as in the `broadcaster` package) is the one used here.

    .venv/bin/python benchmarks/vanilla_fanout_app.py --port 8001 --redis-url unix:///path
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from enum import Enum
from typing import Any

import redis.asyncio as aioredis
import strawberry
import uvicorn
from litestar import Litestar
from strawberry.litestar import make_graphql_controller
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

FEED_CHANNEL = "reelgraph:events:feed"  # events.bus.FEED_CHANNEL's value
MAX_REQUEST_BYTES = 10_000_000  # settings.max_request_bytes's default (uvicorn ws_max_size)

logger = logging.getLogger("vanilla")


class Broadcaster:
    """One Redis pub/sub connection for the process, fanned out to per-subscription queues."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self._redis: aioredis.Redis | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._redis = aioredis.Redis.from_url(self.url)
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        self._reader = asyncio.create_task(self._read(pubsub))

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._redis is not None:
            await self._redis.aclose()

    async def _read(self, pubsub: Any) -> None:
        async with pubsub:
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                event = json.loads(message["data"])
                for queue in self.queues:
                    queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.queues.add(queue)
        try:
            yield queue
        finally:
            self.queues.discard(queue)


@strawberry.enum
class FeedKind(Enum):
    FOLLOWING = "FOLLOWING"
    FOR_YOU = "FOR_YOU"


@strawberry.type
class Clip:
    id: strawberry.ID


@strawberry.type
class Query:
    @strawberry.field
    def health(self) -> bool:
        return True


def make_schema(broadcaster: Broadcaster) -> strawberry.Schema:
    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def feed_updates(
            self, kind: FeedKind = FeedKind.FOLLOWING
        ) -> AsyncGenerator[Clip, None]:
            async with broadcaster.subscribe() as queue:
                while True:
                    message = await queue.get()
                    yield Clip(id=strawberry.ID(message["clipId"]))

    return strawberry.Schema(query=Query, subscription=Subscription)


def build_app(redis_url: str) -> Litestar:
    broadcaster = Broadcaster(redis_url, FEED_CHANNEL)
    controller = make_graphql_controller(
        make_schema(broadcaster),
        path="/graphql",
        graphql_ide=None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        await broadcaster.start()
        try:
            yield
        finally:
            await broadcaster.stop()

    return Litestar(route_handlers=[controller], lifespan=[lifespan])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        build_app(args.redis_url),
        host=args.host,
        port=args.port,
        log_level="info",
        lifespan="on",
        timeout_graceful_shutdown=10,
        ws_per_message_deflate=False,
        ws_max_size=MAX_REQUEST_BYTES,
        workers=1,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
