"""Envelope encryption of cameo reference media (consent/envelope.py), with real AES-GCM."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from consent.envelope import (
    EnvelopeError,
    KeyShredded,
    decrypt,
    encrypt,
    kek_path,
    load_kek,
    new_data_key,
    reference_aad,
    unwrap_key,
    wrap_key,
)
from settings import Settings

FRAME = bytes(range(256)) * 40  # stands in for a JPEG reference frame


def _settings(tmp_path: Path, **update: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **update)


def _flip(data: bytes | str, index: int) -> bytes:
    raw = bytearray(data.encode() if isinstance(data, str) else data)
    raw[index] ^= 0x01
    return bytes(raw)


def test_reference_media_roundtrips_under_a_wrapped_data_key(tmp_path: Path) -> None:
    kek = load_kek(_settings(tmp_path))
    data_key = new_data_key()
    assert len(data_key) == 32
    wrapped = wrap_key(kek, data_key, cameo_id="01CAMEO")
    assert wrapped.startswith(f"rgk1.{kek.kid}.")  # the wrapped key names its KEK
    assert base64.b64encode(data_key).decode() not in wrapped
    blob = encrypt(data_key, FRAME, aad=reference_aad("01CAMEO"))
    assert FRAME[:64] not in blob
    again = unwrap_key(kek, wrapped, cameo_id="01CAMEO")
    assert decrypt(again, blob, aad=reference_aad("01CAMEO")) == FRAME


def test_nonces_are_fresh_each_time(tmp_path: Path) -> None:
    kek = load_kek(_settings(tmp_path))
    data_key = new_data_key()
    blobs = {encrypt(data_key, FRAME, aad=b"a")[4:16] for _ in range(64)}
    wraps = {wrap_key(kek, data_key, cameo_id="c") for _ in range(64)}
    assert len(blobs) == 64 and len(wraps) == 64


def test_a_tampered_blob_does_not_decrypt(tmp_path: Path) -> None:
    data_key = new_data_key()
    blob = encrypt(data_key, FRAME, aad=reference_aad("01CAMEO"))
    # magic, nonce, first and last ciphertext bytes, tag
    for index in (0, 5, 15, 16, len(blob) // 2, len(blob) - 17, len(blob) - 1):
        with pytest.raises(EnvelopeError):
            decrypt(data_key, _flip(blob, index), aad=reference_aad("01CAMEO"))
    for cut in (blob[:-1], blob[:20], b"", blob + b"\x00"):
        with pytest.raises(EnvelopeError):
            decrypt(data_key, cut, aad=reference_aad("01CAMEO"))


def test_a_blob_bound_to_another_cameo_or_key_does_not_decrypt() -> None:
    data_key = new_data_key()
    blob = encrypt(data_key, FRAME, aad=reference_aad("01CAMEO"))
    with pytest.raises(EnvelopeError):
        decrypt(data_key, blob, aad=reference_aad("01OTHER"))
    with pytest.raises(EnvelopeError):
        decrypt(data_key, blob, aad=b"another purpose:01CAMEO")
    with pytest.raises(EnvelopeError):
        decrypt(new_data_key(), blob, aad=reference_aad("01CAMEO"))


def test_a_wrapped_key_opens_only_for_its_cameo_and_kek(tmp_path: Path) -> None:
    kek = load_kek(_settings(tmp_path))
    other_kek = load_kek(_settings(tmp_path / "other"))
    assert other_kek.kid != kek.kid
    wrapped = wrap_key(kek, new_data_key(), cameo_id="01CAMEO")
    with pytest.raises(EnvelopeError, match="another cameo"):
        unwrap_key(kek, wrapped, cameo_id="01OTHER")
    with pytest.raises(EnvelopeError, match="KEK"):
        unwrap_key(other_kek, wrapped, cameo_id="01CAMEO")
    prefix = len(f"rgk1.{kek.kid}.")
    for index in (prefix, prefix + 20, len(wrapped) - 2):
        tampered = _flip(wrapped, index).decode()
        with pytest.raises(EnvelopeError):
            unwrap_key(kek, tampered, cameo_id="01CAMEO")
    for malformed in ("", "rgk1", f"rgk1.{kek.kid}.", f"rgk2.{kek.kid}.{wrapped[prefix:]}"):
        with pytest.raises(EnvelopeError):
            unwrap_key(kek, malformed, cameo_id="01CAMEO")


def test_a_shredded_key_cannot_be_unwrapped(tmp_path: Path) -> None:
    kek = load_kek(_settings(tmp_path))
    with pytest.raises(KeyShredded, match="destroyed"):
        unwrap_key(kek, None, cameo_id="01CAMEO")
    assert issubclass(KeyShredded, EnvelopeError)


def test_the_kek_comes_from_settings_or_a_private_file(tmp_path: Path) -> None:
    generated = load_kek(_settings(tmp_path))
    assert stat.S_IMODE(os.stat(kek_path(_settings(tmp_path))).st_mode) == 0o600
    assert load_kek(_settings(tmp_path)) == generated  # stable across loads and processes
    assert generated.key.hex() not in repr(generated)
    configured = base64.b64encode(bytes(range(32))).decode()
    kek = load_kek(_settings(tmp_path, cameo_kek=configured))
    assert kek.key == bytes(range(32)) and kek.kid != generated.kid
    with pytest.raises(ValueError, match="32 bytes"):
        load_kek(_settings(tmp_path, cameo_kek=base64.b64encode(b"short").decode()))
    with pytest.raises(RuntimeError, match="REELGRAPH_CAMEO_KEK"):
        load_kek(_settings(tmp_path / "prod", environment="production"))
