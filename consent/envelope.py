"""Envelope encryption of a cameo's reference media (AES-256-GCM).

Each cameo has its own random data key; its files are encrypted under it, and the graph keeps
only the data key wrapped by a key-encryption key (KEK). Deleting a cameo nulls the wrapped
key: without it the encrypted files (and any backup of them) are noise (crypto-shredding).
Every nonce is 96 random bits, never reused under one key by design: a data key encrypts a
handful of frames, far below GCM's random-nonce bound (2^32 messages). The associated data
binds each ciphertext to its cameo and purpose, so a blob or a wrapped key copied onto
another cameo does not decrypt.

KEKs form a ring (`KekRing`), looked up by id: every wrapped key names the KEK that wrapped
it (`rgk1.<kek id>.<...>`), new keys are wrapped under the ring's current KEK, and
`reelgraph keys rewrap` moves old ones to it, after which an old KEK can be retired. A KEK's
id is the operator's (`id:base64` in REELGRAPH_CAMEO_KEKS) or, for a bare key (the single
REELGRAPH_CAMEO_KEK, a generated development key), a one-way tag of the key itself; a key
given an id of its own still opens what was wrapped under its tag.

Where the ring comes from (`load_kek_ring`): REELGRAPH_CAMEO_KEKS (a comma list or a JSON
list of `id:base64`, newest first; or a JSON object id -> base64), then REELGRAPH_CAMEO_KEK
as one more (older) key; REELGRAPH_CAMEO_KEK_CURRENT picks the current one (default: the
first). With neither set (development only), `<data_dir>/consent/kek` (mode 0600): one key
per line, `id:base64` or a bare base64 key, the first line current; generated with one key
on first use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable
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
    "KekRing",
    "KekUnknown",
    "KeyShredded",
    "decrypt",
    "encrypt",
    "format_kek_ring",
    "kek_path",
    "load_kek",
    "load_kek_ring",
    "new_data_key",
    "new_kek",
    "parse_kek",
    "parse_kek_ring",
    "reference_aad",
    "unwrap_key",
    "wrap_key",
    "wrapped_kek_id",
    "write_kek_file",
]

_KEY_BYTES = 32
_NONCE_BYTES = 12
_BLOB_MAGIC = b"RGE1"  # format version of an encrypted blob
_WRAP_PREFIX = "rgk1"  # format version of a wrapped key
_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # never a ".": the wrapped key's separator


class EnvelopeError(Exception):
    """A ciphertext or wrapped key that does not decrypt: tampered, truncated, bound to
    another cameo, or under another key."""


class KeyShredded(EnvelopeError):
    """The cameo's data key was destroyed (the cameo was deleted): nothing can decrypt."""


class KekUnknown(EnvelopeError):
    """The wrapped key names a KEK the ring does not hold (retired, or never configured here):
    an operator's key problem, not tampering."""

    def __init__(self, kid: str) -> None:
        super().__init__(
            f"the key is wrapped under KEK {kid}, which this server's KEK ring does not hold "
            "(REELGRAPH_CAMEO_KEKS, or <data dir>/consent/kek): it was retired or never "
            "configured here; see `reelgraph keys`"
        )
        self.kid = kid


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
        key = base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        raise ValueError(f"{where} is not base64") from None
    if len(key) != _KEY_BYTES:
        raise ValueError(f"{where} must be {_KEY_BYTES} bytes (base64), not {len(key)}")
    return key


def parse_kek(text: str, where: str = "the KEK") -> Kek:
    """One KEK: `id:base64`, or a bare base64 key (its id is then a tag of the key)."""
    kid, sep, encoded = text.strip().rpartition(":")
    if sep and not _KID.fullmatch(kid):
        raise ValueError(f"{where}: a KEK id is 1-64 letters, digits, '-' or '_', not {kid!r}")
    key = _decode_kek(encoded, f"{where} ({kid})" if sep else where)
    return Kek(kid if sep else _kek_id(key), key)


