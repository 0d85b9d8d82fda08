"""Query limits and the error policy: every error has a contract code; surprises are masked."""

from __future__ import annotations

import strawberry
from conftest import GraphQLClient
from strawberry.types import Info

from schema.extensions import error_extension


async def test_query_depth_is_bounded(gql: GraphQLClient, settings) -> None:
    inner = "handle"
    for _ in range(settings.max_query_depth):
        inner = f"followers {{ edges {{ node {{ {inner} }} }} }}"
    code, message = await gql.error(f'{{ user(handle: "someone") {{ {inner} }} }}')
    assert code == "BAD_USER_INPUT" and "depth" in message


async def test_aliases_are_counted_through_fragments(gql: GraphQLClient, settings) -> None:
    aliases = " ".join(f"a{i}: handle" for i in range(settings.max_aliases // 2 + 1))
    query = f"""{{ viewer {{ ...F }} user(handle: "x") {{ ...F }} }}
               fragment F on User {{ {aliases} }}"""
    code, message = await gql.error(query)
    assert code == "BAD_USER_INPUT" and "aliases" in message
    # the same fragment used once stays within the limit
    ok = await gql.raw(f"{{ viewer {{ ...F }} }} fragment F on User {{ {aliases} }}")
    assert not ok.get("errors")


async def test_token_count_is_bounded(gql: GraphQLClient, settings) -> None:
    fields = " ".join("__typename" for _ in range(settings.max_tokens))
    code, _ = await gql.error(f"{{ {fields} }}")
    assert code == "BAD_USER_INPUT"


async def test_syntax_and_validation_errors_have_a_code(gql: GraphQLClient) -> None:
    for query in ("{ viewer { ", "{ noSuchField }", "{ user { id } }"):
        code, _ = await gql.error(query)
        assert code == "BAD_USER_INPUT", query


def _boom_schema(mask: bool) -> strawberry.Schema:
    @strawberry.type
    class Query:
        @strawberry.field
        def boom(self, info: Info) -> str:
            raise RuntimeError("secret connection string leaked here")

    return strawberry.Schema(query=Query, extensions=[error_extension(mask)])


async def test_unexpected_errors_are_masked_in_production() -> None:
    result = await _boom_schema(mask=True).execute("{ boom }")
    error = result.errors[0]
    assert error.message == "Internal error"
    assert error.extensions == {"code": "INTERNAL"}
    unmasked = (await _boom_schema(mask=False).execute("{ boom }")).errors[0]
    assert "secret" in unmasked.message and unmasked.extensions["code"] == "INTERNAL"


async def test_nested_pages_are_bounded_by_the_nodes_they_could_fetch(gql: GraphQLClient) -> None:
    nested = """query($n: Int) { user(handle: "x") { followers(first: $n) { edges { node {
      following(first: $n) { edges { node { ...F } } } } } } } }
      fragment F on User { followers(first: $n) { edges { node { handle } } } }"""
    code, message = await gql.error(nested, {"n": 100})
    assert code == "BAD_USER_INPUT" and "could fetch 1010100 nodes" in message
    # the same shape with small pages is fine
    assert not (await gql.raw(nested, {"n": 5})).get("errors")
