"""Generation quotas: User.generationQuota (the viewer's own). Filled in by the quotas work."""

from __future__ import annotations

import strawberry

__all__ = ["UserQuotaFields"]


@strawberry.type
class UserQuotaFields:
    """Mixed into User (which supplies raw_id)."""
