"""Consent tokens (consent/keyring.py, consent/tokens.py): PASETO v4.public with real keys.

Proven three ways: against the PASETO standard's official v4 test vectors and PASERK k4.pid
vectors (tests/data/paseto/), by an independent implementation (the npm `paseto` package,
pinned in tests/paseto_interop/ and installed with `npm ci` on first use) reading our
tokens, and by every rejection the consent model relies on, property-based mutations
included. Time is passed in (`now_ms`), never waited for.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pyseto
import pytest
import redis as sync_redis
import redis.asyncio as aredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from ulid import ULID

from consent.keyring import (
    KeyringError,
    SignatureInvalid,
    SigningKeyring,
    VerifyingKeyring,
    b64url_decode,
    b64url_encode,
    paserk_pid,
    paseto_sign,
    paseto_verify,
    public_keys_path,
    signing_keys_path,
)
from consent.tokens import (
    CLOCK_LEEWAY_S,
    TokenRejected,
    implicit_assertion,
    is_revoked,
    is_revoked_sync,
    mint_approval_token,
    mint_render_token,
    revoke_jti,
    revoke_jti_sync,
    spec_hash,
    verify_approval_token,
    verify_render_token,
)
from consent.well_known import KEYS_MAX_AGE_S
from settings import Settings
from tests.npm_harness import ensure_installed

VECTORS = Path(__file__).resolve().parent / "data" / "paseto"
INTEROP_DIR = Path(__file__).resolve().parent / "paseto_interop"
NPM_TIMEOUT_S = 600

NOW = 1_790_000_000_000  # a fixed clock (ms) for minting and verifying
SHA = "ab" * 32


def _vectors(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))["tests"]


def _settings(tmp_path: Path, **update: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **update)


@pytest.fixture
def ring(tmp_path: Path) -> SigningKeyring:
    return SigningKeyring.load(_settings(tmp_path))


@pytest.fixture
def verifier(tmp_path: Path, ring: SigningKeyring) -> VerifyingKeyring:
    """What a worker loads: the public-keys file the API process wrote."""
    return VerifyingKeyring.load(_settings(tmp_path))


RENDER = {
    "clip_id": "01CLIP",
    "cameo_id": "01CAMEO",
    "epoch": 3,
    "grantee_id": "01GRANTEE",
    "spec_hash": spec_hash(
        clip_id="01CLIP",
        author_id="01GRANTEE",
        prompt="a walk on the moon",
        duration_s=4,
        moods=["calm"],
        parent_id=None,
        cameo_ids=["01CAMEO"],
    ),
}
APPROVAL = {"clip_id": "01CLIP", "cameo_id": "01CAMEO", "epoch": 3, "sha256": SHA}


def _render_token(ring: SigningKeyring, now_ms: int = NOW, ttl_s: int = 600) -> tuple[str, str]:
    return mint_render_token(ring, owner_id="01OWNER", ttl_s=ttl_s, now_ms=now_ms, **RENDER)


def _approval_token(ring: SigningKeyring, now_ms: int = NOW) -> tuple[str, str]:
    return mint_approval_token(ring, owner_id="01OWNER", ttl_s=600, now_ms=now_ms, **APPROVAL)


# --- the official vectors ---------------------------------------------------------------


def test_v4_public_vectors_sign_and_verify_exactly() -> None:
    public_vectors = [v for v in _vectors("v4.json") if "public-key" in v and not v["expect-fail"]]
    assert len(public_vectors) == 3
    for vector in public_vectors:
        secret = pyseto.Key.from_asymmetric_key_params(
            4, d=bytes.fromhex(vector["secret-key-seed"])
        )
        public = pyseto.Key.from_asymmetric_key_params(4, x=bytes.fromhex(vector["public-key"]))
        footer = vector["footer"].encode()
        assertion = vector["implicit-assertion"].encode()
        # Ed25519 is deterministic: our signing must reproduce the expected token byte for byte
        token = paseto_sign(
            secret, vector["payload"].encode(), footer=footer, implicit_assertion=assertion
        )
        assert token == vector["token"], vector["name"]
        payload, got_footer = paseto_verify(public, vector["token"], implicit_assertion=assertion)
        assert (payload.decode(), got_footer) == (vector["payload"], footer), vector["name"]
        if assertion:  # the implicit assertion is bound: another one does not verify
            with pytest.raises(SignatureInvalid):
                paseto_verify(public, vector["token"], implicit_assertion=b"other")


def test_v4_expect_fail_vectors_fail() -> None:
    failing = [v for v in _vectors("v4.json") if v["expect-fail"]]
    assert failing
    signer = next(v for v in _vectors("v4.json") if "public-key" in v)
    for vector in failing:
        keys = [bytes.fromhex(signer["public-key"])]
        if len(bytes.fromhex(vector.get("key", ""))) == 32:  # a local key read as a public one
            keys.append(bytes.fromhex(vector["key"]))
        for raw in keys:
            public = pyseto.Key.from_asymmetric_key_params(4, x=raw)
            with pytest.raises(SignatureInvalid):
                paseto_verify(
                    public,
                    vector["token"],
                    implicit_assertion=vector["implicit-assertion"].encode(),
                )


def test_the_library_decrypts_the_v4_local_vectors_too() -> None:
    """pyseto's v4 core meets the standard (we use only v4.public). Its base64url decoder is
    lenient, though: it accepts the failure vectors 4-F-4 and 4-F-5 (non-canonical base64),
    which is why keyring.split_token decodes tokens itself, strictly (next test)."""
    local = [
        v
        for v in _vectors("v4.json")
        if v["token"].startswith("v4.local.") and "key" in v and not v["expect-fail"]
    ]
    assert len(local) >= 8
    for vector in local:
        key = pyseto.Key.new(4, "local", bytes.fromhex(vector["key"]))
        assertion = vector["implicit-assertion"].encode()
        token = pyseto.decode(key, vector["token"], implicit_assertion=assertion)
        assert token.payload.decode() == vector["payload"], vector["name"]


def test_non_canonical_base64_is_refused_like_4_f_4_and_4_f_5() -> None:
    vector = next(v for v in _vectors("v4.json") if v["name"] == "4-S-2")
    public = pyseto.Key.from_asymmetric_key_params(4, x=bytes.fromhex(vector["public-key"]))
    token = vector["token"]
    assert paseto_verify(public, token)
    body, footer = token.removeprefix("v4.public.").split(".")
    # the body (133 bytes) ends in a character with 4 unused bits: setting one of them
    # spells the same bytes another way
    assert len(b64url_decode(body)) % 3 == 1
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = body[:-1] + alphabet[alphabet.index(body[-1]) + 1]
    assert b64url_decode(body) == pyseto.utils.base64url_decode(respelled)
    for bad in (
        f"v4.public.{respelled}.{footer}",
        f"v4.public.{body}.{footer}==",
        f"v4.public.{body}==.{footer}",
        f"v4.public.{body}.{footer}.",
        f"v4.public.{body}.",
    ):
        with pytest.raises(SignatureInvalid):
            paseto_verify(public, bad)


def test_kids_are_paserk_k4_pid_per_the_vectors() -> None:
    vectors = _vectors("k4.pid.json")
    assert any(v["expect-fail"] for v in vectors)
    for vector in vectors:
        key = bytes.fromhex(vector["key"])
        if vector["expect-fail"]:
            with pytest.raises(ValueError):
                paserk_pid(key)
        else:
            assert paserk_pid(key) == vector["paserk"], vector["name"]


def test_the_keyring_signs_like_the_spec(tmp_path: Path) -> None:
    """SigningKeyring.sign (compact JSON claims and footer) reproduces vector 4-S-3."""
    vector = next(v for v in _vectors("v4.json") if v["name"] == "4-S-3")
    seed = bytes.fromhex(vector["secret-key-seed"])
    public = bytes.fromhex(vector["public-key"])
    document = {"keys": [{"secret": "k4.secret." + b64url_encode(seed + public), "createdAt": NOW}]}
    ring = SigningKeyring.load(_settings(tmp_path, consent_signing_keys=json.dumps(document)))
    token = ring.sign(
        json.loads(vector["payload"]),
        footer=json.loads(vector["footer"]),
        implicit_assertion=vector["implicit-assertion"].encode(),
        now_ms=NOW,
    )
    assert token == vector["token"]
    assert ring.current_kid == paserk_pid(public)


# --- an independent implementation -------------------------------------------------------


def _interop_node() -> str:
    return ensure_installed(
        INTEROP_DIR, "paseto", why="the PASETO interop check", missing=pytest.skip
    )


def test_npm_paseto_verifies_our_tokens(ring: SigningKeyring) -> None:
    node = _interop_node()
    render, _ = _render_token(ring, now_ms=None)  # type: ignore[arg-type]  # real clock: npm checks exp
    approval, _ = _approval_token(ring, now_ms=None)  # type: ignore[arg-type]
    (key,) = ring.verifying().document()["keys"]

    def case(token: str, purpose: str, audience: str | None = None) -> dict[str, str]:
        return {
            "token": token,
            "paserk": key["paserk"],
            "assertion": implicit_assertion(purpose).decode(),  # type: ignore[arg-type]
            "issuer": "reelgraph",
            "audience": audience or f"reelgraph:{purpose}",
        }

    cases = [
        case(render, "render"),
        case(approval, "approval"),
        case(render, "approval", "reelgraph:render"),  # another purpose: must fail there too
        case(render[:-8] + ("A" if render[-8] != "A" else "B") + render[-7:], "render"),
    ]
    proc = subprocess.run(
        [node, str(INTEROP_DIR / "verify.mjs")],
        input=json.dumps({"cases": cases}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout)["results"]
    ours = ring.verifying()
    for result, token, purpose in zip(
        results[:2], (render, approval), ("render", "approval"), strict=True
    ):
        assert result["ok"], result
        claims, footer = ours.verify(token, implicit_assertion=implicit_assertion(purpose))
        assert result["claims"] == claims
        assert json.loads(result["footer"]) == footer == {"kid": ring.current_kid}
    assert [r["ok"] for r in results[2:]] == [False, False], results


# --- the keyring -------------------------------------------------------------------------


def test_workers_get_public_keys_only(tmp_path: Path, ring: SigningKeyring) -> None:
    verifier = VerifyingKeyring.load(_settings(tmp_path))
    assert not hasattr(verifier, "sign") and not hasattr(verifier, "rotate")
    with pytest.raises(AttributeError):
        mint_render_token(verifier, owner_id="o", ttl_s=60, **RENDER)  # type: ignore[arg-type]
    # nothing reachable from it holds a private key
    held = [getattr(key, "_key", None) for key in verifier._keys.values()]
    assert held and all(isinstance(k, Ed25519PublicKey) for k in held)
    assert not any(isinstance(v, Ed25519PrivateKey) for v in vars(verifier).values())

    public_text = public_keys_path(_settings(tmp_path)).read_text()
    secret_doc = json.loads(signing_keys_path(_settings(tmp_path)).read_text())
    assert "secret" not in public_text
    for entry in secret_doc["keys"]:
        seed = b64url_decode(entry["secret"].removeprefix("k4.secret."))[:32]
        assert b64url_encode(seed) not in public_text and seed.hex() not in public_text
    for key in json.loads(public_text)["keys"]:
        assert len(b64url_decode(key["paserk"].removeprefix("k4.public."))) == 32
    mode = stat.S_IMODE(os.stat(signing_keys_path(_settings(tmp_path))).st_mode)
    assert mode == 0o600


def test_public_document_of_configured_keys_verifies_and_holds_no_secret() -> None:
    """What an operator gives workers (docker-compose.yml): the public half of the API's keys."""
    from consent.keyring import new_signing_document, public_document

    secret_text = new_signing_document()
    public_text = public_document(secret_text)
    assert "secret" not in public_text
    signer = SigningKeyring.load(
        Settings(consent_signing_keys=secret_text, data_dir=Path("/nonexistent/reelgraph"))
    )
    token, _ = mint_render_token(signer, owner_id="o", ttl_s=60, **RENDER)
    verifier = VerifyingKeyring.load(Settings(consent_public_keys=public_text))
    assert verify_render_token(verifier, token, **RENDER)["cameo"] == RENDER["cameo_id"]
    with pytest.raises(KeyringError):
        public_document("{not json")


