"""Live delivery across API processes: Redis pub/sub, one connection per process.

Publishers (resolvers with `publish`, Celery workers with `publish_sync`) send small JSON
messages on named channels. Each API process holds one EventHub: a single pub/sub
connection subscribed to exactly the channels its open subscriptions need (reference
counted), and a reader task that hands each message to the local listeners of its
channel. Pub/sub is the doorbell, never the record: notifications live in each user's
stream (events/notifications.py), so a lost message costs latency, not an event.

Slow consumers: each listener holds at most `maxsize` undelivered messages. One more and
the listener is marked overflowed and its `on_overflow` runs (the socket layer closes the
socket, see transport/sockets.py); the hub itself never waits on a listener, so one client
that stops reading cannot hold up any other. A fan-out may instead write a listener's items
straight to its socket (`Listener.sink`, transport/direct.py), which judges a slow client
by the socket's write buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
import os
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis as sync_redis
from redis.exceptions import RedisError

from urls import unix_socket_url

__all__ = [
    "FEED_CHANNEL",
    "RESYNC",
    "EventHub",
    "Listener",
    "SlowConsumer",
    "close_hub",
    "hub_for",
    "notifications_channel",
    "on_slow_consumer",
    "publish",
    "publish_sync",
    "render_channel",
    "sync_client",
]

logger = logging.getLogger("reelgraph.events")

FEED_CHANNEL = "reelgraph:events:feed"
# pushed to every listener after the pub/sub connection was lost and made again: messages
# may have been missed meanwhile, so doorbell listeners read their source again
RESYNC = object()

# set by the socket layer around each operation it starts; listeners made inside the
# operation call it when they overflow (the operation's task inherits the value)
on_slow_consumer: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "on_slow_consumer", default=None
)


def notifications_channel(user_id: str) -> str:
    return f"reelgraph:events:notifications:{user_id}"


def render_channel(clip_id: str) -> str:
    return f"reelgraph:events:render:{clip_id}"


def _encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


async def publish(redis: Any, channel: str, message: dict[str, Any]) -> int:
    """Publish one message; returns how many API processes were listening."""
    return int(await redis.publish(channel, _encode(message)))


_sync_client: tuple[int, sync_redis.Redis] | None = None


def sync_client() -> sync_redis.Redis:
    """This process's blocking client (workers): made after fork, from the settings, or from
    the embedded server that owns the data folder when no Redis URL is set."""
    global _sync_client
    if _sync_client is None or _sync_client[0] != os.getpid():
        from settings import get_settings

        settings = get_settings()
        url = settings.redis_url
        if not url:
            from graph.embedded import EmbeddedServer

            socket_path = EmbeddedServer.locate(settings.data_dir)
            if socket_path is None:
                raise RedisError("no Redis URL and no embedded server owns the data folder")
            url = unix_socket_url(socket_path)
        _sync_client = (os.getpid(), sync_redis.Redis.from_url(url, decode_responses=True))
    return _sync_client[1]


def publish_sync(channel: str, message: dict[str, Any], client: Any = None) -> None:
    """A worker's publish. Never raises: an event is not worth failing a render for."""
    try:
        (client or sync_client()).publish(channel, _encode(message))
    except (RedisError, OSError):
        logger.warning("could not publish on %s", channel, exc_info=True)


class SlowConsumer(Exception):
    """The listener's queue overflowed: its client is not reading fast enough."""


class Listener:
    """One subscription's view of a channel: a bounded queue and a doorbell.

    `sink`, when set, is where a fan-out writes this subscription's items itself, without
    the queue (transport/direct.py's DirectSink: `write(item) -> bool`); the queue then only
    carries RESYNC and the overflow, and the subscription's task waits on it as ever."""

    __slots__ = (
        "_items",
        "_maxsize",
        "_wake",
        "channel",
        "key",
        "on_overflow",
        "overflowed",
        "sink",
    )

    def __init__(
        self,
        channel: str,
        maxsize: int,
        on_overflow: Callable[[], None] | None,
        key: Any = None,
        sink: Any = None,
    ) -> None:
        self.channel, self.key, self.sink = channel, key, sink
        self._items: deque[Any] = deque()
        self._maxsize = max(1, maxsize)
        self._wake = asyncio.Event()
        self.on_overflow = on_overflow
        self.overflowed = False

    def push(self, item: Any) -> None:
        if self.overflowed:
            return
        if len(self._items) >= self._maxsize:
            self.overflowed = True
            self._wake.set()
            if self.on_overflow is not None:
                self.on_overflow()
            return
        self._items.append(item)
        self._wake.set()

    async def next(self) -> Any:
        """The next item; SlowConsumer once the queue overflowed."""
        while not self._items and not self.overflowed:
            self._wake.clear()
            await self._wake.wait()
        if self.overflowed:
            raise SlowConsumer(self.channel)
        return self._items.popleft()

    async def ring(self, timeout_s: float | None = None) -> list[Any]:
        """Wait for at least one item (or the timeout), then take all that are queued."""
        if not self._items and not self.overflowed:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout_s)
        if self.overflowed:
            raise SlowConsumer(self.channel)
        items = list(self._items)
        self._items.clear()
        return items


FanOut = Callable[[str, list[Listener]], Awaitable[None]]


