"""Short-lived signed access tokens and rotating refresh tokens.

Refresh tokens belong to a family (one per log-in). Redis keeps the one live token id of each
family; using it rotates it, and presenting any older token of the family revokes the family.
Access tokens name their family (`fam`) so that a revoked session can be refused before its
access tokens expire: the family is live while its key exists (`family_is_live`). Access tokens
minted before they carried `fam` are valid until they expire, unchecked.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt
from redis.asyncio import Redis

from errors import Unauthenticated

__all__ = ["REVOKED", "AccessClaims", "TokenPair", "TokenService"]

_ALGORITHM = "HS256"
_ISSUER = "reelgraph"

REVOKED = "the session was revoked; sign in again"

# returns 1 rotated, 0 unknown/expired family, -1 reuse detected (family revoked)
_ROTATE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if current ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return -1
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    expires_at: int  # epoch seconds
    family: str | None  # None: minted before access tokens named their refresh family


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    user_id: str


class TokenService:
    def __init__(self, redis: Redis, secret: str, access_ttl_s: int, refresh_ttl_s: int) -> None:
        self._redis = redis
        self._secret = secret
        self._access_ttl = access_ttl_s
        self._refresh_ttl = refresh_ttl_s
        self._rotate = redis.register_script(_ROTATE)

    def _sign(self, claims: dict, ttl_s: int) -> str:
        now = int(time.time())
        payload = {**claims, "iss": _ISSUER, "iat": now, "exp": now + ttl_s}
        return jwt.encode(payload, self._secret, algorithm=_ALGORITHM)

    def _decode(self, token: str, expected_type: str) -> dict:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("the token is invalid") from None
        if claims.get("typ") != expected_type:
            raise Unauthenticated(f"expected an {expected_type} token") from None
        return claims

    def access_token(self, user_id: str, family: str | None = None) -> str:
        claims = {"sub": user_id, "typ": "access"}
        if family is not None:
            claims["fam"] = family
        return self._sign(claims, self._access_ttl)

    def verify_access(self, token: str) -> str:
        """The user id an access token was issued to; UNAUTHENTICATED if it is not valid."""
        return self.read_access(token).user_id

    def read_access(self, token: str) -> AccessClaims:
        """A valid access token's claims; UNAUTHENTICATED if it is not valid. Whether its
        family is still live is a separate, async question: `family_is_live`."""
        claims = self._decode(token, "access")
        family = claims.get("fam")
        if family is not None and (not isinstance(family, str) or not family):
            raise Unauthenticated("the token is invalid")
        return AccessClaims(claims["sub"], int(claims["exp"]), family)

    async def family_is_live(self, family: str) -> bool:
        """False once the family was revoked (refresh-token reuse) or its refresh token lapsed.

        One EXISTS: cheap enough for every request. The key outlives every access token of
        the family as long as the access TTL is not longer than the refresh TTL (each
        rotation mints the access token and renews the key together)."""
        return bool(await self._redis.exists(self.family_key(family)))

    async def issue(self, user_id: str) -> TokenPair:
        """A new family: one log-in or sign-up."""
        family, jti = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        await self._redis.set(self.family_key(family), jti, ex=self._refresh_ttl)
        return TokenPair(
            self.access_token(user_id, family), self._refresh(user_id, family, jti), user_id
        )

    async def rotate(self, refresh_token: str) -> TokenPair:
        claims = self._decode(refresh_token, "refresh")
        user_id, family, jti = claims["sub"], claims.get("fam"), claims.get("jti")
        if not family or not jti:
            raise Unauthenticated("the token is invalid")
        new_jti = secrets.token_urlsafe(16)
        outcome = await self._rotate(
            keys=[self.family_key(family)], args=[jti, new_jti, self._refresh_ttl]
        )
        if outcome == -1:
            raise Unauthenticated("refresh token reuse detected; this session was signed out")
        if outcome != 1:
            raise Unauthenticated("the session has ended; log in again")
        return TokenPair(
            self.access_token(user_id, family), self._refresh(user_id, family, new_jti), user_id
        )

    def _refresh(self, user_id: str, family: str, jti: str) -> str:
        claims = {"sub": user_id, "typ": "refresh", "fam": family, "jti": jti}
        return self._sign(claims, self._refresh_ttl)

    @staticmethod
    def family_key(family: str) -> str:
        """The Redis key that holds a refresh family while it is live."""
        return f"reelgraph:refresh:{family}"
