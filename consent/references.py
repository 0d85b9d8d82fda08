"""A cameo's reference frames at rest: encrypted under the cameo's own data key.

Each frame is one blob under `cameos/<cameoId>/<ulid>.ref` in the media store, sealed with
AES-GCM whose associated data names the cameo (a blob copied onto another cameo does not
open). The data key exists only wrapped by the KEK, on the Cameo node; deleting the cameo
nulls it, after which every copy of these blobs is noise. Plaintext frames live in memory
only: nothing here writes them to disk.

`rewrap_cameo_keys` moves every cameo's wrapped data key to the ring's current KEK (what
`reelgraph keys rewrap` runs): the data key and the files stay as they are, only the KEK
that wraps the key changes, one cameo at a time, each by a compare-and-set on the wrapped key
it read (a cameo deleted or re-captured meanwhile is never overwritten, a shredded key never
comes back), so an interrupted run is finished by running it again.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ulid import ULID

from consent.envelope import (
    EnvelopeError,
    decrypt,
    encrypt,
    new_data_key,
    reference_aad,
    unwrap_key,
    wrap_key,
    wrapped_kek_id,
)
from graph.driver import Cypher
from media.store import MediaMissing, cameo_ref_key

if TYPE_CHECKING:
    from consent.envelope import Kek, KekRing
    from graph.driver import GraphDriver
    from media.store import MediaStore

__all__ = [
    "RewrapReport",
    "delete_reference_files",
    "kek_ids_in_use",
    "open_face",
    "open_reference_frames",
    "rewrap_cameo_keys",
    "seal_face",
    "seal_reference_frames",
]

logger = logging.getLogger(__name__)


def seal_reference_frames(
    media: MediaStore, kek: Kek | KekRing, cameo_id: str, frames: list[bytes]
) -> tuple[str, list[str]]:
    """Store each frame encrypted under a new data key: (wrapped data key, media keys); the
    data key is wrapped under `kek` (a ring's current KEK)."""
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
    media: MediaStore,
    kek: Kek | KekRing,
    cameo_id: str,
    wrapped_key: str | None,
    ref_keys: list[str],
) -> list[bytes]:
    """The plaintext frames, in memory. Raises consent.envelope.KeyShredded when the cameo's
    key was destroyed, KekUnknown when the ring does not hold the KEK its key names,
    EnvelopeError when a blob or the key does not open, MediaMissing when a file is gone."""
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


def face_aad(cameo_id: str) -> bytes:
    """Associated data of a cameo's encrypted face embedding (never opens as a frame)."""
    return f"reelgraph:cameo-face:v1:{cameo_id}".encode()


def seal_face(
    kek: Kek | KekRing, wrapped_key: str, cameo_id: str, embedding: Sequence[float]
) -> str:
    """The face embedding (128 floats) encrypted under the cameo's data key (the one
    `wrapped_key` wraps), as base64 text for the Cameo node: it is erased with the reference
    frames, since nulling the wrapped key (deleteCameo, account deletion) shreds both."""
    data_key = unwrap_key(kek, wrapped_key, cameo_id=cameo_id)
    raw = np.asarray(embedding, dtype="<f4").tobytes()
    return base64.b64encode(encrypt(data_key, raw, aad=face_aad(cameo_id))).decode()


def open_face(
    kek: Kek | KekRing, wrapped_key: str | None, cameo_id: str, sealed: str
) -> np.ndarray:
    """The embedding seal_face sealed (float32); raises EnvelopeError (KeyShredded, ...) as
    open_reference_frames does."""
    data_key = unwrap_key(kek, wrapped_key, cameo_id=cameo_id)
    try:
        blob = base64.b64decode(sealed, validate=True)
    except ValueError as exc:
        raise EnvelopeError("the sealed face is not base64") from exc
    return np.frombuffer(decrypt(data_key, blob, aad=face_aad(cameo_id)), dtype="<f4").copy()


def delete_reference_files(media: MediaStore, keys: list[str]) -> None:
    """Best effort: a file left behind is ciphertext whose key is gone or replaced."""
    for key in keys:
        try:
            media.delete(key)
        except Exception:  # a store outage must not undo the shredding already done
            logger.warning("could not delete reference file %s", key, exc_info=True)