class EventHub:
    """One process's pub/sub connection and the listeners on it."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._pubsub: Any = None
        self._reader: asyncio.Task | None = None
        self._listeners: dict[str, set[Listener]] = {}
        # subscribe confirmations, oldest first: Redis confirms in the order it was asked
        self._pending: dict[str, deque[asyncio.Future]] = {}
        self._ready: dict[str, asyncio.Future] = {}
        self._lock = asyncio.Lock()
        self._fan_outs: dict[str, FanOut] = {}
        self._tasks: set[asyncio.Task] = set()
        self._last_fan_out: dict[str, asyncio.Task] = {}
        self.closed = False

    def fan_out(self, channel: str, handler: FanOut) -> None:
        """Messages on `channel` go to `handler(data, listeners)` instead of each listener
        (a batched check at delivery, e.g. who may see a newly published clip)."""
        self._fan_outs[channel] = handler

    def listening(self, channel: str) -> int:
        """How many listeners on channel Redis has confirmed (tests wait on it)."""
        ready = self._ready.get(channel)
        return len(self._listeners.get(channel, ())) if ready and ready.done() else 0

    def listener_count(self) -> int:
        return sum(len(v) for v in self._listeners.values())

    @contextlib.asynccontextmanager
    async def listen(
        self, channel: str, *, maxsize: int, key: Any = None, sink: Any = None
    ) -> AsyncIterator[Listener]:
        """A listener on channel, subscribed at Redis when this returns (the subscription is
        confirmed, so whatever is published from now on reaches it)."""
        listener = Listener(channel, maxsize, on_slow_consumer.get(), key, sink)
        async with self._lock:
            await self._start()
            members = self._listeners.setdefault(channel, set())
            if not members:
                ready = asyncio.get_running_loop().create_future()
                self._ready[channel] = ready
                self._pending.setdefault(channel, deque()).append(ready)
                await self._pubsub.subscribe(channel)
            members.add(listener)
            ready = self._ready[channel]
        try:
            await asyncio.shield(ready)
            yield listener
        finally:
            await self._leave(listener)

    async def _leave(self, listener: Listener) -> None:
        async with self._lock:
            members = self._listeners.get(listener.channel)
            if members is None:
                return
            members.discard(listener)
            if members or self.closed:
                return
            del self._listeners[listener.channel]
            self._ready.pop(listener.channel, None)
            try:
                await self._pubsub.unsubscribe(listener.channel)
            except (RedisError, OSError):  # re-made connections subscribe what is listened to
                logger.warning("could not unsubscribe %s", listener.channel, exc_info=True)

    async def _start(self) -> None:
        if self._reader is not None:
            return
        self._pubsub = self.redis.pubsub()
        # a first subscription makes the connection the reader reads from
        await self._pubsub.subscribe("reelgraph:events:hub")
        self._reader = asyncio.create_task(self._read(), name="reelgraph-event-hub")

    async def _read(self) -> None:
        lost = False
        while not self.closed:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                if self.closed:
                    return
                logger.warning("the event hub lost its Redis connection; retrying", exc_info=True)
                lost = True
                await asyncio.sleep(0.5)
                continue
            except Exception:
                logger.exception("unexpected error in the event hub; retrying")
                await asyncio.sleep(0.5)
                continue
            if lost:  # reconnected (redis-py subscribed our channels again): read sources again
                lost = False
                for members in self._listeners.values():
                    for listener in list(members):
                        listener.push(RESYNC)
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if kind == "subscribe":
            pending = self._pending.get(channel)
            if pending:
                future = pending.popleft()
                if not future.done():
                    future.set_result(None)
            return
        if kind != "message":
            return
        members = self._listeners.get(channel)
        if not members:
            return
        data = message["data"]
        handler = self._fan_outs.get(channel)
        if handler is not None:
            # one channel's fan-outs run one after another, so its events reach each
            # listener in the order they were published (each reads before it delivers)
            previous = self._last_fan_out.get(channel)
            task = asyncio.create_task(_after(previous, handler(data, list(members))))
            self._last_fan_out[channel] = task
            self._tasks.add(task)
            task.add_done_callback(self._fan_out_done)
            return
        for listener in list(members):
            listener.push(data)

    def _fan_out_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a fan-out failed", exc_info=task.exception())

    async def close(self) -> None:
        self.closed = True
        for task in [self._reader, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()


_hubs: weakref.WeakKeyDictionary[Any, EventHub] = weakref.WeakKeyDictionary()


async def _after(previous: asyncio.Task | None, fan_out: Awaitable[None]) -> None:
    """fan_out, once the channel's previous fan-out has ended (however it ended: its own
    failure is logged by its own task)."""
    try:
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)
    except BaseException:  # cancelled while waiting (the hub closing): it never runs
        if inspect.iscoroutine(fan_out):
            fan_out.close()
        raise
    await fan_out


def hub_for(redis: Any) -> EventHub:
    """The process's hub on this Redis client (one per client, made on first use)."""
    hub = _hubs.get(redis)
    if hub is None or hub.closed:
        hub = _hubs[redis] = EventHub(redis)
    return hub


async def close_hub(redis: Any) -> None:
    hub = _hubs.pop(redis, None)
    if hub is not None:
        await hub.close()
