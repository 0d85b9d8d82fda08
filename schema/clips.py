"""Clips, their states and rendered videos."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from resolvers import clips as clip_resolvers
from resolvers.ids import encode_id
from resolvers.pagination import Page
from schema.appearances import ClipCameoFields
from schema.base import Connection, Node, connection, from_epoch_ms
from schema.engagement import ClipEngagementFields
from schema.lineage import ClipLineageFields

if TYPE_CHECKING:
    from schema.users import User

__all__ = [
    "Clip",
    "ClipConnection",
    "ClipState",
    "CreateClipInput",
    "VideoAsset",
    "clip_connection",
]


@strawberry.enum
class ClipState(Enum):
    QUEUED = "QUEUED"
    RENDERING = "RENDERING"
    FAILED = "FAILED"
    DRAFT = "DRAFT"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    PUBLISHED = "PUBLISHED"
    REMOVED = "REMOVED"


@strawberry.type
class VideoAsset:
    url: str = strawberry.field(description="fetchable by the viewer (signed or access-checked)")
    mime_type: str
    duration_ms: int
    width: int
    height: int
    fps: float
    has_audio: bool
    sha256: str = strawberry.field(description="of the stored file")


@strawberry.type
class Clip(Node, ClipEngagementFields, ClipLineageFields, ClipCameoFields):
    row: strawberry.Private[dict]
    prompt: str
    state: ClipState
    failure_reason: str | None
    moods: list[str]
    created_at: datetime
    published_at: datetime | None

    @classmethod
    def from_row(cls, row: dict) -> Clip:
        return cls(
            id=strawberry.ID(encode_id("Clip", row["id"])),
            row=row,
            prompt=row["prompt"],
            state=ClipState(row["state"]),
            failure_reason=row.get("failureReason"),
            moods=list(row.get("moods") or []),
            created_at=from_epoch_ms(row["createdAt"]),
            published_at=from_epoch_ms(row.get("publishedAt")),
        )

    @strawberry.field
    async def author(self, info: Info) -> Annotated[User, strawberry.lazy("schema.users")]:
        from schema.users import User

        return User.from_row(await info.context.loaders.user_by_id.load(self.row["authorId"]))

    @strawberry.field(description="null until rendered")
    def video(self, info: Info) -> VideoAsset | None:
        row = self.row
        if not row.get("videoKey") or row["state"] == "REMOVED":
            return None
        return VideoAsset(
            url=info.context.media_url(row["videoKey"]),
            mime_type=row.get("mimeType", "video/mp4"),
            duration_ms=row["videoDurationMs"],
            width=row["width"],
            height=row["height"],
            fps=row["fps"],
            has_audio=row["hasAudio"],
            sha256=row["sha256"],
        )

    @strawberry.field(description="0..1 while QUEUED/RENDERING")
    def render_progress(self) -> float | None:
        if self.row["state"] not in ("QUEUED", "RENDERING"):
            return None
        return float(self.row.get("renderProgress") or 0.0)

    @strawberry.field(
        description="parent, null for an original (or when the viewer may not see it)"
    )
    async def remix_of(self, info: Info) -> Clip | None:
        row = self.row
        if "parentId" not in row:  # transition rows leave it out; lineage never changes
            row = await info.context.loaders.clip_by_id.load(row["id"]) or row
        parent_id = row.get("parentId")
        if parent_id is None:
            return None
        parent = await clip_resolvers.visible_clip(info.context, parent_id)
        return Clip.from_row(parent) if parent else None


ClipConnection = Connection[Clip]


def clip_connection(page: Page[dict]) -> ClipConnection:
    return connection(page, Clip.from_row)


@strawberry.input
class CreateClipInput:
    prompt: str = strawberry.field(description="1-1000 chars")
    moods: list[str] | None = strawberry.field(
        default=None, description="optional; the server may infer moods when absent"
    )
    remix_of: strawberry.ID | None = strawberry.field(
        default=None, description="makes this a remix; the parent must be PUBLISHED and visible"
    )
    cameo_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="at most 2; each needs a usable grant"
    )
    duration_seconds: int | None = strawberry.field(
        default=None, description="default 5, at most 20"
    )
