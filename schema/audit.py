"""audit: filled in by the safety work."""

from __future__ import annotations

import strawberry

__all__ = ["AuditQueries"]


@strawberry.type
class AuditQueries:
    pass