# Only the wrapped key and the id of its KEK change; graph/cameos.py owns the rest of the node.
WRAPPED_KEYS_PAGE = Cypher(
    """
MATCH (c:Cameo)
WHERE c.id > $after AND c.wrappedKey IS NOT NULL
RETURN c.id AS id, c.wrappedKey AS wrappedKey
ORDER BY id
LIMIT $limit
"""
)
WRAPPED_KEY_OF = Cypher(
    """
MATCH (c:Cameo {id: $id})
RETURN c.wrappedKey AS wrappedKey
"""
)
# compare-and-set: a key deleted (nulled) or replaced by a new capture since it was read stays
SWAP_WRAPPED_KEY = Cypher(
    """
MATCH (c:Cameo {id: $id})
WHERE c.wrappedKey = $old
SET c.wrappedKey = $new, c.kekId = $kekId
RETURN c.id AS id
"""
)
_PAGE = 200
_SWAP_TRIES = 3


@dataclass
class RewrapReport:
    """What one rewrap did, by cameo count."""

    kek_id: str  # the KEK every key was moved to
    moved: int = 0  # rewrapped under it now
    already: int = 0  # under it before
    shredded: int = 0  # deleted while the rewrap ran: nothing to move
    failed: dict[str, str] = field(default_factory=dict)  # cameo id -> why it did not move
    stopped_early: bool = False  # the limit was reached: run it again to go on

    @property
    def complete(self) -> bool:
        """Every cameo's key is under the current KEK."""
        return not self.failed and not self.stopped_early


async def rewrap_cameo_keys(
    db: GraphDriver, ring: KekRing, *, limit: int | None = None
) -> RewrapReport:
    """Move every cameo's wrapped data key to `ring.current`; idempotent. A key the ring
    cannot unwrap (its KEK unknown, or the key damaged) is reported in `failed`, never
    skipped silently; `limit` stops after that many keys moved."""
    target = ring.current
    report = RewrapReport(kek_id=target.kid)
    after = ""
    while True:
        rows = await db.read(WRAPPED_KEYS_PAGE, {"after": after, "limit": _PAGE})
        for row in rows:
            if limit is not None and report.moved >= limit:
                report.stopped_early = True
                return report
            await _rewrap_one(db, ring, target, row["id"], row["wrappedKey"], report)
        if len(rows) < _PAGE:
            return report
        after = rows[-1]["id"]


async def _rewrap_one(
    db: GraphDriver,
    ring: KekRing,
    target: Kek,
    cameo_id: str,
    wrapped: str | None,
    report: RewrapReport,
) -> None:
    for _ in range(_SWAP_TRIES):
        if wrapped is None:
            report.shredded += 1
            return
        try:
            if wrapped_kek_id(wrapped) == target.kid:
                report.already += 1
                return
            data_key = unwrap_key(ring, wrapped, cameo_id=cameo_id)
        except EnvelopeError as err:
            report.failed[cameo_id] = str(err)
            logger.error("cameo %s: its data key cannot be rewrapped: %s", cameo_id, err)
            return
        rewrapped = wrap_key(target, data_key, cameo_id=cameo_id)
        del data_key
        params = {"id": cameo_id, "old": wrapped, "new": rewrapped, "kekId": target.kid}
        if await db.write(SWAP_WRAPPED_KEY, params):
            report.moved += 1
            return
        # deleted or re-captured since it was read: look again at what it holds now
        rows = await db.read(WRAPPED_KEY_OF, {"id": cameo_id})
        wrapped = rows[0]["wrappedKey"] if rows else None
    report.failed[cameo_id] = "its key kept changing while it was rewrapped; run it again"


async def kek_ids_in_use(db: GraphDriver) -> dict[str, int]:
    """How many cameos hold a data key wrapped under each KEK id (malformed keys: "?")."""
    counts: dict[str, int] = {}
    after = ""
    while True:
        rows = await db.read(WRAPPED_KEYS_PAGE, {"after": after, "limit": _PAGE})
        for row in rows:
            try:
                kid = wrapped_kek_id(row["wrappedKey"])
            except EnvelopeError:
                kid = "?"
            counts[kid] = counts.get(kid, 0) + 1
        if len(rows) < _PAGE:
            return counts
        after = rows[-1]["id"]
