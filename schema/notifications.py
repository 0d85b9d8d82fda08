"""Notifications, render progress and the Subscription type (issue 9).

Also the shared fan-out of `feedUpdates` (SharedFeed): a subscription whose selection
reads only fields of the clip row that are the same for every viewer is executed once per
published clip and document in each API process, and its encoded `next` payload is handed
to every socket allowed to see the clip (transport/sockets.py sends it as it is).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values, get_variable_values
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
    "SharedFeed",
    "Subscription",
    "shared_feed",
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
    CAMEO_FACE_CLAIMED = strawberry.enum_value(
        "CAMEO_FACE_CLAIMED",
        description="someone tried to make a cameo with my cameo's face and was refused (who"
        " is not said)",
    )


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


# Clip fields whose value is read from the published clip's row alone: the same for every
# viewer and needing no loader. Anything else (author, viewerHasLiked, counts, video...)
# may depend on the viewer or on a read, so such a selection is executed per socket.
SHARED_CLIP_FIELDS = frozenset(
    {
        "__typename",
        "id",
        "prompt",
        "state",
        "failureReason",
        "moods",
        "createdAt",
        "publishedAt",
        "renderProgress",
    }
)


@dataclass(frozen=True, slots=True)
class SharedFeed:
    """A feedUpdates subscription executed once per event for every socket that sent it."""

    key: tuple[str, str | None, str]  # document, operationName, variables: one group
    following_only: bool
    schema: GraphQLSchema
    document: DocumentNode
    variables: dict[str, Any]
    context: Any  # the first subscriber's; the fields shared read none of it
    code_errors: Callable[[list[GraphQLError], Any], list[GraphQLError]]

    async def render(self, row: dict) -> str:
        """The `next` message's payload for clip row, encoded once."""
        result = execute(
            self.schema,
            self.document,
            root_value=Clip.from_row(row),
            context_value=self.context,
            variable_values=self.variables,
            operation_name=self.key[1],
        )
        if inspect.isawaitable(result):
            result = await result
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            coded = self.code_errors(list(result.errors), self.context)
            payload["errors"] = [error.formatted for error in coded]
        return json.dumps(payload, separators=(",", ":"))


def _small_enough(query: str, max_tokens: int, max_depth: int) -> bool:
    # the schema's limit extensions and document gate are not run on this path: a selection
    # of at most two levels, each field once, without aliases, written in fewer characters
    # than the token limit is within every one of them (a token is at least one character)
    return len(query) < max_tokens - 2 and max_depth >= 2


@functools.lru_cache(maxsize=256)
def _shape(
    schema: GraphQLSchema, query: str, operation_name: str | None
) -> tuple[DocumentNode, OperationDefinitionNode, FieldNode] | None:
    """The parsed document when it is one feedUpdates subscription of shared fields only."""
    try:
        document = parse(query)
    except GraphQLError:
        return None
    if len(document.definitions) != 1:  # no fragments, no second operation
        return None
    operation = document.definitions[0]
    if not isinstance(operation, OperationDefinitionNode):
        return None
    if operation.operation is not OperationType.SUBSCRIPTION or operation.directives:
        return None
    named = operation.name.value if operation.name else None
    if operation_name is not None and named != operation_name:
        return None
    roots = operation.selection_set.selections
    if len(roots) != 1 or not isinstance(roots[0], FieldNode):
        return None
    root = roots[0]
    if root.name.value != "feedUpdates" or root.alias or root.directives or not root.selection_set:
        return None
    names = set()
    for node in root.selection_set.selections:
        if not isinstance(node, FieldNode) or node.name.value not in SHARED_CLIP_FIELDS:
            return None
        if node.alias or node.directives or node.arguments or node.selection_set:
            return None
        names.add(node.name.value)
    if len(names) != len(root.selection_set.selections):
        return None  # a field twice: the schema's document gate counts those, so it decides
    if validate(schema, document):
        return None
    return document, operation, root


def shared_feed(
    schema: GraphQLSchema,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    context: Any,
    code_errors: Callable[[list[GraphQLError], Any], list[GraphQLError]],
) -> SharedFeed | None:
    """The shared plan for this subscribe message; None when it must run on its own (any
    other selection, invalid variables, no viewer: the ordinary path answers those)."""
    settings = context.services.settings
    if context.viewer_id is None:
        return None
    if not _small_enough(query, settings.max_tokens, settings.max_query_depth):
        return None
    shape = _shape(schema, query, operation_name)
    if shape is None:
        return None
    document, operation, root = shape
    inputs = variables or {}
    coerced = get_variable_values(schema, operation.variable_definitions or (), inputs)
    if isinstance(coerced, list):
        return None
    field = schema.subscription_type.fields["feedUpdates"] if schema.subscription_type else None
    if field is None:
        return None
    try:
        kind = get_argument_values(field, root, coerced).get("kind", FeedKind.FOLLOWING)
    except GraphQLError:
        return None
    following_only = getattr(kind, "name", kind) == FeedKind.FOLLOWING.name
    key = (query, operation_name, json.dumps(inputs, sort_keys=True, default=str))
    return SharedFeed(key, following_only, schema, document, inputs, context, code_errors)
