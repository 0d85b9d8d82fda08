"""graphql-transport-ws policy: authentication from connection_init, expiry, caps."""

from __future__ import annotations

from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UNSET, UnsetType

from errors import Unauthenticated
from resolvers.context import Context

__all__ = ["SocketPolicy"]


class SocketPolicy:
    """Mixed into the GraphQL controller: what a websocket may do, and for how long."""

    async def on_ws_connect(self, context: Context) -> UnsetType:
        try:
            context.authenticate_socket()
        except Unauthenticated:
            raise ConnectionRejectionError() from None  # closes with 4403
        return UNSET