def test_keys_persist_and_production_needs_configured_keys(
    tmp_path: Path, ring: SigningKeyring
) -> None:
    again = SigningKeyring.load(_settings(tmp_path))
    assert again.current_kid == ring.current_kid
    with pytest.raises(KeyringError, match="REELGRAPH_CONSENT_SIGNING_KEYS"):
        SigningKeyring.load(_settings(tmp_path / "prod", environment="production"))
    with pytest.raises(KeyringError, match="no consent public keys"):
        VerifyingKeyring.load(_settings(tmp_path / "empty"))


def test_rotation_new_key_signs_old_verifies_until_retired(
    tmp_path: Path, ring: SigningKeyring, verifier: VerifyingKeyring
) -> None:
    old_kid = ring.current_kid
    old, _ = _render_token(ring)
    new_kid = ring.rotate(now_ms=NOW)
    assert new_kid != old_kid and ring.current_kid == new_kid
    new, _ = _render_token(ring)
    # the worker's keyring reads the rotated file when it meets the new kid
    assert verify_render_token(verifier, new, now_ms=NOW, **RENDER)["jti"]
    assert verify_render_token(verifier, old, now_ms=NOW, **RENDER)["jti"]
    assert {k["kid"] for k in verifier.document()["keys"]} == {old_kid, new_kid}
    # the old key retires once the longest token it could have signed has expired
    settings = _settings(tmp_path)
    retire_at = NOW + max(settings.render_token_ttl_s, settings.approval_token_ttl_s) * 1000
    long_lived, _ = _render_token(ring, now_ms=retire_at - 1000, ttl_s=3600)
    with pytest.raises(TokenRejected, match="retired"):
        verify_render_token(verifier, old, now_ms=retire_at, **RENDER)
    assert verify_render_token(verifier, long_lived, now_ms=retire_at, **RENDER)


