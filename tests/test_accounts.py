"""Sign-up, log-in, rotating refresh tokens, and the access token's checks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
import redis.asyncio as aredis
from conftest import GraphQLClient

from auth.tokens import TokenService
from errors import Unauthenticated
from resolvers.context import Context
from settings import Settings

SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) {
  accessToken refreshToken user { id handle displayName followerCount followingCount } } }"""
LOG_IN = """mutation($h: String!, $p: String!) { logIn(handle: $h, password: $p) {
  accessToken refreshToken user { handle } } }"""
REFRESH = """mutation($t: String!) { refreshToken(refreshToken: $t) {
  accessToken refreshToken user { handle } } }"""
VIEWER = "{ viewer { id handle } }"


async def test_sign_up_normalizes_handle_and_returns_tokens(gql: GraphQLClient) -> None:
    data = await gql.ok(
        SIGN_UP,
        {"input": {"handle": "  Mixed_Case_1 ", "displayName": " Ada ", "password": "p" * 8}},
    )
    payload = data["signUp"]
    assert payload["user"]["handle"] == "mixed_case_1"
    assert payload["user"]["displayName"] == "Ada"
    assert payload["user"]["followerCount"] == 0
    viewer = await gql.ok(VIEWER, token=payload["accessToken"])
    assert viewer["viewer"] == {"id": payload["user"]["id"], "handle": "mixed_case_1"}


async def test_sign_up_stores_zero_follow_counts_on_the_node(gql: GraphQLClient, graph) -> None:
    """Feeds read the counts stored on the User node (graph.users): a new user has them."""
    from test_follows import STORED_COUNTS

    from resolvers.ids import decode_id

    account = await gql.sign_up("fresh")
    rows = await graph.read(STORED_COUNTS, {"ids": [decode_id(account.id, "User")]})
    assert [(r["followers"], r["following"]) for r in rows] == [(0, 0)]


@pytest.mark.parametrize(
    ("handle", "display_name", "password", "fragment"),
    [
        ("ab", "Ok", "longenough", "handle"),
        ("x" * 31, "Ok", "longenough", "handle"),
        ("bad-handle", "Ok", "longenough", "handle"),
        ("bad handle", "Ok", "longenough", "handle"),
        ("émile", "Ok", "longenough", "handle"),
        ("fine_handle", "Ok", "short", "password"),
        ("fine_handle", "Ok", "p" * 257, "password"),
        ("fine_handle", "   ", "longenough", "display name"),
        ("fine_handle", "x" * 51, "longenough", "display name"),
        ("fine_handle", "bell\x07", "longenough", "control"),
    ],
)
async def test_sign_up_rejects_bad_input_and_writes_nothing(
    gql: GraphQLClient, handle: str, display_name: str, password: str, fragment: str
) -> None:
    code, message = await gql.error(
        SIGN_UP, {"input": {"handle": handle, "displayName": display_name, "password": password}}
    )
    assert code == "BAD_USER_INPUT"
    assert fragment in message
    assert (await gql.ok('{ user(handle: "fine_handle") { id } }'))["user"] is None


async def test_taken_handle_is_a_conflict_case_insensitively(gql: GraphQLClient) -> None:
    account = await gql.sign_up("taken")
    code, message = await gql.error(
        SIGN_UP,
        {"input": {"handle": account.handle.upper(), "displayName": "Other", "password": "x" * 9}},
    )
    assert code == "CONFLICT"
    assert account.handle in message
    # the original keeps its password: the refused sign-up wrote nothing
    await gql.ok(LOG_IN, {"h": account.handle, "p": account.password})


async def test_log_in_checks_the_password(gql: GraphQLClient) -> None:
    account = await gql.sign_up("login")
    data = await gql.ok(LOG_IN, {"h": account.handle.upper(), "p": account.password})
    assert data["logIn"]["user"]["handle"] == account.handle
    for handle, password in ((account.handle, "wrong password"), ("nobody_here", "whatever1")):
        code, message = await gql.error(LOG_IN, {"h": handle, "p": password})
        assert (code, message) == ("UNAUTHENTICATED", "wrong handle or password")


async def test_refresh_rotates_and_reuse_revokes_the_family(gql: GraphQLClient) -> None:
    account = await gql.sign_up("refresh")
    first = (await gql.ok(REFRESH, {"t": account.refresh_token}))["refreshToken"]
    assert first["refreshToken"] != account.refresh_token
    await gql.ok(VIEWER, token=first["accessToken"])
    second = (await gql.ok(REFRESH, {"t": first["refreshToken"]}))["refreshToken"]

    # the first token again: theft is assumed, the whole family ends
    code, message = await gql.error(REFRESH, {"t": account.refresh_token})
    assert code == "UNAUTHENTICATED" and "reuse" in message
    code, _ = await gql.error(REFRESH, {"t": second["refreshToken"]})
    assert code == "UNAUTHENTICATED"

    # the revoked family's access tokens, still unexpired, fail every request at once
    for token in (account.token, first["accessToken"], second["accessToken"]):
        code, message = await gql.error(VIEWER, token=token)
        assert (code, message) == ("UNAUTHENTICATED", "the session was revoked; sign in again")

    # another log-in is another family, untouched
    other = (await gql.ok(LOG_IN, {"h": account.handle, "p": account.password}))["logIn"]
    await gql.ok(REFRESH, {"t": other["refreshToken"]})
    await gql.ok(VIEWER, token=other["accessToken"])


