"""Render and approval tokens: PASETO v4.public, each bound to one use of one cameo.

A render token lets one worker render one draft spec (its hash) featuring one cameo for one
grantee under the cameo's current consent epoch; an approval token is an owner's signed
"yes" to one clip's exact video (its sha256). The purpose is bound twice: by the `purpose`
and `aud` claims and by the PASETO implicit assertion, so a token of one purpose never
verifies as another even if a claim check were forgotten. Every token has a unique `jti`
(a ULID) that can be revoked in Redis until the token would expire anyway.

A rejection says what kind of problem it is (`TokenRejected.kind`), so a failed render can
tell the owner's decision from a clock and from an operator's keys: REVOKED (the cameo's
consent epoch moved on), EXPIRED, KEY_PROBLEM (an unknown or retired signing key), INVALID
(anything else: malformed, forged, or bound to another use).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from ulid import ULID

from consent.keyring import KeyUnavailable, SignatureInvalid, SigningKeyring, VerifyingKeyring

if TYPE_CHECKING:
    from redis import Redis as SyncRedis
    from redis.asyncio import Redis

__all__ = [
    "CLOCK_LEEWAY_S",
    "EXPIRED",
    "INVALID",
    "KEY_PROBLEM",
    "REVOKED",
    "TokenRejected",
    "implicit_assertion",
    "is_revoked",
    "is_revoked_sync",
    "mint_approval_token",
    "mint_render_token",
    "revoke_jti",
    "revoke_jti_sync",
    "spec_hash",
    "verify_approval_token",
    "verify_render_token",
]

Purpose = Literal["render", "approval"]
RejectionKind = Literal["revoked", "expired", "key-problem", "invalid"]
REVOKED: RejectionKind = "revoked"
EXPIRED: RejectionKind = "expired"
KEY_PROBLEM: RejectionKind = "key-problem"
INVALID: RejectionKind = "invalid"

# clocks of API and worker machines may disagree this much
CLOCK_LEEWAY_S = 30
_MAX_TOKEN_CHARS = 4096
_REVOKED_PREFIX = "consent:revoked:"

_COMMON_CLAIMS = {"iss", "aud", "purpose", "sub", "cameo", "epoch", "owner", "clip"}
_TIME_CLAIMS = {"iat", "nbf", "exp", "jti"}
_CLAIMS: dict[str, frozenset[str]] = {
    "render": frozenset(_COMMON_CLAIMS | _TIME_CLAIMS | {"grantee", "spec"}),
    "approval": frozenset(_COMMON_CLAIMS | _TIME_CLAIMS | {"sha256"}),
}


class TokenRejected(Exception):
    """A consent token that must not be honoured; `reason` says why, for logs (it never
    contains the token); `kind` which sort of problem it is (REVOKED, EXPIRED, KEY_PROBLEM,
    INVALID), for the sentence a FAILED clip shows."""

    def __init__(self, reason: str, kind: RejectionKind = INVALID) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def implicit_assertion(purpose: Purpose) -> bytes:
    """What the signature binds beside the payload: the purpose (PASETO implicit assertion)."""
    return json.dumps({"purpose": purpose}, separators=(",", ":")).encode("ascii")


def _audience(purpose: Purpose) -> str:
    return f"reelgraph:{purpose}"


def spec_hash(
    *,
    clip_id: str,
    author_id: str,
    prompt: str,
    duration_s: float,
    moods: list[str],
    parent_id: str | None,
    cameo_ids: list[str],
) -> str:
    """SHA-256 (hex) of a draft's render spec in canonical JSON. Moods and cameos are sets
    here (sorted), so the hash does not depend on the order a client or the graph lists them."""
    spec = {
        "clip": clip_id,
        "author": author_id,
        "prompt": prompt,
        "durationS": float(duration_s),
        "moods": sorted(moods),
        "parent": parent_id,
        "cameos": sorted(cameo_ids),
    }
    canonical = json.dumps(spec, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(claims: dict, name: str) -> int:
    """Epoch seconds of an RFC 3339 time claim; TokenRejected if absent or malformed."""
    value = claims.get(name)
    if not isinstance(value, str) or len(value) > 40:
        raise TokenRejected(f"the token's {name} is not a time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TokenRejected(f"the token's {name} is not a time") from None
    if parsed.tzinfo is None:
        raise TokenRejected(f"the token's {name} has no time zone")
    return int(parsed.timestamp())


def _mint(
    keyring: SigningKeyring,
    purpose: Purpose,
    claims: dict[str, Any],
    ttl_s: int,
    now_ms: int | None,
) -> tuple[str, str]:
    if ttl_s <= 0:
        raise ValueError("a token lifetime must be positive")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    jti = str(ULID.from_timestamp(now / 1000))
    full = {
        "iss": keyring.issuer,
        "aud": _audience(purpose),
        "purpose": purpose,
        **claims,
        "iat": _iso(now),
        "nbf": _iso(now),
        "exp": _iso(now + ttl_s * 1000),
        "jti": jti,
    }
    token = keyring.sign(full, implicit_assertion=implicit_assertion(purpose), now_ms=now)
    return token, jti


def _verify(
    keyring: SigningKeyring | VerifyingKeyring,
    purpose: Purpose,
    token: str,
    expected: dict[str, Any],
    now_ms: int | None,
) -> dict:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
        raise TokenRejected("the token is missing or too long")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        claims, _ = keyring.verify(
            token, implicit_assertion=implicit_assertion(purpose), now_ms=now
        )
    except KeyUnavailable as err:
        # the key it names is unknown or retired: nothing about the token itself is known
        raise TokenRejected(str(err), KEY_PROBLEM) from None
    except SignatureInvalid as err:
        # a token of another purpose lands here too: its implicit assertion differs
        raise TokenRejected(f"{err} (or it is not a token for {purpose})") from None
    if set(claims) != _CLAIMS[purpose]:
        raise TokenRejected(f"the token's claims are not those of a {purpose} token")
    if claims["purpose"] != purpose or claims["aud"] != _audience(purpose):
        raise TokenRejected(f"the token is not a {purpose} token")
    if claims["iss"] != keyring.issuer:
        raise TokenRejected("the token comes from another issuer")
    jti = claims["jti"]
    if not isinstance(jti, str) or len(jti) != 26:
        raise TokenRejected("the token's jti is not a ULID")
    now_s = now // 1000
    iat, nbf, exp = (_parse_time(claims, name) for name in ("iat", "nbf", "exp"))
    if exp <= iat:
        raise TokenRejected("the token expires before it was issued")
    if now_s >= exp + CLOCK_LEEWAY_S:
        raise TokenRejected("the token has expired", EXPIRED)
    if now_s < nbf - CLOCK_LEEWAY_S or now_s < iat - CLOCK_LEEWAY_S:
        raise TokenRejected("the token is not valid yet")
    epoch = claims["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        raise TokenRejected("the token's consent epoch is not an integer")
    for name, want in expected.items():
        if claims[name] != want:
            # a moved consent epoch is the owner's decision; any other mismatch is misuse
            raise TokenRejected(_MISMATCH[name], REVOKED if name == "epoch" else INVALID)
    return claims


_MISMATCH = {
    "clip": "the token is for another clip",
    "cameo": "the token is for another cameo",
    "epoch": "the cameo's consent changed since the token was issued (consent epoch)",
    "grantee": "the token was issued to another user",
    "spec": "the token is for another draft (spec hash)",
    "sha256": "the token approves another video (sha256)",
    "owner": "the token was signed for another owner",
}


def mint_render_token(
    keyring: SigningKeyring,
    *,
    clip_id: str,
    cameo_id: str,
    epoch: int,
    owner_id: str,
    grantee_id: str,
    spec_hash: str,
    ttl_s: int,
    now_ms: int | None = None,
) -> tuple[str, str]:
    """(token, jti) letting a worker render `spec_hash` of `clip_id` featuring `cameo_id`."""
    claims = {
        "sub": grantee_id,
        "cameo": cameo_id,
        "epoch": epoch,
        "owner": owner_id,
        "grantee": grantee_id,
        "clip": clip_id,
        "spec": spec_hash,
    }
    return _mint(keyring, "render", claims, ttl_s, now_ms)


def verify_render_token(
    keyring: SigningKeyring | VerifyingKeyring,
    token: str,
    *,
    clip_id: str,
    cameo_id: str,
    epoch: int,
    grantee_id: str,
    spec_hash: str,
    now_ms: int | None = None,
) -> dict:
    """The claims of a render token valid for exactly this use; TokenRejected otherwise.
    Revocation is a separate Redis check (`is_revoked`)."""
    expected = {
        "clip": clip_id,
        "cameo": cameo_id,
        "epoch": epoch,
        "grantee": grantee_id,
        "spec": spec_hash,
    }
    claims = _verify(keyring, "render", token, expected, now_ms)
    if claims["sub"] != claims["grantee"]:
        raise TokenRejected("the token's subject is not its grantee")
    return claims


def mint_approval_token(
    keyring: SigningKeyring,
    *,
    clip_id: str,
    cameo_id: str,
    epoch: int,
    owner_id: str,
    sha256: str,
    ttl_s: int,
    now_ms: int | None = None,
) -> tuple[str, str]:
    """(token, jti): `owner_id` approves `cameo_id` appearing in the video `sha256` of
    `clip_id`."""
    claims = {
        "sub": owner_id,
        "cameo": cameo_id,
        "epoch": epoch,
        "owner": owner_id,
        "clip": clip_id,
        "sha256": sha256,
    }
    return _mint(keyring, "approval", claims, ttl_s, now_ms)


def verify_approval_token(
    keyring: SigningKeyring | VerifyingKeyring,
    token: str,
    *,
    clip_id: str,
    cameo_id: str,
    epoch: int,
    sha256: str,
    now_ms: int | None = None,
) -> dict:
    """The claims of an approval valid for exactly this clip, cameo, epoch and video."""
    expected = {"clip": clip_id, "cameo": cameo_id, "epoch": epoch, "sha256": sha256}
    claims = _verify(keyring, "approval", token, expected, now_ms)
    if claims["sub"] != claims["owner"]:
        raise TokenRejected("the approval was not signed for the cameo's owner")
    return claims


def _revoked_key(jti: str) -> str:
    return _REVOKED_PREFIX + jti


def _expire_at_ms(until_ms: int) -> int:
    # a revocation must outlive the token's expiry plus the clock leeway verification allows
    return max(until_ms + CLOCK_LEEWAY_S * 1000, int(time.time() * 1000) + 1000)


async def revoke_jti(redis: Redis, jti: str, until_ms: int) -> None:
    """Refuse the token `jti` from now on (kept until `until_ms`, when it expires anyway)."""
    await redis.set(_revoked_key(jti), b"1", pxat=_expire_at_ms(until_ms))


async def is_revoked(redis: Redis, jti: str) -> bool:
    return bool(await redis.exists(_revoked_key(jti)))


def revoke_jti_sync(redis: SyncRedis, jti: str, until_ms: int) -> None:
    redis.set(_revoked_key(jti), b"1", pxat=_expire_at_ms(until_ms))


def is_revoked_sync(redis: SyncRedis, jti: str) -> bool:
    return bool(redis.exists(_revoked_key(jti)))
