"""Appearances: the FEATURES edges between clips and the cameos they feature.

`(:Clip)-[:FEATURES {approval, decidedAt, epoch, renderJti, renderToken, approvalJti,
approvalToken, approvedSha256, approvalEpoch, approvalExpiresAt}]->(:Cameo)`; approval
PENDING | APPROVED | REJECTED | REVOKED; approvalEpoch is the cameo's consent epoch the
approval was given under, approvalExpiresAt its token's expiry (epoch ms).
createClip writes them (graph.clips); this module holds the owners' decisions, the clip's
move to AWAITING_APPROVAL, the inbox, and the reads the worker and the resolvers need.

Approval tokens are signatures, which Cypher cannot check: callers verify them first and
pass the verified ones in (`$approved`: "cameoId:approvalJti" strings), and the statements
that publish insist every other owner's edge is APPROVED for the clip's current sha256 with
one of those verified approvals. An edge set APPROVED by hand (no token, a token copied
from another clip, a video changed after approval) therefore never publishes.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from graph.driver import Cypher, GraphDriver, Row
from graph.visibility import ViewerBlocks, shown_to, viewer_blocks

__all__ = [
    "APPROVALS_UNMET",
    "UNPUBLISHED_WITH_VIDEO",
    "appearances_by_clips",
    "approve",
    "approved_key",
    "inbox_page",
    "reject",
    "remove_featuring",
    "render_uses",
    "reset_stale_approvals",
    "submit_for_approval",
    "token_expiry_ms",
]

UNPUBLISHED_WITH_VIDEO = ["DRAFT", "AWAITING_APPROVAL"]

# The publish guard, shared by PUBLISH (graph.clips) and APPROVE: counts, as `unmet`, the
# appearances that keep clip c (author a) from publishing. Every featured cameo must have an
# owner, be ACTIVE and its edge APPROVED; every edge to a cameo the author does not own must
# carry a verified approval ($approved) of this very video, given under the cameo's current
# consent epoch (approvalEpoch) and not expired (approvalExpiresAt, the approval token's own
# expiry, after $now), and its owner and the author must not block each other (blocks always
# win, even over an approval given before the block). So an audience change (which moves the
# epoch on), an expiry or a block landing between the caller's check and this statement
# still refuses it. The owner's approval under the current epoch is their consent to this
# very clip: the audience rule that decides who may make clips of the cameo (graph.cameos
# usable_by, checked when the clip is created and again when its render is stored) is not
# asked again here, so an owner who changed their audience can approve a draft anew.
# The cameos and their owners are locked first.
# coalesce() makes a missing property count as unmet (a null would silently drop the edge).
APPROVALS_UNMET = """OPTIONAL MATCH (c)-[f:FEATURES]->(m:Cameo)
OPTIONAL MATCH (m)<-[:OWNS]-(o:User)
SET m._lock = true, o._lock = true REMOVE m._lock, o._lock
WITH a, c, f, m, o
OPTIONAL MATCH (o)-[k:BLOCKS]-(a)
WITH a, c, f, m, o, count(k) AS blocks
WITH a, c,
     count(CASE WHEN f IS NOT NULL
                     AND (o IS NULL
                          OR NOT coalesce(m.state = 'ACTIVE' AND f.approval = 'APPROVED', false)
                          OR (o.id <> a.id
                              AND (blocks > 0
                                   OR NOT coalesce(f.approvedSha256 = c.sha256
                                                   AND f.approvalEpoch = m.consentEpoch
                                                   AND f.approvalExpiresAt > $now
                                                   AND (m.id + ':' + f.approvalJti) IN $approved,
                                                   false))))
                THEN 1 END) AS unmet
"""

# each clip's appearances; `blocked`: the owner and the author block each other (either
# way)
APPEARANCES_BY_CLIPS = Cypher(
    """
