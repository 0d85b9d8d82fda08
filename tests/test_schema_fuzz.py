"""Property: no operation a client can send yields INTERNAL or an HTTP 500.

hypothesis-graphql generates queries and mutations over the whole schema, valid ones and
ones with one schema violation, with arbitrary strings (NUL and lone surrogates included);
each goes through the real app, anonymously and signed in. Bounded for CI: a fixed
number of examples, no deadline (the graph is a real engine), derandomized so a run is
repeatable.
"""

from __future__ import annotations

import json
from typing import Any

from conftest import Account, GraphQLClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema

from schema import build_schema

SCHEMA = build_schema()._schema
OPERATIONS = st.one_of(
    from_schema(SCHEMA, codec=None, mode=Mode.POSITIVE),
    from_schema(SCHEMA, codec=None, mode=Mode.NEGATIVE),
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_account: list[Account] = []


async def _send(app: Any, query: str, token: str | None) -> None:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    # json.dumps escapes what UTF-8 cannot carry (lone surrogates), as browsers do
    content = json.dumps({"query": query}).encode()
    response = await app.post("/graphql", content=content, headers=headers)
    assert response.status_code in (200, 400), (response.status_code, query, response.text)
    body = response.json()
    internal = [e for e in body.get("errors") or () if e["extensions"]["code"] == "INTERNAL"]
    assert not internal, (query, internal)


@FUZZ
@given(query=OPERATIONS, signed_in=st.booleans())
async def test_no_operation_yields_internal_or_500(
    app: Any, gql: GraphQLClient, query: str, signed_in: bool
) -> None:
    if signed_in and not _account:
        _account.append(await gql.sign_up("fuzz"))
    await _send(app, query, _account[0].token if signed_in else None)
