"""Generation quotas, counted in Redis so that every API process and worker shares them.

Two counts per user, taken together by one Lua script (all or nothing) when createClip
makes a clip, so two processes racing cannot pass either:

- the daily quota (settings.daily_generations): a set per user and UTC day of the clip ids
  that took a unit that day. `used` is its size. A render that ends FAILED gives its unit
  back by removing its clip id from the set of the day the clip was made (its createdAt):
  removing is idempotent, so a failure reported twice gives back one unit. The day turns at
  UTC midnight, for everyone at once.
- the renders in flight (settings.max_active_renders_per_user): a sorted set per user of the
  clip ids QUEUED or RENDERING, scored by when they were taken. Workers remove a clip when its
  render ends (DRAFT or FAILED), deleteClip when it removes one; the graph has the last word
  (resolvers.clips reconciles the set against the clips' states before refusing), so a clip
  that left the set by another path (a take-down, an account deleted) never keeps a slot.

Both sets hold clip ids, not counters, so giving back is exact and never goes below zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from settings import Settings

__all__ = [
    "ACTIVE_FULL",
    "DAILY_SPENT",
    "TAKEN",
    "GenerationQuotas",
    "QuotaUsage",
    "day_of",
    "next_reset",
    "render_ended_sync",
    "seconds_until",
]

_PREFIX = "reelgraph:quota:"
_DAY_MS = 86_400_000
_DAY_KEY_TTL_S = 2 * 86_400  # a day's set outlives its day, for FAILED renders that end late

TAKEN, DAILY_SPENT, ACTIVE_FULL = 0, 1, 2

# KEYS[1]: the user's set for the day, KEYS[2]: the user's renders in flight.
# ARGV: clip id, daily limit, in-flight limit, now (ms), the day set's ttl (s).
# Returns TAKEN, DAILY_SPENT or ACTIVE_FULL; takes from both or from neither.
_TAKE = """
local clip = ARGV[1]
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
redis.call('SADD', KEYS[1], clip)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), clip)
return 0
"""


def day_of(at_ms: int) -> int:
    """The UTC day (days since the epoch) a time in epoch ms falls on."""
    return at_ms // _DAY_MS


def next_reset(at_ms: int) -> datetime:
    """The UTC midnight after at_ms: when that day's quota resets."""
    return datetime.fromtimestamp((day_of(at_ms) + 1) * _DAY_MS / 1000, tz=UTC)


def _day_key(user_id: str, day: int) -> str:
    return f"{_PREFIX}generations:{user_id}:{day}"


def _active_key(user_id: str) -> str:
    return f"{_PREFIX}active-renders:{user_id}"


@dataclass(frozen=True)
class QuotaUsage:
    used: int
    limit: int
    resets_at: datetime


class GenerationQuotas:
    """The API's side: take a unit and a render slot for a new clip, give them back, read."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._take = redis.register_script(_TAKE)

    async def take(self, user_id: str, clip_id: str, now_ms: int) -> int:
        """TAKEN (a unit of now_ms's day and a render slot are the clip's), DAILY_SPENT or
        ACTIVE_FULL (nothing taken)."""
        s = self._settings
        keys = [_day_key(user_id, day_of(now_ms)), _active_key(user_id)]
        args = [clip_id, s.daily_generations, s.max_active_renders_per_user, now_ms]
        return int(await self._take(keys=keys, args=[*args, _DAY_KEY_TTL_S]))

    async def give_back(self, user_id: str, clip_id: str, created_ms: int) -> None:
        """Undo take(): the clip was never made (or was discarded before any render)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.srem(_day_key(user_id, day_of(created_ms)), clip_id)
            pipe.zrem(_active_key(user_id), clip_id)
            await pipe.execute()

    async def release(self, user_id: str, *clip_ids: str) -> None:
        """These clips no longer render (removed, or found finished): their slots are free."""
        if clip_ids:
            await self._redis.zrem(_active_key(user_id), *clip_ids)

    async def in_flight(self, user_id: str) -> list[tuple[str, int]]:
        """(clip id, taken at ms) of the user's renders in flight, as the set has them."""
        rows = await self._redis.zrange(_active_key(user_id), 0, -1, withscores=True)
        return [(_text(clip_id), int(score)) for clip_id, score in rows]

    async def usage(self, user_id: str, now_ms: int | None = None) -> QuotaUsage:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        used = int(await self._redis.scard(_day_key(user_id, day_of(now_ms))))
        limit = self._settings.daily_generations
        return QuotaUsage(used=used, limit=limit, resets_at=next_reset(now_ms))


def render_ended_sync(
    redis: Any, user_id: str, clip_id: str, created_ms: int | None, *, failed: bool
) -> None:
    """A worker's side (a blocking client): the clip's render ended, so its slot is free;
    when it ended FAILED, its unit goes back to the day it was taken from. Idempotent."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(_active_key(user_id), clip_id)
        if failed and created_ms is not None:
            pipe.srem(_day_key(user_id, day_of(int(created_ms))), clip_id)
        pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def seconds_until(moment: datetime, now_ms: int) -> int:
    """Whole seconds from now_ms until moment, at least 1 (a retryAfterSeconds)."""
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    return max(1, int((moment - now) / timedelta(seconds=1) + 0.999))