UNWIND $ids AS id
MATCH (a:User)-[:POSTED]->(c:Clip {id: id})-[f:FEATURES]->(m:Cameo)<-[:OWNS]-(o:User)
OPTIONAL MATCH (o)-[k:BLOCKS]-(a)
WITH id, a, f, m, o, count(k) AS blocks
RETURN id AS clipId, m.id AS cameoId, o.id AS ownerId, f.approval AS approval,
       f.decidedAt AS decidedAt, f.epoch AS epoch, f.approvalToken AS approvalToken,
       f.approvalJti AS approvalJti, f.approvedSha256 AS approvedSha256,
       f.approvalEpoch AS approvalEpoch, f.approvalExpiresAt AS approvalExpiresAt,
       m.state AS cameoState, m.consentEpoch AS cameoEpoch,
       o.id <> a.id AND blocks > 0 AS blocked
ORDER BY clipId, cameoId
"""
)

# what a render of the clip may use: each featured cameo's token and decision (read by the
# worker before it decrypts reference media and again before it stores the output)
RENDER_USES = Cypher(
    """
MATCH (c:Clip {id: $id})-[f:FEATURES]->(m:Cameo)<-[:OWNS]-(o:User)
OPTIONAL MATCH (c)-[:REMIX_OF]->(p:Clip)
RETURN m.id AS cameoId, o.id AS ownerId, o.handle AS ownerHandle, f.approval AS approval,
       f.epoch AS epoch, f.renderToken AS renderToken, f.renderJti AS renderJti,
       p.id AS parentId
ORDER BY cameoId
"""
)

# publishClip with approvals pending: DRAFT -> AWAITING_APPROVAL; the owners to notify.
# A rejected or revoked appearance blocks the move (the author needs a new render)
SUBMIT_FOR_APPROVAL = Cypher(
    """
