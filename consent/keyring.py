"""Ed25519 keys for PASETO v4.public consent tokens, with rotation.

API processes load a `SigningKeyring` (secret keys); workers and anyone else load a
`VerifyingKeyring`: public keys only, so a compromised worker can check a token but never
mint one. A key's id (`kid`, in every token's footer) is the PASERK `k4.pid` of its public
key.

A key is published before it signs. Its states (`SigningKeyring.states`):
- `next`: published (in the public keys, /.well-known/reelgraph-keys) and verifying, but
  not signing yet (`stage`, what the first `reelgraph keys rotate` does);
- `current`: the activated live key that signs (the one activated last; `activate`, what
  the next `reelgraph keys rotate` or `keys activate` does);
- `previous`: activated before the current one, still verifying until its `retiresAt` (set
  when it was rotated out: the longest token lifetime later), so its tokens stay good until
  they expire;
- `retired`: its `retiresAt` has passed (at once with `retire`, for a compromised key):
  its kid is refused, a key problem (`KeyUnavailable`), not a bad signature.

Key files (both written atomically; the signing one with mode 0600):
- `<data_dir>/consent/signing-keys.json`: `{"keys": [{"kid", "secret" (PASERK k4.secret),
  "createdAt", "activatedAt", "retiresAt"}]}` (times epoch ms; `activatedAt` null while the
  key is next, and taken as `createdAt` when absent (documents from before); `retiresAt` null
  while live).
- `<data_dir>/consent/public-keys.json`: the public document `VerifyingKeyring.document()`
  returns and `/.well-known/reelgraph-keys` serves.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pyseto import Key
from pyseto.key_interface import KeyInterface

if TYPE_CHECKING:
    from settings import Settings

__all__ = [
    "HEADER",
    "KEY_STATES",
    "KeyUnavailable",
    "KeyringError",
    "SignatureInvalid",
    "SigningKeyring",
    "VerifyingKeyring",
    "b64url_decode",
    "b64url_encode",
    "consent_dir",
    "new_signing_document",
    "paserk_pid",
    "paseto_sign",
    "paseto_verify",
    "public_document",
    "public_keys_path",
    "signing_keys_path",
    "split_token",
    "write_atomic",
]

HEADER = "v4.public."
_PID_PREFIX = "k4.pid."
_PUBLIC_PREFIX = "k4.public."
_SECRET_PREFIX = "k4.secret."
_SIG_BYTES = 64
_DOCUMENT_VERSION = 1

logger = logging.getLogger("reelgraph.consent")


class KeyringError(Exception):
    """A key file or setting is missing or malformed (an operator's problem, not a client's)."""


class SignatureInvalid(Exception):
    """The token is malformed or its signature does not verify under the given key."""


class KeyUnavailable(SignatureInvalid):
    """The token names a key this ring does not hold, or a retired one: whatever the token
    says, it cannot be checked here (an operator's key problem, not a forgery)."""


KEY_STATES = ("next", "current", "previous", "retired")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url: exactly one spelling per byte string, so a token cannot be
    respelled (stray bits in the last character) and still verify."""
    if not isinstance(text, str) or "=" in text or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not unpadded base64url") from None
    if b64url_encode(data) != text:
        raise ValueError("not canonical base64url")
    return data


def paserk_pid(public_key: bytes) -> str:
    """PASERK `k4.pid` of a raw 32-byte Ed25519 public key (the PASERK spec's id algorithm:
    BLAKE2b-264 over the header and the `k4.public` PASERK)."""
    if len(public_key) != 32:
        raise ValueError("a v4 public key is 32 bytes")
    paserk = _PUBLIC_PREFIX + b64url_encode(public_key)
    digest = hashlib.blake2b((_PID_PREFIX + paserk).encode("ascii"), digest_size=33).digest()
    return _PID_PREFIX + b64url_encode(digest)


def _pyseto_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> KeyInterface:
    raw = (
        key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        if isinstance(key, Ed25519PrivateKey)
        else key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    if isinstance(key, Ed25519PrivateKey):
        return Key.from_asymmetric_key_params(4, d=raw)
    return Key.from_asymmetric_key_params(4, x=raw)


def paseto_sign(
    secret: KeyInterface, payload: bytes, *, footer: bytes = b"", implicit_assertion: bytes = b""
) -> str:
    """A v4.public token (PASETO spec, pyseto's PAE and Ed25519 signing)."""
    signature = secret.sign(payload, footer, implicit_assertion)
    token = HEADER + b64url_encode(payload + signature)
    if footer:
        token += "." + b64url_encode(footer)
    return token


def split_token(token: str) -> tuple[bytes, bytes]:
    """(signed message with signature, footer) of a v4.public token; checks only its shape."""
    if not isinstance(token, str) or not token.startswith(HEADER):
        raise SignatureInvalid("not a v4.public token")
    parts = token[len(HEADER) :].split(".")
    if len(parts) > 2:
        raise SignatureInvalid("a v4.public token has at most one footer")
    try:
        body = b64url_decode(parts[0])
        footer = b64url_decode(parts[1]) if len(parts) == 2 else b""
    except ValueError as err:
        raise SignatureInvalid(f"the token is not base64url: {err}") from None
    if len(parts) == 2 and not footer:
        raise SignatureInvalid("an empty footer must be omitted")
    if len(body) <= _SIG_BYTES:
        raise SignatureInvalid("the token is too short to carry a signature")
    return body, footer


def paseto_verify(
    public: KeyInterface, token: str, *, implicit_assertion: bytes = b""
) -> tuple[bytes, bytes]:
    """(payload, footer) of a v4.public token whose signature verifies under `public`."""
    body, footer = split_token(token)
    try:
        payload = public.verify(body, footer, implicit_assertion)
    except Exception:  # pyseto raises VerifyError or ValueError; both mean "not valid"
        raise SignatureInvalid("the signature does not verify") from None
    return payload, footer


def _now_ms() -> int:
    return int(time.time() * 1000)


def consent_dir(settings: Settings) -> Path:
    return settings.data_dir / "consent"


def signing_keys_path(settings: Settings) -> Path:
    return consent_dir(settings) / "signing-keys.json"


def public_keys_path(settings: Settings) -> Path:
    return consent_dir(settings) / "public-keys.json"


def write_atomic(path: Path, text: str, *, mode: int, exclusive: bool = False) -> bool:
    """Write `text` to `path` via a temporary file; with `exclusive`, only if `path` does not
    exist yet (False when another process won the race: read theirs instead)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@dataclass(frozen=True)
class _PublicEntry:
    kid: str
    public: bytes
    created_at: int
    retires_at: int | None

    def live(self, now_ms: int) -> bool:
        return self.retires_at is None or self.retires_at > now_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "paserk": _PUBLIC_PREFIX + b64url_encode(self.public),
            "createdAt": self.created_at,
            "retiresAt": self.retires_at,
        }


def _parse_document(document: Any) -> tuple[str, list[_PublicEntry]]:
    """(issuer, keys) of a public-keys document; KeyringError if it is malformed or a kid
    does not match its key."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeyringError("a public-keys document is an object with a `keys` list")
    entries = []
    for item in document["keys"]:
        try:
            paserk = item["paserk"]
            if not paserk.startswith(_PUBLIC_PREFIX):
                raise ValueError("not a k4.public PASERK")
            public = b64url_decode(paserk[len(_PUBLIC_PREFIX) :])
            kid = paserk_pid(public)
            retires = item.get("retiresAt")
            entry = _PublicEntry(
                kid, public, int(item["createdAt"]), None if retires is None else int(retires)
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise KeyringError(f"malformed public key entry: {err}") from None
        if item.get("kid") != kid:
            raise KeyringError(f"kid {item.get('kid')!r} is not the k4.pid of its key")
        entries.append(entry)
    issuer = document.get("issuer", "reelgraph")
    if not isinstance(issuer, str):
        raise KeyringError("issuer must be a string")
    return issuer, entries


class VerifyingKeyring:
    """Public keys only: verifies consent tokens, cannot sign (it holds no secret key)."""

    def __init__(
        self, entries: list[_PublicEntry], *, issuer: str = "reelgraph", source: Path | None = None
    ) -> None:
        self.issuer = issuer
        self._entries = {entry.kid: entry for entry in entries}
        self._keys = {
            entry.kid: Key.from_asymmetric_key_params(4, x=entry.public) for entry in entries
        }
        self._source = source
        self._source_mtime = _mtime(source)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings) -> VerifyingKeyring:
        """From `settings.consent_public_keys` (the document as JSON) or the public-keys file
        an API process wrote under data_dir; KeyringError if neither exists."""
        if settings.consent_public_keys:
            try:
                document = json.loads(settings.consent_public_keys)
            except ValueError as err:
                raise KeyringError(f"consent_public_keys is not JSON: {err}") from None
            return cls.from_document(document)
        path = public_keys_path(settings)
        return cls.from_file(path)

    @classmethod
    def from_document(cls, document: Any) -> VerifyingKeyring:
        """From a public keys document (as `/.well-known/reelgraph-keys` serves it)."""
        issuer, entries = _parse_document(document)
        return cls(entries, issuer=issuer)

    @classmethod
    def from_file(cls, path: Path) -> VerifyingKeyring:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeyringError(
                f"no consent public keys at {path}: start an API process first (it creates "
                "them) or set REELGRAPH_CONSENT_PUBLIC_KEYS"
            ) from None
        except ValueError as err:
            raise KeyringError(f"{path} is not JSON: {err}") from None
        issuer, entries = _parse_document(document)
        return cls(entries, issuer=issuer, source=path)

    @property
    def kids(self) -> list[str]:
        return list(self._entries)

    def document(self) -> dict[str, Any]:
        """The public keys document (`/.well-known/reelgraph-keys`): nothing secret in it."""
        entries = sorted(self._entries.values(), key=lambda e: e.created_at)
        return {
            "version": _DOCUMENT_VERSION,
            "issuer": self.issuer,
            "paseto": "v4.public",
            "keys": [entry.to_json() for entry in entries],
        }

    def _maybe_reload(self) -> None:
        """Pick up keys an API process rotated in or retired since this ring was loaded."""
        if self._source is None:
            return
        with self._lock:
            mtime = _mtime(self._source)
            if mtime is None or mtime == self._source_mtime:
                return
            fresh = VerifyingKeyring.from_file(self._source)
            self._entries, self._keys = fresh._entries, fresh._keys
            self._source_mtime = fresh._source_mtime

    def verify(
        self, token: str, *, implicit_assertion: bytes = b"", now_ms: int | None = None
    ) -> tuple[dict, dict]:
        """(claims, footer) of a token signed by a live key of this ring. Checks the
        signature, the kid and the JSON shape only; the claims' meaning is tokens.py's job.
        Raises SignatureInvalid with a reason."""
        _, footer_bytes = split_token(token)
        footer = _parse_footer(footer_bytes)
        kid = footer["kid"]
        # one stat: a key rotated in or retired by an API process counts at once
        self._maybe_reload()
        entry = self._entries.get(kid)
        if entry is None:
            raise KeyUnavailable("the token names an unknown key")
        if not entry.live(_now_ms() if now_ms is None else now_ms):
            raise KeyUnavailable("the token's key is retired")
        payload, _ = paseto_verify(self._keys[kid], token, implicit_assertion=implicit_assertion)
        try:
            claims = json.loads(payload)
        except ValueError:
            raise SignatureInvalid("the payload is not JSON") from None
        if not isinstance(claims, dict):
            raise SignatureInvalid("the payload is not a JSON object")
        return claims, footer


def _mtime(path: Path | None) -> tuple[int, ...] | None:
    """What changes whenever a key file is rewritten: each write is a new file renamed into
    place (a new inode), and file times alone are only as fine as the kernel's clock tick."""
    if path is None:
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def _parse_footer(footer: bytes) -> dict:
    if not footer:
        raise SignatureInvalid("the token has no footer naming its key")
    try:
        parsed = json.loads(footer)
    except ValueError:
        raise SignatureInvalid("the footer is not JSON") from None
    if not isinstance(parsed, dict) or set(parsed) != {"kid"} or not isinstance(parsed["kid"], str):
        raise SignatureInvalid('the footer must be exactly {"kid": "<k4.pid>"}')
    return parsed


@dataclass(frozen=True)
class _SecretEntry:
    public: _PublicEntry
    secret: Ed25519PrivateKey
    activated_at: int | None  # None while the key is `next`: published, not signing

    def to_json(self) -> dict[str, Any]:
        raw = self.secret.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        # PASERK k4.secret is the 64-byte libsodium form: seed then public key
        return {
            "kid": self.public.kid,
            "secret": _SECRET_PREFIX + b64url_encode(raw + self.public.public),
            "createdAt": self.public.created_at,
            "activatedAt": self.activated_at,
            "retiresAt": self.public.retires_at,
        }


def _new_entry(now_ms: int, *, active: bool = True) -> _SecretEntry:
    secret = Ed25519PrivateKey.generate()
    public = secret.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return _SecretEntry(
        _PublicEntry(paserk_pid(public), public, now_ms, None), secret, now_ms if active else None
    )


def new_signing_document() -> str:
    """A signing-keys document with one fresh key, as JSON: the value for
    REELGRAPH_CONSENT_SIGNING_KEYS (its public half: `SigningKeyring` `.verifying().document()`)."""
    return json.dumps({"keys": [_new_entry(_now_ms()).to_json()]})


def public_document(signing_document: str) -> str:
    """The public half of a signing-keys document, as JSON: the value for workers'
    REELGRAPH_CONSENT_PUBLIC_KEYS (what /.well-known/reelgraph-keys serves)."""
    try:
        entries = _parse_secret_document(json.loads(signing_document))
    except ValueError as err:
        raise KeyringError(f"the signing-keys document is not JSON: {err}") from None
    return json.dumps(VerifyingKeyring([entry.public for entry in entries]).document())


def _parse_secret_document(document: Any) -> list[_SecretEntry]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeyringError("a signing-keys document is an object with a `keys` list")
    entries = []
    for item in document["keys"]:
        try:
            paserk = item["secret"]
            if not paserk.startswith(_SECRET_PREFIX):
                raise ValueError("not a k4.secret PASERK")
            raw = b64url_decode(paserk[len(_SECRET_PREFIX) :])
            if len(raw) != 64:
                raise ValueError("a k4.secret is 64 bytes")
            secret = Ed25519PrivateKey.from_private_bytes(raw[:32])
            public = secret.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            if public != raw[32:]:
                raise ValueError("the secret key's public half does not match")
            retires = item.get("retiresAt")
            entry = _PublicEntry(
                paserk_pid(public),
                public,
                int(item["createdAt"]),
                None if retires is None else int(retires),
            )
            # absent: a document from before keys were staged, where every key was active
            activated = item.get("activatedAt", entry.created_at)
            activated = None if activated is None else int(activated)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise KeyringError(f"malformed signing key entry: {err}") from None
        if item.get("kid") not in (None, entry.kid):
            raise KeyringError(f"kid {item.get('kid')!r} is not the k4.pid of its key")
        entries.append(_SecretEntry(entry, secret, activated))
    if not entries:
        raise KeyringError("the signing keyring holds no key")
    return entries


class SigningKeyring:
    """Secret keys (API processes only). The live key activated last signs; every live key
    (a `next` one included) verifies."""

    def __init__(
        self,
        entries: list[_SecretEntry],
        *,
        issuer: str = "reelgraph",
        path: Path | None = None,
        public_path: Path | None = None,
        retire_after_s: int = 0,
    ) -> None:
        self.issuer = issuer
        self._entries = list(entries)
        self._path = path
        self._public_path = public_path
        # how long a rotated-out key keeps verifying: the longest token lifetime
        self._retire_after_s = retire_after_s
        self._pyseto: dict[str, KeyInterface] = {}
        self._verifying: VerifyingKeyring | None = None
        self._lock = threading.RLock()
        self._mtime = _mtime(path)

    @classmethod
    def load(cls, settings: Settings, *, publish: bool = True) -> SigningKeyring:
        """From `settings.consent_signing_keys` (the signing-keys document as JSON), else the
        file under data_dir, generated with one fresh key on first use. Also (re)writes the
        public-keys file beside it, which workers load; with keys from settings and
        `publish=False` (an operator's command editing a copy) it writes nothing."""
        retire_after_s = max(settings.render_token_ttl_s, settings.approval_token_ttl_s)
        public_path = public_keys_path(settings)
        if settings.environment == "production" and not settings.consent_signing_keys:
            raise KeyringError(
                "set REELGRAPH_CONSENT_SIGNING_KEYS in production (every API replica needs "
                "the same keys; give workers REELGRAPH_CONSENT_PUBLIC_KEYS)"
            )
        if settings.consent_signing_keys:
            try:
                document = json.loads(settings.consent_signing_keys)
            except ValueError as err:
                raise KeyringError(f"consent_signing_keys is not JSON: {err}") from None
            ring = cls(
                _parse_secret_document(document),
                issuer=settings.consent_issuer,
                public_path=public_path if publish else None,
                retire_after_s=retire_after_s,
            )
        else:
            path = signing_keys_path(settings)
            if not path.exists():
                fresh = {"keys": [_new_entry(_now_ms()).to_json()]}
                # another process may create it at the same moment: then theirs wins
                write_atomic(path, json.dumps(fresh, indent=1), mode=0o600, exclusive=True)
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as err:
                raise KeyringError(f"{path} is not JSON: {err}") from None
            ring = cls(
                _parse_secret_document(document),
                issuer=settings.consent_issuer,
                path=path,
                public_path=public_path,
                retire_after_s=retire_after_s,
            )
        ring._publish()
        return ring

    def _publish(self) -> None:
        if self._public_path is None:
            return
        text = json.dumps(self.verifying().document(), indent=1)
        with contextlib.suppress(FileNotFoundError):
            if self._public_path.read_text(encoding="utf-8") == text:
                return
        try:
            write_atomic(self._public_path, text, mode=0o644)
        except OSError as err:
            if self._path is not None:  # the keys live beside it: the folder must be writable
                raise
            # keys from settings: workers get REELGRAPH_CONSENT_PUBLIC_KEYS instead
            logger.warning(
                "could not publish consent public keys to %s: %s", self._public_path, err
            )

    def _save(self) -> None:
        self._verifying = None
        if self._path is not None:
            document = {"keys": [entry.to_json() for entry in self._entries]}
            write_atomic(self._path, json.dumps(document, indent=1), mode=0o600)
            self._mtime = _mtime(self._path)
        self._publish()

    def _maybe_reload(self) -> None:
        """Pick up a rotation or retirement another API process wrote to the keys file."""
        if self._path is None:
            return
        with self._lock:
            mtime = _mtime(self._path)
            if mtime is None or mtime == self._mtime:
                return
            try:
                document = json.loads(self._path.read_text(encoding="utf-8"))
            except ValueError as err:
                raise KeyringError(f"{self._path} is not JSON: {err}") from None
            self._entries = _parse_secret_document(document)
            self._mtime = mtime
            self._verifying = None

    @staticmethod
    def _signer_of(entries: list[_SecretEntry], now_ms: int) -> _SecretEntry | None:
        active = [
            entry
            for entry in entries
            if entry.activated_at is not None and entry.public.live(now_ms)
        ]
        if not active:
            return None
        return max(active, key=lambda entry: (entry.activated_at, entry.public.created_at))

    def _signer(self, now_ms: int) -> _SecretEntry:
        signer = self._signer_of(self._entries, now_ms)
        if signer is None:
            raise KeyringError(
                "no live activated signing key: every key is retired or only published "
                "(run `reelgraph keys rotate` until one is current)"
            )
        return signer

    @property
    def current_kid(self) -> str:
        self._maybe_reload()
        return self._signer(_now_ms()).public.kid

    def sign(
        self,
        claims: dict,
        *,
        footer: dict | None = None,
        implicit_assertion: bytes = b"",
        now_ms: int | None = None,
    ) -> str:
        """A v4.public token of `claims` (compact JSON) signed by the current key; the footer
        gets that key's `kid` unless it names one."""
        self._maybe_reload()
        signer = self._signer(_now_ms() if now_ms is None else now_ms)
        footer = {"kid": signer.public.kid, **(footer or {})}
        key = self._pyseto.get(signer.public.kid)
        if key is None:
            key = self._pyseto[signer.public.kid] = _pyseto_key(signer.secret)
        return paseto_sign(
            key,
            _compact(claims),
            footer=_compact(footer),
            implicit_assertion=implicit_assertion,
        )

    def stage(self, *, now_ms: int | None = None) -> str:
        """Publish a new key as `next` (its kid is returned): it verifies wherever the public
        keys reach, and signs only once activated. KeyringError if a next key is already
        published (activate it first)."""
        now = _now_ms() if now_ms is None else now_ms
        with self._lock:
            self._maybe_reload()
            staged = self._next_keys(now)
            if staged:
                raise KeyringError(
                    f"key {staged[0].public.kid} is already published as next: activate it "
                    "first (`reelgraph keys rotate` or `keys activate`)"
                )
            fresh = _new_entry(
                max([now, *(e.public.created_at + 1 for e in self._entries)]), active=False
            )
            self._entries = [*self._entries, fresh]
            self._save()
        return fresh.public.kid

    def _next_keys(self, now_ms: int) -> list[_SecretEntry]:
        return [
            entry
            for entry in self._entries
            if entry.activated_at is None and entry.public.live(now_ms)
        ]

    def next_kid(self, *, now_ms: int | None = None) -> str | None:
        """The kid of the key published as `next`, if any."""
        self._maybe_reload()
        staged = self._next_keys(_now_ms() if now_ms is None else now_ms)
        return staged[-1].public.kid if staged else None

    def activate(self, kid: str | None = None, *, now_ms: int | None = None) -> str:
        """Make the `next` key (or `kid`, a next key) the one that signs; the keys it replaces
        keep verifying for the longest token lifetime, then retire. Returns its kid;
        KeyringError when there is no such next key."""
        now = _now_ms() if now_ms is None else now_ms
        with self._lock:
            self._maybe_reload()
            staged = self._next_keys(now)
            chosen = [e for e in staged if kid is None or e.public.kid == kid]
            if not chosen:
                raise KeyringError(
                    f"{kid} is not a key published as next"
                    if kid
                    else "no key is published as next: `reelgraph keys rotate` publishes one"
                )
            target = chosen[-1]
            retire_at = now + self._retire_after_s * 1000
            activated_at = max(
                [now, *(e.activated_at + 1 for e in self._entries if e.activated_at is not None)]
            )
            entries = []
            for entry in self._entries:
                if entry is target:
                    entry = replace(entry, activated_at=activated_at)
                elif entry.activated_at is not None and entry.public.retires_at is None:
                    entry = replace(entry, public=replace(entry.public, retires_at=retire_at))
                entries.append(entry)
            self._entries = entries
            self._save()
        return target.public.kid

    def rotate(self, *, now_ms: int | None = None) -> str:
        """Stage and activate a new key at once (its kid is returned): it signs from now on,
        before anyone could have fetched it. Only safe where every verifier reads this ring's
        public-keys file; operators use `stage`, then `activate` (`reelgraph keys rotate`)."""
        with self._lock:
            kid = self.stage(now_ms=now_ms)
            return self.activate(kid, now_ms=now_ms)

    def retire(self, kid: str, *, now_ms: int | None = None, force: bool = False) -> None:
        """Stop `kid` verifying now (a compromised key); its tokens are refused from now on.
        KeyError for an unknown kid; KeyringError, unless `force`, when no key could sign
        afterwards."""
        now = _now_ms() if now_ms is None else now_ms
        with self._lock:
            self._maybe_reload()
            if kid not in {entry.public.kid for entry in self._entries}:
                raise KeyError(kid)
            entries = [
                replace(entry, public=replace(entry.public, retires_at=now))
                if entry.public.kid == kid
                else entry
                for entry in self._entries
            ]
            if not force and self._signer_of(entries, now + 1) is None:
                raise KeyringError(
                    f"retiring {kid} would leave no key to sign with: run `reelgraph keys "
                    "rotate` (and `keys activate`) first, or pass --force to stop signing"
                )
            self._entries = entries
            self._save()

    def states(self, *, now_ms: int | None = None) -> list[dict[str, Any]]:
        """Every key's kid, state (KEY_STATES) and times, oldest first: nothing secret."""
        now = _now_ms() if now_ms is None else now_ms
        self._maybe_reload()
        signer = self._signer_of(self._entries, now)
        rows = []
        for entry in sorted(self._entries, key=lambda e: e.public.created_at):
            if not entry.public.live(now):
                state = "retired"
            elif entry is signer:
                state = "current"
            elif entry.activated_at is None:
                state = "next"
            else:
                state = "previous"
            rows.append(
                {
                    "kid": entry.public.kid,
                    "state": state,
                    "createdAt": entry.public.created_at,
                    "activatedAt": entry.activated_at,
                    "retiresAt": entry.public.retires_at,
                }
            )
        return rows

    def signing_document(self) -> str:
        """The signing-keys document as JSON (secret: REELGRAPH_CONSENT_SIGNING_KEYS)."""
        self._maybe_reload()
        return json.dumps({"keys": [entry.to_json() for entry in self._entries]})

    def verifying(self) -> VerifyingKeyring:
        """The public half of this ring (what workers get)."""
        self._maybe_reload()
        ring = self._verifying
        if ring is None:
            ring = VerifyingKeyring([entry.public for entry in self._entries], issuer=self.issuer)
            self._verifying = ring
        return ring

    def verify(
        self, token: str, *, implicit_assertion: bytes = b"", now_ms: int | None = None
    ) -> tuple[dict, dict]:
        """Same as the public half's verify (the API checks approvals it signed)."""
        return self.verifying().verify(token, implicit_assertion=implicit_assertion, now_ms=now_ms)


def _compact(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
