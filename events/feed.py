"""Feed events: a clip was published, for `feedUpdates` subscribers in every API process.

`clip_published` is the one call every path that publishes a clip makes (publishClip, and
the approval that publishes a clip awaiting its cameo owners). The message names the clip
and its author only; who may see it is decided at delivery, by one graph read per event
and API process for all of that process's feed subscribers (resolvers/notifications.py,
graph.notifications FEED_AUDIENCE): graph.visibility's rule, as for every other read, so
a block by or of anyone featured in the clip keeps it from a subscriber as the author's does.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from events.bus import FEED_CHANNEL, publish

__all__ = ["clip_published"]

logger = logging.getLogger("reelgraph.events")


async def clip_published(redis: Any, clip_row: dict[str, Any]) -> None:
    """Tell feed subscribers that clip_row (a PUBLISHED clip with `authorId`) is out. The
    clip is published either way, so a Redis failure is logged, never raised. A row in any
    other state (AWAITING_APPROVAL: publishing waits for cameo owners) announces nothing."""
    if clip_row.get("state") != "PUBLISHED":
        return
    message = {"clipId": clip_row["id"], "authorId": clip_row["authorId"]}
    try:
        await publish(redis, FEED_CHANNEL, message)
    except (RedisError, OSError):
        logger.warning("could not announce published clip %s", clip_row["id"], exc_info=True)