def test_api_processes_sharing_a_data_folder_follow_each_others_rotation(
    tmp_path: Path, ring: SigningKeyring
) -> None:
    other = SigningKeyring.load(_settings(tmp_path))  # a second API process
    assert other.current_kid == ring.current_kid
    new_kid = ring.rotate(now_ms=NOW)
    token, _ = _approval_token(ring)
    assert other.current_kid == new_kid  # it signs with the new key from now on too
    assert verify_approval_token(other, token, now_ms=NOW, **APPROVAL)
    old = next(k for k in other.verifying().kids if k != new_kid)
    other.retire(old, now_ms=NOW)
    assert ring.verifying().document()["keys"][0]["retiresAt"] == NOW


def test_a_retired_kid_is_refused(ring: SigningKeyring, verifier: VerifyingKeyring) -> None:
    token, _ = _render_token(ring)
    kid = ring.current_kid
    ring.rotate(now_ms=NOW)
    ring.retire(kid, now_ms=NOW)
    with pytest.raises(TokenRejected, match="retired"):
        verify_render_token(verifier, token, now_ms=NOW, **RENDER)
    with pytest.raises(TokenRejected, match="retired"):
        verify_render_token(ring, token, now_ms=NOW, **RENDER)


# --- rejections --------------------------------------------------------------------------


