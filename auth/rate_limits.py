"""Rate limits, counted in Redis so that every API process shares them.

Each limit is a GCRA bucket (the generic cell rate algorithm): "n per window" lets a burst of
n through, then one more every window/n. One Lua script checks every bucket an action
touches and takes from all of them or from none, on Redis's own clock, so it is atomic
across processes and immune to their clock skew.

Log-in limits cannot be turned against an account's owner: what refuses is counted per client
address (failures per handle and address, and per address over all handles), so an address
that has not failed is never refused, however many others guess at the handle. Per handle the
limit is soft: past settings.login_limit_per_handle failures in a window, an attempt from an
address the handle has not signed in from before waits a delay that doubles with each further
failure (at most settings.login_delay_max_s); an address the handle signed in from lately
(a successful log-in remembers it for _KNOWN_ADDRESS_TTL_S) is not slowed at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from auth.addresses import address_subject
from errors import RateLimited

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from auth.addresses import IPAddress
    from settings import Settings

__all__ = ["Bucket", "RateLimits", "address_subject"]

# KEYS: the buckets. ARGV[1]: cost (1 takes, -1 gives back); then per key: window ms, limit.
# Returns 0 when taken, else the milliseconds until the fullest bucket lets one through.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local wait = 0
local next_tat = {}
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[2 * i])
  local interval = window / tonumber(ARGV[2 * i + 1])
  local tat = math.max(tonumber(redis.call('GET', key) or now), now)
  local new_tat = math.max(tat + interval * cost, now)
  if cost > 0 and new_tat - now > window then
    wait = math.max(wait, new_tat - now - window)
  end
  next_tat[i] = new_tat
end
if wait > 0 then return math.ceil(wait) end
for i, key in ipairs(KEYS) do
  local ttl = math.ceil(next_tat[i] - now)
  if ttl > 0 then
    redis.call('SET', key, string.format('%.3f', next_tat[i]), 'PX', ttl)
  else
    redis.call('DEL', key)
  end
end
return 0
"""

_PREFIX = "reelgraph:rate:"
_HANDLE_FAILURES = f"{_PREFIX}login:handle-failures:"  # + handle: failures in the window
_KNOWN_ADDRESSES = f"{_PREFIX}login:known-addresses:"  # + handle: addresses it signed in from
_KNOWN_ADDRESS_TTL_S = 30 * 86_400


@dataclass(frozen=True)
class Bucket:
    """`limit` actions per `window_s` seconds for one subject (a handle, an address, a user)."""

    name: str
    subject: str
    limit: int
    window_s: int

    @property
    def key(self) -> str:
        return f"{_PREFIX}{self.name}:{self.subject}"


class RateLimits:
    """The API's limits (from settings) on one Redis; a limit of 0 is off."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._script = redis.register_script(_GCRA)

    async def _apply(self, buckets: list[Bucket], cost: int, what: str) -> None:
        live = [b for b in buckets if b.limit > 0]
        if not live or cost == 0:
            return
        for bucket in live:
            if cost > bucket.limit:  # more than a whole window's allowance at once
                raise RateLimited(
                    f"at most {bucket.limit} {what} per {bucket.window_s} s", bucket.window_s
                )
        args: list[int] = [cost]
        for bucket in live:
            args += [bucket.window_s * 1000, bucket.limit]
        wait_ms = await self._script(keys=[b.key for b in live], args=args)
        if wait_ms:
            seconds = max(1, math.ceil(int(wait_ms) / 1000))
            raise RateLimited(f"too many {what}; try again in {seconds} s", seconds)

    def _log_in(self, handle: str | None, address: IPAddress | None) -> list[Bucket]:
        """The buckets that refuse: the handle's from this address, and the address's."""
        s = self._settings
        subject = address_subject(address)
        buckets = []
        if handle is not None:
            buckets.append(
                Bucket(
                    "login:handle-address",
                    f"{handle}|{subject}",
                    s.login_limit_per_handle_address,
                    s.login_limit_window_s,
                )
            )
        # an unknown address (None) is counted too, in one bucket that all of them share
        buckets.append(
            Bucket("login:address", subject, s.login_limit_per_address, s.login_limit_window_s)
        )
        return buckets

    async def log_in_attempt(self, handle: str | None, address: IPAddress | None) -> None:
        """Counts an attempt before the password is checked, so a right password is refused
        too while this address is limited for the handle: guessing from it gains nothing by
        going on. Other addresses are not refused (see the module's docstring)."""
        await self._apply(self._log_in(handle, address), 1, "failed log-ins from this address")

    async def log_in_succeeded(self, handle: str, address: IPAddress | None) -> None:
        """A successful log-in gives its attempt back (only failures use the allowance) and
        remembers the address, which the handle's soft limit then never slows."""
        await self._apply(self._log_in(handle, address), -1, "failed log-ins from this address")
        if address is None:
            return  # every unknown address shares one subject: none of them is "known"
        key = f"{_KNOWN_ADDRESSES}{handle}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, address_subject(address))
            pipe.expire(key, _KNOWN_ADDRESS_TTL_S)
            await pipe.execute()

    async def log_in_failed(self, handle: str) -> None:
        """A wrong password for the handle, from any address: the soft limit's count."""
        if self._settings.login_limit_per_handle <= 0:
            return
        key = f"{_HANDLE_FAILURES}{handle}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self._settings.login_limit_window_s)
            await pipe.execute()

    async def log_in_delay(self, handle: str, address: IPAddress | None) -> float:
        """Seconds an attempt on the handle waits before its password is checked: 0 until the
        handle has failed login_limit_per_handle times in the window (failures from any
        address; the count lapses a window after the last one), then login_delay_base_s,
        doubling with each failure, at most login_delay_max_s. 0 from an address the handle
        signed in from lately: the owner's usual address is never slowed."""
        s = self._settings
        if s.login_limit_per_handle <= 0 or s.login_delay_max_s <= 0:
            return 0.0
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(f"{_HANDLE_FAILURES}{handle}")
            pipe.sismember(f"{_KNOWN_ADDRESSES}{handle}", address_subject(address))
            failures, known = await pipe.execute()
        over = int(failures or 0) - s.login_limit_per_handle
        if known or over < 0:
            return 0.0
        return min(s.login_delay_max_s, s.login_delay_base_s * 2 ** min(over, 32))

    async def sign_up_attempt(self, address: IPAddress | None) -> None:
        """Per address; every unknown address shares one allowance (fails closed)."""
        s = self._settings
        bucket = Bucket(
            "signup:address",
            address_subject(address),
            s.signup_limit_per_address,
            s.signup_limit_window_s,
        )
        await self._apply([bucket], 1, "sign-ups from this address")

    async def mutations(self, user_id: str, count: int) -> None:
        """`count` mutation fields of one document: taken together or refused together."""
        s = self._settings
        bucket = Bucket(
            "mutations:user", user_id, s.mutation_limit_per_user, s.mutation_limit_window_s
        )
        await self._apply([bucket], count, "mutations")

    async def cameo_captures(self, user_id: str) -> None:
        """One cameo capture challenge issued to the user (settings.cameo_capture_limit_per_user
        per cameo_capture_window_s): each one lets a video be uploaded and checked."""
        s = self._settings
        bucket = Bucket(
            "cameo-captures:user",
            user_id,
            s.cameo_capture_limit_per_user,
            s.cameo_capture_window_s,
        )
        await self._apply([bucket], 1, "cameo captures")
