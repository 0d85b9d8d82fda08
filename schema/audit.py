"""The audit log: AuditEntry and auditLog."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from resolvers import audit as audit_resolvers
from resolvers.ids import encode_id
from schema.base import Connection, Node, connection, from_epoch_ms

if TYPE_CHECKING:
    from schema.users import User

__all__ = ["AuditEntry", "AuditEntryConnection", "AuditQueries"]


@strawberry.type(description="one decision in the hash-chained audit log")
class AuditEntry(Node):
    row: strawberry.Private[dict]
    seq: int = strawberry.field(description="1 for the first entry, then one more each")
    at: datetime
    action: str = strawberry.field(
        description="what was decided, e.g. report.take_down, clip.restore, cameo.grant"
    )
    reason: str | None = strawberry.field(description="why; null when none or erased")
    reason_erased: bool = strawberry.field(description="its author's account was erased")
    clip_id: strawberry.ID | None
    cameo_id: strawberry.ID | None
    hash: str = strawberry.field(description="sha256 of the chained bytes (hex)")
    prev_hash: str = strawberry.field(description="the hash of the entry before (hex)")

    @classmethod
    def from_row(cls, row: dict) -> AuditEntry:
        clip, cameo = row.get("clipId"), row.get("cameoId")
        return cls(
            id=strawberry.ID(encode_id("AuditEntry", row["id"])),
            row=row,
            seq=row["seq"],
            at=from_epoch_ms(row["at"]),
            action=row["action"],
            reason=row.get("reason"),
            reason_erased=row.get("reasonErasedAt") is not None,
            clip_id=strawberry.ID(encode_id("Clip", clip)) if clip else None,
            cameo_id=strawberry.ID(encode_id("Cameo", cameo)) if cameo else None,
            hash=row["hash"],
            prev_hash=row["prevHash"],
        )

    @strawberry.field(
        description="who decided: for moderators only, null for the system or once erased"
    )
    async def actor(self, info: Info) -> Annotated[User, strawberry.lazy("schema.users")] | None:
        from schema.users import User

        actor_id = self.row.get("actorId")  # set for moderators' reads only
        if actor_id is None:
            return None
        row = await info.context.loaders.user_by_id.load(actor_id)
        return User.from_row(row) if row else None


AuditEntryConnection = Connection[AuditEntry]


@strawberry.type
class AuditQueries:
    @strawberry.field(
        description="newest first. Moderators read every entry; anyone else the entries about "
        "their own clips and cameo (another's clip or cameo is NOT_FOUND)"
    )
    async def audit_log(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        clip_id: strawberry.ID | None = None,
        cameo_id: strawberry.ID | None = None,
    ) -> AuditEntryConnection:
        page = await audit_resolvers.audit_page(info.context, first, after, clip_id, cameo_id)
        return connection(page, AuditEntry.from_row)
