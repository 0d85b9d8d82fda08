"""Reports and moderation: Report, the queue, and the moderators' and authors' mutations."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from graph.roles import holds
from resolvers import moderation as moderation_resolvers
from resolvers.ids import encode_id
from resolvers.pagination import Page
from schema.base import Connection, Node, connection, from_epoch_ms
from schema.clips import Clip

if TYPE_CHECKING:
    from schema.users import User

__all__ = [
    "ModerationAction",
    "ModerationMutations",
    "ModerationQueries",
    "Report",
    "ReportConnection",
    "ReportKind",
    "ReportOutcome",
    "ReportReason",
]


@strawberry.enum
class ReportReason(Enum):
    IMPERSONATION = "IMPERSONATION"
    HARASSMENT = "HARASSMENT"
    SEXUAL = "SEXUAL"
    VIOLENCE = "VIOLENCE"
    COPYRIGHT = "COPYRIGHT"
    MISINFORMATION = "MISINFORMATION"
    SPAM = "SPAM"
    OTHER = "OTHER"


@strawberry.enum
class ModerationAction(Enum):
    DISMISS = strawberry.enum_value(
        "DISMISS", description="nothing to act on; on an appeal: the take-down stands"
    )
    TAKE_DOWN = strawberry.enum_value(
        "TAKE_DOWN",
        description="the clip goes REMOVED everywhere (restoreClip can bring it back); every "
        "open report of it is resolved; on an appeal: the take-down stands",
    )


@strawberry.enum
class ReportKind(Enum):
    REPORT = strawberry.enum_value("REPORT", description="a viewer's report of a clip")
    APPEAL = strawberry.enum_value("APPEAL", description="the author's appeal of a take-down")


@strawberry.enum
class ReportOutcome(Enum):
    DISMISSED = "DISMISSED"
    TAKEN_DOWN = "TAKEN_DOWN"
    RESTORED = strawberry.enum_value(
        "RESTORED", description="an appeal granted: the clip was restored"
    )


async def _is_moderator(info: Info) -> bool:
    return holds(await info.context.viewer_roles(), "MODERATOR")


@strawberry.type(description="seen by its reporter (as reportClip returns it) and moderators")
class Report(Node):
    row: strawberry.Private[dict]
    reason: ReportReason
    kind: ReportKind
    created_at: datetime
    resolved: bool
    outcome: ReportOutcome | None = strawberry.field(description="null while open")
    resolved_at: datetime | None
    note: str | None = strawberry.field(
        description="the reporter's note (the author's, for an appeal)"
    )

    @classmethod
    def from_row(cls, row: dict) -> Report:
        outcome = row.get("outcome")
        return cls(
            id=strawberry.ID(encode_id("Report", row["id"])),
            row=row,
            reason=ReportReason(row["reason"]),
            kind=ReportKind(row["kind"]),
            created_at=from_epoch_ms(row["createdAt"]),
            resolved=row["state"] == "RESOLVED",
            outcome=ReportOutcome(outcome) if outcome else None,
            resolved_at=from_epoch_ms(row.get("resolvedAt")),
            note=row.get("note"),
        )

    @strawberry.field(description="the clip as it is now, in any state")
    async def clip(self, info: Info) -> Clip:
        row = await info.context.loaders.clip_by_id.load(self.row["clipId"])
        return Clip.from_row(row)

    @strawberry.field(description="moderators only (null for anyone else)")
    async def reporter(self, info: Info) -> Annotated[User, strawberry.lazy("schema.users")] | None:
        from schema.users import User

        if not await _is_moderator(info):
            return None
        row = await info.context.loaders.user_by_id.load(self.row["reporterId"])
        return User.from_row(row) if row else None

    @strawberry.field(description="the moderator's note on the decision; moderators only")
    async def resolution_note(self, info: Info) -> str | None:
        if not await _is_moderator(info):
            return None
        return self.row.get("resolutionNote")


ReportConnection = Connection[Report]


def report_connection(page: Page[dict]) -> ReportConnection:
    return connection(page, Report.from_row)


@strawberry.type
class ModerationQueries:
    @strawberry.field(
        description="moderators: open reports and appeals, oldest first; of one reason if given"
    )
    async def moderation_queue(
        self,
        info: Info,
        reason: ReportReason | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> ReportConnection:
        page = await moderation_resolvers.moderation_queue(
            info.context, reason.value if reason else None, first, after
        )
        return report_connection(page)


@strawberry.type
class ModerationMutations:
    @strawberry.mutation(
        description="a clip the viewer can see; one open report per reporter and clip; "
        "note: at most 1000 characters"
    )
    async def report_clip(
        self, info: Info, clip_id: strawberry.ID, reason: ReportReason, note: str | None = None
    ) -> Report:
        row = await moderation_resolvers.report_clip(info.context, clip_id, reason.value, note)
        return Report.from_row(row)

    @strawberry.mutation(description="moderators; a resolved report is CONFLICT")
    async def resolve_report(
        self,
        info: Info,
        report_id: strawberry.ID,
        action: ModerationAction,
        note: str | None = None,
    ) -> Report:
        row = await moderation_resolvers.resolve_report(info.context, report_id, action.value, note)
        return Report.from_row(row)

    @strawberry.mutation(
        description="moderators: a clip taken down by moderation back to the state it had, "
        "while consent to it stands"
    )
    async def restore_clip(self, info: Info, clip_id: strawberry.ID) -> Clip:
        return Clip.from_row(await moderation_resolvers.restore_clip(info.context, clip_id))

    @strawberry.mutation(
        description="the author, once per take-down: the clip goes back to the moderation queue"
    )
    async def appeal_take_down(
        self, info: Info, clip_id: strawberry.ID, note: str | None = None
    ) -> Clip:
        row = await moderation_resolvers.appeal_take_down(info.context, clip_id, note)
        return Clip.from_row(row)