def parse_kek_ring(text: str, where: str = "the KEK ring") -> list[Kek]:
    """KEKs, newest first, from a comma (or line) separated list of `id:base64`, a JSON list
    of such strings, or a JSON object id -> base64. ValueError names what is wrong."""
    text = text.strip()
    items: list[str]
    if text[:1] in ("[", "{"):
        try:
            document = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{where} is not JSON: {err}") from None
        if isinstance(document, dict):
            items = [f"{kid}:{key}" for kid, key in document.items()]
        elif isinstance(document, list):
            items = document
        else:
            items = []
        if not all(isinstance(item, str) for item in items):
            raise ValueError(f'{where}: a JSON list of "id:base64" strings, or an object')
    else:
        lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
        items = [item for line in lines for item in re.split(r"[,\s]+", line) if item]
    keks = [parse_kek(item, where) for item in items]
    if not keks:
        raise ValueError(f"{where} holds no key")
    _check_unique(keks, where)
    return keks


def _check_unique(keks: list[Kek], where: str) -> None:
    kids = [kek.kid for kek in keks]
    if len(set(kids)) != len(kids):
        raise ValueError(f"{where} names one KEK id twice")
    if len({kek.key for kek in keks}) != len(keks):
        raise ValueError(f"{where} holds one key twice")


def format_kek_ring(keks: Iterable[Kek]) -> str:
    """`id:base64,id:base64`: the value of REELGRAPH_CAMEO_KEKS for these keys (secret)."""
    return ",".join(f"{kek.kid}:{base64.b64encode(kek.key).decode('ascii')}" for kek in keks)


def new_kek() -> Kek:
    """A fresh random KEK, its id the tag of the key."""
    key = secrets.token_bytes(_KEY_BYTES)
    return Kek(_kek_id(key), key)


class KekRing:
    """KEKs by id: the current one wraps, any of them unwraps what names it.

    A ring read from the development key file follows it: a KEK another process added (and
    rewrapped cameos to) is found when a wrapped key names it."""

    def __init__(
        self, keks: Iterable[Kek], *, current: str | None = None, source: Path | None = None
    ) -> None:
        self._source = source
        self._current_id = current
        self._set(list(keks), current)
        self._stamp = _stamp(source)

    def _set(self, keks: list[Kek], current: str | None) -> None:
        if not keks:
            raise ValueError("a KEK ring holds at least one key")
        _check_unique(keks, "the KEK ring")
        by_id = {kek.kid: kek for kek in keks}
        if current is not None and current not in by_id:
            raise ValueError(
                f"REELGRAPH_CAMEO_KEK_CURRENT names KEK {current!r}, which the ring does not "
                f"hold (it holds {', '.join(by_id)})"
            )
        self._keks = tuple(keks)
        self._by_id = by_id
        self._by_tag = {_kek_id(kek.key): kek.key for kek in keks}
        self._current = by_id[current] if current is not None else keks[0]

    @property
    def current(self) -> Kek:
        """The KEK new data keys are wrapped under."""
        self._maybe_reload()
        return self._current

    @property
    def keks(self) -> tuple[Kek, ...]:
        """Every KEK of the ring, newest first as configured."""
        return self._keks

    @property
    def kids(self) -> list[str]:
        return [kek.kid for kek in self._keks]

    def holds(self, kid: str) -> bool:
        """Whether a key wrapped under `kid` opens with this ring."""
        return kid in self._by_id or kid in self._by_tag

    def get(self, kid: str) -> Kek:
        """The KEK a wrapped key names (by its id, or by the tag of its key), as a Kek under
        that very id; KekUnknown when the ring does not hold it."""
        if not self.holds(kid):
            self._maybe_reload()
        if kid in self._by_id:
            return self._by_id[kid]
        if kid in self._by_tag:
            return Kek(kid, self._by_tag[kid])
        raise KekUnknown(kid)

    def _maybe_reload(self) -> None:
        if self._source is None:
            return
        stamp = _stamp(self._source)
        if stamp is None or stamp == self._stamp:
            return
        self._set(_read_kek_file(self._source), self._current_id)
        self._stamp = stamp

    def __repr__(self) -> str:  # ids only, never a key
        return f"KekRing(current={self._current.kid!r}, kids={self.kids!r})"


def _stamp(path: Path | None) -> tuple[int, ...] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def _read_kek_file(path: Path) -> list[Kek]:
    return parse_kek_ring(path.read_text(encoding="ascii"), str(path))


