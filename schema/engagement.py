"""Likes and views: the Clip fields and the mutations that feed them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from resolvers import engagement as engagement_resolvers

if TYPE_CHECKING:
    from schema.clips import Clip

__all__ = ["ClipEngagementFields", "ClipStats", "EngagementMutations"]


@strawberry.type
class ClipStats:
    views: int
    completions: int = strawberry.field(description="views watched to the end")
    completion_rate: float = strawberry.field(description="completions / views, 0 when no views")
    rewatches: int = strawberry.field(description="views by a viewer who had already completed it")
    remix_rate: float = strawberry.field(
        description="direct published remixes / views, 0 when no views"
    )


@strawberry.type
class ClipEngagementFields:
    """Mixed into Clip: likeCount, viewerHasLiked, stats. The counters are on the clip's row
    (graph.engagement); only viewerHasLiked and the remixes behind remixRate are read, each
    through one DataLoader batch per page."""

    if TYPE_CHECKING:  # Clip's own field; declared here only for the type checker
        row: dict

    @strawberry.field
    def like_count(self) -> int:
        return int(self.row.get("likeCount") or 0)

    @strawberry.field(description="false without a viewer")
    async def viewer_has_liked(self, info: Info) -> bool:
        return await info.context.loaders.viewer_likes_clip.load(self.row["id"])

    @strawberry.field
    async def stats(self, info: Info) -> ClipStats:
        views, completions, rewatches, remixes = await engagement_resolvers.clip_stats(
            info.context, self.row
        )
        return ClipStats(
            views=views,
            completions=completions,
            completion_rate=completions / views if views else 0.0,
            rewatches=rewatches,
            remix_rate=remixes / views if views else 0.0,
        )


def _clip(row: dict) -> Clip:
    from schema.clips import Clip

    return Clip.from_row(row)


@strawberry.type
class EngagementMutations:
    """Mixed into Mutation: likeClip, unlikeClip, recordView."""

    @strawberry.mutation(description="idempotent; PUBLISHED clips the viewer may see")
    async def like_clip(
        self, info: Info, clip_id: strawberry.ID
    ) -> Annotated[Clip, strawberry.lazy("schema.clips")]:
        return _clip(await engagement_resolvers.like_clip(info.context, clip_id))

    @strawberry.mutation(description="idempotent")
    async def unlike_clip(
        self, info: Info, clip_id: strawberry.ID
    ) -> Annotated[Clip, strawberry.lazy("schema.clips")]:
        return _clip(await engagement_resolvers.unlike_clip(info.context, clip_id))

    @strawberry.mutation(description="one view: watchedMs from 0 to the clip's length")
    async def record_view(
        self, info: Info, clip_id: strawberry.ID, watched_ms: int, completed: bool
    ) -> Annotated[Clip, strawberry.lazy("schema.clips")]:
        return _clip(
            await engagement_resolvers.record_view(info.context, clip_id, watched_ms, completed)
        )
