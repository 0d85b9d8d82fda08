"""The GraphQL-over-HTTP spec: graphql-http's own audit against a real server, content
negotiation, status codes and `data` absence, request ids, and the document caches.

The audit is the npm package `graphql-http` (its `serverAudits`), pinned in
`tests/graphql_http_audit/package.json` and installed on first use with `npm ci`, the way
the Cypher linter is (tests/cypher_lint.py); `tests/graphql_http_audit/audit.mjs` runs
every audit against a URL and prints the results as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import GraphQLClient, serving_on_a_port
from graphql import GraphQLError

from schema import build_schema
from schema.extensions import MAX_CACHED_TEXT, DocumentGate
from settings import Settings
from tests.npm_harness import ensure_installed
from transport.graphql import GRAPHQL_RESPONSE_JSON, JSON, negotiate

AUDIT_DIR = Path(__file__).resolve().parent / "graphql_http_audit"
NPM_TIMEOUT_S = 600


def ensure_audit_installed() -> str:
    """Install the pinned graphql-http (npm ci) if it is missing; the path of `node`."""
    return ensure_installed(AUDIT_DIR, "graphql-http", why="the GraphQL-over-HTTP audit")


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The app on a real uvicorn server in this event loop; yields its /graphql URL."""
    async with serving_on_a_port(settings) as port:
        yield f"http://127.0.0.1:{port}/graphql"


async def test_graphql_http_audit_passes_every_check(settings: Settings) -> None:
    node = ensure_audit_installed()
    async with serving(settings) as url:
        # asynchronously: the server answers from this very event loop
        proc = await asyncio.create_subprocess_exec(
            node,
            str(AUDIT_DIR / "audit.mjs"),
            url,
            cwd=AUDIT_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    results = json.loads(out)
    failed = [f"{r['id']} {r['name']}: {r['reason']}" for r in results if r["status"] != "ok"]
    # MUST, SHOULD and MAY alike (61 audits in graphql-http 1.23; vanilla Strawberry fails 8)
    assert len(results) >= 48 and not failed, "\n".join(failed)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        ("application/json", JSON),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, application/json", GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0.5, application/json", JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0, */*", JSON),
        ("text/html,application/xhtml+xml,*/*;q=0.8", JSON),
        ("text/plain", None),
        ("application/json;q=0", None),
    ],
)
def test_content_negotiation_follows_accept(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


async def _post(app: Any, body: Any, accept: str | None = None, **headers: str) -> Any:
    if accept is not None:
        headers["accept"] = accept
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers.setdefault("content-type", "application/json")
    return await app.post("/graphql", content=content, headers=headers)


DRAFTS = "query($n: Int!) { drafts(first: $n) { edges { cursor } } }"
REQUEST_ERRORS = [
    {"query": "{ viewer { "},  # parse
    {"query": "{ noSuchField }"},  # validation
    {"query": DRAFTS, "variables": {}},  # variables
    {"query": DRAFTS, "variables": {"n": "x"}},
    {"query": DRAFTS, "variables": {"n": 1, "s": "\ud800"}},  # refused before validation
]


@pytest.mark.parametrize("body", REQUEST_ERRORS)
async def test_request_errors_are_400_without_data_for_graphql_response_json(
    app: Any, body: dict
) -> None:
    response = await _post(app, body, GRAPHQL_RESPONSE_JSON)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE_JSON)
    answer = response.json()
    assert "data" not in answer and answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # the same with application/json: 200, as clients from before the spec expect
    legacy = await _post(app, body, "application/json")
    assert legacy.status_code == 200 and legacy.headers["content-type"].startswith(JSON)
    assert legacy.json()["data"] is None and legacy.json()["errors"]


