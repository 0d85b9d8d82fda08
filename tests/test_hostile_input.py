"""Client input never becomes INTERNAL or a 500, and no mutation is left half done.

Each case here was seen on the landed main: an ID that decodes to `Clip:\\0` (INTERNAL from
the graph engine's parameter parser), a lone surrogate in a prompt or password (INTERNAL
from the UTF-8 codec), a cursor of nested brackets (RecursionError), bodies that are not a
JSON object or not UTF-8 (HTTP 500, nothing logged), and a signUp under a stale bearer
header that wrote the account, then answered `data: null`.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from typing import Any

import pytest
import strawberry
from conftest import Account, GraphQLClient
from strawberry.types import Info

from resolvers.ids import encode_id
from schema.extensions import error_extension

NUL_CLIP = base64.urlsafe_b64encode(b"Clip:\0").decode().rstrip("=")
NUL_USER = base64.urlsafe_b64encode(b"User:\0").decode().rstrip("=")
LONE = "\ud800"  # half of a UTF-16 pair: no UTF-8 encoding exists


def _no_internal(body: dict) -> None:
    for error in body.get("errors") or ():
        assert error["extensions"]["code"] != "INTERNAL", error


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query($id: ID!) { node(id: $id) { id } }", {"id": NUL_CLIP}),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": NUL_USER}),
        ("query($id: ID!) { clip(id: $id) { id } }", {"id": NUL_CLIP}),
        ("mutation($id: ID!) { follow(userId: $id) { id } }", {"id": NUL_USER}),
        ("mutation($id: ID!) { unfollow(userId: $id) { id } }", {"id": NUL_USER}),
        ("mutation($id: ID!) { blockUser(userId: $id) { id } }", {"id": NUL_USER}),
        ("mutation($id: ID!) { publishClip(clipId: $id) { id } }", {"id": NUL_CLIP}),
        ("mutation($id: ID!) { deleteClip(clipId: $id) { id } }", {"id": NUL_CLIP}),
        (
            'mutation($id: ID!) { createClip(input: {prompt: "a cat", remixOf: $id}) { id } }',
            {"id": NUL_CLIP},
        ),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": encode_id("Clip", "é")}),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": encode_id("Clip", "a b")}),
    ],
)
async def test_ids_that_are_not_ours_are_bad_input(
    gql: GraphQLClient, query: str, variables: dict
) -> None:
    ann = await gql.sign_up("ids")
    code, message = await gql.error(query, variables, ann.token)
    assert (code, message) == ("BAD_USER_INPUT", "malformed ID")


async def _escaped(app: Any, query: str, variables: dict, token: str | None = None) -> dict:
    """Sent as a browser's JSON.stringify does: lone surrogates as \\u escapes (httpx's
    own JSON encoder cannot send them at all)."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    content = json.dumps({"query": query, "variables": variables}).encode()
    response = await app.post("/graphql", content=content, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _lone_surrogate_refused(
    app: Any, query: str, variables: dict, token: str | None = None
) -> None:
    body = await _escaped(app, query, variables, token)
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "surrogate" in error["message"]


SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) { accessToken refreshToken
  user { id handle viewerFollows } } }"""


async def test_lone_surrogates_are_refused_before_anything_runs(
    app: Any, gql: GraphQLClient
) -> None:
    handle = f"lone_{secrets.token_hex(3)}"
    sign_up = {"handle": handle, "displayName": "Lone", "password": f"pass{LONE}word-long"}
    await _lone_surrogate_refused(app, SIGN_UP, {"input": sign_up})
    # nothing was written: the handle is still free
    data = await gql.ok(SIGN_UP, {"input": {**sign_up, "password": "a fine password"}})
    assert data["signUp"]["user"]["handle"] == handle
    log_in = (
        "mutation($h: String!, $p: String!) { logIn(handle: $h, password: $p) { accessToken } }"
    )
    await _lone_surrogate_refused(app, log_in, {"h": handle, "p": LONE})
    await _lone_surrogate_refused(app, log_in, {"h": f"x{LONE}", "p": "whatever"})

    ann = await gql.sign_up("prompts")
    create = "mutation($input: CreateClipInput!) { createClip(input: $input) { id } }"
    for value in (f"a cat {LONE}", "\udfff"):
        await _lone_surrogate_refused(app, create, {"input": {"prompt": value}}, token=ann.token)
        await _lone_surrogate_refused(
            app, create, {"input": {"prompt": "a cat", "moods": [value]}}, token=ann.token
        )
    drafts = await gql.ok("{ drafts { edges { cursor } } }", token=ann.token)
    assert drafts["drafts"]["edges"] == []
    # a proper pair (an emoji) is one character and welcome
    handle_query = "query($h: String!) { user(handle: $h) { id } }"
    assert (await _escaped(app, handle_query, {"h": "\ud83d\ude00"})) == {"data": {"user": None}}
    # in the document itself the lexer already refuses it
    body = await gql.raw('{ user(handle: "\\ud800") { id } }')
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "cursor",
    [
        base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode(),
        base64.urlsafe_b64encode(b"[" * 90 + b"]" * 90).decode(),
        "x" * 10_000,
        base64.urlsafe_b64encode(b'[1, "\\u0000"]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
async def test_hostile_cursors_are_bad_input(gql: GraphQLClient, cursor: str) -> None:
    ann = await gql.sign_up("cursors")
    lists = [
        f"user(handle: $h) {{ {name}(after: $c) {{ edges {{ cursor }} }} }}"
        for name in ("followers", "following", "clips")
    ]
    for selection in [*lists, "drafts(after: $c) { edges { cursor } }"]:
        query = f"query($c: String, $h: String!) {{ {selection} _: user(handle: $h) {{ id }} }}"
        body = await gql.raw(query, {"c": cursor, "h": ann.handle}, ann.token)
        _no_internal(body)
        assert body["errors"][0]["message"] == "invalid cursor", body


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'"hello"', "JSON object"),
        (b"null", "JSON object"),
        (b"42", "JSON object"),
        (b"[1, 2]", "batched"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"query": "\xed\xa0\x80"}', "UTF-8"),  # a surrogate encoded as if it were UTF-8
        (b"{", "JSON"),
        (b"[" * 100_000, "JSON"),
        (b'{"query": 5}', "`query`"),
        (b'{"query": "{ __typename }", "variables": "x"}', "`variables`"),
        (b'{"query": "{ __typename }", "operationName": 5}', "`operationName`"),
        (b'{"query": "{ __typename }", "extensions": []}', "`extensions`"),
        (b"{}", "query"),
    ],
)
async def test_bodies_that_are_not_a_graphql_request_get_400(
    app: Any, caplog: pytest.LogCaptureFixture, content: bytes, message: str
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await app.post(
            "/graphql", content=content, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and message in error["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{" + " viewer {" * 600 + " id" + " }" * 601, {}),
        (
            '{ user(handle: "x") { followers(first: '
            + "[" * 900
            + "]" * 900
            + ") { edges { cursor } } } }",
            {},
        ),
        ("query($v: [String]) { __typename }", {"v": json.loads("[" * 100 + "]" * 100)}),
    ],
)
async def test_deeply_nested_documents_and_variables_are_bad_input(
    gql: GraphQLClient, query: str, variables: dict
) -> None:
    body = await gql.raw(query, variables)
    _no_internal(body)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_stale_bearer_header_leaves_no_half_done_sign_up(gql: GraphQLClient) -> None:
    handle = f"stale_{secrets.token_hex(3)}"
    sign_up = {"handle": handle, "displayName": "Stale", "password": "correct horse battery"}
    # the client still sends the header of a session that is gone
    body = await gql.raw(SIGN_UP, {"input": sign_up}, token="not-a-valid-token")
    assert not body.get("errors"), body
    payload = body["data"]["signUp"]
    assert payload["user"]["handle"] == handle and payload["user"]["viewerFollows"] is False
    assert payload["accessToken"] and payload["refreshToken"]
    # the tokens work, and a retry is a plain conflict (the account exists once)
    viewer = await gql.ok("{ viewer { handle } }", token=payload["accessToken"])
    assert viewer == {"viewer": {"handle": handle}}
    code, _ = await gql.error(SIGN_UP, {"input": sign_up}, token="not-a-valid-token")
    assert code == "CONFLICT"
    # logIn and refreshToken under the same stale header hand over tokens too
    log_in = """mutation($h: String!, $p: String!) { logIn(handle: $h, password: $p) {
      accessToken user { viewerFollows followerCount } } }"""
    data = await gql.ok(log_in, {"h": handle, "p": sign_up["password"]}, "not-a-valid-token")
    assert data["logIn"]["accessToken"]
    refresh = """mutation($t: String!) { refreshToken(refreshToken: $t) {
      accessToken user { viewerFollows } } }"""
    data = await gql.ok(refresh, {"t": payload["refreshToken"]}, "not-a-valid-token")
    assert data["refreshToken"]["accessToken"]


@pytest.mark.parametrize("cursor", [[1, 2, 3], ["x", "y"], [1], ["a", 1]])
async def test_a_nested_cursor_of_the_wrong_shape_fails_sign_up_before_it_writes(
    gql: GraphQLClient, cursor: list
) -> None:
    after = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")
    handle = f"cursor_{secrets.token_hex(3)}"
    sign_up = {"handle": handle, "displayName": "Cursor", "password": "correct horse battery"}
    query = """mutation($input: SignUpInput!, $after: String) { signUp(input: $input) {
      accessToken user { followers(after: $after) { edges { cursor } } } } }"""
    code, message = await gql.error(query, {"input": sign_up, "after": after})
    assert code == "BAD_USER_INPUT" and "cursor" in message
    # nothing was written: the same sign-up then succeeds
    assert (await gql.ok(SIGN_UP, {"input": sign_up}))["signUp"]["user"]["handle"] == handle


async def test_a_bad_token_fails_other_mutations_before_they_write(gql: GraphQLClient) -> None:
    ann, bob = await gql.sign_up("writer"), await gql.sign_up("target")
    follow = "mutation($id: ID!) { follow(userId: $id) { followerCount } }"
    code, _ = await gql.error(follow, {"id": bob.id}, token="not-a-valid-token")
    assert code == "UNAUTHENTICATED"
    # a token field beside it does not make the operation anonymous
    both = """mutation($id: ID!) { follow(userId: $id) { id }
      refreshToken(refreshToken: "x") { accessToken } }"""
    code, _ = await gql.error(both, {"id": bob.id}, token="not-a-valid-token")
    assert code == "UNAUTHENTICATED"
    count = "query($h: String!) { user(handle: $h) { followerCount } }"
    assert await gql.ok(count, {"h": bob.handle}) == {"user": {"followerCount": 0}}
    assert isinstance(ann, Account)


def _boom_schema() -> strawberry.Schema:
    @strawberry.type
    class Query:
        @strawberry.field
        def boom(self, info: Info) -> str:
            raise RuntimeError("secret connection string leaked here")

    return strawberry.Schema(query=Query, extensions=[error_extension(True)])


async def test_every_internal_error_is_logged_with_the_request_id_it_carries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Context:
        request_id = "req-7f3a"

    with caplog.at_level(logging.ERROR, logger="reelgraph.errors"):
        result = await _boom_schema().execute("{ boom }", context_value=Context())
    assert result.errors[0].extensions == {"code": "INTERNAL", "requestId": "req-7f3a"}
    (record,) = [r for r in caplog.records if r.name == "reelgraph.errors"]
    assert "req-7f3a" in record.getMessage() and record.exc_info is not None
    assert "secret connection string" in caplog.text


@pytest.mark.parametrize(
    "inner",
    [
        'followers(after: "not a cursor") { edges { cursor } }',
        "following(first: -1) { edges { cursor } }",
        'clips(after: "W1tbW1tbXV1dXV1d") { edges { cursor } }',
        "...F",
    ],
)
async def test_a_mutation_whose_answer_would_fail_writes_nothing(
    gql: GraphQLClient, inner: str
) -> None:
    ann, bob = await gql.sign_up("answer"), await gql.sign_up("answered")
    follow = f"""mutation($id: ID!) {{ follow(userId: $id) {{ followerCount {inner} }} }}
      fragment F on User {{ followers(after: "bad") {{ edges {{ cursor }} }} }}"""
    if "...F" not in inner:
        follow = follow[: follow.index("fragment F")]
    code, message = await gql.error(follow, {"id": bob.id}, ann.token)
    assert code == "BAD_USER_INPUT", message
    assert message.endswith(("cursor in `followers`", "`following`", "`clips`")), message
    count = "query($h: String!) { user(handle: $h) { followerCount } }"
    assert await gql.ok(count, {"h": bob.handle}) == {"user": {"followerCount": 0}}
    # the same mutation with a sound selection writes and answers
    fine = await gql.ok(
        "mutation($id: ID!) { follow(userId: $id) { followerCount } }", {"id": bob.id}, ann.token
    )
    assert fine == {"follow": {"followerCount": 1}}


async def test_a_body_over_the_size_limit_is_refused_plainly(app: Any) -> None:
    content = json.dumps({"query": "{ __typename }", "pad": "x" * (11 * 1024 * 1024)}).encode()
    response = await app.post(
        "/graphql", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "authorization",
    ["Bearer é", "Bearer " + "a" * 8000, "Basic eHl6", "Bearer a.b.c", "Bearer", "Bearer \x01"],
)
async def test_odd_authorization_headers_are_unauthenticated(app: Any, authorization: str) -> None:
    response = await app.post(
        "/graphql",
        content=b'{"query": "{ viewer { id } }"}',
        headers={
            "content-type": "application/json",
            "authorization": authorization.encode("latin-1"),
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
