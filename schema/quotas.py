"""Generation quotas: User.generationQuota, the viewer's own daily quota (auth.quotas)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from auth.quotas import GenerationQuotas

__all__ = ["GenerationQuota", "UserQuotaFields"]


@strawberry.type(
    description="clips made today (UTC) against the daily quota; a FAILED render gives its "
    "unit back, remixes count"
)
class GenerationQuota:
    used: int = strawberry.field(description="units taken today (UTC)")
    limit: int = strawberry.field(description="units per UTC day")
    resets_at: datetime = strawberry.field(description="the next UTC midnight")


@strawberry.type
class UserQuotaFields:
    """Mixed into User (which supplies raw_id)."""

    @strawberry.field(
        description="the user's daily generation quota; the user's own only (null for anyone "
        "else and when signed out)"
    )
    async def generation_quota(self, info: Info) -> GenerationQuota | None:
        context = info.context
        raw_id: str = self.raw_id  # type: ignore[attr-defined]
        if context.optional_viewer() != raw_id:
            return None  # private, not an error: a list of users may ask for it
        usage = await GenerationQuotas(context.services.redis, context.settings).usage(raw_id)
        return GenerationQuota(used=usage.used, limit=usage.limit, resets_at=usage.resets_at)
