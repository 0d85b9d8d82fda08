"""Liveness challenges: what the owner must say and do on camera, usable for one upload.

A challenge lives in Redis as JSON under `reelgraph:cameo-challenge:<id>` and keeps its
own `expiresAt` (epoch ms), so "expired" is decided by the time it names, never by when
Redis happens to drop the key (kept a while longer, so a late upload hears "expired" rather
than "unknown"). Consuming is one Lua script: the owner check, the expiry check, the delete
and a "used" marker happen atomically, so two uploads racing on one challenge cannot both
pass.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "MOVES",
    "Challenge",
    "ChallengeRefused",
    "consume_challenge",
    "load_challenge",
    "new_challenge",
    "store_challenge",
]

MOVES = ("LEFT", "RIGHT", "UP", "DOWN", "TILT_LEFT", "TILT_RIGHT")
_PHRASE_DIGITS = 6
_PREFIX = "reelgraph:cameo-challenge:"
_USED_PREFIX = "reelgraph:cameo-challenge-used:"
# how long a challenge's key outlives its expiry, and a used marker its use
_KEEP_AFTER_MS = 24 * 3600 * 1000

# KEYS: challenge, used marker. ARGV: user id, now (ms), keep (ms).
_CONSUME = """
local raw = redis.call('GET', KEYS[1])
if not raw then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'used'} end
  return {'unknown'}
end
local challenge = cjson.decode(raw)
if challenge['userId'] ~= ARGV[1] then return {'forbidden'} end
if tonumber(challenge['expiresAt']) <= tonumber(ARGV[2]) then return {'expired'} end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return {'ok', raw}
"""


@dataclass(frozen=True)
class Challenge:
    id: str  # raw: url-safe random, unguessable (it names the upload URL)
    user_id: str
    cameo_id: str
    phrase: str
    moves: list[str]
    created_at: int
    expires_at: int

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(
            {
                "id": data["id"],
                "userId": data["user_id"],
                "cameoId": data["cameo_id"],
                "phrase": data["phrase"],
                "moves": data["moves"],
                "createdAt": data["created_at"],
                "expiresAt": data["expires_at"],
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> Challenge:
        data = json.loads(raw)
        return cls(
            id=data["id"],
            user_id=data["userId"],
            cameo_id=data["cameoId"],
            phrase=data["phrase"],
            moves=list(data["moves"]),
            created_at=data["createdAt"],
            expires_at=data["expiresAt"],
        )


class ChallengeRefused(Exception):
    """An upload's challenge cannot be used; `reason` is a sentence for the person."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def new_challenge(user_id: str, cameo_id: str, *, now: int, ttl_s: int) -> Challenge:
    """Random digits to say and 3-4 head moves (no move twice in a row) to do, in order."""
    rng = secrets.SystemRandom()
    phrase = " ".join(str(rng.randrange(10)) for _ in range(_PHRASE_DIGITS))
    moves: list[str] = []
    for _ in range(rng.choice((3, 4))):
        moves.append(rng.choice([m for m in MOVES if not moves or m != moves[-1]]))
    return Challenge(
        id=secrets.token_urlsafe(18),
        user_id=user_id,
        cameo_id=cameo_id,
        phrase=phrase,
        moves=moves,
        created_at=now,
        expires_at=now + ttl_s * 1000,
    )


async def store_challenge(redis: Redis, challenge: Challenge) -> None:
    keep_ms = max(1, challenge.expires_at - challenge.created_at) + _KEEP_AFTER_MS
    await redis.set(_PREFIX + challenge.id, challenge.to_json(), px=keep_ms)


async def load_challenge(redis: Redis, challenge_id: str) -> Challenge | None:
    """The challenge if it exists and was not used (expired ones too: check expires_at)."""
    raw = await redis.get(_PREFIX + challenge_id)
    if raw is None:
        return None
    return Challenge.from_json(raw if isinstance(raw, str) else raw.decode())


async def consume_challenge(
    redis: Redis, challenge_id: str, user_id: str, *, now: int
) -> Challenge:
    """Use the challenge for one upload by user_id, or raise ChallengeRefused saying why."""
    keys = [_PREFIX + challenge_id, _USED_PREFIX + challenge_id]
    result = await redis.eval(_CONSUME, 2, *keys, user_id, now, _KEEP_AFTER_MS)
    outcome = result[0] if isinstance(result[0], str) else result[0].decode()
    if outcome == "ok":
        raw = result[1]
        return Challenge.from_json(raw if isinstance(raw, str) else raw.decode())
    if outcome == "used":
        raise ChallengeRefused("this capture challenge was already used; start a new capture", 409)
    if outcome == "expired":
        raise ChallengeRefused(
            "this capture challenge has expired; start a new capture and upload the video"
            " before its challenge expires",
            410,
        )
    if outcome == "forbidden":
        raise ChallengeRefused("this capture challenge belongs to someone else", 403)
    raise ChallengeRefused("no such capture challenge; start a new capture", 404)
