"""Rate limits: logIn per handle and address and per address, signUp per address, mutations
per user. (tests/test_sign_in_limits.py: an attacker cannot use them against the owner.)

Two app instances on one Redis stand for two API processes: the counters are Redis's, so a
client cannot spread its attempts across them. A small ASGI layer in front of each app plays
the network: it gives each request the peer address the test names (the in-process test
client has none), the way a real server reports the socket's address; "unix" stands for a
connection over a unix socket, which has no peer address at all.
"""

from __future__ import annotations

import ipaddress
import itertools
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aredis
from conftest import GraphQLClient
from litestar.testing import AsyncTestClient

from auth.addresses import address_subject, client_address
from server import build_app
from settings import Settings

LIMITS = {
    "login_limit_per_handle": 5,  # soft: a growing delay past it (kept tiny here)
    "login_limit_per_handle_address": 5,
    "login_delay_base_s": 0.01,
    "login_delay_max_s": 0.05,
    "login_limit_per_address": 12,
    "login_limit_window_s": 3600,  # long windows: nothing refills while a test runs
    "signup_limit_per_address": 3,
    "signup_limit_window_s": 3600,
    "mutation_limit_per_user": 4,
    "mutation_limit_window_s": 3600,
    "trusted_proxies": ["10.0.0.0/8", "unix"],
}
PEER_HEADER = b"x-test-peer"
UNIX = "unix"
_addresses = (f"198.18.{n // 250}.{n % 250 + 1}" for n in itertools.count())  # benchmark net

SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) {
  accessToken user { id handle } } }"""
LOG_IN = """mutation($h: String!, $p: String!) { logIn(handle: $h, password: $p) {
  accessToken } }"""
FOLLOW = "mutation($id: ID!) { follow(userId: $id) { handle } }"
UNFOLLOW = "mutation($id: ID!) { unfollow(userId: $id) { handle } }"
COUNT = "query($h: String!) { user(handle: $h) { followerCount } }"
PASSWORD = "correct horse battery"


def with_peer_address(app: Any) -> Any:
    """ASGI in front of the app: the request's peer is the address in x-test-peer."""

    async def asgi(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            for name, value in scope["headers"]:
                if name == PEER_HEADER:
                    peer = value.decode()
                    scope = {**scope, "client": None if peer == UNIX else (peer, 50000)}
        await app(scope, receive, send)

    return asgi


class Process:
    """One API process, as a client sees it from some address."""

    def __init__(self, client: AsyncTestClient) -> None:
        self.gql = GraphQLClient(client)

    async def call(
        self,
        query: str,
        variables: dict,
        *,
        address: str | None,
        token: str | None = None,
        forwarded_for: str | None = None,
    ) -> dict:
        # no address: the test client's own peer, "testclient", which is not an IP
        headers = {PEER_HEADER.decode(): address} if address is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        response = await self.gql.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code in (200, 400), response.text
        return response.json()

    async def sign_up(
        self, address: str | None, forwarded_for: str | None = None
    ) -> tuple[str, str, str]:
        """(id, handle, access token) of a new account."""
        body = await self.try_sign_up(address, forwarded_for)
        assert not body.get("errors"), body
        payload = body["data"]["signUp"]
        return payload["user"]["id"], payload["user"]["handle"], payload["accessToken"]

    async def try_sign_up(self, address: str | None, forwarded_for: str | None = None) -> dict:
        handle = f"rl_{secrets.token_hex(4)}"
        return await self.call(
            SIGN_UP,
            {"input": {"handle": handle, "displayName": "R", "password": PASSWORD}},
            address=address,
            forwarded_for=forwarded_for,
        )


def code_of(body: dict) -> str | None:
    return body["errors"][0]["extensions"]["code"] if body.get("errors") else None


def assert_rate_limited(body: dict) -> None:
    assert code_of(body) == "RATE_LIMITED", body
    assert body["data"] is None or all(v is None for v in body["data"].values()), body
    retry_after = body["errors"][0]["extensions"]["retryAfterSeconds"]
    assert isinstance(retry_after, int) and retry_after > 0, body


@pytest.fixture(scope="module")
async def processes(settings: Settings) -> AsyncIterator[tuple[Process, Process]]:
    limited = settings.model_copy(update=LIMITS)
    first = AsyncTestClient(app=with_peer_address(build_app(limited)))
    second = AsyncTestClient(app=with_peer_address(build_app(limited)))
    async with first, second:
        yield Process(first), Process(second)


async def test_fifty_wrong_passwords_are_refused_and_then_the_right_one_too(
    processes: tuple[Process, Process],
) -> None:
    api, _ = processes
    _, handle, _ = await api.sign_up(next(_addresses))
    _, other_handle, _ = await api.sign_up(next(_addresses))
    attacker = next(_addresses)
    codes = []
    for _ in range(50):
        body = await api.call(LOG_IN, {"h": handle, "p": "wrong guess!"}, address=attacker)
        codes.append(code_of(body))
        if code_of(body) == "RATE_LIMITED":
            assert_rate_limited(body)
    assert codes == ["UNAUTHENTICATED"] * 5 + ["RATE_LIMITED"] * 45
    # while the attacker's address is limited, the right password is refused there as well
    assert_rate_limited(await api.call(LOG_IN, {"h": handle, "p": PASSWORD}, address=attacker))
    assert_rate_limited(
        await api.call(LOG_IN, {"h": handle.upper(), "p": PASSWORD}, address=attacker)
    )
    # but an address that has not failed is not refused: the owner still signs in
    body = await api.call(LOG_IN, {"h": handle, "p": PASSWORD}, address=next(_addresses))
    assert body["data"]["logIn"]["accessToken"], body
    # another handle is not limited by it
    body = await api.call(LOG_IN, {"h": other_handle, "p": PASSWORD}, address=next(_addresses))
    assert body["data"]["logIn"]["accessToken"], body


async def test_successful_log_ins_do_not_use_up_the_allowance(
    processes: tuple[Process, Process],
) -> None:
    api, _ = processes
    _, handle, _ = await api.sign_up(next(_addresses))
    address = next(_addresses)
    for _ in range(3 * LIMITS["login_limit_per_handle_address"]):
        body = await api.call(LOG_IN, {"h": handle, "p": PASSWORD}, address=address)
        assert not body.get("errors"), body


async def test_log_in_attempts_per_address(processes: tuple[Process, Process]) -> None:
    api, _ = processes
    address, elsewhere = next(_addresses), next(_addresses)
    for n in range(LIMITS["login_limit_per_address"]):  # a different handle each time
        body = await api.call(LOG_IN, {"h": f"nobody_{n}", "p": "whatever1"}, address=address)
        assert code_of(body) == "UNAUTHENTICATED", body
    assert_rate_limited(await api.call(LOG_IN, {"h": "nobody_x", "p": "x"}, address=address))
    # a malformed handle is still an attempt from this address
    assert_rate_limited(await api.call(LOG_IN, {"h": "bad handle!", "p": "x"}, address=address))
    body = await api.call(LOG_IN, {"h": "nobody_x", "p": "whatever1"}, address=elsewhere)
    assert code_of(body) == "UNAUTHENTICATED", body


async def test_forwarded_addresses_count_only_behind_a_trusted_proxy(
    processes: tuple[Process, Process],
) -> None:
    api, _ = processes
    proxy, client, spoofed = "10.1.2.3", next(_addresses), next(_addresses)
    for n in range(LIMITS["login_limit_per_address"]):
        body = await api.call(
            LOG_IN, {"h": f"nobody_p{n}", "p": "whatever1"}, address=proxy, forwarded_for=client
        )
        assert code_of(body) == "UNAUTHENTICATED", body
    # the client behind the proxy is limited, whichever proxy or process it comes through
    chain = f"{spoofed}, {client}"
    via_other_proxy = await api.call(
        LOG_IN, {"h": "nobody_p", "p": "x"}, address="10.9.9.9", forwarded_for=chain
    )
    assert_rate_limited(via_other_proxy)
    assert_rate_limited(await api.call(LOG_IN, {"h": "nobody_p", "p": "x"}, address=client))
    # the proxy's other clients are not
    body = await api.call(
        LOG_IN, {"h": "nobody_p", "p": "whatever1"}, address=proxy, forwarded_for=spoofed
    )
    assert code_of(body) == "UNAUTHENTICATED", body
    # an untrusted peer cannot pose as the limited client by sending the header
    body = await api.call(
        LOG_IN, {"h": "nobody_p", "p": "whatever1"}, address=next(_addresses), forwarded_for=client
    )
    assert code_of(body) == "UNAUTHENTICATED", body


async def test_sign_ups_per_address_and_a_refused_one_writes_nothing(
    processes: tuple[Process, Process], gql: GraphQLClient
) -> None:
    api, _ = processes
    address = next(_addresses)
    for _ in range(LIMITS["signup_limit_per_address"]):
        await api.sign_up(address)
    handle = f"rl_{secrets.token_hex(4)}"
    body = await api.call(
        SIGN_UP,
        {"input": {"handle": handle, "displayName": "R", "password": PASSWORD}},
        address=address,
    )
    assert_rate_limited(body)
    assert (await gql.ok(COUNT, {"h": handle}))["user"] is None
    # input a person got wrong is refused as such, and is not counted
    body = await api.call(
        SIGN_UP,
        {"input": {"handle": "x", "displayName": "R", "password": PASSWORD}},
        address=next(_addresses),
    )
    assert code_of(body) == "BAD_USER_INPUT"
    await api.sign_up(next(_addresses))  # another address signs up as usual


async def test_mutations_per_user_refuse_a_whole_document(
    processes: tuple[Process, Process], gql: GraphQLClient
) -> None:
    api, _ = processes
    _, _, token = await api.sign_up(next(_addresses))
    targets = [await api.sign_up(next(_addresses)) for _ in range(3)]
    (a_id, _, _), (b_id, b_handle, _), (c_id, c_handle, _) = targets
    address = next(_addresses)
    for query in (FOLLOW, UNFOLLOW, FOLLOW):  # 3 of 4
        body = await api.call(query, {"id": a_id}, address=address, token=token)
        assert not body.get("errors"), body
    two = """mutation($b: ID!, $c: ID!) { b: follow(userId: $b) { handle }
                                         c: follow(userId: $c) { handle } }"""
    assert_rate_limited(await api.call(two, {"b": b_id, "c": c_id}, address=address, token=token))
    for followed in (b_handle, c_handle):  # refused whole: neither follow happened
        assert (await gql.ok(COUNT, {"h": followed}))["user"]["followerCount"] == 0
    body = await api.call(FOLLOW, {"id": b_id}, address=address, token=token)
    assert not body.get("errors"), body
    assert_rate_limited(await api.call(FOLLOW, {"id": c_id}, address=address, token=token))
    # reads are not mutations; other users have their own allowance
    body = await api.call(COUNT, {"h": b_handle}, address=address, token=token)
    assert body["data"]["user"]["followerCount"] == 1
    other_token = targets[0][2]
    body = await api.call(FOLLOW, {"id": c_id}, address=address, token=other_token)
    assert not body.get("errors"), body


async def test_two_api_processes_share_the_counters(processes: tuple[Process, Process]) -> None:
    first, second = processes
    _, handle, token = await first.sign_up(next(_addresses))
    target_id, _, _ = await second.sign_up(next(_addresses))
    address = next(_addresses)
    # wrong passwords alternate between the processes: five in all, whichever took them
    for n in range(LIMITS["login_limit_per_handle_address"]):
        api = (first, second)[n % 2]
        body = await api.call(LOG_IN, {"h": handle, "p": "wrong guess!"}, address=address)
        assert code_of(body) == "UNAUTHENTICATED", body
    for api in (first, second):
        assert_rate_limited(await api.call(LOG_IN, {"h": handle, "p": PASSWORD}, address=address))
    # mutations too
    for n in range(LIMITS["mutation_limit_per_user"]):
        api = (first, second)[n % 2]
        body = await api.call(FOLLOW, {"id": target_id}, address=address, token=token)
        assert not body.get("errors"), body
    for api in (first, second):
        body = await api.call(FOLLOW, {"id": target_id}, address=address, token=token)
        assert_rate_limited(body)


UNKNOWN_KEYS = ("reelgraph:rate:signup:address:unknown", "reelgraph:rate:login:address:unknown")


@pytest.fixture
async def unknown_buckets(settings: Settings) -> AsyncIterator[None]:
    """The suite's shared app counts its test client's requests in the unknown address's
    buckets too (under a huge limit): they start empty here and are emptied again after, so
    neither side's count spills into the other's."""
    redis = aredis.Redis.from_url(settings.redis_url)
    try:
        await redis.delete(*UNKNOWN_KEYS)
        yield
        await redis.delete(*UNKNOWN_KEYS)
    finally:
        await redis.aclose()


@pytest.mark.usefixtures("unknown_buckets")
async def test_unknown_addresses_share_one_allowance(processes: tuple[Process, Process]) -> None:
    """Fail closed: a connection whose client address is unknown (a unix socket with nothing
    forwarded, a peer that is not an IP, a forwarded hop that is not one) is not let off the
    per-address limits; all of them share one allowance."""
    first, second = processes
    unknown = [(UNIX, None), (None, None), (UNIX, "not-an-ip")]
    for (address, forwarded_for), api in zip(unknown, (first, second, first), strict=True):
        await api.sign_up(address, forwarded_for)
    for address, forwarded_for in unknown:
        assert_rate_limited(await second.try_sign_up(address, forwarded_for))
    # a client a proxy on a unix socket names has its own allowance, and so has a real peer
    client = next(_addresses)
    await first.sign_up(UNIX, forwarded_for=client)
    await first.sign_up(next(_addresses))
    # log-ins too: a dozen attempts in all from unknown addresses, then none
    for n in range(LIMITS["login_limit_per_address"]):
        address = (UNIX, None)[n % 2]
        body = await first.call(LOG_IN, {"h": f"nobody_u{n}", "p": "whatever1"}, address=address)
        assert code_of(body) == "UNAUTHENTICATED", body
    assert_rate_limited(await second.call(LOG_IN, {"h": "nobody_u", "p": "x"}, address=UNIX))
    body = await second.call(
        LOG_IN, {"h": "nobody_u", "p": "whatever1"}, address=UNIX, forwarded_for=client
    )
    assert code_of(body) == "UNAUTHENTICATED", body


async def test_a_forwarded_port_is_not_part_of_the_address(
    processes: tuple[Process, Process],
) -> None:
    """Hops written with a port are the client's address: not a stop that leaves every
    client of the proxy in the proxy's own bucket."""
    api, _ = processes
    client = next(_addresses)
    for port in (5678, 5679, 5680):
        await api.sign_up("10.1.2.3", forwarded_for=f"{client}:{port}")
    assert_rate_limited(await api.try_sign_up("10.1.2.4", forwarded_for=client))
    await api.sign_up("10.1.2.3", forwarded_for=f"{next(_addresses)}:5678")  # another client


def _scope(peer: str | None, *forwarded: str) -> dict:
    return {
        "client": (peer, 1234) if peer is not None else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


@pytest.mark.parametrize(
    ("scope", "trusted", "expected"),
    [
        (_scope("203.0.113.9"), [], "203.0.113.9"),
        (_scope("203.0.113.9", "198.51.100.1"), [], "203.0.113.9"),  # untrusted peer
        (_scope("10.0.0.5", "198.51.100.1"), ["10.0.0.0/8"], "198.51.100.1"),
        # read from the right, past every trusted hop; the leftmost could be anything
        (_scope("10.0.0.5", "1.2.3.4, 198.51.100.1, 10.0.0.7"), ["10.0.0.0/8"], "198.51.100.1"),
        (_scope("10.0.0.5", "1.2.3.4", "198.51.100.1"), ["10.0.0.0/8"], "198.51.100.1"),
        (_scope("10.0.0.5", "not-an-ip, 10.0.0.6"), ["10.0.0.0/8"], "10.0.0.6"),
        (_scope("10.0.0.5"), ["10.0.0.0/8"], "10.0.0.5"),
        (_scope("::ffff:203.0.113.9"), [], "203.0.113.9"),
        (_scope("2001:db8::1"), ["2001:db8::/32"], "2001:db8::1"),
        (_scope("testclient"), [], None),
        (_scope(None), [], None),
        # hops with a port
        (_scope("10.0.0.5", "198.51.100.1:5678"), ["10.0.0.0/8"], "198.51.100.1"),
        (_scope("10.0.0.5", "198.51.100.1, 10.0.0.7:80"), ["10.0.0.0/8"], "198.51.100.1"),
        (_scope("10.0.0.5", "[2001:db8::1]:443"), ["10.0.0.0/8"], "2001:db8::1"),
        (_scope("10.0.0.5", "[2001:db8::1]"), ["10.0.0.0/8"], "2001:db8::1"),
        (_scope("10.0.0.5", "[2001:db8::1"), ["10.0.0.0/8"], "10.0.0.5"),
        # a unix socket has no peer address: X-Forwarded-For counts only if "unix" is trusted
        (_scope(None, "198.51.100.1"), [], None),
        (_scope(None, "198.51.100.1"), ["unix"], "198.51.100.1"),
        (_scope(None, "1.2.3.4, 198.51.100.1, 10.0.0.7"), ["unix", "10.0.0.0/8"], "198.51.100.1"),
        (_scope(None, "not-an-ip"), ["unix"], None),
        (_scope(None), ["unix"], None),
        (_scope("203.0.113.9", "198.51.100.1"), ["unix"], "203.0.113.9"),
    ],
)
def test_client_address(scope: dict, trusted: list[str], expected: str | None) -> None:
    address = client_address(scope, trusted)
    assert address == (ipaddress.ip_address(expected) if expected else None)


@pytest.mark.parametrize(
    ("address", "subject"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        (None, "unknown"),
    ],
)
def test_address_subject(address: str | None, subject: str) -> None:
    assert address_subject(ipaddress.ip_address(address) if address else None) == subject
