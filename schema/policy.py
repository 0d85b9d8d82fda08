"""policy: filled in by the safety work."""

from __future__ import annotations

import strawberry

__all__ = ["PolicyMutations", "PolicyQueries"]


@strawberry.type
class PolicyQueries:
    pass


@strawberry.type
class PolicyMutations:
    pass
