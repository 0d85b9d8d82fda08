"""The tamper-evident audit log: every consent and moderation decision, hash-chained.

Stub: the audit work replaces the body; callers use `append` as it is declared here."""

from __future__ import annotations

from typing import Any

from graph.driver import GraphDriver

__all__ = ["append"]


async def append(
    db: GraphDriver,
    *,
    actor_id: str | None,
    action: str,
    subject: str,
    reason: str | None = None,
    clip_id: str | None = None,
    cameo_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one decision: who (`actor_id`, a user id; None for the system), what
    (`action`, e.g. "registry.rights_holder.add", "report.take_down"), on what (`subject`,
    an id), why (`reason`), which clip or cameo it concerns (for who may read it), and
    other facts without personal data (`details`). When is taken here."""
    return None
