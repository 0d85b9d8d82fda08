"""Likes and views: likeClip, unlikeClip, recordView, and the stats read from a clip's row.

Only a PUBLISHED clip the viewer may see can be liked or viewed. Every such mutation needs a
signed-in viewer: anonymous views are not counted, since anonymous requests have no per-user
mutation allowance and would let anyone inflate a clip's counters. Errors, from the first
that applies: a clip the viewer may not see, a removed clip, or one whose author blocks the
viewer is NOT_FOUND; the viewer's own clip that is not published yet is CONFLICT; a watched
time below 0 or longer than the clip (plus VIEW_SLACK_MS) is BAD_USER_INPUT. Authors may like
and view their own published clips; those count like anyone's.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from strawberry.dataloader import DataLoader

from errors import BadUserInput, Conflict, NotFound
from graph import engagement as engagement_repo
from resolvers.clips import visible_clip
from resolvers.ids import decode_id
from resolvers.popularity import record as record_popularity
from resolvers.users import now_ms

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = ["VIEW_SLACK_MS", "ClipStatsRow", "clip_stats", "like_clip", "record_view", "unlike_clip"]

logger = logging.getLogger(__name__)

# players report a little past the end (a last frame, a seek); more than this is not a view
VIEW_SLACK_MS = 2000

ClipStatsRow = tuple[int, int, int, int]  # views, completions, rewatches, direct remixes


def _duration_ms(clip: dict) -> int:
    return clip.get("videoDurationMs") or int(clip.get("durationS") or 0) * 1000


async def _why_not(ctx: Context, clip_id: str, doing: str) -> NotFound | Conflict:
    """The client error that explains a guarded engagement write that wrote nothing."""
    clip = await visible_clip(ctx, clip_id)
    if clip is None or clip["state"] == "REMOVED":
        return NotFound("no such clip")
    if clip["state"] != "PUBLISHED":  # only its author sees an unpublished clip
        return Conflict(f"only a PUBLISHED clip can be {doing}; this clip is {clip['state']}")
    return NotFound("your account no longer exists")  # the viewer's node is gone


def _forget(loader: DataLoader, key: str) -> None:
    with contextlib.suppress(KeyError):  # nothing cached for it yet
        loader.clear(key)


def _fresh(ctx: Context, clip_id: str) -> None:
    """Later fields of the same document must not be served the clip as it was."""
    _forget(ctx.loaders.clip_by_id, clip_id)


async def _engaged(ctx: Context, clip_id: str, engaged: engagement_repo.Engaged) -> None:
    """After a write: forget the cached row, and put the clip's new popularity in FOR_YOU's
    index (the counters changed in the graph already; a failure here only delays that)."""
    _fresh(ctx, clip_id)
    try:
        await record_popularity(ctx.services.redis, engaged.clip, engaged.remixes)
    except RedisError:
        logger.exception("could not update the popularity of %s; the next rebuild will", clip_id)


def _liked(ctx: Context, clip_id: str, liked: bool) -> None:
    _forget(ctx.loaders.viewer_likes_clip, clip_id)
    ctx.loaders.viewer_likes_clip.prime(clip_id, liked)


async def like_clip(ctx: Context, clip_id: str) -> dict:
    viewer_id = ctx.require_viewer()
    raw_id = decode_id(clip_id, "Clip")
    engaged = await engagement_repo.like(ctx.services.graph, viewer_id, raw_id, now_ms())
    if engaged is None:
        raise await _why_not(ctx, raw_id, "liked")
    await _engaged(ctx, raw_id, engaged)
    _liked(ctx, raw_id, True)
    return engaged.clip


async def unlike_clip(ctx: Context, clip_id: str) -> dict:
    viewer_id = ctx.require_viewer()
    raw_id = decode_id(clip_id, "Clip")
    engaged = await engagement_repo.unlike(ctx.services.graph, viewer_id, raw_id)
    if engaged is None:
        raise await _why_not(ctx, raw_id, "unliked")
    await _engaged(ctx, raw_id, engaged)
    _liked(ctx, raw_id, False)
    return engaged.clip


async def record_view(ctx: Context, clip_id: str, watched_ms: int, completed: bool) -> dict:
    viewer_id = ctx.require_viewer()
    raw_id = decode_id(clip_id, "Clip")
    if watched_ms < 0:
        raise BadUserInput("watchedMs must be 0 or more")
    engaged = await engagement_repo.record_view(
        ctx.services.graph,
        viewer_id,
        raw_id,
        watched_ms=watched_ms,
        completed=completed,
        slack_ms=VIEW_SLACK_MS,
        now=now_ms(),
    )
    if engaged is None:
        error = await _why_not(ctx, raw_id, "viewed")
        current = await visible_clip(ctx, raw_id)
        if isinstance(error, NotFound) and current and current["state"] == "PUBLISHED":
            limit = _duration_ms(current) + VIEW_SLACK_MS
            if watched_ms > limit:
                raise BadUserInput(
                    f"watchedMs is longer than the clip: at most {limit} for this clip"
                )
        raise error
    await _engaged(ctx, raw_id, engaged)
    return engaged.clip


async def clip_stats(ctx: Context, clip: dict) -> ClipStatsRow:
    """The counters on the clip's row, and its direct published remixes (one batch per page)."""
    remixes = await ctx.loaders.published_remix_count_by_clip.load(clip["id"])
    return (
        int(clip.get("viewCount") or 0),
        int(clip.get("completionCount") or 0),
        int(clip.get("rewatchCount") or 0),
        remixes,
    )
