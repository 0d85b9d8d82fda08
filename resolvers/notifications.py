"""Notifications, feed updates and render progress: live (subscriptions) and polled.

Every subscription listens on its pub/sub channel before it reads anything (events/bus.py
confirms the subscription first), so nothing recorded while it starts is missed:
- notifications: replays the viewer's stream after `after` (none without it), then reads
  the stream again after the last delivered entry each time the doorbell rings, so nothing
  is delivered twice; entries from someone who blocks the viewer or whom the viewer
  blocks, at delivery time, are skipped (one read per batch);
- feedUpdates: each process reads once per published clip which of its subscribers may see
  it (graph/notifications.py), at delivery time; subscriptions with the same shared
  selection get one payload, made once per event (shared_feed_payloads);
- renderProgress: the clip as the graph has it, first, then again each time the worker
  rings; only forward (state order, then progress); it ends at any state past RENDERING.
Each event gets fresh DataLoaders: one socket's subscription lives for hours, and what it
cached for one event must not be served for the next.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from errors import BadUserInput, NotFound
from events import notifications as stream
from events.bus import (
    FEED_CHANNEL,
    RESYNC,
    Listener,
    hub_for,
    notifications_channel,
    render_channel,
)
from graph import clips as clip_repo
from graph import notifications as audience_repo
from resolvers.ids import decode_id
from resolvers.loaders import Loaders
from resolvers.pagination import Page, decode_cursor, encode_cursor, page_size

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = [
    "RENDER_STATE_ORDER",
    "feed_updates",
    "new_follower",
    "notification_cursor",
    "notifications_page",
    "notifications_subscription",
    "render_progress",
    "shared_feed_payloads",
]

logger = logging.getLogger("reelgraph.events")

_REPLAY_BATCH = 100
RENDER_STATE_ORDER = {"QUEUED": 0, "RENDERING": 1}  # every other state ends the render
_NEW_FOLLOWER_ONCE_S = 24 * 3600


def notification_cursor(entry: stream.Entry) -> str:
    return encode_cursor(entry.id)


def _after(cursor: str | None) -> str | None:
    key = decode_cursor(cursor, 1)
    if key is None:
        return None
    if not stream.is_entry_id(key[0]):
        raise BadUserInput("invalid cursor")
    return key[0]


class _FreshLoaders:
    """This event's DataLoaders, made on first use: a fan-out to thousands of sockets
    whose selection reads nothing (`feedUpdates { id }`) makes none."""

    __slots__ = ("_args", "_loaders")

    def __init__(self, graph: Any, viewer_id: str | None) -> None:
        self._args = (graph, viewer_id)
        self._loaders: Loaders | None = None

    def __getattr__(self, name: str) -> Any:
        if self._loaders is None:
            self._loaders = Loaders(*self._args)
        return getattr(self._loaders, name)


def _fresh(ctx: Context) -> None:
    ctx.loaders = _FreshLoaders(ctx.services.graph, ctx.viewer_id)
    ctx.memo = {}  # links and rankings are per event too: links expire


async def _deliverable(ctx: Context, viewer_id: str, entries: list[stream.Entry]) -> list:
    """The entries whose actor and viewer do not block each other, now."""
    actors = {e.payload.get("actorId") for e in entries} - {viewer_id, None}
    blocked: set[str] = set()
    if actors:
        blocked = await audience_repo.blocked_actors(
            ctx.services.graph, viewer_id, sorted(a for a in actors if isinstance(a, str))
        )
    return [e for e in entries if e.payload.get("actorId") not in blocked]


async def notifications_page(
    ctx: Context, first: int | None, after: str | None
) -> Page[stream.Entry]:
    """The viewer's notifications after the cursor, oldest first (the order they happened,
    the same cursors as the subscription): poll with the last endCursor."""
    viewer_id = ctx.require_viewer()
    limit = page_size(first, ctx.settings.max_page_size)
    start = _after(after)
    entries = await stream.entries_after(ctx.services.redis, viewer_id, start, limit + 1)
    shown = await _deliverable(ctx, viewer_id, entries[:limit])
    return Page([(notification_cursor(e), e) for e in shown], len(entries) > limit)


def _queue_size(ctx: Context) -> int:
    return ctx.settings.subscription_queue_size


async def notifications_subscription(
    ctx: Context, after: str | None
) -> AsyncGenerator[stream.Entry, None]:
    viewer_id = ctx.require_viewer()
    last = _after(after)
    redis = ctx.services.redis
    hub = hub_for(redis)
    if last is None:  # live only: after what is newest now, read before listening so an
        # entry recorded while the subscription is made is read by the first pass below
        last = await stream.last_entry_id(redis, viewer_id)
    async with hub.listen(notifications_channel(viewer_id), maxsize=_queue_size(ctx)) as bell:
        while True:
            entries = await stream.entries_after(redis, viewer_id, last, _REPLAY_BATCH)
            if entries:
                _fresh(ctx)
                for entry in await _deliverable(ctx, viewer_id, entries):
                    yield entry
                last = entries[-1].id
                if len(entries) == _REPLAY_BATCH:
                    continue  # more to replay before waiting
            await bell.ring(ctx.settings.subscription_resync_s)


async def _deliver_feed(graph: Any, data: str, listeners: list[Listener]) -> None:
    """One published clip to this process's feed subscribers who may see it, now: one
    audience read for all of them, and for shared subscriptions (schema/notifications.py's
    SharedFeed) one execution per distinct document, whose encoded payload every socket of
    the group gets."""
    try:
        message = json.loads(data)
        clip_id = message["clipId"]
    except (ValueError, KeyError, TypeError):
        logger.warning("skipping a malformed feed event %r", data[:200])
        return
    for following_only in (True, False):
        group = [listener for listener in listeners if listener.key[1] is following_only]
        if not group:
            continue
        viewers = sorted({listener.key[0] for listener in group})
        clip, allowed = await audience_repo.feed_audience(graph, clip_id, viewers, following_only)
        if clip is None:
            continue
        shown = [listener for listener in group if listener.key[0] in allowed]
        # every payload is made before any is handed out, so the writes and pushes below
        # run without a pause: a later event's fan-out cannot slip in between two sockets
        payloads: dict[Any, str | None] = {}
        for listener in shown:
            shared = listener.key[2] if len(listener.key) > 2 else None
            if shared is not None and shared.key not in payloads:
                try:
                    payloads[shared.key] = await shared.render(clip)
                except Exception:
                    logger.exception("could not render a shared feed event for %s", clip_id)
                    payloads[shared.key] = None
        for listener in shown:
            shared = listener.key[2] if len(listener.key) > 2 else None
            if shared is None:
                listener.push(clip)
            elif (payload := payloads[shared.key]) is None:
                continue
            elif listener.sink is None:
                listener.push(payload)
            else:
                _write(listener, payload)


def _write(listener: Listener, payload: str) -> None:
    """One socket's frame, written by the fan-out itself (transport/direct.py). The sink
    answers its own faults; should one escape anyway, it is logged once and that socket's
    later events take the queue, while the rest of the group still gets this one."""
    try:
        listener.sink.write(payload)
    except Exception:
        logger.exception("a direct write failed; the subscription falls back to its queue")
        listener.sink = None


async def _feed_items(ctx: Context, key: tuple, sink: Any = None) -> AsyncGenerator[Any, None]:
    """What the feed fan-out hands this subscription, in order; RESYNC is skipped (a
    published clip missed meanwhile is in the feed query). With a sink, the fan-out writes
    the items to it instead, and this only ends on an overflow or when closed."""
    ctx.require_viewer()
    hub = hub_for(ctx.services.redis)
    graph = ctx.services.graph

    async def deliver(data: str, listeners: list[Listener]) -> None:
        await _deliver_feed(graph, data, listeners)

    hub.fan_out(FEED_CHANNEL, deliver)
    async with hub.listen(FEED_CHANNEL, maxsize=_queue_size(ctx), key=key, sink=sink) as listener:
        while True:
            item = await listener.next()
            if item is not RESYNC:
                yield item


async def feed_updates(ctx: Context, following_only: bool) -> AsyncGenerator[dict, None]:
    viewer_id = ctx.require_viewer()
    source = _feed_items(ctx, (viewer_id, following_only))
    async with aclosing(source):
        async for clip in source:
            _fresh(ctx)
            yield clip


async def shared_feed_payloads(
    ctx: Context, shared: Any, sink: Any = None
) -> AsyncGenerator[str, None]:
    """feedUpdates for a SharedFeed (schema/notifications.py): each event's `next` payload,
    encoded once for every socket of this process that sent the same subscription. With a
    sink (transport/direct.py) the fan-out writes the payloads to it, and this yields none."""
    viewer_id = ctx.require_viewer()
    source = _feed_items(ctx, (viewer_id, shared.following_only, shared), sink)
    async with aclosing(source):
        async for payload in source:
            yield payload


async def _read_clip(ctx: Context, clip_id: str) -> dict | None:
    return (await clip_repo.clips_by_ids(ctx.services.graph, [clip_id])).get(clip_id)


def _position(row: dict) -> tuple[int, float]:
    rank = RENDER_STATE_ORDER.get(row["state"], 2)
    progress = 1.0 if row["state"] == "DRAFT" else float(row.get("renderProgress") or 0.0)
    return rank, progress


async def render_progress(ctx: Context, clip_id: str) -> AsyncGenerator[tuple[dict, float], None]:
    """(clip row, progress) now, then at each step forward; ends past RENDERING."""
    viewer_id = ctx.require_viewer()
    raw_id = decode_id(clip_id, "Clip")
    hub = hub_for(ctx.services.redis)
    async with hub.listen(render_channel(raw_id), maxsize=_queue_size(ctx)) as bell:
        row = await _read_clip(ctx, raw_id)
        if row is None or row["authorId"] != viewer_id:
            raise NotFound("no such clip of yours")
        seen = _position(row)
        _fresh(ctx)
        yield row, seen[1]
        while seen[0] < 2:
            await bell.ring(ctx.settings.subscription_resync_s)
            row = await _read_clip(ctx, raw_id)
            if row is None:
                return
            now = _position(row)
            if now > seen:  # only forward, even when a retried render starts again
                seen = (now[0], max(now[1], seen[1]))
                _fresh(ctx)
                yield row, seen[1]


async def new_follower(ctx: Context, follower_id: str, followed_id: str, at: int) -> None:
    """NEW_FOLLOWER for followed_id, once a day per pair: following again (the mutation is
    idempotent) does not ring again. A Redis failure is logged: the follow stands."""
    redis = ctx.services.redis
    try:
        once_key = f"reelgraph:new-follower:{follower_id}:{followed_id}"
        first = await redis.set(once_key, 1, nx=True, ex=_NEW_FOLLOWER_ONCE_S)
        if first:
            payload = {"clipId": None, "actorId": follower_id, "at": at}
            await stream.record_notification(redis, followed_id, "NEW_FOLLOWER", payload)
    except Exception:
        logger.warning("could not record NEW_FOLLOWER for %s", followed_id, exc_info=True)