def test_a_valid_token_verifies_with_the_claims_it_binds(
    ring: SigningKeyring, verifier: VerifyingKeyring
) -> None:
    token, jti = _render_token(ring)
    claims = verify_render_token(verifier, token, now_ms=NOW, **RENDER)
    assert claims["jti"] == jti and str(ULID.from_str(jti)) == jti
    assert claims["iss"] == "reelgraph" and claims["aud"] == "reelgraph:render"
    assert (claims["cameo"], claims["epoch"], claims["owner"]) == ("01CAMEO", 3, "01OWNER")
    assert (claims["grantee"], claims["clip"], claims["spec"]) == (
        "01GRANTEE",
        "01CLIP",
        RENDER["spec_hash"],
    )
    assert claims["exp"] == "2026-09-21T14:23:20Z"  # NOW + 600 s, RFC 3339
    second, second_jti = _render_token(ring)
    assert second_jti != jti and second != token
    approval, _ = _approval_token(ring)
    assert verify_approval_token(verifier, approval, now_ms=NOW, **APPROVAL)["sha256"] == SHA


def test_a_flipped_byte_anywhere_is_rejected(
    ring: SigningKeyring, verifier: VerifyingKeyring
) -> None:
    token, _ = _render_token(ring)
    body, footer = token.removeprefix("v4.public.").split(".")
    raw_body, raw_footer = b64url_decode(body), b64url_decode(footer)
    for i in range(len(raw_body)):
        flipped = bytearray(raw_body)
        flipped[i] ^= 0x01
        mutated = f"v4.public.{b64url_encode(bytes(flipped))}.{footer}"
        with pytest.raises(TokenRejected):
            verify_render_token(verifier, mutated, now_ms=NOW, **RENDER)
    for i in range(len(raw_footer)):
        flipped = bytearray(raw_footer)
        flipped[i] ^= 0x01
        mutated = f"v4.public.{body}.{b64url_encode(bytes(flipped))}"
        with pytest.raises(TokenRejected):
            verify_render_token(verifier, mutated, now_ms=NOW, **RENDER)


