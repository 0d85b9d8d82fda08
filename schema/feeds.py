"""The feeds: FOLLOWING and FOR_YOU, filtered by mood."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.types import Info

from resolvers import feeds as feed_resolvers
from schema.clips import ClipConnection, clip_connection

__all__ = ["FeedKind", "FeedQueries"]


@strawberry.enum
class FeedKind(Enum):
    FOLLOWING = strawberry.enum_value(
        "FOLLOWING", description="published clips by people the viewer follows, newest first"
    )
    FOR_YOU = strawberry.enum_value(
        "FOR_YOU",
        description="ranked: connected content first (followed people, their remixes, friends"
        " of friends), then popular, diverse authors",
    )


@strawberry.type
class FeedQueries:
    """Mixed into Query: feed."""

    @strawberry.field
    async def feed(
        self,
        info: Info,
        kind: FeedKind = FeedKind.FOR_YOU,
        mood: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> ClipConnection:
        if kind is FeedKind.FOLLOWING:
            page = await feed_resolvers.following_feed(info.context, mood, first, after)
        else:
            page = await feed_resolvers.for_you_feed(info.context, mood, first, after)
        return clip_connection(page)