MATCH (a:User {id: $authorId})-[:POSTED]->(c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH a, c
WHERE c.state = 'DRAFT'
OPTIONAL MATCH (c)-[g:FEATURES]->(:Cameo)
WHERE g.approval IN ['REJECTED', 'REVOKED']
WITH a, c, count(g) AS refused
WHERE refused = 0
MATCH (c)-[f:FEATURES]->(:Cameo)<-[:OWNS]-(o:User)
WHERE f.approval = 'PENDING' AND o.id <> a.id
WITH a, c, collect(DISTINCT o.id) AS owners
SET c.state = 'AWAITING_APPROVAL', c.updatedAt = $now
RETURN c {.*, authorId: a.id} AS clip, owners
"""
)

# approvals that did not verify (copied, for another video, an old consent epoch) are no
# approvals: they go back to PENDING, unless a new approval replaced them meanwhile
RESET_STALE_APPROVALS = Cypher(
    """
MATCH (c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH c
MATCH (c)-[f:FEATURES]->(m:Cameo)
WHERE f.approval = 'APPROVED' AND (m.id + ':' + coalesce(f.approvalJti, '')) IN $stale
SET f.approval = 'PENDING', f.decidedAt = null, f.approvalToken = null, f.approvalJti = null,
    f.approvedSha256 = null, f.approvalEpoch = null, f.approvalExpiresAt = null
RETURN m.id AS cameoId
"""
)

# the owner's approval of this exact video, with its token's expiry ($expiresAt); the last
# one needed publishes a clip that awaits approval, in this same statement
APPROVE = Cypher(
    """
MATCH (a:User)-[:POSTED]->(c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH a, c
MATCH (c)-[f:FEATURES]->(m:Cameo {id: $cameoId})<-[:OWNS]-(:User {id: $ownerId})
WHERE c.state IN ['DRAFT', 'AWAITING_APPROVAL'] AND c.sha256 = $sha256
  AND f.approval IN ['PENDING', 'REJECTED'] AND m.state = 'ACTIVE' AND m.consentEpoch = $epoch
SET f.approval = 'APPROVED', f.decidedAt = $now, f.approvalToken = $token,
    f.approvalJti = $jti, f.approvedSha256 = $sha256, f.approvalEpoch = $epoch,
    f.approvalExpiresAt = $expiresAt
WITH DISTINCT a, c
"""
    + APPROVALS_UNMET
    + """WITH a, c, c.state = 'AWAITING_APPROVAL' AND unmet = 0 AS complete
SET c.state = CASE WHEN complete THEN 'PUBLISHED' ELSE c.state END,
    c.publishedAt = CASE WHEN complete THEN $now ELSE c.publishedAt END,
    c.updatedAt = $now
RETURN c {.*, authorId: a.id} AS clip
"""
)

REJECT = Cypher(
    """
MATCH (a:User)-[:POSTED]->(c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH a, c
MATCH (c)-[f:FEATURES]->(:Cameo)<-[:OWNS]-(o:User {id: $ownerId})
WHERE c.state IN ['DRAFT', 'AWAITING_APPROVAL'] AND f.approval IN ['PENDING', 'APPROVED']
  AND o.id <> a.id
SET f.approval = 'REJECTED', f.decidedAt = $now, f.approvalToken = null, f.approvalJti = null,
    f.approvedSha256 = null, f.approvalEpoch = null, f.approvalExpiresAt = null,
    c.state = 'DRAFT', c.updatedAt = $now
WITH DISTINCT a, c
RETURN c {.*, authorId: a.id} AS clip
"""
)

# the owner takes down the clip, at any state, and every remix below it that carries the
# same cameo (a remix inherits its parent's cameos, so that is every descendant that does)
REMOVE_FEATURING = Cypher(
    """
MATCH (:User {id: $ownerId})-[:OWNS]->(m:Cameo)<-[:FEATURES]-(c:Clip {id: $id})
WITH DISTINCT m, c
MATCH (t:Clip)-[:REMIX_OF*0..]->(c)
MATCH (t)-[:FEATURES]->(m)
MATCH (ta:User)-[:POSTED]->(t)
SET t._lock = true REMOVE t._lock
WITH DISTINCT t, ta
WHERE t.state <> 'REMOVED'
SET t.state = 'REMOVED', t.removedAt = $now, t.removedBy = 'cameo-owner', t.updatedAt = $now,
    t.renderOwner = null, t.renderWorker = null
RETURN t {.*, authorId: ta.id} AS clip
"""
)

# clips awaiting the viewer's approval, newest request first (keyset on updatedAt, id):
# pending ones, and ones the viewer approved before changing their audience (that approval
# no longer counts, so the clip waits for them again); only those the viewer may see
# (graph.visibility, the viewer's $blockers and $hidden given: not while a block stands
# between them and another featured owner)
INBOX_PAGE = Cypher(
    """
MATCH (:User {id: $ownerId})-[:OWNS]->(m:Cameo)<-[f:FEATURES]-(c:Clip)<-[:POSTED]-(a:User)
WHERE c.state = 'AWAITING_APPROVAL' AND a.id <> $ownerId
  AND """
    + shown_to("$ownerId", "c", "a", "$blockers", "$hidden", viewer_featured="true")
    + """
  AND (f.approval = 'PENDING'
       OR (f.approval = 'APPROVED'
           AND coalesce(f.approvalEpoch, m.consentEpoch) <> m.consentEpoch))
  AND ($afterAt IS NULL OR c.updatedAt < $afterAt
       OR (c.updatedAt = $afterAt AND c.id < $afterId))
RETURN DISTINCT c {.*, authorId: a.id} AS clip, c.updatedAt AS at
ORDER BY at DESC, clip.id DESC
LIMIT $limit
"""
)


def approved_key(cameo_id: str, approval_jti: str | None) -> str:
    """How a verified approval is named to the statements that publish."""
    return f"{cameo_id}:{approval_jti or ''}"


def _clip(rows: list[Row]) -> Row | None:
    return rows[0]["clip"] if rows else None


async def appearances_by_clips(db: GraphDriver, clip_ids: list[str]) -> dict[str, list[Row]]:
    """Each clip's appearances (cameo, owner, decision, tokens, whether the author and the
    owner block each other), by clip id."""
    found: dict[str, list[Row]] = {}
    for row in await db.read(APPEARANCES_BY_CLIPS, {"ids": clip_ids}):
        found.setdefault(row["clipId"], []).append(row)
    return found


async def render_uses(db: GraphDriver, clip_id: str) -> list[Row]:
    return await db.read(RENDER_USES, {"id": clip_id})


async def submit_for_approval(
    db: GraphDriver, author_id: str, clip_id: str, now: int
) -> tuple[Row, list[str]] | None:
    """(the clip, now AWAITING_APPROVAL, and the owners whose approval is pending); None when
    the clip is not a DRAFT with a pending appearance and no rejected or revoked one."""
    params = {"authorId": author_id, "id": clip_id, "now": now}
    rows = await db.write(SUBMIT_FOR_APPROVAL, params)
    return (rows[0]["clip"], list(rows[0]["owners"])) if rows else None


async def reset_stale_approvals(db: GraphDriver, clip_id: str, stale: list[str]) -> list[str]:
    """Back to PENDING: the approvals named (approved_key) that did not verify."""
    rows = await db.write(RESET_STALE_APPROVALS, {"id": clip_id, "stale": stale})
    return [row["cameoId"] for row in rows]


def token_expiry_ms(token: str | None) -> int | None:
    """The `exp` of a PASETO v4.public token, in epoch ms, read without verifying it (the
    claims of a public token are plain JSON before its 64-byte signature); None when it
    cannot be read. What an approval's edge records as approvalExpiresAt: publishing
    verifies the token and checks the two agree (consent.approvals)."""
    try:
        version, purpose, body = (token or "").split(".")[:3]
        if (version, purpose) != ("v4", "public"):
            return None
        message = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))[:-64]
        expires = datetime.fromisoformat(json.loads(message)["exp"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return int(expires.timestamp() * 1000) if expires.tzinfo is not None else None


async def approve(db: GraphDriver, params: dict[str, Any]) -> Row | None:
    """Record an approval (id, cameoId, ownerId, epoch, sha256, token, jti, now, approved);
    the clip, PUBLISHED when it was the last one awaited; None when the guard refused. The
    edge records the token's expiry too, which every publish path checks."""
    params = {**params, "expiresAt": token_expiry_ms(params.get("token"))}
    return _clip(await db.write(APPROVE, params))


async def reject(db: GraphDriver, owner_id: str, clip_id: str, now: int) -> Row | None:
    params = {"ownerId": owner_id, "id": clip_id, "now": now}
    return _clip(await db.write(REJECT, params))


async def remove_featuring(db: GraphDriver, owner_id: str, clip_id: str, now: int) -> list[Row]:
    """The clips this removal took down: the clip (unless already REMOVED) and its remixes
    carrying the owner's cameo."""
    params = {"ownerId": owner_id, "id": clip_id, "now": now}
    return [row["clip"] for row in await db.write(REMOVE_FEATURING, params)]


async def inbox_page(
    db: GraphDriver,
    owner_id: str,
    after: tuple[Any, ...] | None,
    limit: int,
    blocks: ViewerBlocks | None = None,
) -> list[Row]:
    """A page of the owner's inbox (`blocks`: the owner's, graph.visibility; read when
    not given)."""
    if blocks is None:
        blocks = await viewer_blocks(db, owner_id)
    after_at, after_id = after if after else (None, None)
    params = {
        "ownerId": owner_id,
        "afterAt": after_at,
        "afterId": after_id,
        "limit": limit,
        **blocks.params(),
    }
    return await db.read(INBOX_PAGE, params)
