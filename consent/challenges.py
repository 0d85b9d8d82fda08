"""Liveness challenges: what the owner must say and do on camera, usable for one upload.

A challenge lives in Redis as JSON under `reelgraph:cameo-challenge:<id>` and keeps its
own `expiresAt` (epoch ms), so "expired" is decided by the time it names, never by when
Redis happens to drop the key (kept a while longer, so a late upload hears "expired" rather
than "unknown"). Consuming is one Lua script: the owner check, the expiry check, the delete
and a "used" marker happen atomically, so two uploads racing on one challenge cannot both
pass.

An upload holds a claim on its challenge while its body streams (`claim_upload`): the
challenge is checked (known, unused, the uploader's, unexpired) before a byte is read, and
a second upload on the same challenge is refused while the first one runs, so one challenge
never costs more than one capped upload of disk and bandwidth at a time.
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
    "claim_upload",
    "consume_challenge",
    "load_challenge",
    "new_challenge",
    "release_upload",
    "store_challenge",
]

MOVES = ("LEFT", "RIGHT", "UP", "DOWN", "TILT_LEFT", "TILT_RIGHT")
_PHRASE_DIGITS = 6
_PREFIX = "reelgraph:cameo-challenge:"
_USED_PREFIX = "reelgraph:cameo-challenge-used:"
_UPLOADING_PREFIX = "reelgraph:cameo-challenge-uploading:"
# how long a challenge's key outlives its expiry, and a used marker its use
_KEEP_AFTER_MS = 24 * 3600 * 1000

# Both scripts start here: KEYS[1] the challenge, KEYS[2] its used marker, ARGV[1] the
# user id; a challenge that is gone, used or someone else's ends the script.
_OWN_CHALLENGE = """
local raw = redis.call('GET', KEYS[1])
if not raw then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'used'} end
  return {'unknown'}
end
local challenge = cjson.decode(raw)
if challenge['userId'] ~= ARGV[1] then return {'forbidden'} end
"""

# KEYS: challenge, used marker. ARGV: user id, now (ms), keep (ms).
_CONSUME = (
    _OWN_CHALLENGE
    + """if tonumber(challenge['expiresAt']) <= tonumber(ARGV[2]) then return {'expired'} end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return {'ok', raw}
"""
)

# KEYS: challenge, used marker, upload claim. ARGV: user id, now (ms), claim token, grace (ms).
# The claim lasts until the challenge expires (an upload cannot be used after that) and a
# little more; the upload releases it when it ends, whatever the outcome.
_CLAIM = (
    _OWN_CHALLENGE
    + """local left = tonumber(challenge['expiresAt']) - tonumber(ARGV[2])
if left <= 0 then return {'expired'} end
local ttl = math.floor(left) + tonumber(ARGV[4])
if not redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ttl) then return {'busy'} end
return {'ok', raw}
"""
)

# KEYS: upload claim. ARGV: claim token. Only the upload that holds the claim drops it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_CLAIM_GRACE_MS = 5_000


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


def _decoded(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode()


async def claim_upload(
    redis: Redis, challenge_id: str, user_id: str, *, now: int
) -> tuple[Challenge, str]:
    """(the challenge, a claim token) for one upload by user_id, checked before the body is
    read: unknown, used, someone else's and expired challenges raise ChallengeRefused, and
    so does one another upload is streaming right now (409). Release the claim with
    release_upload when the upload ends; the challenge itself is used by consume_challenge."""
    token = secrets.token_urlsafe(16)
    keys = [_PREFIX + challenge_id, _USED_PREFIX + challenge_id, _UPLOADING_PREFIX + challenge_id]
    result = await redis.eval(_CLAIM, 3, *keys, user_id, now, token, _CLAIM_GRACE_MS)
    outcome = _decoded(result[0])
    if outcome == "ok":
        return Challenge.from_json(_decoded(result[1])), token
    if outcome == "busy":
        raise ChallengeRefused(
            "a video for this capture challenge is already being uploaded; wait for that"
            " upload to finish",
            409,
        )
    raise _refusal(outcome)


async def release_upload(redis: Redis, challenge_id: str, token: str) -> None:
    """Drop the claim claim_upload gave (a no-op once it expired or for another's token)."""
    await redis.eval(_RELEASE, 1, _UPLOADING_PREFIX + challenge_id, token)


async def consume_challenge(
    redis: Redis, challenge_id: str, user_id: str, *, now: int
) -> Challenge:
    """Use the challenge for one upload by user_id, or raise ChallengeRefused saying why."""
    keys = [_PREFIX + challenge_id, _USED_PREFIX + challenge_id]
    result = await redis.eval(_CONSUME, 2, *keys, user_id, now, _KEEP_AFTER_MS)
    outcome = _decoded(result[0])
    if outcome == "ok":
        return Challenge.from_json(_decoded(result[1]))
    raise _refusal(outcome)


def _refusal(outcome: str) -> ChallengeRefused:
    """Why a challenge cannot be used, from a script's outcome word."""
    if outcome == "used":
        return ChallengeRefused("this capture challenge was already used; start a new capture", 409)
    if outcome == "expired":
        return ChallengeRefused(
            "this capture challenge has expired; start a new capture and upload the video"
            " before its challenge expires",
            410,
        )
    if outcome == "forbidden":
        return ChallengeRefused("this capture challenge belongs to someone else", 403)
    return ChallengeRefused("no such capture challenge; start a new capture", 404)
