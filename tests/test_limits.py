"""Query limits and the error policy: every error has a contract code; surprises are masked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import strawberry
from conftest import GraphQLClient
from litestar.testing import AsyncTestClient
from strawberry.types import Info

from schema.extensions import error_extension
from server import build_app
from settings import Settings


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
    assert error.extensions["code"] == "INTERNAL" and set(error.extensions) == {
        "code",
        "requestId",
    }
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


async def test_variable_defaults_count_toward_the_node_budget(gql: GraphQLClient) -> None:
    nested = """query($n: Int = 100) { user(handle: "x") { followers(first: $n) { edges { node {
      following(first: $n) { edges { node { followers(first: $n) { edges { cursor } } } } }
    } } } } }"""
    for variables in ({}, {"n": 100}):  # the default counts like the value sent
        code, message = await gql.error(nested, variables)
        assert code == "BAD_USER_INPUT" and "could fetch 1010100 nodes" in message, variables
    assert not (await gql.raw(nested, {"n": 5})).get("errors")
    assert not (await gql.raw(nested.replace("= 100", "= 5"))).get("errors")


async def test_repeated_fields_are_refused_before_validation(gql: GraphQLClient) -> None:
    # 5 KB that cost a second of event-loop CPU in the overlapping-fields check
    code, message = await gql.error("{" + " viewer { id }" * 490 + " }")
    assert code == "BAD_USER_INPUT"
    assert (
        message == "this document selects `viewer` 490 times in one selection set; the limit is 20"
    )
    # counted through fragments and inline fragments, and in merged selection sets
    spread = "{ viewer { ...A ...A } } fragment A on User { ...B ...B ...B ...B } "
    spread += "fragment B on User { handle ... on User { handle handle } }"
    code, message = await gql.error(spread)
    assert code == "BAD_USER_INPUT" and "`handle` 24 times" in message
    merged = "{" + " viewer { handle }" * 11 + " viewer { ... on User { handle } }" * 10 + " }"
    code, message = await gql.error(merged)
    assert "`viewer` 21 times" in message
    # within the limit: answered (and the overlap rules still apply)
    assert not (await gql.raw("{" + " viewer { id }" * 20 + " }")).get("errors")
    # validation compares the fields of every fragment definition, used or not
    unused = "{ __typename } fragment F on Query {" + " viewer { id }" * 480 + " }"
    code, message = await gql.error(unused)
    assert code == "BAD_USER_INPUT" and "`viewer` 480 times" in message


async def test_field_selections_are_bounded_with_fragments_expanded(
    gql: GraphQLClient, settings: Settings
) -> None:
    fields = " ".join(f"f{i}: handle" for i in range(25))
    uses = " ".join(f"u{i}: viewer {{ ...F }}" for i in range(25))  # 25 x 26 > 500
    code, message = await gql.error(f"{{ {uses} }} fragment F on User {{ {fields} }}")
    assert code == "BAD_USER_INPUT"
    assert f"more than {settings.max_fields} fields (fragments expanded)" in message


@pytest.fixture(scope="module")
async def production(settings: Settings) -> AsyncIterator[Any]:
    app = build_app(settings.model_copy(update={"environment": "production"}))
    async with AsyncTestClient(app=app) as client:
        yield client


INTROSPECTION = "{ __schema { queryType { name } } }"
TYPE_QUERY = '{ __type(name: "User") { name } }'
TYPO = "{ viewr { id } }"


async def _post(client: Any, query: str, token: str | None = None) -> dict:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    return response.json()


async def test_production_hides_the_schema_from_anonymous_clients(production: Any) -> None:
    for query in (INTROSPECTION, TYPE_QUERY):
        body = await _post(production, query)
        assert "data" in body and body["data"] is None
        for error in body["errors"]:
            assert error["extensions"]["code"] == "BAD_USER_INPUT"
            assert "introspection has been disabled" in error["message"]
    (error,) = (await _post(production, TYPO))["errors"]
    assert error["message"] == "Cannot query field 'viewr' on type 'Query'."
    # nor in the variables' coercion, which runs after validation
    response = await production.post(
        "/graphql",
        json={
            "query": "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken } }",
            "variables": {"i": {"handel": "h", "displayName": "d", "password": "p" * 12}},
        },
    )
    messages = [e["message"] for e in response.json()["errors"]]
    assert messages and not [m for m in messages if "Did you mean" in m], messages
    assert any("'handel'" in m for m in messages)
    # __typename is not introspection of the schema
    assert (await _post(production, "{ __typename }")) == {"data": {"__typename": "Query"}}
    # a signed-in client sees both
    gql = GraphQLClient(production)
    account = await gql.sign_up("insider")
    body = await _post(production, INTROSPECTION, account.token)
    assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
    (error,) = (await _post(production, TYPO, account.token))["errors"]
    assert "Did you mean 'viewer'" in error["message"]
    # a bad token is not signed in
    error = (await _post(production, INTROSPECTION, "stale"))["errors"][0]
    assert error["extensions"]["code"] in ("BAD_USER_INPUT", "UNAUTHENTICATED")


async def test_development_shows_the_schema_to_everyone(gql: GraphQLClient) -> None:
    assert await gql.ok(INTROSPECTION) == {"__schema": {"queryType": {"name": "Query"}}}
    code, message = await gql.error(TYPO)
    assert code == "BAD_USER_INPUT" and "Did you mean 'viewer'" in message


@pytest.mark.parametrize(
    ("policy", "anonymous", "signed_in"),
    [("on", True, True), ("signed-in", False, True), ("off", False, False)],
)
async def test_introspection_setting(
    settings: Settings, policy: str, anonymous: bool, signed_in: bool
) -> None:
    app = build_app(settings.model_copy(update={"introspection": policy}))
    async with AsyncTestClient(app=app) as client:
        account = await GraphQLClient(client).sign_up("policy")
        for token, allowed in ((None, anonymous), (account.token, signed_in)):
            body = await _post(client, INTROSPECTION, token)
            assert ("errors" not in body) is allowed, (policy, token, json.dumps(body))