def test_another_key_under_a_known_kid_is_rejected(
    tmp_path: Path, ring: SigningKeyring, verifier: VerifyingKeyring
) -> None:
    forger = SigningKeyring.load(_settings(tmp_path / "forger"))
    token, _ = _render_token(ring)
    claims, _ = verifier.verify(token, implicit_assertion=implicit_assertion("render"))
    forged = forger.sign(
        claims, footer={"kid": ring.current_kid}, implicit_assertion=implicit_assertion("render")
    )
    with pytest.raises(TokenRejected, match="signature"):
        verify_render_token(verifier, forged, now_ms=NOW, **RENDER)


def test_an_unknown_kid_or_a_footer_with_more_is_rejected(
    tmp_path: Path, verifier: VerifyingKeyring
) -> None:
    stranger = SigningKeyring.load(_settings(tmp_path / "stranger"))
    token, _ = _render_token(stranger)
    with pytest.raises(TokenRejected, match="unknown key"):
        verify_render_token(verifier, token, now_ms=NOW, **RENDER)
    extra = stranger.sign({"a": 1}, footer={"kid": stranger.current_kid, "x": "y"})
    with pytest.raises(TokenRejected, match="footer"):
        verify_render_token(verifier, extra, now_ms=NOW, **RENDER)


def test_expired_and_not_yet_valid_tokens_are_rejected(
    ring: SigningKeyring, verifier: VerifyingKeyring
) -> None:
    token, _ = _render_token(ring, ttl_s=600)
    leeway = CLOCK_LEEWAY_S * 1000
    assert verify_render_token(verifier, token, now_ms=NOW + 600_000 + leeway - 1000, **RENDER)
    with pytest.raises(TokenRejected, match="expired"):
        verify_render_token(verifier, token, now_ms=NOW + 600_000 + leeway, **RENDER)
    assert verify_render_token(verifier, token, now_ms=NOW - leeway, **RENDER)
    with pytest.raises(TokenRejected, match="not valid yet"):
        verify_render_token(verifier, token, now_ms=NOW - leeway - 1000, **RENDER)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("epoch", 4, "consent epoch"),
        ("spec_hash", "0" * 64, "another draft"),
        ("grantee_id", "01STRANGER", "another user"),
        ("cameo_id", "01OTHERCAMEO", "another cameo"),
        ("clip_id", "01OTHERCLIP", "another clip"),
    ],
)
def test_a_render_token_binds_its_use(
    ring: SigningKeyring, verifier: VerifyingKeyring, field: str, value: Any, reason: str
) -> None:
    token, _ = _render_token(ring)
    with pytest.raises(TokenRejected, match=reason):
        verify_render_token(verifier, token, now_ms=NOW, **{**RENDER, field: value})


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("epoch", 4, "consent epoch"),
        ("sha256", "cd" * 32, "another video"),
        ("cameo_id", "01OTHERCAMEO", "another cameo"),
        ("clip_id", "01OTHERCLIP", "another clip"),  # an approval replayed on another clip
    ],
)
def test_an_approval_binds_its_clip_and_video(
    ring: SigningKeyring, verifier: VerifyingKeyring, field: str, value: Any, reason: str
) -> None:
    token, _ = _approval_token(ring)
    with pytest.raises(TokenRejected, match=reason):
        verify_approval_token(verifier, token, now_ms=NOW, **{**APPROVAL, field: value})


