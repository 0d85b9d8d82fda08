"""moderation: filled in by the safety work."""

from __future__ import annotations

import strawberry

__all__ = ["ModerationMutations", "ModerationQueries"]


@strawberry.type
class ModerationQueries:
    pass


@strawberry.type
class ModerationMutations:
    pass
