"""Sign-in limits that cannot be used against the account's owner.

Measured before: ten wrong passwords from twelve addresses locked the real owner out, and one
request every 90 s kept it so. Now what refuses is counted per (handle, address) and per
address, so an address that has not failed is never refused; the per-handle limit only slows
addresses the handle never signed in from, with a delay that grows (auth/rate_limits.py).

Two app instances on one Redis stand for two API processes, each request from the peer address
the test names (tests/test_rate_limits.py's ASGI layer, as a real server reports the socket's).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import secrets
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aredis
from litestar.testing import AsyncTestClient
from test_rate_limits import (
    LOG_IN,
    PASSWORD,
    Process,
    assert_rate_limited,
    code_of,
    with_peer_address,
)

from auth.rate_limits import RateLimits
from server import build_app
from settings import Settings

LIMITS = {
    "login_limit_per_handle": 10,
    "login_limit_per_handle_address": 10,
    "login_limit_per_address": 30,
    "login_limit_window_s": 3600,  # nothing refills while a test runs, unless it says so
    "login_delay_base_s": 0.01,  # the soft limit's wait: real, but kept short here
    "login_delay_max_s": 0.04,
    "trusted_proxies": [],
}
_addresses = (f"198.19.{n // 250}.{n % 250 + 1}" for n in itertools.count())


@pytest.fixture(scope="module")
async def processes(settings: Settings) -> AsyncIterator[tuple[Process, Process]]:
    limited = settings.model_copy(update=LIMITS)
    first = AsyncTestClient(app=with_peer_address(build_app(limited)))
    second = AsyncTestClient(app=with_peer_address(build_app(limited)))
    async with first, second:
        yield Process(first), Process(second)


async def log_in(api: Process, handle: str, password: str, address: str) -> dict:
    return await api.call(LOG_IN, {"h": handle, "p": password}, address=address)


def signed_in(body: dict) -> bool:
    return not body.get("errors") and bool(body["data"]["logIn"]["accessToken"])


async def test_an_attacker_rotating_addresses_cannot_lock_the_owner_out(
    processes: tuple[Process, Process],
) -> None:
    """The measured attack: ten wrong passwords from each of twelve addresses, spread over
    two API processes. Each attacking address ends up refused; the owner is not."""
    first, second = processes
    home = next(_addresses)
    _, handle, _ = await first.sign_up(home)
    assert signed_in(await log_in(first, handle, PASSWORD, home))  # the owner's usual address
    attackers = [next(_addresses) for _ in range(12)]
    for n, attacker in enumerate(attackers):
        for guess in range(LIMITS["login_limit_per_handle_address"]):
            api = (first, second)[(n + guess) % 2]
            body = await log_in(api, handle, f"wrong guess {guess}", attacker)
            assert code_of(body) == "UNAUTHENTICATED", body
        # the eleventh try from that address is refused, the right password too
        assert_rate_limited(await log_in(second, handle, "one more guess", attacker))
        assert_rate_limited(await log_in(first, handle, PASSWORD, attacker))

    # the owner signs in from home, and from an address that never tried, in either process
    for api in (first, second):
        assert signed_in(await log_in(api, handle, PASSWORD, home))
        assert signed_in(await log_in(api, handle, PASSWORD, next(_addresses)))
    # a wrong password of the owner's own is still just wrong, not refused
    assert code_of(await log_in(first, handle, "typo typo", home)) == "UNAUTHENTICATED"
    # and keeping the attack up (one more request per address) changes nothing for them
    for attacker in attackers:
        assert_rate_limited(await log_in(first, handle, "and again", attacker))
    assert signed_in(await log_in(second, handle, PASSWORD, next(_addresses)))


async def test_a_failing_address_is_refused_and_recovers(settings: Settings) -> None:
    """Refused with retryAfterSeconds no longer than the window; once the bucket has drained
    (a short window here), the same address signs in again. The wait polls the state."""
    window_s, limit = 4, 2
    fast = settings.model_copy(
        update={
            **LIMITS,
            "login_limit_per_handle_address": limit,
            "login_limit_window_s": window_s,
        }
    )
    async with AsyncTestClient(app=with_peer_address(build_app(fast))) as client:
        api = Process(client)
        address = next(_addresses)
        _, handle, _ = await api.sign_up(next(_addresses))
        for _ in range(limit):
            assert code_of(await log_in(api, handle, "wrong guess!", address)) == (
                "UNAUTHENTICATED"
            )
        refused = await log_in(api, handle, PASSWORD, address)
        assert_rate_limited(refused)
        assert refused["errors"][0]["extensions"]["retryAfterSeconds"] <= window_s
        assert "from this address" in refused["errors"][0]["message"]
        deadline = time.monotonic() + 60  # bounds a stuck test only
        while not signed_in(body := await log_in(api, handle, PASSWORD, address)):
            assert_rate_limited(body)  # a refused attempt takes nothing: it only waits
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.1)


async def test_addresses_are_counted_apart_per_handle(processes: tuple[Process, Process]) -> None:
    """A shared address (an office, a carrier's NAT) that failed at one handle is not refused
    at another; the per-address limit over all handles still holds."""
    api, _ = processes
    address = next(_addresses)
    _, victim, _ = await api.sign_up(next(_addresses))
    _, colleague, _ = await api.sign_up(next(_addresses))
    for _ in range(LIMITS["login_limit_per_handle_address"]):
        assert code_of(await log_in(api, victim, "wrong guess!", address)) == "UNAUTHENTICATED"
    assert_rate_limited(await log_in(api, victim, PASSWORD, address))
    assert signed_in(await log_in(api, colleague, PASSWORD, address))
    # an address spraying many handles is refused by the per-address limit
    sprayer = next(_addresses)
    for n in range(LIMITS["login_limit_per_address"]):
        body = await log_in(api, f"nobody_{secrets.token_hex(3)}_{n}", "whatever1", sprayer)
        assert code_of(body) == "UNAUTHENTICATED", body
    assert_rate_limited(await log_in(api, colleague, PASSWORD, sprayer))


@pytest.fixture
async def limits(settings: Settings) -> AsyncIterator[RateLimits]:
    redis = aredis.Redis.from_url(settings.redis_url)
    try:
        yield RateLimits(redis, settings.model_copy(update=LIMITS))
    finally:
        await redis.aclose()


async def test_the_per_handle_limit_is_a_growing_delay_never_for_a_known_address(
    limits: RateLimits,
) -> None:
    handle = f"delay_{secrets.token_hex(4)}"
    home = ipaddress.ip_address(next(_addresses))
    elsewhere = ipaddress.ip_address(next(_addresses))
    await limits.log_in_succeeded(handle, home)  # the owner signed in from home before
    threshold = LIMITS["login_limit_per_handle"]
    delays = []
    for _ in range(threshold + 4):
        delays.append(await limits.log_in_delay(handle, elsewhere))
        await limits.log_in_failed(handle)
    delays.append(await limits.log_in_delay(handle, elsewhere))
    base, most = LIMITS["login_delay_base_s"], LIMITS["login_delay_max_s"]
    # none below the threshold, then doubling, then capped: slower, never refused
    assert delays == [0.0] * threshold + [base, 2 * base, 4 * base, most, most]
    assert await limits.log_in_delay(handle, home) == 0.0  # the owner's address is not slowed
    # an unknown address is never "known": every unknown client shares its subject
    await limits.log_in_succeeded(handle, None)
    assert await limits.log_in_delay(handle, None) == most
    # a handle with no failures waits for nothing
    assert await limits.log_in_delay(f"calm_{secrets.token_hex(4)}", elsewhere) == 0.0
