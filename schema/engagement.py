"""Likes and views: the Clip fields and the mutations that feed them."""

from __future__ import annotations

import strawberry

__all__ = ["ClipEngagementFields", "EngagementMutations"]


@strawberry.type
class ClipEngagementFields:
    """Mixed into Clip: likeCount, viewerHasLiked, stats."""


@strawberry.type
class EngagementMutations:
    """Mixed into Mutation: likeClip, unlikeClip, recordView."""
