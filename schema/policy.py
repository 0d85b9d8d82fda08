"""The policy registries: rights holders' protected works (registered, licensed and withdrawn
by their holders; holders marked by admins) and the public-figure registry (kept by admins).
consent.policy enforces both on every prompt createClip checks."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from resolvers import policy as policy_resolvers
from resolvers.ids import encode_id
from schema.base import Connection, connection, from_epoch_ms

if TYPE_CHECKING:
    from schema.users import User

__all__ = [
    "PolicyMutations",
    "PolicyQueries",
    "ProtectedWork",
    "ProtectedWorkKind",
    "PublicFigure",
    "RightsHolderPayload",
]

UserType = Annotated["User", strawberry.lazy("schema.users")]


@strawberry.enum(description="what a rights holder's entry protects")
class ProtectedWorkKind(Enum):
    WORK = strawberry.enum_value("WORK", description="a film, series, book, game...")
    CHARACTER = strawberry.enum_value("CHARACTER", description="a character")
    MARK = strawberry.enum_value("MARK", description="a trade mark or brand")


@strawberry.type(
    description="a rights holder's work, character or mark: a prompt that uses its name or an"
    " alias is POLICY_VIOLATION (rule rights-holder) unless its author holds it or is licensed"
)
class ProtectedWork:
    row: strawberry.Private[dict]
    id: strawberry.ID
    kind: ProtectedWorkKind
    name: str
    aliases: list[str]
    terms: str = strawberry.field(description="the holder's usage and licence terms")
    licensed_to_everyone: bool = strawberry.field(
        description="every user's prompts may use it (the holder opted in)"
    )
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict) -> ProtectedWork:
        return cls(
            row=row,
            id=strawberry.ID(encode_id("ProtectedWork", row["id"])),
            kind=ProtectedWorkKind(row["kind"]),
            name=row["name"],
            aliases=list(row.get("aliases") or []),
            terms=row.get("terms") or "",
            licensed_to_everyone=bool(row.get("everyone")),
            created_at=from_epoch_ms(row["createdAt"]),
        )

    @strawberry.field
    async def holder(self, info: Info) -> UserType | None:
        from schema.users import User

        row = await info.context.loaders.user_by_id.load(self.row["holderId"])
        return User.from_row(row) if row else None

    @strawberry.field(description="users licensed by name, latest first; the holder only")
    async def licensees(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[UserType]:
        from schema.users import user_connection

        page = await policy_resolvers.licensees(info.context, self.row, first, after)
        return user_connection(page)


@strawberry.type(description="an entry of the operator's registry of protected people")
class PublicFigure:
    row: strawberry.Private[dict]
    id: strawberry.ID
    name: str
    aliases: list[str]
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict) -> PublicFigure:
        return cls(
            row=row,
            id=strawberry.ID(encode_id("PublicFigure", row["id"])),
            name=row["name"],
            aliases=list(row.get("aliases") or []),
            created_at=from_epoch_ms(row["createdAt"]),
        )

    @strawberry.field(
        description="the person's own account, whose cameo a clip naming them may feature"
    )
    async def user(self, info: Info) -> UserType | None:
        from schema.users import User

        user_id = self.row.get("userId")
        row = await info.context.loaders.user_by_id.load(user_id) if user_id else None
        return User.from_row(row) if row else None


@strawberry.type
class RightsHolderPayload:
    user: UserType
    rights_holder: bool
    withdrawn_works: int = strawberry.field(
        description="entries withdrawn because the account was unmarked"
    )


@strawberry.input
class RegisterProtectedWorkInput:
    kind: ProtectedWorkKind
    name: str
    aliases: list[str] | None = None
    terms: str | None = strawberry.field(
        default=None, description="usage and licence terms shown to licensees"
    )


@strawberry.type
class PolicyQueries:
    """Mixed into Query: the registries."""

    @strawberry.field(description="the viewer's protected works, newest first")
    async def my_protected_works(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[ProtectedWork]:
        page = await policy_resolvers.my_works(info.context, first, after)
        return connection(page, ProtectedWork.from_row)

    @strawberry.field(
        description="protected works the viewer may use: licensed to them or to everyone,"
        " newest first"
    )
    async def licensed_protected_works(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[ProtectedWork]:
        page = await policy_resolvers.licensed_works(info.context, first, after)
        return connection(page, ProtectedWork.from_row)

    @strawberry.field(description="the public-figure registry, oldest first; ADMIN only")
    async def public_figures(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[PublicFigure]:
        page = await policy_resolvers.public_figures(info.context, first, after)
        return connection(page, PublicFigure.from_row)


@strawberry.type
class PolicyMutations:
    """Mixed into Mutation: the registries' edits, each appended to the audit log."""

    @strawberry.mutation(
        description="ADMIN only: mark an account as a rights holder, or unmark it (which"
        " withdraws every entry it holds, with their licences)"
    )
    async def set_rights_holder(
        self, info: Info, user_id: strawberry.ID, enabled: bool
    ) -> RightsHolderPayload:
        from schema.users import User

        user, withdrawn = await policy_resolvers.set_rights_holder(info.context, user_id, enabled)
        return RightsHolderPayload(
            user=User.from_row(user), rights_holder=enabled, withdrawn_works=withdrawn
        )

    @strawberry.mutation(description="rights holders only")
    async def register_protected_work(
        self, info: Info, input: RegisterProtectedWorkInput
    ) -> ProtectedWork:
        row = await policy_resolvers.register_work(
            info.context, input.kind.value, input.name, input.aliases, input.terms
        )
        return ProtectedWork.from_row(row)

    @strawberry.mutation(description="its holder only: prompts may use it again")
    async def withdraw_protected_work(self, info: Info, id: strawberry.ID) -> ProtectedWork:
        return ProtectedWork.from_row(await policy_resolvers.withdraw_work(info.context, id))

    @strawberry.mutation(description="its holder only: license it to one user or to everyone")
    async def license_protected_work(
        self,
        info: Info,
        work_id: strawberry.ID,
        user_id: strawberry.ID | None = None,
        everyone: bool | None = None,
    ) -> ProtectedWork:
        row = await policy_resolvers.license_work(info.context, work_id, user_id, everyone)
        return ProtectedWork.from_row(row)

    @strawberry.mutation(description="its holder only: take back a licence to a user or everyone")
    async def revoke_protected_work_license(
        self,
        info: Info,
        work_id: strawberry.ID,
        user_id: strawberry.ID | None = None,
        everyone: bool | None = None,
    ) -> ProtectedWork:
        row = await policy_resolvers.revoke_license(info.context, work_id, user_id, everyone)
        return ProtectedWork.from_row(row)

    @strawberry.mutation(description="ADMIN only")
    async def add_public_figure(
        self,
        info: Info,
        name: str,
        aliases: list[str] | None = None,
        user_id: strawberry.ID | None = None,
    ) -> PublicFigure:
        row = await policy_resolvers.add_public_figure(info.context, name, aliases, user_id)
        return PublicFigure.from_row(row)

    @strawberry.mutation(description="ADMIN only")
    async def remove_public_figure(self, info: Info, id: strawberry.ID) -> PublicFigure:
        return PublicFigure.from_row(await policy_resolvers.remove_public_figure(info.context, id))
