"""The typed per-request context: services, the viewer, and the request's DataLoaders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jwt
import msgspec
from strawberry.litestar import BaseContext

from errors import Unauthenticated
from resolvers.loaders import Loaders

if TYPE_CHECKING:
    from server import Services

__all__ = ["Context", "bearer_token"]


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

    def authenticate_socket(self) -> None:
        """Subscriptions carry {"authorization": "Bearer <token>"} in connection_init; a bad
        or expired token raises Unauthenticated (the socket is then closed with 4403)."""
        params = self.connection_params if isinstance(self.connection_params, dict) else {}
        authorization = params.get("authorization")
        if authorization is not None and not isinstance(authorization, str):
            raise Unauthenticated("authorization must be 'Bearer <accessToken>'")
        token = bearer_token(authorization)
        self.viewer_id = self.services.tokens.verify_access(token) if token else None
        # verify_access has just checked the signature; only the expiry is read here
        self.token_expires_at = (
            jwt.decode(token, options={"verify_signature": False})["exp"] if token else None
        )
        self.auth_error = None
        self.loaders = Loaders(self.services.graph, self.viewer_id)

    def for_socket_operation(self) -> Context:
        """The context of one operation on an authenticated socket: the token checked again
        (an expired one raises Unauthenticated) and its own DataLoaders, so nothing one
        operation cached is served to the next."""
        operation = msgspec.structs.replace(self, loaders=None)
        operation.authenticate_socket()
        return operation

    @classmethod
    def build(cls, services: Services, authorization: str | None) -> Context:
        viewer_id, auth_error = None, None
        try:
            token = bearer_token(authorization)
            if token is not None:
                viewer_id = services.tokens.verify_access(token)
        except Unauthenticated as exc:
            auth_error = exc
        return cls(
            services=services,
            viewer_id=viewer_id,
            auth_error=auth_error,
            loaders=Loaders(services.graph, viewer_id),
        )

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
        url = self.services.media.url_for(key, self.viewer_id)
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
