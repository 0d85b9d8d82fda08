"""Envelope encryption of a cameo's reference media (AES-256-GCM).

Each cameo has its own random data key; its files are encrypted under it, and the graph keeps
only the data key wrapped by the key-encryption key (KEK) from settings. Deleting a cameo
nulls the wrapped key: without it the encrypted files (and any backup of them) are noise
(crypto-shredding). Every nonce is 96 random bits, never reused under one key by design: a
data key encrypts a handful of frames, far below GCM's random-nonce bound (2^32 messages).
The associated data binds each ciphertext to its cameo and purpose, so a blob or a wrapped
key copied onto another cameo does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consent.keyring import b64url_decode, b64url_encode, consent_dir, write_atomic

if TYPE_CHECKING:
    from pathlib import Path

    from settings import Settings

__all__ = [
    "EnvelopeError",
    "Kek",
    "KeyShredded",
    "decrypt",
    "encrypt",
    "kek_path",
    "load_kek",
    "new_data_key",
    "reference_aad",
    "unwrap_key",
    "wrap_key",
]

_KEY_BYTES = 32
_NONCE_BYTES = 12
_BLOB_MAGIC = b"RGE1"  # format version of an encrypted blob
_WRAP_PREFIX = "rgk1"  # format version of a wrapped key


class EnvelopeError(Exception):
    """A ciphertext or wrapped key that does not decrypt: tampered, truncated, bound to
    another cameo, or under another key."""


class KeyShredded(EnvelopeError):
    """The cameo's data key was destroyed (the cameo was deleted): nothing can decrypt."""


@dataclass(frozen=True, repr=False)
class Kek:
    kid: str
    key: bytes

    def __repr__(self) -> str:  # never print the key
        return f"Kek(kid={self.kid!r})"


def _kek_id(key: bytes) -> str:
    # a one-way tag of the key: names it in wrapped keys without revealing it
    return hashlib.sha256(b"reelgraph-kek-id\x00" + key).hexdigest()[:16]


def kek_path(settings: Settings) -> Path:
    return consent_dir(settings) / "kek"


def _decode_kek(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{where} is not base64") from None
    if len(key) != _KEY_BYTES:
        raise ValueError(f"{where} must be {_KEY_BYTES} bytes (base64), not {len(key)}")
    return key


def load_kek(settings: Settings) -> Kek:
    """The KEK from `settings.cameo_kek` (base64 of 32 bytes), else `<data_dir>/consent/kek`,
    generated (mode 0600) on first use."""
    if settings.cameo_kek:
        key = _decode_kek(settings.cameo_kek, "cameo_kek")
    elif settings.environment == "production":
        raise RuntimeError("set REELGRAPH_CAMEO_KEK in production (API and workers need it)")
    else:
        path = kek_path(settings)
        if not path.exists():
            fresh = base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode("ascii")
            # another process may create it at the same moment: then theirs wins
            write_atomic(path, fresh + "\n", mode=0o600, exclusive=True)
        key = _decode_kek(path.read_text(encoding="ascii"), str(path))
    return Kek(_kek_id(key), key)


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _wrap_aad(cameo_id: str, kid: str) -> bytes:
    return f"reelgraph:cameo-data-key:v1:{kid}:{cameo_id}".encode()


def reference_aad(cameo_id: str) -> bytes:
    """Associated data of a cameo's encrypted reference frames."""
    return f"reelgraph:cameo-reference:v1:{cameo_id}".encode()


def wrap_key(kek: Kek, data_key: bytes, *, cameo_id: str) -> str:
    """`rgk1.<kek id>.<base64url(nonce | ciphertext)>`: the data key under the KEK, bound to
    the cameo."""
    if len(data_key) != _KEY_BYTES:
        raise ValueError("a data key is 32 bytes")
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(kek.key).encrypt(nonce, data_key, _wrap_aad(cameo_id, kek.kid))
    return f"{_WRAP_PREFIX}.{kek.kid}.{b64url_encode(nonce + sealed)}"


def unwrap_key(kek: Kek, wrapped: str | None, *, cameo_id: str) -> bytes:
    """The cameo's data key; KeyShredded if it was destroyed, EnvelopeError if the wrapped
    key is malformed, under another KEK, or for another cameo."""
    if wrapped is None:
        raise KeyShredded("the cameo's key was destroyed: its reference media cannot be read")
    parts = wrapped.split(".") if isinstance(wrapped, str) else []
    if len(parts) != 3 or parts[0] != _WRAP_PREFIX:
        raise EnvelopeError("the wrapped key is malformed")
    if parts[1] != kek.kid:
        raise EnvelopeError(f"the key is wrapped under KEK {parts[1]}, not the configured one")
    try:
        raw = b64url_decode(parts[2])
    except ValueError:
        raise EnvelopeError("the wrapped key is malformed") from None
    if len(raw) != _NONCE_BYTES + _KEY_BYTES + 16:
        raise EnvelopeError("the wrapped key has the wrong length")
    try:
        return AESGCM(kek.key).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _wrap_aad(cameo_id, kek.kid)
        )
    except InvalidTag:
        raise EnvelopeError("the wrapped key does not open (tampered or another cameo's)") from None


def encrypt(data_key: bytes, plaintext: bytes, *, aad: bytes) -> bytes:
    """`RGE1 | nonce | ciphertext+tag`."""
    nonce = os.urandom(_NONCE_BYTES)
    return _BLOB_MAGIC + nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)


def decrypt(data_key: bytes, blob: bytes, *, aad: bytes) -> bytes:
    """The plaintext of `encrypt`'s blob; EnvelopeError if tampered or `aad` differs."""
    header = len(_BLOB_MAGIC) + _NONCE_BYTES
    if len(blob) < header + 16 or not blob.startswith(_BLOB_MAGIC):
        raise EnvelopeError("not an encrypted reference blob")
    nonce = blob[len(_BLOB_MAGIC) : header]
    try:
        return AESGCM(data_key).decrypt(nonce, blob[header:], aad)
    except InvalidTag:
        raise EnvelopeError("the blob does not decrypt (tampered, or another cameo's)") from None
