"""Likeness consent: grants, render tokens, approvals, revocation, content policy.

Cameos are not built yet, so no use of a cameo can carry consent: every clip that names
cameos is refused with CONSENT_REQUIRED, and nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from errors import ConsentRequired

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = ["require_cameo_consent"]


async def require_cameo_consent(ctx: Context, cameo_ids: list[str]) -> None:
    """Raise CONSENT_REQUIRED unless the viewer holds a usable grant for every cameo."""
    raise ConsentRequired(
        "featuring a cameo needs its owner's consent, and no grant can be checked yet"
    )
