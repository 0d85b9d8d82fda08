"""Is this file one of our clips? The one check behind `reelgraph verify` and
POST /provenance/verify.

1. The C2PA manifest, if any, read against this server's roots (provenance.certs): signed
   by this server (the signing chain is ours), intact (the hard binding and every
   assertion hash match, and the file's media packets hash to the receipt's mediaSha256:
   the pictures and sound of the approved render, see provenance.manifest). Then the clip
   is the receipt's: matchedBy "manifest".
2. Otherwise (no manifest, someone else's, or one that no longer matches the file) the
   file's frames are fingerprinted and looked up (provenance.fingerprints): a re-encoded,
   scaled or stripped copy is found there, matchedBy "fingerprint".
3. The clip found is checked against the graph: its state, and for a manifest match
   whether the receipt is the clip's own record (`approvedRender`): the render sha256 the
   receipt names is the clip's approved sha256, every featured owner's approval binds that
   sha256, and the receipt's approval-token hashes are those of the tokens on record.

`verified` (and the CLI's exit status 0) means signed by this server and intact.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

import c2pa

from graph import appearances as appearance_repo
from graph import clips as clip_repo
from provenance.certs import trust_anchors
from provenance.fingerprints import FingerprintIndex, sync_index
from provenance.manifest import ManifestReading, media_sha256, read_manifest
from provenance.pdq import video_hashes

__all__ = ["NotAVideo", "verify_file"]

logger = logging.getLogger(__name__)


class NotAVideo(Exception):
    """Nothing in the file decodes as video: there is nothing to verify."""


def _read(path: Path, anchors: str | None) -> ManifestReading:
    try:
        return read_manifest(path, anchors)
    except c2pa.C2paError as exc:  # C2PA data too broken to parse: as good as none
        logger.info("C2PA data of %s does not parse: %s", path.name, exc)
        return ManifestReading(present=True, failures=["manifest.unreadable"])


def _media_matches(path: Path, receipt: dict[str, Any]) -> bool:
    try:
        return media_sha256(path) == receipt.get("mediaSha256")
    except Exception:  # an undecodable container cannot match
        return False


async def verify_file(
    path: Path, *, settings: Any, graph: Any, redis: Any, index: FingerprintIndex
) -> dict[str, Any]:
    """The verdict on the file at path (see the module's docstring) as the JSON the CLI and
    the API answer; clipId is the raw clip id (callers encode it as they show ids).
    Raises NotAVideo when the file neither carries our manifest nor decodes as video."""
    reading = await asyncio.to_thread(_read, path, trust_anchors(settings))
    receipt = reading.receipt if reading.trusted else None
    media_ok = receipt is not None and await asyncio.to_thread(_media_matches, path, receipt)
    signed = receipt is not None
    intact = signed and reading.intact and media_ok
    result: dict[str, Any] = {
        "verified": intact,
        "signed": signed,
        "intact": intact,
        "clipId": None,
        "matchedBy": None,
        "aiGenerated": reading.ai_generated if reading.present else None,
        "manifest": {
            "present": reading.present,
            "validationState": reading.state,
            "trusted": reading.trusted,
            "mediaMatches": media_ok if receipt is not None else None,
            "failures": reading.failures,
            "signer": reading.signer,
            "receipt": receipt,
            "ingredients": reading.ingredients,
        },
        "fingerprint": None,
        "clip": None,
    }
    if intact:
        result["clipId"], result["matchedBy"] = receipt.get("clipId"), "manifest"
    else:
        try:
            hashes = await asyncio.to_thread(video_hashes, path)
        except Exception as exc:  # PyAV raises many kinds for a non-video
            raise NotAVideo("the file is not a video this server can read") from exc
        if not hashes:
            raise NotAVideo("the file has no video frames")
        await sync_index(redis, index)
        matches = await asyncio.to_thread(index.lookup, hashes)
        result["fingerprint"] = {
            "frames": len(hashes),
            "match": matches[0].as_json() if matches else None,
        }
        if matches:
            result["clipId"], result["matchedBy"] = matches[0].clip_id, "fingerprint"
    if result["clipId"]:
        result["clip"] = await _clip_record(graph, result["clipId"], receipt if intact else None)
    return result


async def _clip_record(graph: Any, clip_id: str, receipt: dict | None) -> dict[str, Any] | None:
    clip = (await clip_repo.clips_by_ids(graph, [clip_id])).get(clip_id)
    if clip is None:
        return {"exists": False}
    record: dict[str, Any] = {
        "exists": True,
        "state": clip["state"],
        "publishedAt": clip.get("publishedAt"),
        "signedAt": clip.get("signedAt"),
        "approvedRender": None,
    }
    if receipt is not None:
        render = clip.get("sha256")  # the approved render's (graph.provenance)
        appearances = (await appearance_repo.appearances_by_clips(graph, [clip_id])).get(
            clip_id, []
        )
        on_record = {
            a["cameoId"]: a
            for a in appearances
            if a.get("ownerId") != clip.get("authorId")  # the author's own needs no approval
        }
        claimed = {
            c.get("cameoId"): c.get("approvalTokenSha256")
            for c in receipt.get("cameos", [])
            if c.get("approval") != "author"
        }
        record["approvedRender"] = (
            render is not None
            and render == receipt.get("renderSha256")
            and set(claimed) == set(on_record)
            and all(
                a.get("approvedSha256") == render
                and a.get("approvalToken")
                and hashlib.sha256(a["approvalToken"].encode()).hexdigest() == claimed[cameo]
                for cameo, a in on_record.items()
            )
        )
    return record
