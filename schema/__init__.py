"""The GraphQL schema: Query, Mutation, and the Schema object with its extensions."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from errors import NotFound
from resolvers import account as account_resolvers
from resolvers import cameos as cameo_resolvers
from resolvers import clips as clip_resolvers
from resolvers import users as user_resolvers
from resolvers.ids import decode_any, decode_id
from schema.account import AccountMutations
from schema.appearances import AppearanceMutations, AppearanceQueries
from schema.audit import AuditQueries
from schema.base import Node
from schema.cameos import Cameo, CameoGrant, CameoMutations, CameoQueries
from schema.clips import Clip, ClipConnection, ClipState, CreateClipInput, clip_connection
from schema.engagement import EngagementMutations
from schema.extensions import (
    CheckNestedArguments,
    MaxNodes,
    RejectBadTokens,
    document_gate,
    error_extension,
    limit_extensions,
)
from schema.fast_path import compiled_execution_context
from schema.feeds import FeedQueries
from schema.lineage import LineageQueries
from schema.moderation import ModerationMutations, ModerationQueries
from schema.notifications import NotificationQueries, Subscription
from schema.policy import PolicyMutations, PolicyQueries
from schema.rate_limits import MutationRateLimit
from schema.users import AuthPayload, SignUpInput, User

__all__ = ["Mutation", "Query", "build_schema"]


def _auth_payload(pair, user_row: dict) -> AuthPayload:
    return AuthPayload(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        user=User.from_row(user_row),
    )


async def _user(info: Info, user_id: str) -> dict:
    row = await info.context.loaders.user_by_id.load(user_id)
    if row is None:
        raise NotFound("no such user")
    return row


@strawberry.type
class Query(
    AppearanceQueries,
    CameoQueries,
    FeedQueries,
    LineageQueries,
    NotificationQueries,
    ModerationQueries,
    AuditQueries,
    PolicyQueries,
):
    @strawberry.field
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        type_name, raw_id = decode_any(id)
        if type_name == "User":
            row = await info.context.loaders.user_by_id.load(raw_id)
            return User.from_row(row) if row else None
        if type_name == "Cameo":
            cameo = await cameo_resolvers.visible_cameo(info.context, raw_id)
            return Cameo.from_row(cameo) if cameo else None
        if type_name == "CameoGrant":
            grant = await cameo_resolvers.visible_grant(info.context, raw_id)
            return CameoGrant.from_row(grant) if grant else None
        if type_name == "Clip":
            clip = await clip_resolvers.visible_clip(info.context, raw_id)
            return Clip.from_row(clip) if clip else None
        return None

    @strawberry.field
    async def viewer(self, info: Info) -> User | None:
        viewer_id = info.context.optional_viewer()
        if viewer_id is None:
            return None
        row = await info.context.loaders.user_by_id.load(viewer_id)
        return User.from_row(row) if row else None

    @strawberry.field
    async def user(self, info: Info, handle: str) -> User | None:
        row = await user_resolvers.user_by_handle(info.context, handle)
        return User.from_row(row) if row else None

    @strawberry.field
    async def clip(self, info: Info, id: strawberry.ID) -> Clip | None:
        row = await clip_resolvers.visible_clip(info.context, decode_id(id, "Clip"))
        return Clip.from_row(row) if row else None

    @strawberry.field(description="the viewer's own unpublished clips")
    async def drafts(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> ClipConnection:
        return clip_connection(await clip_resolvers.drafts(info.context, first, after))


@strawberry.type
class Mutation(
    EngagementMutations,
    CameoMutations,
    AppearanceMutations,
    ModerationMutations,
    PolicyMutations,
    AccountMutations,
):
    @strawberry.mutation
    async def sign_up(self, info: Info, input: SignUpInput) -> AuthPayload:
        pair = await user_resolvers.sign_up(
            info.context, input.handle, input.display_name, input.password
        )
        return _auth_payload(pair, await _user(info, pair.user_id))

    @strawberry.mutation
    async def log_in(self, info: Info, handle: str, password: str) -> AuthPayload:
        pair = await user_resolvers.log_in(info.context, handle, password)
        return _auth_payload(pair, await _user(info, pair.user_id))

    @strawberry.mutation
    async def refresh_token(self, info: Info, refresh_token: str) -> AuthPayload:
        pair = await user_resolvers.refresh(info.context, refresh_token)
        await account_resolvers.refuse_if_deleted(info.context, pair.user_id)
        return _auth_payload(pair, await _user(info, pair.user_id))

    @strawberry.mutation
    async def follow(self, info: Info, user_id: strawberry.ID) -> User:
        return User.from_row(await user_resolvers.follow(info.context, user_id))

    @strawberry.mutation
    async def unfollow(self, info: Info, user_id: strawberry.ID) -> User:
        return User.from_row(await user_resolvers.unfollow(info.context, user_id))

    @strawberry.mutation(
        description="blocked users cannot see the blocker's clips or use their cameo"
    )
    async def block_user(self, info: Info, user_id: strawberry.ID) -> User:
        return User.from_row(await user_resolvers.block_user(info.context, user_id))

    @strawberry.mutation(description="checks policy and consent, then queues a render")
    async def create_clip(self, info: Info, input: CreateClipInput) -> Clip:
        row = await clip_resolvers.create_clip(
            info.context,
            prompt=input.prompt,
            moods=input.moods,
            remix_of=input.remix_of,
            cameo_ids=input.cameo_ids,
            duration_seconds=input.duration_seconds,
        )
        return Clip.from_row(row)

    @strawberry.mutation(
        description="DRAFT -> PUBLISHED, or AWAITING_APPROVAL while cameo approvals are pending"
    )
    async def publish_clip(self, info: Info, clip_id: strawberry.ID) -> Clip:
        return Clip.from_row(await clip_resolvers.publish_clip(info.context, clip_id))

    @strawberry.mutation(description="author only -> REMOVED")
    async def delete_clip(self, info: Info, clip_id: strawberry.ID) -> Clip:
        return Clip.from_row(await clip_resolvers.delete_clip(info.context, clip_id))


class Schema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        # client errors are answers, not incidents; ErrorCodes logs the unexpected ones
        return None


def build_schema(
    *,
    mask_errors: bool = True,
    max_depth: int = 12,
    max_aliases: int = 30,
    max_tokens: int = 2000,
    max_fields: int = 500,
    max_same_name_fields: int = 20,
    document_cache_size: int = 512,
    introspection: str = "on",
    fast_path: str = "on",
) -> strawberry.Schema:
    """The Schema; `introspection` ("on", "signed-in", "off") also governs suggestions;
    `fast_path` ("on", "off", "verify") runs queries through compiled plans
    (schema/fast_path.py)."""
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[User, Clip, ClipState],
        # compiled plans for queries; lists of leaves whole
        execution_context_class=compiled_execution_context(fast_path),
        extensions=[
            *limit_extensions(max_depth, max_aliases, max_tokens),
            document_gate(max_fields, max_same_name_fields, document_cache_size, introspection),
            RejectBadTokens,
            CheckNestedArguments,
            MaxNodes,
            MutationRateLimit,  # after the checks that refuse a document, before it runs
            error_extension(mask_errors, introspection),
        ],
    )
