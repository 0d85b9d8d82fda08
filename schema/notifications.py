"""Notifications, render progress and the Subscription type (issue 9)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from events.notifications import Entry
from resolvers import clips as clip_resolvers
from resolvers import notifications as notification_resolvers
from resolvers.ids import encode_id
from resolvers.pagination import Page
from schema.base import Connection, Node, connection, from_epoch_ms
from schema.clips import Clip, ClipState
from schema.feeds import FeedKind

if TYPE_CHECKING:
    from schema.users import User

__all__ = [
    "Notification",
    "NotificationConnection",
    "NotificationKind",
    "NotificationQueries",
    "RenderProgress",
    "Subscription",
]


@strawberry.enum
class NotificationKind(Enum):
    APPEARANCE_REQUESTED = strawberry.enum_value(
        "APPEARANCE_REQUESTED", description="a draft featuring my cameo awaits my approval"
    )
    APPEARANCE_DECIDED = strawberry.enum_value(
        "APPEARANCE_DECIDED", description="a cameo owner approved or rejected my draft"
    )
    CLIP_REMIXED = strawberry.enum_value("CLIP_REMIXED", description="someone remixed my clip")
    RENDER_FINISHED = strawberry.enum_value(
        "RENDER_FINISHED", description="my clip finished rendering (state DRAFT or FAILED)"
    )
    CLIP_REMOVED = strawberry.enum_value(
        "CLIP_REMOVED", description="a clip of mine, or one featuring my cameo, was taken down"
    )
    NEW_FOLLOWER = "NEW_FOLLOWER"


@strawberry.type
class Notification(Node):
    entry: strawberry.Private[Entry]
    kind: NotificationKind
    created_at: datetime
    cursor: str = strawberry.field(
        description="pass as `after` to notifications(...) to resume after reconnect"
    )

    @classmethod
    def from_entry(cls, entry: Entry) -> Notification:
        return cls(
            id=strawberry.ID(encode_id("Notification", entry.id)),
            entry=entry,
            kind=NotificationKind(entry.kind),
            created_at=from_epoch_ms(entry.at),
            cursor=notification_resolvers.notification_cursor(entry),
        )

    @strawberry.field(description="null when the viewer may no longer see it")
    async def clip(self, info: Info) -> Clip | None:
        clip_id = self.entry.payload.get("clipId")
        if not isinstance(clip_id, str):
            return None
        row = await clip_resolvers.visible_clip(info.context, clip_id)
        return Clip.from_row(row) if row else None

    @strawberry.field
    async def actor(self, info: Info) -> Annotated[User, strawberry.lazy("schema.users")] | None:
        from schema.users import User

        actor_id = self.entry.payload.get("actorId")
        if not isinstance(actor_id, str):
            return None
        row = await info.context.loaders.user_by_id.load(actor_id)
        return User.from_row(row) if row else None


NotificationConnection = Connection[Notification]


@strawberry.type
class RenderProgress:
    clip: Clip
    state: ClipState
    progress: float = strawberry.field(description="0..1")


@strawberry.type
class NotificationQueries:
    """Mixed into Query: notifications, for clients that poll."""

    @strawberry.field(
        description="the viewer's notifications after `after`, oldest first (the same cursors"
        " as the subscription): poll with the last endCursor"
    )
    async def notifications(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> NotificationConnection:
        page: Page = await notification_resolvers.notifications_page(info.context, first, after)
        return connection(page, Notification.from_entry)


@strawberry.type
class Subscription:
    @strawberry.subscription(description="the viewer's; `after` replays what was missed")
    async def notifications(
        self, info: Info, after: str | None = None
    ) -> AsyncGenerator[Notification, None]:
        source = notification_resolvers.notifications_subscription(info.context, after)
        async with aclosing(source):  # its pub/sub listener goes when the client leaves
            async for entry in source:
                yield Notification.from_entry(entry)

    @strawberry.subscription(description="newly published clips that belong in the viewer's feed")
    async def feed_updates(
        self, info: Info, kind: FeedKind = FeedKind.FOLLOWING
    ) -> AsyncGenerator[Clip, None]:
        source = notification_resolvers.feed_updates(info.context, kind is FeedKind.FOLLOWING)
        async with aclosing(source):
            async for row in source:
                yield Clip.from_row(row)

    @strawberry.subscription(
        description="author only; the first event is the current state, then each change;"
        " completes at DRAFT or FAILED"
    )
    async def render_progress(
        self, info: Info, clip_id: strawberry.ID
    ) -> AsyncGenerator[RenderProgress, None]:
        source = notification_resolvers.render_progress(info.context, clip_id)
        async with aclosing(source):
            async for row, progress in source:
                clip = Clip.from_row(row)
                yield RenderProgress(clip=clip, state=clip.state, progress=progress)
