"""What publishing adds to a clip's file: its fingerprint, and a signed C2PA manifest.

Called right after the guarded statement that made the clip PUBLISHED (publishClip, or the
owner's approval that was the last one awaited), before the mutation answers and before
feeds hear of it. In a worker thread, so the event loop never waits on decoding or signing:
1. the approved render is read from the media store and must hash to the clip's sha256,
   the hash every owner's approval token binds: a file that is not the approved render is
   never signed (or fingerprinted);
2. its fingerprint (PDQ per frame, provenance.pdq) is stored for lookup
   (provenance.fingerprints);
3. a copy with the manifest (provenance.manifest) is stored under a key of its own, and the
   clip is pointed at it in one guarded statement (graph.provenance).

If anything fails, the clip stays PUBLISHED with its unsigned render, and the failure is
logged. We chose this over failing the publish: the publish is one atomic statement that
the consent checks guard, and undoing it afterwards would be a second write that feeds and
subscribers could see in between, and that could itself fail: the half-published state this
avoids. An unsigned published clip still carries the visible mark in every frame, and is
still found by its fingerprint unless that step failed too. Signing before the statement
would need the publish statements themselves to carry the signed file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graph import appearances as appearance_repo
from graph import clips as clip_repo
from graph import provenance as provenance_repo
from media.store import MediaStore, clip_video_key
from provenance.certs import SigningIdentity, load_signing_identity
from provenance.fingerprints import store_fingerprint
from provenance.manifest import media_sha256, sign_clip
from provenance.pdq import FrameHash, video_hashes

__all__ = ["consent_receipt", "fetch_media", "seal_published", "sha256_file"]

logger = logging.getLogger(__name__)


class NotTheApprovedRender(Exception):
    """The stored file does not hash to the clip's approved sha256."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_media(media: MediaStore, key: str, dest: Path) -> Path:
    """The stored file under key, as a local file (the store's own, or a copy at dest)."""
    local = media.local_path(key)
    if local is not None:
        shutil.copyfile(local, dest)
        return dest
    size = media.size(key)
    if size is None:
        raise FileNotFoundError(key)
    with open(dest, "wb") as out:
        for chunk in media.read(key, 0, max(0, size - 1)):
            out.write(chunk)
    return dest


def consent_receipt(clip: dict[str, Any], appearances: list[dict], media_digest: str) -> dict:
    """The consent receipt's data (provenance.manifest): ids and hashes, no personal data."""
    cameos = []
    for appearance in appearances:
        token = appearance.get("approvalToken")
        own = appearance.get("ownerId") == clip.get("authorId")
        cameos.append(
            {
                "cameoId": appearance["cameoId"],
                "approval": "author" if own else appearance.get("approval"),
                "approvalTokenSha256": hashlib.sha256(token.encode()).hexdigest()
                if token and not own
                else None,
            }
        )
    return {
        "clipId": clip["id"],
        "renderSha256": clip["sha256"],
        "mediaSha256": media_digest,
        "parentClipId": clip.get("parentId"),
        "cameos": cameos,
    }


@dataclass
class _Sealed:
    hashes: list[FrameHash]
    signed_key: str | None = None
    signed_sha256: str | None = None
    signed_size: int | None = None
    problem: BaseException | None = None


def _identity(settings: Any) -> SigningIdentity:
    key = (
        str(settings.data_dir),
        settings.environment,
        str(getattr(settings, "provenance_cert_chain", None)),
        str(getattr(settings, "provenance_private_key", None)),
        str(getattr(settings, "provenance_trust_anchors", None)),
    )
    with _identities_lock:
        if key not in _identities:
            _identities[key] = load_signing_identity(settings)
        return _identities[key]


_identities: dict[tuple[str, ...], SigningIdentity] = {}
_identities_lock = threading.Lock()


def _seal_files(
    settings: Any,
    media: MediaStore,
    clip: dict[str, Any],
    appearances: list[dict],
    parent_key: str | None,
) -> _Sealed:
    """Steps 1 and 3's file work (see the module's docstring), in a worker thread."""
    scratch = Path(settings.data_dir) / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="seal-") as folder:
        render = fetch_media(media, clip["videoKey"], Path(folder) / "render.mp4")
        if sha256_file(render) != clip["sha256"]:
            raise NotTheApprovedRender(f"{clip['videoKey']} is not the approved render")
        sealed = _Sealed(hashes=video_hashes(render))
        try:
            parent = None
            if parent_key:
                with contextlib.suppress(OSError, ValueError):  # a parent gone: its id stays
                    parent = fetch_media(media, parent_key, Path(folder) / "parent.mp4")
            receipt = consent_receipt(clip, appearances, media_sha256(render))
            signed = Path(folder) / "signed.mp4"
            sign_clip(_identity(settings), render, signed, receipt, parent=parent)
            sealed.signed_sha256 = sha256_file(signed)
            sealed.signed_size = signed.stat().st_size
            sealed.signed_key = clip_video_key(clip["id"], sealed.signed_sha256)
            media.put(signed, sealed.signed_key)
        except Exception as exc:  # the fingerprint still counts; logged by the caller
            sealed.problem = exc
        return sealed


async def seal_published(services: Any, clip: dict[str, Any]) -> dict[str, Any]:
    """Fingerprint and sign a clip that just became PUBLISHED; the clip as it is now (the
    row given back unchanged when there was nothing to do or it failed: see above)."""
    if clip.get("state") != "PUBLISHED" or clip.get("signedAt") or not clip.get("videoKey"):
        return clip
    db = services.graph
    try:
        row = (await clip_repo.clips_by_ids(db, [clip["id"]])).get(clip["id"]) or clip
        row = {**clip, "parentId": row.get("parentId")}
        appearances = (await appearance_repo.appearances_by_clips(db, [clip["id"]])).get(
            clip["id"], []
        )
        parent_key = None
        if row["parentId"]:
            parent = (await clip_repo.clips_by_ids(db, [row["parentId"]])).get(row["parentId"])
            parent_key = (parent or {}).get("videoKey")
        sealed = await asyncio.to_thread(
            _seal_files, services.settings, services.media, row, appearances, parent_key
        )
    except Exception:
        logger.exception("clip %s published without provenance: it could not be read", clip["id"])
        return clip
    try:
        await store_fingerprint(services.redis, clip["id"], sealed.hashes)
    except Exception:
        logger.exception("clip %s: its fingerprint could not be stored", clip["id"])
    if sealed.problem is not None or sealed.signed_key is None:
        logger.error("clip %s published unsigned: signing failed: %r", clip["id"], sealed.problem)
        return clip
    try:
        attached = await provenance_repo.attach_signed_video(
            db,
            clip["id"],
            render_key=clip["videoKey"],
            render_sha256=clip["sha256"],
            signed_key=sealed.signed_key,
            signed_sha256=sealed.signed_sha256 or "",
            signed_size=sealed.signed_size or 0,
            now=int(time.time() * 1000),
        )
    except Exception:
        # whether the write happened is unknown: the file stays, and the media sweep
        # deletes it later if no clip names it
        logger.exception("clip %s: its signed file could not be attached", clip["id"])
        return clip
    if attached is None:  # removed or changed meanwhile: nothing names the signed copy
        with contextlib.suppress(Exception):
            await asyncio.to_thread(services.media.delete, sealed.signed_key)
        return clip
    try:  # the unsigned render is named by no clip now (the media sweep would delete it too)
        await asyncio.to_thread(services.media.delete, clip["videoKey"])
    except Exception:
        logger.warning("clip %s: could not delete its unsigned render yet", clip["id"])
    return {**clip, **attached}
