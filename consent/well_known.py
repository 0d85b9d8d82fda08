"""`GET /.well-known/reelgraph-keys`: the consent tokens' public keys, for anyone to verify.

The document lists every key that still verifies: the one that signs, a `next` key published
ahead of signing (`reelgraph keys rotate`), and rotated-out ones with their `retiresAt`
(retired ones too, refused), each as a PASERK `k4.public` under its `k4.pid` kid. Caches may
keep it for a few minutes, so a verifier that meets an unknown kid should fetch it again
before refusing.
"""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.datastructures import CacheControlHeader, State

__all__ = ["KEYS_MAX_AGE_S", "reelgraph_keys"]

# short: a next key should reach every cache before it signs, and verifiers refetch on an
# unknown kid anyway
KEYS_MAX_AGE_S = 300


@get(
    "/.well-known/reelgraph-keys",
    cache_control=CacheControlHeader(max_age=KEYS_MAX_AGE_S, public=True),
    media_type="application/json",
)
async def reelgraph_keys(state: State) -> dict[str, Any]:
    """The public keys document (no secret in it)."""
    return state.services.consent_keys.verifying().document()
