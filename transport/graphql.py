"""The GraphQL controller: Strawberry's Litestar integration with our context and policies."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.types import Scope
from strawberry.litestar import make_graphql_controller
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from resolvers.context import Context
from settings import Settings
from transport.sockets import SocketPolicy

__all__ = ["graphql_controller"]


def _authorization(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return value.decode("latin-1")
    return None


async def graphql_context(state: State, scope: Scope) -> Context:
    return Context.build(state.services, _authorization(scope))


def graphql_controller(schema, settings: Settings) -> type:
    production = settings.environment == "production"
    base_controller = make_graphql_controller(
        schema,
        path="/graphql",
        graphql_ide=None if production else "graphiql",
        context_getter=graphql_context,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
    )

    class GraphQLController(SocketPolicy, base_controller):
        pass

    return GraphQLController
