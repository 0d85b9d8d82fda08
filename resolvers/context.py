"""The typed per-request context: services, the viewer, and the request's DataLoaders."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec
from redis.exceptions import RedisError
from strawberry.litestar import BaseContext

from auth.tokens import REVOKED
from errors import Forbidden, Unauthenticated
from graph.roles import holds
from resolvers.loaders import Loaders

if TYPE_CHECKING:
    from server import Services

__all__ = ["Context", "bearer_token"]

logger = logging.getLogger("reelgraph.auth")


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <accessToken>'")
    return token.strip()


class Context(BaseContext, kw_only=True):
    services: Any  # Services; typed loosely because msgspec structs resolve annotations eagerly
    viewer_id: str | None = None
    auth_error: Any = None  # an Unauthenticated raised only where a viewer is needed
    loaders: Any = None
    connection_params: Any = None  # graphql-transport-ws connection_init payload
    request_id: str | None = None  # names the request in logs and in INTERNAL errors
    token_expires_at: int | None = None  # a socket's access token: its exp (epoch seconds)
    # the access token's refresh family; None without a token or for one minted before
    # access tokens named it (those are valid until they expire)
    session_family: str | None = None
    # what one request works out once and answers the same wherever it is asked: a video's
    # link (signed with an expiry in seconds: two made a second apart would differ), the
    # FOR_YOU ranking and its snapshot (resolvers/feeds.py)
    memo: dict = msgspec.field(default_factory=dict)

    def authenticate_socket(self) -> None:
        """Subscriptions carry {"authorization": "Bearer <token>"} in connection_init; a bad
        or expired token raises Unauthenticated (the socket is then closed with 4403). The
        session's family is checked apart, by the async `check_session`."""
        params = self.connection_params if isinstance(self.connection_params, dict) else {}
        # the key as a header's name: any case (GraphiQL sends its Headers pane as the payload)
        keys = [key for key in params if isinstance(key, str) and key.lower() == "authorization"]
        if len(keys) > 1:
            raise Unauthenticated("connection_init names authorization more than once")
        authorization = params[keys[0]] if keys else None
        if authorization is not None and not isinstance(authorization, str):
            raise Unauthenticated("authorization must be 'Bearer <accessToken>'")
        token = bearer_token(authorization)
        claims = self.services.tokens.read_access(token) if token else None
        self.viewer_id = claims.user_id if claims else None
        self.token_expires_at = claims.expires_at if claims else None
        self.session_family = claims.family if claims else None
        self.auth_error = None
        self.loaders = Loaders(self.services.graph, self.viewer_id)

    async def check_session(self) -> None:
        """Unauthenticated when the token's refresh family was revoked or its account deleted
        (one Redis round trip).

        A Redis outage does not sign every client out: the check is skipped, logged, and
        applies again once Redis answers (the token's own expiry still holds meanwhile)."""
        if self.session_family is None:  # minted before tokens named one: valid until exp
            return
        try:
            live, gone = await self._session_state()
        except RedisError:
            logger.warning("could not check a session's refresh family", exc_info=True)
            return
        if gone:
            raise Unauthenticated("this account was deleted")
        if not live:
            raise Unauthenticated(REVOKED)

    async def _session_state(self) -> tuple[bool, bool]:
        """(the token's refresh family is live, its user's account was deleted), in one
        round trip."""
        from resolvers.account import gone_key

        family = self.session_family
        assert family is not None and self.viewer_id is not None
        async with self.services.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.services.tokens.family_key(family))
            pipe.exists(gone_key(self.viewer_id))
            live, gone = await pipe.execute()
        return bool(live), bool(gone)

    async def for_socket_operation(self) -> Context:
        """The context of one operation on an authenticated socket: the token checked again
        (expired, or its session revoked: Unauthenticated) and its own DataLoaders, so
        nothing one operation cached is served to the next."""
        operation = msgspec.structs.replace(self, loaders=None, memo={})
        operation.authenticate_socket()
        await operation.check_session()
        return operation

    @classmethod
    def build(cls, services: Services, authorization: str | None) -> Context:
        """A request's context from its Authorization header, without the session check:
        `for_request` adds it."""
        viewer_id, family, auth_error = None, None, None
        try:
            token = bearer_token(authorization)
            if token is not None:
                claims = services.tokens.read_access(token)
                viewer_id, family = claims.user_id, claims.family
        except Unauthenticated as exc:
            auth_error = exc
        return cls(
            services=services,
            viewer_id=viewer_id,
            session_family=family,
            auth_error=auth_error,
            loaders=Loaders(services.graph, viewer_id),
        )

    @classmethod
    async def for_request(cls, services: Services, authorization: str | None) -> Context:
        """`build` and, once per request, the session check: an unexpired access token of a
        revoked family fails the operation with UNAUTHENTICATED like any bad token (and, like
        one, is no error for the token-issuing mutations that run anonymous)."""
        context = cls.build(services, authorization)
        try:
            await context.check_session()
        except Unauthenticated as exc:
            context.viewer_id, context.auth_error = None, exc
            context.loaders = Loaders(services.graph, None)
        return context

    @classmethod
    def for_viewer(cls, services: Services, viewer_id: str | None) -> Context:
        """A context for code outside GraphQL that acts for a known viewer (media links)."""
        return cls(
            services=services, viewer_id=viewer_id, loaders=Loaders(services.graph, viewer_id)
        )

    @property
    def settings(self) -> Any:
        return self.services.settings

    def media_url(self, key: str) -> str:
        """A URL for a stored video that only this viewer can fetch, for a short while."""
        memo_key = ("media", key)
        url = self.memo.get(memo_key)
        if url is None:
            url = self.memo[memo_key] = self.services.media.url_for(key, self.viewer_id)
        connection = self.request or self.websocket
        if url.startswith("/") and connection is not None:
            return str(connection.base_url).rstrip("/") + url
        return url

    def require_viewer(self) -> str:
        """The signed-in user's id; UNAUTHENTICATED when there is none or the token is bad."""
        if self.auth_error is not None:
            raise self.auth_error
        if self.viewer_id is None:
            raise Unauthenticated("sign in to do this")
        return self.viewer_id

    def optional_viewer(self) -> str | None:
        """The viewer if any; a bad token is still an error, never silently anonymous."""
        if self.auth_error is not None:
            raise self.auth_error
        return self.viewer_id

    async def viewer_roles(self) -> frozenset[str]:
        """The signed-in viewer's staff roles, read once per request (a role taken back
        counts from the next request); none without a viewer."""
        viewer_id = self.optional_viewer()
        if viewer_id is None:
            return frozenset()
        return await self.loaders.roles_by_user.load(viewer_id)

    async def require_role(self, role: str) -> str:
        """The viewer's id when they hold `role` (ADMIN holds MODERATOR's powers too);
        UNAUTHENTICATED without a viewer, FORBIDDEN without the role."""
        viewer_id = self.require_viewer()
        if not holds(await self.viewer_roles(), role):
            raise Forbidden(f"only a {role.lower()} may do this")
        return viewer_id