async def test_tokens_of_the_wrong_type_are_refused(gql: GraphQLClient) -> None:
    account = await gql.sign_up("wrongtype")
    code, _ = await gql.error(VIEWER, token=account.refresh_token)
    assert code == "UNAUTHENTICATED"
    code, _ = await gql.error(REFRESH, {"t": account.token})
    assert code == "UNAUTHENTICATED"


async def test_tampered_and_expired_access_tokens_are_refused(gql: GraphQLClient, settings) -> None:
    account = await gql.sign_up("tamper")
    header, payload, signature = account.token.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    claims = jwt.decode(account.token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "sub": "someone-else"}, "not-the-key", algorithm="HS256")
    now = int(time.time())
    expired = jwt.encode(
        {**claims, "iat": now - 3600, "exp": now - 60}, settings.secret_key, algorithm="HS256"
    )
    for token in (tampered, forged, expired, "not-a-jwt"):
        code, _ = await gql.error(VIEWER, token=token)
        assert code == "UNAUTHENTICATED", token
    _, message = await gql.error(VIEWER, token=expired)
    assert "expired" in message


async def test_malformed_authorization_header(gql: GraphQLClient) -> None:
    response = await gql.client.post(
        "/graphql", json={"query": VIEWER}, headers={"Authorization": "Basic abc"}
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_no_viewer_without_a_token(gql: GraphQLClient) -> None:
    assert (await gql.ok(VIEWER))["viewer"] is None


async def test_a_bad_token_fails_public_fields_too(gql: GraphQLClient) -> None:
    """A client with a broken token is told so, never silently served as anonymous."""
    account = await gql.sign_up("public")
    query = "query($h: String!) { user(handle: $h) { handle followerCount } }"
    code, _ = await gql.error(query, {"h": account.handle}, token="garbage.token.here")
    assert code == "UNAUTHENTICATED"
    # the token-issuing mutations still work with a stale header, so a client can recover
    refreshed = await gql.ok(REFRESH, {"t": account.refresh_token}, token="expired.or.broken")
    assert refreshed["refreshToken"]["user"]["handle"] == account.handle


# -- the access token's refresh family ------------------------------------------------------


@pytest.fixture
async def tokens(settings: Settings, services: Any) -> AsyncIterator[TokenService]:
    """The app's token service, on a Redis client of the test's own event loop (the app's
    client lives on the test client's loop)."""
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield TokenService(
        client, services.secret, settings.access_token_ttl_s, settings.refresh_token_ttl_s
    )
    await client.aclose()


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def test_access_tokens_name_their_refresh_family(gql: GraphQLClient) -> None:
    account = await gql.sign_up("family")
    family = claims_of(account.refresh_token)["fam"]
    assert claims_of(account.token)["fam"] == family
    rotated = (await gql.ok(REFRESH, {"t": account.refresh_token}))["refreshToken"]
    assert claims_of(rotated["accessToken"])["fam"] == family
    logged_in = (await gql.ok(LOG_IN, {"h": account.handle, "p": account.password}))["logIn"]
    assert claims_of(logged_in["accessToken"])["fam"] not in (None, family)


async def test_a_request_with_a_revoked_sessions_access_token_is_unauthenticated(
    gql: GraphQLClient, tokens: TokenService
) -> None:
    """Once per request, when the token names its family: one EXISTS in Redis."""
    account = await gql.sign_up("revoked")
    other = (await gql.ok(LOG_IN, {"h": account.handle, "p": account.password}))["logIn"]
    legacy = tokens.access_token(claims_of(account.token)["sub"])  # names no family
    # the session check reads Redis through services.redis: the test loop's client
    services = SimpleNamespace(tokens=tokens, graph=None, redis=tokens._redis)

    async def viewer_of(token: str) -> str:
        context = await Context.for_request(services, f"Bearer {token}")
        return context.require_viewer()

    user_id = await viewer_of(account.token)
    await gql.ok(REFRESH, {"t": account.refresh_token})
    code, message = await gql.error(REFRESH, {"t": account.refresh_token})  # reuse: revoked
    assert code == "UNAUTHENTICATED" and "reuse" in message

    with pytest.raises(Unauthenticated, match="session was revoked; sign in again"):
        await viewer_of(account.token)
    refused = await Context.for_request(services, f"Bearer {account.token}")
    assert refused.viewer_id is None  # never a silent fall-back to anonymous either:
    with pytest.raises(Unauthenticated):
        refused.optional_viewer()
    # another log-in of the same user, and a token minted before tokens named their family
    assert await viewer_of(other["accessToken"]) == user_id
    assert await viewer_of(legacy) == user_id
