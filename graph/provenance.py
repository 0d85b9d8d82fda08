"""Provenance on the clip: the signed file a published clip serves (provenance.publish).

At publish the server signs a C2PA manifest into a copy of the approved render and stores
it under a key of its own. ATTACH_SIGNED_VIDEO then points the clip at it in one guarded
statement: only while the clip is PUBLISHED and still names the render that was signed
(key and sha256), so a clip removed, or changed, while the file was being signed is left as
it is (the caller deletes the signed copy). `sha256` stays the approved render's, the hash
every approval binds (the signed file's media packets are the render's, byte for byte: see
provenance.manifest); `videoKey` and `sizeBytes` become the signed file's, `signedSha256` is
the signed file's own hash (the /media ETag), `renderKey` the render's key, and `signedAt`
says when. The render's own file is then named by no clip: the caller deletes it (or
the workers' media sweep does).
"""

from __future__ import annotations

from graph.driver import Cypher, GraphDriver, Row

__all__ = ["ATTACH_SIGNED_VIDEO", "attach_signed_video"]

ATTACH_SIGNED_VIDEO = Cypher(
    """
MATCH (a:User)-[:POSTED]->(c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH a, c
WHERE c.state = 'PUBLISHED' AND c.videoKey = $renderKey AND c.sha256 = $renderSha256
  AND c.signedAt IS NULL
SET c.renderKey = c.videoKey, c.videoKey = $signedKey, c.signedSha256 = $signedSha256,
    c.sizeBytes = $signedSize, c.signedAt = $now, c.updatedAt = $now
RETURN c {.*, authorId: a.id} AS clip
"""
)


async def attach_signed_video(
    db: GraphDriver,
    clip_id: str,
    *,
    render_key: str,
    render_sha256: str,
    signed_key: str,
    signed_sha256: str,
    signed_size: int,
    now: int,
) -> Row | None:
    """The clip now serving its signed file; None when the guard refused (see above)."""
    params = {
        "id": clip_id,
        "renderKey": render_key,
        "renderSha256": render_sha256,
        "signedKey": signed_key,
        "signedSha256": signed_sha256,
        "signedSize": signed_size,
        "now": now,
    }
    rows = await db.write(ATTACH_SIGNED_VIDEO, params)
    return rows[0]["clip"] if rows else None
