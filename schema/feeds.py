"""The feeds: FOLLOWING and FOR_YOU, filtered by mood."""

from __future__ import annotations

import strawberry

__all__ = ["FeedQueries"]


@strawberry.type
class FeedQueries:
    """Mixed into Query: feed."""