def test_a_token_of_one_purpose_never_verifies_as_another(
    ring: SigningKeyring, verifier: VerifyingKeyring
) -> None:
    render, _ = _render_token(ring)
    approval, _ = _approval_token(ring)
    with pytest.raises(TokenRejected, match="not a token for approval"):
        verify_approval_token(verifier, render, now_ms=NOW, **APPROVAL)
    with pytest.raises(TokenRejected, match="not a token for render"):
        verify_render_token(verifier, approval, now_ms=NOW, **RENDER)
    # even signed under the right assertion, a payload claiming another purpose is refused
    claims, _ = verifier.verify(render, implicit_assertion=implicit_assertion("render"))
    relabeled = ring.sign(
        {**claims, "purpose": "approval", "aud": "reelgraph:approval"},
        implicit_assertion=implicit_assertion("render"),
    )
    with pytest.raises(TokenRejected, match="not a render token"):
        verify_render_token(verifier, relabeled, now_ms=NOW, **RENDER)
    # and an access token (or any other PASETO) is not a consent token
    other = ring.sign({"sub": "01GRANTEE", "typ": "access"})
    with pytest.raises(TokenRejected):
        verify_render_token(verifier, other, now_ms=NOW, **RENDER)
    for junk in ("", "v4.public.", "v4.local.abc", "x" * 5000, None):
        with pytest.raises(TokenRejected):
            verify_render_token(verifier, junk, now_ms=NOW, **RENDER)  # type: ignore[arg-type]


def test_a_token_of_another_issuer_is_rejected(ring: SigningKeyring) -> None:
    token, _ = _render_token(ring)
    document = {**ring.verifying().document(), "issuer": "elsewhere"}
    with pytest.raises(TokenRejected, match="another issuer"):
        verify_render_token(VerifyingKeyring.from_document(document), token, now_ms=NOW, **RENDER)


async def test_a_revoked_jti_is_refused_sync_and_async(
    settings: Settings, ring: SigningKeyring, verifier: VerifyingKeyring
) -> None:
    assert settings.redis_url
    token, jti = _render_token(ring, now_ms=None, ttl_s=600)  # type: ignore[arg-type]
    until_ms = int(ULID.from_str(jti).timestamp * 1000) + 600_000
    client = aredis.Redis.from_url(settings.redis_url)
    worker = sync_redis.Redis.from_url(settings.redis_url)
    try:
        assert verify_render_token(verifier, token, **RENDER)
        assert not await is_revoked(client, jti) and not is_revoked_sync(worker, jti)
        await revoke_jti(client, jti, until_ms)
        assert await is_revoked(client, jti) and is_revoked_sync(worker, jti)
        # kept at least until the token expires (plus the leeway a verifier allows)
        assert await client.pexpiretime(f"consent:revoked:{jti}") >= until_ms
        _, other = _approval_token(ring, now_ms=None)  # type: ignore[arg-type]
        revoke_jti_sync(worker, other, until_ms)
        assert await is_revoked(client, other)
    finally:
        await client.aclose()
        worker.close()


