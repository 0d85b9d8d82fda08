"""Clip popularity: the score FOR_YOU ranks by, and the Redis index of the most popular clips.

Popularity is what a clip earned, without its age:

    popularity = 1 + likes + 10 x completion rate + 20 x remix rate    (both rates capped at 1)

with completion rate = completions / views and remix rate = direct PUBLISHED remixes / views
(0 with no views). FOR_YOU decays it by age with a half-life of HALF_LIFE_MS:

    score = popularity x 2 ^ -(hours since publishing / half-life hours)

An exponential decay keeps the order of two clips the same at every moment (both halve at the
same pace), so the index can hold one time-free number per clip and still give the top of the
decayed ranking: log2(popularity) + publishedAt / HALF_LIFE_MS orders clips exactly as the
score does at any `now`. The index is a Redis sorted set per mood (and one for every mood),
over the clips anyone engaged with; a clip nobody liked or viewed has popularity 1, so its
age alone ranks it and the feed finds it among the newest clips instead.

Kept current by:
- likeClip, unlikeClip and recordView: each updates its clip right away (record());
- a rebuild from the graph (one full scan, ~2 s on 100k clips) when the index is missing and,
  in the background, when it is older than REBUILD_S: that picks up what the engagement
  writes do not see (a remix published, which changes its parent's remix rate; a clip
  removed; a seeded graph). Between rebuilds a parent's remix rate may lag; the ranking
  itself always recomputes the exact score of every candidate from the graph, so a lag only
  affects which clips become candidates.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from graph import feeds as feed_repo

if TYPE_CHECKING:
    import redis.asyncio as aredis

    from server import Services

__all__ = [
    "HALF_LIFE_MS",
    "REBUILD_S",
    "decayed_score",
    "ensure_index",
    "index_key",
    "popular_ids",
    "popularity",
    "rebuild",
    "record",
]

logger = logging.getLogger(__name__)

HALF_LIFE_MS = 6 * 3_600_000
REBUILD_S = 900
_PREFIX = "reelgraph:popular:"
_BUILT_AT = _PREFIX + "built-at"
_ALL = "*"  # the set over every mood
_rebuilds: dict[int, asyncio.Task] = {}  # per Redis client: at most one rebuild at a time


def popularity(likes: int, views: int, completions: int, remixes: int) -> float:
    """What a clip earned, whatever its age (at least 1)."""
    completion_rate = min(1.0, completions / views) if views > 0 else 0.0
    remix_rate = min(1.0, remixes / views) if views > 0 else 0.0
    return 1.0 + max(0, likes) + 10.0 * completion_rate + 20.0 * remix_rate


def decayed_score(popularity_value: float, published_at: int, now: int) -> float:
    """Popularity halved every HALF_LIFE_MS since publishing."""
    return popularity_value * 2.0 ** (-(now - published_at) / HALF_LIFE_MS)


def _hot(popularity_value: float, published_at: int) -> float:
    # log2 of the decayed score plus now / HALF_LIFE_MS: the same order at every moment
    return math.log2(popularity_value) + published_at / HALF_LIFE_MS


def index_key(mood: str | None) -> str:
    return _PREFIX + (mood or _ALL)


def _entries(row: dict[str, Any]) -> Iterable[tuple[str, float]]:
    value = popularity(row["likes"], row["views"], row["completions"], row["remixes"])
    hot = _hot(value, int(row["publishedAt"]))
    for mood in [None, *(row.get("moods") or [])]:
        yield index_key(mood), hot


async def record(redis: aredis.Redis, clip: dict[str, Any], remixes: int) -> None:
    """Put one clip's current popularity in the index (after a like, unlike or view)."""
    if clip.get("state") != "PUBLISHED" or clip.get("publishedAt") is None:
        return
    row = {
        "likes": int(clip.get("likeCount") or 0),
        "views": int(clip.get("viewCount") or 0),
        "completions": int(clip.get("completionCount") or 0),
        "remixes": remixes,
        "publishedAt": clip["publishedAt"],
        "moods": clip.get("moods"),
    }
    async with redis.pipeline(transaction=False) as pipe:
        for key, hot in _entries(row):
            pipe.zadd(key, {clip["id"]: hot})
        await pipe.execute()


async def rebuild(services: Services) -> int:
    """Rebuild the whole index from the graph; returns the number of clips in it."""
    started = time.time()
    rows = await feed_repo.popularity_rows(services.graph)
    staged: dict[str, dict[str, float]] = {}
    for row in rows:
        for key, hot in _entries(row):
            staged.setdefault(key, {})[row["id"]] = hot
    redis = services.redis
    old = [key async for key in redis.scan_iter(match=_PREFIX + "*") if key != _BUILT_AT]
    async with redis.pipeline(transaction=False) as pipe:
        for key, members in staged.items():
            items = list(members.items())
            for i in range(0, len(items), 5000):
                pipe.zadd(key + ":next", dict(items[i : i + 5000]))
        await pipe.execute()
    # swap all sets at once: a reader sees the old index or the new one, never half of it
    async with redis.pipeline(transaction=True) as pipe:
        for key in staged:
            pipe.rename(key + ":next", key)
        for key in old:
            if key not in staged and not key.endswith(":next"):
                pipe.delete(key)
        pipe.set(_BUILT_AT, started)
        await pipe.execute()
    return len(rows)


async def _rebuild_logged(services: Services) -> None:
    try:
        await rebuild(services)
    except Exception:  # the old index still serves; the next page tries again
        logger.exception("could not rebuild the popularity index")


async def ensure_index(services: Services) -> None:
    """Build the index when there is none (waits for it); start a background rebuild when it
    is older than REBUILD_S (does not wait)."""
    built_at = await services.redis.get(_BUILT_AT)
    key = id(services.redis)
    running = _rebuilds.get(key)
    if running is not None and running.done():
        running = _rebuilds.pop(key)
    if built_at is None:
        if running is None:
            running = _rebuilds[key] = asyncio.ensure_future(rebuild(services))
        await asyncio.shield(running)
    elif running is None and time.time() - float(built_at) > REBUILD_S:
        _rebuilds[key] = asyncio.ensure_future(_rebuild_logged(services))


async def popular_ids(services: Services, mood: str | None, count: int) -> list[str]:
    """The `count` most popular clips of the mood (decayed by age), best first."""
    await ensure_index(services)
    return await services.redis.zrevrange(index_key(mood), 0, count - 1)
