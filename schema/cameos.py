"""Cameos: the Cameo and its grants, the capture challenge, and their mutations.

schema.clips is imported lazily here: Clip's own fields (appearances) name Cameo, so a
module-level import either way round would be circular.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from resolvers import cameos as cameo_resolvers
from resolvers.ids import encode_id
from schema.base import Connection, Node, from_epoch_ms

if TYPE_CHECKING:
    from consent.challenges import Challenge
    from schema.clips import Clip, ClipState
    from schema.users import User

__all__ = [
    "Cameo",
    "CameoAudience",
    "CameoChallenge",
    "CameoGrant",
    "CameoMutations",
    "CameoQueries",
    "CameoState",
    "UserCameoFields",
]

CAPTURE_PATH = "/cameo-captures/"


@strawberry.enum
class CameoState(Enum):
    PENDING_VERIFICATION = "PENDING_VERIFICATION"
    ACTIVE = "ACTIVE"
    REJECTED = "REJECTED"
    DELETED = "DELETED"
    PENDING_REVIEW = strawberry.enum_value(
        "PENDING_REVIEW",
        description="the capture passed but looks like a protected public figure: an"
        " operator reviews it (reviewCameo) before it can be used",
    )


@strawberry.enum
class CameoAudience(Enum):
    ONLY_ME = strawberry.enum_value("ONLY_ME", description="only the owner may use it")
    APPROVED = strawberry.enum_value(
        "APPROVED", description="the owner and people the owner granted"
    )
    MUTUALS = strawberry.enum_value(
        "MUTUALS",
        description="the owner, granted people, and people who follow the owner and are"
        " followed back",
    )
    EVERYONE = strawberry.enum_value(
        "EVERYONE", description="any signed-in user who is not blocked by the owner"
    )


@strawberry.type
class Cameo(Node):
    row: strawberry.Private[dict]
    state: CameoState
    audience: CameoAudience
    restrictions: list[str] = strawberry.field(
        description='owner\'s rules, e.g. "no political content"; enforced on prompts'
    )

    @classmethod
    def from_row(cls, row: dict) -> Cameo:
        return cls(
            id=strawberry.ID(encode_id("Cameo", row["id"])),
            row=row,
            state=CameoState(row["state"]),
            audience=CameoAudience(row["audience"]),
            restrictions=list(row.get("restrictions") or []),
        )

    @strawberry.field
    async def owner(self, info: Info) -> Annotated[User, strawberry.lazy("schema.users")]:
        from schema.users import User

        return User.from_row(await info.context.loaders.user_by_id.load(self.row["ownerId"]))

    @strawberry.field(description="whether the viewer may feature this cameo now")
    async def viewer_can_use(self, info: Info) -> bool:
        return await cameo_resolvers.viewer_can_use(info.context, self.row["id"])

    @strawberry.field(description="owner only (FORBIDDEN otherwise)")
    async def grants(self, info: Info) -> list[CameoGrant]:
        rows = await cameo_resolvers.grants(info.context, self.row)
        return [CameoGrant.from_row(row) for row in rows]

    @strawberry.field(
        description="owner only: every clip featuring the cameo, drafts of others included"
    )
    async def appearances(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        states: list[Annotated[ClipState, strawberry.lazy("schema.clips")]] | None = None,
    ) -> Connection[Annotated[Clip, strawberry.lazy("schema.clips")]]:
        from schema.clips import clip_connection

        wanted = None if states is None else [state.value for state in states]
        page = await cameo_resolvers.appearances(info.context, self.row, first, after, wanted)
        return clip_connection(page)

    @strawberry.field(
        description="owner only (null for others): why the latest capture was refused, a"
        " sentence saying what to do; null once a capture passes"
    )
    def reject_reason(self, info: Info) -> str | None:
        if info.context.optional_viewer() != self.row["ownerId"]:
            return None
        return self.row.get("lastCaptureFailure")


@strawberry.type
class CameoGrant(Node):
    row: strawberry.Private[dict]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: dict) -> CameoGrant:
        return cls(
            id=strawberry.ID(encode_id("CameoGrant", row["id"])),
            row=row,
            created_at=from_epoch_ms(row["at"]),
            expires_at=from_epoch_ms(row.get("expiresAt")),
            revoked_at=from_epoch_ms(row.get("revokedAt")),
        )

    @strawberry.field
    async def cameo(self, info: Info) -> Cameo:
        row = await info.context.loaders.cameo_by_id.load(self.row["cameoId"])
        return Cameo.from_row(row)

    @strawberry.field
    async def grantee(self, info: Info) -> Annotated[User, strawberry.lazy("schema.users")]:
        from schema.users import User

        return User.from_row(await info.context.loaders.user_by_id.load(self.row["granteeId"]))


@strawberry.type
class CameoChallenge:
    id: strawberry.ID
    phrase: str = strawberry.field(description="what to say on camera (random digits)")
    moves: list[str] = strawberry.field(
        description="head movements to perform, in order (e.g. LEFT, RIGHT, UP)"
    )
    upload_url: str = strawberry.field(
        description='HTTP POST target for the capture video (multipart field "video")'
    )
    expires_at: datetime

    @classmethod
    def from_challenge(cls, challenge: Challenge, base_url: str) -> CameoChallenge:
        return cls(
            id=strawberry.ID(encode_id("CameoChallenge", challenge.id)),
            phrase=challenge.phrase,
            moves=list(challenge.moves),
            upload_url=base_url.rstrip("/") + CAPTURE_PATH + challenge.id,
            expires_at=from_epoch_ms(challenge.expires_at),
        )


def _base_url(info: Info) -> str:
    """The absolute base of this server as the client reached it."""
    connection = info.context.request or info.context.websocket
    return str(connection.base_url) if connection is not None else ""


@strawberry.type
class CameoQueries:
    """Mixed into Query: cameoChallenge."""

    @strawberry.field
    async def cameo_challenge(self, info: Info, id: strawberry.ID) -> CameoChallenge | None:
        challenge = await cameo_resolvers.cameo_challenge(info.context, id)
        return CameoChallenge.from_challenge(challenge, _base_url(info)) if challenge else None


@strawberry.type
class CameoMutations:
    """Mixed into Mutation: the cameo lifecycle."""

    @strawberry.mutation(description="begins liveness capture for the viewer's cameo")
    async def start_cameo_capture(self, info: Info) -> CameoChallenge:
        challenge = await cameo_resolvers.start_capture(info.context)
        return CameoChallenge.from_challenge(challenge, _base_url(info))

    @strawberry.mutation
    async def set_cameo_audience(self, info: Info, audience: CameoAudience) -> Cameo:
        return Cameo.from_row(await cameo_resolvers.set_audience(info.context, audience.value))

    @strawberry.mutation
    async def set_cameo_restrictions(self, info: Info, restrictions: list[str]) -> Cameo:
        row = await cameo_resolvers.set_restrictions(info.context, restrictions)
        return Cameo.from_row(row)

    @strawberry.mutation
    async def grant_cameo(
        self, info: Info, grantee_id: strawberry.ID, expires_in_days: int | None = None
    ) -> CameoGrant:
        row = await cameo_resolvers.grant_cameo(info.context, grantee_id, expires_in_days)
        return CameoGrant.from_row(row)

    @strawberry.mutation(description="also revokes the grantee's unpublished uses")
    async def revoke_cameo_grant(self, info: Info, grant_id: strawberry.ID) -> CameoGrant:
        return CameoGrant.from_row(await cameo_resolvers.revoke_grant(info.context, grant_id))

    @strawberry.mutation(description="owner only; reference media erased, all uses revoked")
    async def delete_cameo(self, info: Info) -> Cameo:
        return Cameo.from_row(await cameo_resolvers.delete_cameo(info.context))

    @strawberry.mutation(
        description="ADMIN only: approve (ACTIVE) or reject (REJECTED, its likeness erased) a"
        " cameo held for review (PENDING_REVIEW)"
    )
    async def review_cameo(self, info: Info, cameo_id: strawberry.ID, approve: bool) -> Cameo:
        return Cameo.from_row(await cameo_resolvers.review_cameo(info.context, cameo_id, approve))


@strawberry.type
class UserCameoFields:
    """Mixed into User: cameo."""

    if TYPE_CHECKING:  # User's own field; declared here only for the type checker
        raw_id: str

    @strawberry.field(description="the user's own cameo, if any, as far as the viewer may see it")
    async def cameo(self, info: Info) -> Cameo | None:
        row = await cameo_resolvers.user_cameo(info.context, self.raw_id)
        return Cameo.from_row(row) if row else None
