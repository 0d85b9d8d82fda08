"""Appearances: a clip's cameos with each owner's decision, the owners' mutations, the inbox.

schema.clips and schema.cameos are imported lazily: Clip takes ClipCameoFields as a base.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from errors import NotFound
from resolvers import appearances as appearance_resolvers
from schema.base import Connection, from_epoch_ms

if TYPE_CHECKING:
    from schema.cameos import Cameo
    from schema.clips import Clip

__all__ = [
    "AppearanceMutations",
    "AppearanceQueries",
    "ApprovalState",
    "CameoAppearance",
    "ClipCameoFields",
]


@strawberry.enum
class ApprovalState(Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    REVOKED = "REVOKED"


@strawberry.type
class CameoAppearance:
    row: strawberry.Private[dict]
    approval: ApprovalState = strawberry.field(
        description="APPROVED automatically when the author owns the cameo"
    )
    decided_at: datetime | None

    @classmethod
    def from_row(cls, row: dict) -> CameoAppearance:
        return cls(
            row=row,
            approval=ApprovalState(row["approval"]),
            decided_at=from_epoch_ms(row.get("decidedAt")),
        )

    @strawberry.field
    async def cameo(self, info: Info) -> Annotated[Cameo, strawberry.lazy("schema.cameos")]:
        from schema.cameos import Cameo

        row = await info.context.loaders.cameo_by_id.load(self.row["cameoId"])
        if row is None:  # the edge names it, so it exists; only a concurrent purge gets here
            raise NotFound("the featured cameo no longer exists")
        return Cameo.from_row(row)


@strawberry.type
class ClipCameoFields:
    """Clip.cameos; a base of Clip (which holds `row`)."""

    @strawberry.field(description="cameos featured in this clip, with each owner's decision")
    async def cameos(self, info: Info) -> list[CameoAppearance]:
        rows = await appearance_resolvers.clip_appearances(info.context, self.row)  # type: ignore[attr-defined]
        return [CameoAppearance.from_row(row) for row in rows]


def _clip(row: dict) -> Clip:
    from schema.clips import Clip

    return Clip.from_row(row)


@strawberry.type
class AppearanceQueries:
    @strawberry.field(description="clips awaiting the viewer's approval as cameo owner")
    async def cameo_inbox(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Clip, strawberry.lazy("schema.clips")]]:
        from schema.clips import clip_connection

        return clip_connection(await appearance_resolvers.cameo_inbox(info.context, first, after))


@strawberry.type
class AppearanceMutations:
    @strawberry.mutation(description="cameo owner approves this exact rendered clip")
    async def approve_appearance(
        self, info: Info, clip_id: strawberry.ID
    ) -> Annotated[Clip, strawberry.lazy("schema.clips")]:
        return _clip(await appearance_resolvers.approve_appearance(info.context, clip_id))

    @strawberry.mutation
    async def reject_appearance(
        self, info: Info, clip_id: strawberry.ID
    ) -> Annotated[Clip, strawberry.lazy("schema.clips")]:
        return _clip(await appearance_resolvers.reject_appearance(info.context, clip_id))

    @strawberry.mutation(
        description="cameo owner takes down any clip featuring them, published or not"
    )
    async def remove_appearance(
        self, info: Info, clip_id: strawberry.ID
    ) -> Annotated[Clip, strawberry.lazy("schema.clips")]:
        return _clip(await appearance_resolvers.remove_appearance(info.context, clip_id))