async def test_field_errors_keep_200_and_data(app: Any) -> None:
    response = await _post(app, {"query": '{ node(id: "nope") { id } }'}, GRAPHQL_RESPONSE_JSON)
    assert response.status_code == 200
    answer = response.json()
    assert answer["data"] == {"node": None}
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_what_the_transport_refuses(app: Any) -> None:
    query = {"query": "{ __typename }"}
    unacceptable = await _post(app, query, "text/plain")
    assert unacceptable.status_code == 406
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        refused = await _post(app, query, **{"content-type": content_type})
        assert refused.status_code == 415, content_type
    latin1 = await _post(app, query, **{"content-type": "application/json; charset=latin-1"})
    assert latin1.status_code == 415
    utf8 = await _post(app, query, **{"content-type": "application/json; charset=UTF-8"})
    assert utf8.status_code == 200
    # GET carries queries, never mutations
    got = await app.get("/graphql", params={"query": "{ __typename }"})
    assert got.status_code == 200 and got.json() == {"data": {"__typename": "Query"}}
    mutation = await app.get("/graphql", params={"query": "mutation { __typename }"})
    assert mutation.status_code == 405 and mutation.headers["allow"] == "POST"
    bad_variables = await app.get("/graphql", params={"query": "{ __typename }", "variables": "{"})
    assert bad_variables.status_code == 400
    for answer in (unacceptable, refused, latin1, mutation, bad_variables):
        assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_every_answer_names_its_request(app: Any) -> None:
    mine = await _post(app, {"query": "{ __typename }"}, **{"x-request-id": "trace-42.a:b"})
    assert mine.headers["x-request-id"] == "trace-42.a:b"
    insane = await _post(app, {"query": "{ __typename }"}, **{"x-request-id": "a b\tc" * 50})
    generated = insane.headers["x-request-id"]
    assert generated != "a b\tc" * 50 and len(generated) == 32
    refused = await _post(app, b"null")
    assert refused.status_code == 400 and len(refused.headers["x-request-id"]) == 32


def _gate(schema: Any) -> type[DocumentGate]:
    return next(e for e in schema.extensions if isinstance(e, type) and issubclass(e, DocumentGate))


NESTED = """query($n: Int) { user(handle: "x") { followers(first: $n) { edges { node {
  following(first: $n) { edges { node { followers(first: $n) { edges { cursor } } } } } } } } } }"""


async def test_documents_are_parsed_and_validated_once_and_limits_still_hold() -> None:
    schema = build_schema(document_cache_size=2)
    gate = _gate(schema)
    small = await schema.execute(NESTED, variable_values={"n": 2})
    assert small.errors is None
    (document,) = gate.parsed.items.values()
    (errors,) = gate.validated.items.values()
    assert errors == []
    # the cached document: the budget that depends on variables is still counted per request
    large = await schema.execute(NESTED, variable_values={"n": 100})
    assert "could fetch" in large.errors[0].message
    assert list(gate.parsed.items.values()) == [document]  # parsed once
    assert len(gate.validated.items) == 1  # validated once
    # a refused document stays refused once it is cached
    wide = "{" + " ".join(f"a{i}: __typename" for i in range(600)) + "}"
    for _ in range(2):
        result = await schema.execute(wide)
        assert "more than 500 fields" in result.errors[0].message
    # bounded: the oldest documents are forgotten
    await schema.execute("{ __typename }")
    assert len(gate.parsed.items) == len(gate.validated.items) == 2
    assert NESTED not in {key[0] for key in gate.parsed.items}
    # and long texts (a comment is no token) are answered but never kept
    padded = "# " + "x" * (MAX_CACHED_TEXT + 1) + "\n{ __typename }"
    assert (await schema.execute(padded)).data == {"__typename": "Query"}
    assert padded not in {key[0] for key in gate.parsed.items}
    assert padded not in {key[0] for key in gate.validated.items}


async def test_validation_results_are_not_shared_between_policies() -> None:
    schema = build_schema(introspection="signed-in")
    query = "{ __schema { queryType { name } } }"
    anonymous = await schema.execute(query)
    assert isinstance(anonymous.errors[0], GraphQLError)
    assert "introspection" in anonymous.errors[0].message.lower()

    class SignedIn:
        viewer_id, auth_error, request_id = "01SIGNEDIN", None, "r"

    signed_in = await schema.execute(query, context_value=SignedIn())
    assert signed_in.errors is None and signed_in.data["__schema"]["queryType"]["name"] == "Query"


async def test_graphql_client_in_suite_still_speaks_plain_json(gql: GraphQLClient) -> None:
    assert await gql.ok("{ __typename }") == {"__typename": "Query"}


@pytest.mark.parametrize(
    ("operation_name", "message"),
    [
        (None, "the document holds several operations: name the one to run in operationName"),
        ("C", 'Unknown operation named "C".'),
    ],
)
async def test_an_operation_the_document_cannot_pick_is_a_request_error(
    gql: GraphQLClient, operation_name: str | None, message: str
) -> None:
    body = {"query": "query A { viewer { id } } query B { __typename }"}
    if operation_name is not None:
        body["operationName"] = operation_name
    response = await gql.client.post("/graphql", json=body)
    errors = response.json()["errors"]
    assert [(e["message"], e["extensions"]["code"]) for e in errors] == [
        (message, "BAD_USER_INPUT")
    ]
    named = await gql.client.post("/graphql", json={**body, "operationName": "B"})
    assert named.json() == {"data": {"__typename": "Query"}}