def test_spec_hash_binds_the_spec_not_the_order_of_sets() -> None:
    base = {
        "clip_id": "c",
        "author_id": "a",
        "prompt": "p",
        "duration_s": 4,
        "moods": ["calm", "eerie"],
        "parent_id": None,
        "cameo_ids": ["m1", "m2"],
    }
    digest = spec_hash(**base)
    assert len(digest) == 64
    assert spec_hash(**{**base, "moods": ["eerie", "calm"], "cameo_ids": ["m2", "m1"]}) == digest
    assert spec_hash(**{**base, "duration_s": 4.0}) == digest
    for field, value in [
        ("clip_id", "d"),
        ("author_id", "b"),
        ("prompt", "p "),
        ("duration_s", 5),
        ("moods", ["calm"]),
        ("parent_id", "c0"),
        ("cameo_ids", ["m1"]),
    ]:
        assert spec_hash(**{**base, field: value}) != digest, field


# --- property-based mutations --------------------------------------------------------------

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ é"


@st.composite
def _mutations(draw: st.DrawFn, token: str) -> str:
    text = token
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "swap"]))
        i = draw(st.integers(0, max(len(text) - 1, 0)))
        if op == "replace":
            text = text[:i] + draw(st.sampled_from(_ALPHABET)) + text[i + 1 :]
        elif op == "insert":
            text = text[:i] + draw(st.text(_ALPHABET, min_size=1, max_size=3)) + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1 :]
        elif op == "truncate":
            text = text[:i]
        elif text:
            j = draw(st.integers(0, len(text) - 1))
            i = min(i, len(text) - 1)
            chars = list(text)
            chars[i], chars[j] = chars[j], chars[i]
            text = "".join(chars)
    return text


def test_mutations_of_valid_tokens_are_rejected_or_change_nothing(tmp_path: Path) -> None:
    ring = SigningKeyring.load(_settings(tmp_path))
    verifier = ring.verifying()
    render, _ = _render_token(ring)
    approval, _ = _approval_token(ring)
    expected_render = verify_render_token(verifier, render, now_ms=NOW, **RENDER)
    expected_approval = verify_approval_token(verifier, approval, now_ms=NOW, **APPROVAL)

    @hsettings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(_mutations(render), _mutations(approval)), st.booleans())
    def check(mutated: str, as_render: bool) -> None:
        try:
            if as_render:
                claims = verify_render_token(verifier, mutated, now_ms=NOW, **RENDER)
                assert claims == expected_render
            else:
                claims = verify_approval_token(verifier, mutated, now_ms=NOW, **APPROVAL)
                assert claims == expected_approval
        except TokenRejected:
            pass

    check()


# --- the published keys ------------------------------------------------------------------


async def test_well_known_keys_let_anyone_verify(app: Any, services: Any) -> None:
    response = await app.get("/.well-known/reelgraph-keys")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert f"max-age={KEYS_MAX_AGE_S}" in response.headers["cache-control"]
    assert "public" in response.headers["cache-control"]
    assert "secret" not in response.text
    document = response.json()
    assert document["issuer"] == "reelgraph" and document["paseto"] == "v4.public"
    keyring: SigningKeyring = services.consent_keys
    assert keyring.current_kid in {key["kid"] for key in document["keys"]}
    token, _ = mint_render_token(keyring, owner_id="01OWNER", ttl_s=60, **RENDER)
    outsider = VerifyingKeyring.from_document(document)
    assert verify_render_token(outsider, token, **RENDER)["owner"] == "01OWNER"


def test_a_document_whose_kid_lies_is_refused(ring: SigningKeyring) -> None:
    document = ring.verifying().document()
    document["keys"][0]["kid"] = paserk_pid(bytes(32))
    with pytest.raises(KeyringError, match=r"k4\.pid"):
        VerifyingKeyring.from_document(document)
