"""A cameo's reference frames at rest: encrypted under the cameo's own data key.

Each frame is one blob under `cameos/<cameoId>/<ulid>.ref` in the media store, sealed with
AES-GCM whose associated data names the cameo (a blob copied onto another cameo does not
open). The data key exists only wrapped by the KEK, on the Cameo node; deleting the cameo
nulls it, after which every copy of these blobs is noise. Plaintext frames live in memory
only: nothing here writes them to disk.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ulid import ULID

from consent.envelope import decrypt, encrypt, new_data_key, reference_aad, unwrap_key, wrap_key
from media.store import MediaMissing, cameo_ref_key

if TYPE_CHECKING:
    from consent.envelope import Kek
    from media.store import MediaStore

__all__ = ["delete_reference_files", "open_reference_frames", "seal_reference_frames"]

logger = logging.getLogger(__name__)


def seal_reference_frames(
    media: MediaStore, kek: Kek, cameo_id: str, frames: list[bytes]
) -> tuple[str, list[str]]:
    """Store each frame encrypted under a new data key: (wrapped data key, media keys)."""
    if not frames:
        raise ValueError("a cameo needs at least one reference frame")
    data_key = new_data_key()
    aad = reference_aad(cameo_id)
    keys: list[str] = []
    try:
        for frame in frames:
            key = cameo_ref_key(cameo_id, str(ULID()))
            fd, tmp = tempfile.mkstemp(suffix=".ref")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(encrypt(data_key, frame, aad=aad))
                media.put(Path(tmp), key)
            finally:
                Path(tmp).unlink(missing_ok=True)
            keys.append(key)
    except BaseException:
        delete_reference_files(media, keys)  # nothing half-stored outlives a failure
        raise
    return wrap_key(kek, data_key, cameo_id=cameo_id), keys


def open_reference_frames(
    media: MediaStore, kek: Kek, cameo_id: str, wrapped_key: str | None, ref_keys: list[str]
) -> list[bytes]:
    """The plaintext frames, in memory. Raises consent.envelope.KeyShredded when the cameo's
    key was destroyed, EnvelopeError when a blob or the key does not open, MediaMissing
    when a file is gone."""
    data_key = unwrap_key(kek, wrapped_key, cameo_id=cameo_id)
    aad = reference_aad(cameo_id)
    frames = []
    for key in ref_keys:
        size = media.size(key)
        if size is None:
            raise MediaMissing(key)
        blob = b"".join(media.read(key, 0, size - 1))
        frames.append(decrypt(data_key, blob, aad=aad))
    return frames


def delete_reference_files(media: MediaStore, keys: list[str]) -> None:
    """Best effort: a file left behind is ciphertext whose key is gone or replaced."""
    for key in keys:
        try:
            media.delete(key)
        except Exception:  # a store outage must not undo the shredding already done
            logger.warning("could not delete reference file %s", key, exc_info=True)
