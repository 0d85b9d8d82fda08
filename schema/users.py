"""Accounts and the social graph: User, its connections, the auth payload."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from resolvers import users as user_resolvers
from resolvers.ids import encode_id
from resolvers.pagination import Page
from schema.base import Connection, Node, connection, from_epoch_ms
from schema.cameos import UserCameoFields
from schema.quotas import UserQuotaFields
from schema.roles import UserRoleFields

if TYPE_CHECKING:
    from schema.clips import Clip

__all__ = ["AuthPayload", "SignUpInput", "User", "UserConnection", "user_connection"]


@strawberry.type
class User(Node, UserCameoFields, UserRoleFields, UserQuotaFields):
    raw_id: strawberry.Private[str]
    handle: str
    display_name: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict) -> User:
        return cls(
            id=strawberry.ID(encode_id("User", row["id"])),
            raw_id=row["id"],
            handle=row["handle"],
            display_name=row["displayName"],
            created_at=from_epoch_ms(row["createdAt"]),
        )

    @strawberry.field
    async def follower_count(self, info: Info) -> int:
        followers, _ = await info.context.loaders.follow_counts_by_user.load(self.raw_id)
        return followers

    @strawberry.field
    async def following_count(self, info: Info) -> int:
        _, following = await info.context.loaders.follow_counts_by_user.load(self.raw_id)
        return following

    @strawberry.field(description="false when there is no viewer")
    async def viewer_follows(self, info: Info) -> bool:
        if info.context.optional_viewer() is None:
            return False
        return await info.context.loaders.viewer_follows_by_user.load(self.raw_id)

    @strawberry.field
    async def followers(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[User]:
        page = await user_resolvers.follow_page(
            info.context, self.raw_id, "followers", first, after
        )
        return user_connection(page)

    @strawberry.field
    async def following(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[User]:
        page = await user_resolvers.follow_page(
            info.context, self.raw_id, "following", first, after
        )
        return user_connection(page)

    @strawberry.field(description="published clips, newest first")
    async def clips(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Clip, strawberry.lazy("schema.clips")]]:
        from resolvers import clips as clip_resolvers
        from schema.clips import clip_connection

        page = await clip_resolvers.published_by_author(info.context, self.raw_id, first, after)
        return clip_connection(page)


UserConnection = Connection[User]


def user_connection(page: Page[dict]) -> UserConnection:
    return connection(page, User.from_row)


@strawberry.type
class AuthPayload:
    access_token: str = strawberry.field(description="short-lived")
    refresh_token: str = strawberry.field(
        description="rotating: each use returns a new one; reuse of an old one revokes the family"
    )
    user: User


@strawberry.input
class SignUpInput:
    handle: str
    display_name: str
    password: str