def write_kek_file(path: Path, keks: Iterable[Kek]) -> None:
    """The development KEK file (mode 0600), first line current, written atomically."""
    lines = [f"{kek.kid}:{base64.b64encode(kek.key).decode('ascii')}" for kek in keks]
    write_atomic(path, "\n".join(lines) + "\n", mode=0o600)


def load_kek_ring(settings: Settings) -> KekRing:
    """The KEK ring from settings (REELGRAPH_CAMEO_KEKS, then REELGRAPH_CAMEO_KEK), else,
    outside production, `<data_dir>/consent/kek`, generated (mode 0600) on first use.
    ValueError for a malformed setting or file; RuntimeError in production without one."""
    current = settings.cameo_kek_current or None
    if settings.cameo_keks or settings.cameo_kek:
        keks = parse_kek_ring(settings.cameo_keks, "cameo_keks") if settings.cameo_keks else []
        if settings.cameo_kek:
            single = parse_kek(settings.cameo_kek, "cameo_kek")
            if all(kek.key != single.key for kek in keks):
                keks.append(single)  # the one key from before the ring: older than the rest
        return KekRing(keks, current=current)
    if settings.environment == "production":
        raise RuntimeError(
            "set REELGRAPH_CAMEO_KEKS (or REELGRAPH_CAMEO_KEK) in production (API and workers "
            "need it)"
        )
    path = kek_path(settings)
    if not path.exists():
        fresh = base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode("ascii")
        # another process may create it at the same moment: then theirs wins
        write_atomic(path, fresh + "\n", mode=0o600, exclusive=True)
    return KekRing(_read_kek_file(path), current=current, source=path)


def load_kek(settings: Settings) -> Kek:
    """The current KEK of `load_kek_ring(settings)`: what new data keys are wrapped under."""
    return load_kek_ring(settings).current


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _wrap_aad(cameo_id: str, kid: str) -> bytes:
    return f"reelgraph:cameo-data-key:v1:{kid}:{cameo_id}".encode()


def reference_aad(cameo_id: str) -> bytes:
    """Associated data of a cameo's encrypted reference frames."""
    return f"reelgraph:cameo-reference:v1:{cameo_id}".encode()


def wrapped_kek_id(wrapped: str) -> str:
    """The id of the KEK a wrapped key names; EnvelopeError if it is malformed."""
    parts = wrapped.split(".") if isinstance(wrapped, str) else []
    if len(parts) != 3 or parts[0] != _WRAP_PREFIX or not parts[1]:
        raise EnvelopeError("the wrapped key is malformed")
    return parts[1]


def wrap_key(kek: Kek | KekRing, data_key: bytes, *, cameo_id: str) -> str:
    """`rgk1.<kek id>.<base64url(nonce | ciphertext)>`: the data key under the KEK (a ring's
    current one), bound to the cameo."""
    if isinstance(kek, KekRing):
        kek = kek.current
    if len(data_key) != _KEY_BYTES:
        raise ValueError("a data key is 32 bytes")
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(kek.key).encrypt(nonce, data_key, _wrap_aad(cameo_id, kek.kid))
    return f"{_WRAP_PREFIX}.{kek.kid}.{b64url_encode(nonce + sealed)}"


def unwrap_key(kek: Kek | KekRing, wrapped: str | None, *, cameo_id: str) -> bytes:
    """The cameo's data key, under whichever KEK of the ring the wrapped key names;
    KeyShredded if it was destroyed, KekUnknown if the ring does not hold its KEK,
    EnvelopeError if the wrapped key is malformed, tampered or another cameo's."""
    if wrapped is None:
        raise KeyShredded("the cameo's key was destroyed: its reference media cannot be read")
    kid = wrapped_kek_id(wrapped)
    ring = kek if isinstance(kek, KekRing) else KekRing([kek])
    under = ring.get(kid)  # KekUnknown when the ring does not hold it
    try:
        raw = b64url_decode(wrapped.split(".")[2])
    except ValueError:
        raise EnvelopeError("the wrapped key is malformed") from None
    if len(raw) != _NONCE_BYTES + _KEY_BYTES + 16:
        raise EnvelopeError("the wrapped key has the wrong length")
    try:
        return AESGCM(under.key).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _wrap_aad(cameo_id, kid)
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
