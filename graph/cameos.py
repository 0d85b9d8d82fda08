"""Cameos: capture state, audience, restrictions, grants, deletion, and who may use one.

`(:User)-[:OWNS]->(:Cameo)`: a user has at most one cameo that is not DELETED (created and
checked under the owner's lock). `(:Cameo)-[:GRANTED_TO {grantId}]->(:User)`: a grant is
active while revokedAt is null and expiresAt is null or in the future.

Usability, the one rule every consent check uses: the cameo is ACTIVE, and the user is its
owner, or neither has blocked the other and: the audience is EVERYONE; or it is APPROVED or
MUTUALS and the user holds an active grant; or it is MUTUALS and the two follow each other.
It is written once, as the Cypher fragment `usable_by`, which USABLE_CAMEOS (the API's and
the workers' read) and the statements that create, finish and publish a clip
(graph.clips, graph.appearances APPROVALS_UNMET) all include.

Secrets (wrappedKey, kekId, refKeys, faceSealed: the face embedding encrypted under the
cameo's data key, shredded with it) never leave through the row projections the API reads;
only REFERENCE_MEDIA (for workers) and deletion return them.

One face, one owner (workers.face_index): `(:FaceRegistry {key: 'cameo-faces', version})`
counts every change to the set of sealed faces. Each statement that gives a cameo a face,
replaces it, or takes it away (ACTIVATE_CAPTURE, REVIEW_CAMEO, DELETE_CAMEO) bumps
`version` under the registry's lock and stamps the cameo's `faceVersion` with it, so a
capture worker reads only the cameos changed since the version it holds (FACES_CHANGED).
ACTIVATE_CAPTURE is also a compare-and-set on that version: it writes only when no face
changed since the worker matched the capture against the faces it holds. Locks: the cameo
first, then the registry, in every statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graph.driver import Cypher, GraphDriver, Row

__all__ = [
    "UNPUBLISHED_STATES",
    "accept_capture",
    "activate_capture",
    "appearances_page",
    "cameo_usable",
    "cameos_by_ids",
    "cameos_of_owners",
    "capture_awaited",
    "create_grant",
    "current_face_version",
    "delete_cameo",
    "ensure_cameo",
    "faces_changed",
    "faces_page",
    "grants_by_ids",
    "grants_of_cameo",
    "live_cameo",
    "reference_media",
    "reject_capture",
    "review_cameo",
    "revoke_grant",
    "set_audience",
    "set_restrictions",
    "usable_by",
    "usable_cameos",
]

# a use of a cameo that revocation still reaches: the clip is not published (nor over)
UNPUBLISHED_STATES = ["QUEUED", "RENDERING", "DRAFT", "AWAITING_APPROVAL"]

# the cameo row every reader gets (o its owner): never its key or reference files
_CAMEO = """c {.id, .state, .audience, .restrictions, .consentEpoch, .createdAt, .verifiedAt,
          .rejectReason, .lastCaptureFailure, .deletedAt, ownerId: o.id} AS cameo"""

# a grant's row (g the GRANTED_TO edge from cameo c of owner o to grantee u)
_GRANT = """{id: g.grantId, cameoId: c.id, ownerId: o.id, granteeId: u.id, at: g.at,
        expiresAt: g.expiresAt, revokedAt: g.revokedAt} AS grant"""

# the owner's live cameo, locked, then checked again (the lock makes the check hold)
_OWNERS_LIVE_CAMEO = """
MATCH (o:User {id: $ownerId})-[:OWNS]->(c:Cameo)
WHERE c.state <> 'DELETED'
SET c._lock = true REMOVE c._lock
WITH o, c
WHERE c.state <> 'DELETED'
"""

# first capture: a new PENDING_VERIFICATION cameo, unless the owner already has a live one
CREATE_CAMEO_IF_NONE = Cypher(
    """
MATCH (o:User {id: $ownerId})
SET o._lock = true REMOVE o._lock
WITH o
OPTIONAL MATCH (o)-[:OWNS]->(x:Cameo)
WITH o, count(CASE WHEN x.state <> 'DELETED' THEN 1 END) AS live
WHERE live = 0
CREATE (o)-[:OWNS]->(c:Cameo {id: $id, state: 'PENDING_VERIFICATION', audience: 'ONLY_ME',
                              restrictions: [], consentEpoch: 1, createdAt: $now})
RETURN c.id AS id
"""
)

# each cameo's row and whether its owner and the viewer block each other (either way)
_CAMEO_SEEN_BY_VIEWER = (
    """OPTIONAL MATCH (v:User {id: $viewerId})
OPTIONAL MATCH (o)-[k:BLOCKS]-(v)
WITH o, c, count(k) AS blocks
RETURN """
    + _CAMEO
    + """,
       blocks > 0 AS blocked
"""
)

LIVE_CAMEOS_OF_OWNERS = Cypher(
    """
UNWIND $ownerIds AS ownerId
MATCH (o:User {id: ownerId})-[:OWNS]->(c:Cameo)
WHERE c.state <> 'DELETED'
"""
    + _CAMEO_SEEN_BY_VIEWER
)

CAMEOS_BY_IDS = Cypher(
    """
UNWIND $ids AS id
MATCH (o:User)-[:OWNS]->(c:Cameo {id: id})
"""
    + _CAMEO_SEEN_BY_VIEWER
)

# an upload was accepted: this capture (the challenge id) is the one whose verdict counts; a
# first or rejected cameo waits in PENDING_VERIFICATION, an ACTIVE one stays ACTIVE meanwhile
# (and one held for review stays held);
# an earlier capture's failure is no longer the latest word
ACCEPT_CAPTURE = Cypher(
    """
MATCH (o:User {id: $ownerId})-[:OWNS]->(c:Cameo {id: $id})
SET c._lock = true REMOVE c._lock
WITH o, c
WHERE c.state <> 'DELETED'
SET c.captureId = $captureId, c.captureAt = $now, c.rejectReason = null,
    c.lastCaptureFailure = null,
    c.state = CASE WHEN c.state IN ['ACTIVE', 'PENDING_REVIEW'] THEN c.state
                   ELSE 'PENDING_VERIFICATION' END
RETURN """
    + _CAMEO
    + """
"""
)

# the cameo, locked, if $captureId is still the capture whose verdict counts
_CAPTURE_AWAITED = """
MATCH (o:User)-[:OWNS]->(c:Cameo {id: $id})
SET c._lock = true REMOVE c._lock
WITH o, c
WHERE c.state IN ['PENDING_VERIFICATION', 'ACTIVE', 'PENDING_REVIEW']
  AND c.captureId = $captureId
"""

# Withdrawal, what revoking a grant and deleting a cameo do to each unpublished clip that
# uses the cameo, in the statement that revokes: its FEATURES edge is REVOKED (a QUEUED or
# RENDERING clip then fails at the worker's checks and at FINISH_RENDER), an AWAITING_APPROVAL
# clip goes back to DRAFT, and the clip is marked `withdrawnAt` with its `videoKey` gone: the
# video is no longer the clip's, so Clip.video is null and /media refuses every link to it,
# old or fresh, and the media sweep (workers/reaper.py, KEYS_IN_USE) deletes the file once
# no clip names it. The edges' token ids come back to be revoked in Redis.
_WITHDRAWN_CLIP = """clip.state = CASE WHEN clip.state = 'AWAITING_APPROVAL' THEN 'DRAFT'
                       ELSE clip.state END,
      clip.withdrawnAt = $now, clip.videoKey = null, clip.updatedAt = $now"""


# the face registry (see the module doc), locked: every face change takes it after the cameo
_FACES_LOCKED = """MERGE (fr:FaceRegistry {key: 'cameo-faces'})
SET fr._lock = true REMOVE fr._lock
"""


def _face_changed(carry: str) -> str:
    """The face set changed: the registry counts it and the cameo carries the count (the
    count computed once, in a WITH: FalkorDB reads a property SET earlier in the same query
    as it was before)."""
    return f"""WITH {carry}, fr, coalesce(fr.version, 0) + 1 AS faceVersion
SET fr.version = faceVersion, c.faceVersion = faceVersion
"""


# The verdict of the latest accepted capture only, if no face changed since $faceVersion
# (the worker then matches again); returns the reference files it replaces. $state: ACTIVE,
# or PENDING_REVIEW (the face looks like public figure $figureId: an operator decides). A
# re-capture of an ACTIVE cameo whose face is not the one it had ($sameFace false) is a new
# likeness: the epoch moves on and every other author's unpublished use is withdrawn, as by
# REVOKE_GRANT (_WITHDRAWN_CLIP); the withdrawn uses' token ids come back to be revoked.
ACTIVATE_CAPTURE = Cypher(
    _CAPTURE_AWAITED
    + """WITH o, c
"""
    + _FACES_LOCKED
    + """WITH o, c, fr
WHERE coalesce(fr.version, 0) = $faceVersion
WITH o, c, fr, coalesce(c.refKeys, []) AS replaced,
     c.state = 'ACTIVE' AND NOT $sameFace AS newLikeness
OPTIONAL MATCH (a:User)-[:POSTED]->(clip:Clip)-[f:FEATURES]->(c)
WHERE newLikeness AND a <> o AND clip.state IN $unpublished AND f.approval <> 'REVOKED'
WITH o, c, fr, replaced, newLikeness, collect(f) AS uses, collect(clip) AS clips
FOREACH (f IN uses | SET f.approval = 'REVOKED', f.decidedAt = $now)
FOREACH (clip IN clips |
  SET """
    + _WITHDRAWN_CLIP
    + """)
SET c.state = $state, c.wrappedKey = $wrappedKey, c.kekId = $kekId, c.refKeys = $refKeys,
    c.faceSealed = $face, c.verifiedAt = $now, c.rejectReason = null,
    c.lastCaptureFailure = $note, c.captureId = null, c.reviewFigureId = $figureId,
    c.consentEpoch = CASE WHEN newLikeness THEN c.consentEpoch + 1 ELSE c.consentEpoch END
"""
    + _face_changed("o, c, replaced, newLikeness, uses, clips")
    + """RETURN replaced, newLikeness,
       [f IN uses WHERE f.renderJti IS NOT NULL | f.renderJti]
       + [f IN uses WHERE f.approvalJti IS NOT NULL | f.approvalJti] AS jtis,
       [clip IN clips | clip.id] AS clipIds,
       """
    + _CAMEO
    + """
"""
)

# whether $captureId is still the capture whose verdict counts (an ACTIVATE_CAPTURE that
# wrote nothing: the face registry moved on, or the capture no longer counts)
CAPTURE_AWAITED = Cypher(
    """
MATCH (c:Cameo {id: $id})
WHERE c.state IN ['PENDING_VERIFICATION', 'ACTIVE', 'PENDING_REVIEW']
  AND c.captureId = $captureId
RETURN c.id AS id
"""
)

# an operator's decision on a capture held for review: approved, the cameo is ACTIVE;
# rejected, it is REJECTED and its likeness shredded as DELETE_CAMEO shreds it (the caller
# deletes the reference files returned)
REVIEW_CAMEO = Cypher(
    """
MATCH (o:User)-[:OWNS]->(c:Cameo {id: $id})
SET c._lock = true REMOVE c._lock
WITH o, c
WHERE c.state = 'PENDING_REVIEW'
WITH o, c, CASE WHEN $approve THEN [] ELSE coalesce(c.refKeys, []) END AS shredded
"""
    + _FACES_LOCKED
    + """SET c.state = CASE WHEN $approve THEN 'ACTIVE' ELSE 'REJECTED' END,
    c.reviewedAt = $now, c.reviewedBy = $adminId, c.reviewFigureId = null,
    c.rejectReason = CASE WHEN $approve THEN null ELSE $reason END,
    c.lastCaptureFailure = CASE WHEN $approve THEN null ELSE $reason END,
    c.wrappedKey = CASE WHEN $approve THEN c.wrappedKey END,
    c.kekId = CASE WHEN $approve THEN c.kekId END,
    c.faceSealed = CASE WHEN $approve THEN c.faceSealed END,
    c.refKeys = CASE WHEN $approve THEN c.refKeys ELSE [] END
"""
    + _face_changed("o, c, shredded")
    + """RETURN shredded AS refKeys,
       """
    + _CAMEO
    + """
"""
)

# the face registry's count (0 before the first face)
FACE_VERSION = Cypher(
    """
OPTIONAL MATCH (fr:FaceRegistry {key: 'cameo-faces'})
RETURN coalesce(max(fr.version), 0) AS version
"""
)

# every cameo holding a face, by id after $after (a worker's full load)
FACES_PAGE = Cypher(
    """
MATCH (o:User)-[:OWNS]->(c:Cameo)
WHERE c.faceSealed IS NOT NULL AND c.id > $after
RETURN c.id AS id, o.id AS ownerId, c.state AS state, c.wrappedKey AS wrappedKey,
       c.faceSealed AS faceSealed
ORDER BY id
LIMIT $limit
"""
)

# every cameo whose face changed after version $known (given, replaced or taken away)
FACES_CHANGED = Cypher(
    """
MATCH (o:User)-[:OWNS]->(c:Cameo)
WHERE c.faceVersion > $known
RETURN c.id AS id, o.id AS ownerId, c.state AS state, c.wrappedKey AS wrappedKey,
       c.faceSealed AS faceSealed
"""
)

# a failed capture: a cameo never verified is REJECTED; an ACTIVE one (or one held for
# review) keeps its likeness and records why the re-capture failed
REJECT_CAPTURE = Cypher(
    _CAPTURE_AWAITED
    + """WITH o, c, c.state IN ['ACTIVE', 'PENDING_REVIEW'] AS wasActive
SET c.state = CASE WHEN wasActive THEN c.state ELSE 'REJECTED' END,
    c.rejectReason = CASE WHEN wasActive THEN c.rejectReason ELSE $reason END,
    c.lastCaptureFailure = $reason, c.captureId = null
RETURN """
    + _CAMEO
    + """
"""
)


def usable_by(user: str, cameo: str, owner: str, carry: Sequence[str] = ()) -> str:
    """The usability rule (see the module doc) as Cypher clauses: for each row, binds
    `usable` (a boolean: may `user` feature `cameo`, owned by `owner`, now) and keeps the
    variables in `carry`. The arguments name bound variables; `user` may be null (an
    unknown user can use nothing). Grants are compared with $now. Blocks and follows are
    counted with OPTIONAL MATCH + count(), which both engines read fresh every time."""
    keep = ", ".join(dict.fromkeys([*carry, owner, cameo, user]))
    return f"""OPTIONAL MATCH ({owner})-[usableBlock:BLOCKS]-({user})
WITH {keep}, count(usableBlock) AS usableBlocks
OPTIONAL MATCH ({cameo})-[usableGrant:GRANTED_TO]->({user})
WITH {keep}, usableBlocks,
     count(CASE WHEN usableGrant IS NOT NULL AND usableGrant.revokedAt IS NULL
                     AND (usableGrant.expiresAt IS NULL OR usableGrant.expiresAt > $now)
                THEN 1 END) AS usableGrants
OPTIONAL MATCH ({owner})-[usableFollowed:FOLLOWS]->({user})
WITH {keep}, usableBlocks, usableGrants, count(usableFollowed) AS usableFollowedBy
OPTIONAL MATCH ({user})-[usableFollowing:FOLLOWS]->({owner})
WITH {keep}, usableBlocks, usableGrants, usableFollowedBy,
     count(usableFollowing) AS usableFollows
WITH {keep},
     coalesce({cameo}.state = 'ACTIVE' AND {user} IS NOT NULL
              AND ({owner}.id = {user}.id
                   OR (usableBlocks = 0
                       AND ({cameo}.audience = 'EVERYONE'
                            OR ({cameo}.audience IN ['APPROVED', 'MUTUALS'] AND usableGrants > 0)
                            OR ({cameo}.audience = 'MUTUALS'
                                AND usableFollowedBy > 0 AND usableFollows > 0)))), false)
     AS usable
"""


# the usability rule for one user and many cameos; an unknown user can use nothing
USABLE_CAMEOS = Cypher(
    """
UNWIND $cameoIds AS cameoId
MATCH (o:User)-[:OWNS]->(c:Cameo {id: cameoId})
OPTIONAL MATCH (u:User {id: $userId})
"""
    + usable_by("u", "c", "o", ["cameoId"])
    + """RETURN c.id AS id, o.id AS ownerId, c.consentEpoch AS epoch,
       c.restrictions AS restrictions, c.state AS state, usable
"""
)

# the audience changes the epoch: tokens minted under the old audience stop verifying
SET_AUDIENCE = Cypher(
    _OWNERS_LIVE_CAMEO
    + """SET c.consentEpoch = CASE WHEN c.audience = $audience THEN c.consentEpoch
                          ELSE c.consentEpoch + 1 END,
    c.audience = $audience
RETURN """
    + _CAMEO
    + """
"""
)

SET_RESTRICTIONS = Cypher(
    _OWNERS_LIVE_CAMEO
    + """SET c.restrictions = $restrictions
RETURN """
    + _CAMEO
    + """
"""
)

# a new grant, unless one is active already (the caller then reads that one), the grantee is
# the owner, or either blocks the other; both users and the cameo locked first
CREATE_GRANT = Cypher(
    """
MATCH (o:User {id: $ownerId})-[:OWNS]->(c:Cameo)
WHERE c.state <> 'DELETED'
MATCH (u:User {id: $granteeId})
WHERE u <> o
SET o._lock = true, u._lock = true, c._lock = true REMOVE o._lock, u._lock, c._lock
WITH o, c, u
WHERE c.state <> 'DELETED'
OPTIONAL MATCH (o)-[k:BLOCKS]-(u)
WITH o, c, u, count(k) AS blocks
WHERE blocks = 0
OPTIONAL MATCH (c)-[x:GRANTED_TO]->(u)
WITH o, c, u,
     count(CASE WHEN x IS NOT NULL AND x.revokedAt IS NULL
                     AND (x.expiresAt IS NULL OR x.expiresAt > $now)
                THEN 1 END) AS active
WHERE active = 0
CREATE (c)-[g:GRANTED_TO {grantId: $grantId, at: $now, expiresAt: $expiresAt}]->(u)
RETURN """
    + _GRANT
    + """
"""
)

# the active grant a refused CREATE_GRANT may have met; a block made since the grant hides it
# (blocks win: the caller then says who blocked whom)
ACTIVE_GRANT = Cypher(
    """
MATCH (o:User {id: $ownerId})-[:OWNS]->(c:Cameo)-[g:GRANTED_TO]->(u:User {id: $granteeId})
WHERE c.state <> 'DELETED' AND g.revokedAt IS NULL
  AND (g.expiresAt IS NULL OR g.expiresAt > $now)
OPTIONAL MATCH (o)-[k:BLOCKS]-(u)
WITH o, c, g, u, count(k) AS blocks
WHERE blocks = 0
RETURN """
    + _GRANT
    + """
ORDER BY g.at DESC
LIMIT 1
"""
)

GRANTS_BY_IDS = Cypher(
    """
UNWIND $ids AS id
MATCH (o:User)-[:OWNS]->(c:Cameo)-[g:GRANTED_TO {grantId: id}]->(u:User)
RETURN """
    + _GRANT
    + """
"""
)

GRANTS_OF_CAMEOS = Cypher(
    """
UNWIND $cameoIds AS cameoId
MATCH (o:User)-[:OWNS]->(c:Cameo {id: cameoId})-[g:GRANTED_TO]->(u:User)
RETURN """
    + _GRANT
    + """
ORDER BY g.at DESC, g.grantId DESC
"""
)

REVOKE_GRANT = Cypher(
    """
MATCH (o:User {id: $ownerId})-[:OWNS]->(c:Cameo)-[g:GRANTED_TO {grantId: $grantId}]->(u:User)
SET c._lock = true REMOVE c._lock
SET g.revokedAt = coalesce(g.revokedAt, $now)
WITH o, c, g, u
OPTIONAL MATCH (u)-[:POSTED]->(clip:Clip)-[f:FEATURES]->(c)
WHERE clip.state IN $unpublished AND f.approval <> 'REVOKED'
WITH o, c, g, u, collect(f) AS uses, collect(clip) AS clips
FOREACH (f IN uses | SET f.approval = 'REVOKED', f.decidedAt = $now)
FOREACH (clip IN clips |
  SET """
    + _WITHDRAWN_CLIP
    + """)
RETURN """
    + _GRANT
    + """,
       [f IN uses WHERE f.renderJti IS NOT NULL | f.renderJti]
       + [f IN uses WHERE f.approvalJti IS NOT NULL | f.approvalJti] AS jtis,
       [clip IN clips | clip.id] AS clipIds
"""
)

# Crypto-shredding and the end of every use, in one statement: the wrapped data key is gone
# (every copy of the encrypted reference files is useless without it), the epoch moves on
# (every outstanding token stops verifying), grants end, every other author's unpublished use
# is withdrawn (as by REVOKE_GRANT) and their published clips are taken down (REMOVED, whose
# files the media sweep deletes too). The owner's own drafts are theirs, and stay.
# The reference files are deleted by the caller from the keys returned.
DELETE_CAMEO = Cypher(
    _OWNERS_LIVE_CAMEO
    + """OPTIONAL MATCH (a:User)-[:POSTED]->(clip:Clip)-[f:FEATURES]->(c)
WHERE a <> o AND (clip.state IN $unpublished OR clip.state = 'PUBLISHED')
WITH o, c, collect(f) AS uses,
     collect(CASE WHEN clip.state <> 'PUBLISHED' THEN clip END) AS clips,
     collect(CASE WHEN clip.state = 'PUBLISHED' THEN clip END) AS published,
     collect(CASE WHEN clip.state = 'PUBLISHED' THEN {clipId: clip.id, authorId: a.id} END)
     AS takenDown
FOREACH (f IN uses | SET f.approval = 'REVOKED', f.decidedAt = $now)
FOREACH (clip IN clips |
  SET """
    + _WITHDRAWN_CLIP
    + """)
FOREACH (clip IN published |
  SET clip.removedAt = $now, clip.removedBy = 'cameo-owner', clip.state = 'REMOVED',
      clip.updatedAt = $now)
WITH o, c, uses, takenDown, coalesce(c.refKeys, []) AS refKeys
OPTIONAL MATCH (c)-[g:GRANTED_TO]->(:User)
WHERE g.revokedAt IS NULL
WITH o, c, uses, takenDown, refKeys, collect(g) AS grants
FOREACH (g IN grants | SET g.revokedAt = $now)
WITH o, c, uses, takenDown, refKeys
"""
    + _FACES_LOCKED
    + """SET c.state = 'DELETED', c.deletedAt = $now, c.consentEpoch = c.consentEpoch + 1,
    c.wrappedKey = null, c.kekId = null, c.refKeys = [], c.faceSealed = null,
    c.captureId = null, c.restrictions = [], c.reviewFigureId = null
"""
    + _face_changed("o, c, uses, takenDown, refKeys")
    + """RETURN """
    + _CAMEO
    + """,
       refKeys,
       [f IN uses WHERE f.renderJti IS NOT NULL | f.renderJti]
       + [f IN uses WHERE f.approvalJti IS NOT NULL | f.approvalJti] AS jtis,
       takenDown
"""
)

# what a worker needs to decrypt a cameo's reference frames (after its token verified)
REFERENCE_MEDIA = Cypher(
    """
UNWIND $ids AS id
MATCH (o:User)-[:OWNS]->(c:Cameo {id: id})
RETURN c.id AS id, o.id AS ownerId, c.state AS state, c.consentEpoch AS epoch,
       c.wrappedKey AS wrappedKey, c.kekId AS kekId, coalesce(c.refKeys, []) AS refKeys,
       c.faceSealed AS faceSealed
"""
)

# every clip featuring the cameo (any author, any state unless filtered), newest first
APPEARANCES_PAGE = Cypher(
    """
MATCH (a:User)-[:POSTED]->(clip:Clip)-[:FEATURES]->(:Cameo {id: $cameoId})
WHERE ($states IS NULL OR clip.state IN $states)
  AND ($afterAt IS NULL OR clip.createdAt < $afterAt
       OR (clip.createdAt = $afterAt AND clip.id < $afterId))
RETURN clip {.*, authorId: a.id} AS clip, clip.createdAt AS at
ORDER BY at DESC, clip.id DESC
LIMIT $limit
"""
)


def _one(rows: list[Row], column: str) -> Any:
    return rows[0][column] if rows else None


async def ensure_cameo(db: GraphDriver, owner_id: str, new_id: str, now: int) -> Row | None:
    """The owner's live cameo, created (PENDING_VERIFICATION) when there is none; None when
    the owner does not exist."""
    await db.write(CREATE_CAMEO_IF_NONE, {"ownerId": owner_id, "id": new_id, "now": now})
    return await live_cameo(db, owner_id)


async def live_cameo(db: GraphDriver, owner_id: str) -> Row | None:
    return (await cameos_of_owners(db, [owner_id])).get(owner_id)


def _with_block(row: Row) -> Row:
    return {**row["cameo"], "blocked": bool(row["blocked"])}


async def cameos_of_owners(
    db: GraphDriver, owner_ids: list[str], viewer_id: str | None = None
) -> dict[str, Row]:
    """Each owner's cameo that is not DELETED, by owner id (absent when none); `blocked`:
    whether the owner and the viewer block each other, either way."""
    params = {"ownerIds": owner_ids, "viewerId": viewer_id}
    rows = await db.read(LIVE_CAMEOS_OF_OWNERS, params)
    return {row["cameo"]["ownerId"]: _with_block(row) for row in rows}


async def cameos_by_ids(
    db: GraphDriver, ids: list[str], viewer_id: str | None = None
) -> dict[str, Row]:
    """Cameos by id, DELETED ones too, each with `blocked` as in cameos_of_owners."""
    rows = await db.read(CAMEOS_BY_IDS, {"ids": ids, "viewerId": viewer_id})
    return {row["cameo"]["id"]: _with_block(row) for row in rows}


async def accept_capture(
    db: GraphDriver, owner_id: str, cameo_id: str, capture_id: str, now: int
) -> Row | None:
    """The cameo, now waiting for this capture's verdict; None when it was deleted."""
    params = {"ownerId": owner_id, "id": cameo_id, "captureId": capture_id, "now": now}
    return _one(await db.write(ACCEPT_CAPTURE, params), "cameo")


async def activate_capture(
    db: GraphDriver,
    cameo_id: str,
    capture_id: str,
    *,
    wrapped_key: str,
    kek_id: str,
    ref_keys: list[str],
    now: int,
    face: str | None = None,
    face_version: int | None = None,
    same_face: bool = True,
    state: str = "ACTIVE",
    figure_id: str | None = None,
    note: str | None = None,
) -> Row | None:
    """{cameo, replaced (the reference keys it replaced), newLikeness, jtis, clipIds}; None
    when nothing was written: this capture no longer counts (a newer one was accepted, or
    the cameo was deleted), or a face changed since `face_version` (capture_awaited tells the
    two apart; the caller deletes its own files or matches again). face: the face embedding
    sealed under the same data key (consent.references.seal_face). face_version None: the
    registry's count now (tools and tests that match nothing). same_face False on an ACTIVE
    cameo: a new likeness (see ACTIVATE_CAPTURE). state: ACTIVE or PENDING_REVIEW (then
    figure_id names the public figure, and note the sentence the owner reads)."""
    if face_version is None:
        face_version = await current_face_version(db)
    params = {
        "id": cameo_id,
        "captureId": capture_id,
        "wrappedKey": wrapped_key,
        "kekId": kek_id,
        "refKeys": ref_keys,
        "now": now,
        "face": face,
        "faceVersion": face_version,
        "sameFace": same_face,
        "state": state,
        "figureId": figure_id,
        "note": note,
        "unpublished": UNPUBLISHED_STATES,
    }
    rows = await db.write(ACTIVATE_CAPTURE, params)
    if not rows:
        return None
    row = rows[0]
    row["replaced"] = list(row["replaced"])
    return row


async def capture_awaited(db: GraphDriver, cameo_id: str, capture_id: str) -> bool:
    """Whether this capture is still the one whose verdict counts."""
    rows = await db.read(CAPTURE_AWAITED, {"id": cameo_id, "captureId": capture_id})
    return bool(rows)


async def review_cameo(
    db: GraphDriver, cameo_id: str, *, approve: bool, admin_id: str, now: int, reason: str
) -> Row | None:
    """{cameo, refKeys (to delete: the rejected likeness's files)}; None when the cameo is
    not awaiting review (or does not exist)."""
    params = {
        "id": cameo_id,
        "approve": approve,
        "adminId": admin_id,
        "now": now,
        "reason": reason,
    }
    rows = await db.write(REVIEW_CAMEO, params)
    return rows[0] if rows else None


async def current_face_version(db: GraphDriver) -> int:
    """The face registry's count of changes (0 before the first face)."""
    return int((await db.read(FACE_VERSION, {}))[0]["version"])


async def faces_page(db: GraphDriver, after: str, limit: int) -> list[Row]:
    """{id, ownerId, state, wrappedKey, faceSealed} of cameos holding a face, by id."""
    return await db.read(FACES_PAGE, {"after": after, "limit": limit})


async def faces_changed(db: GraphDriver, known: int) -> list[Row]:
    """The same rows for every cameo whose face changed after version `known` (faceSealed
    null: its face is gone)."""
    return await db.read(FACES_CHANGED, {"known": known})


async def reject_capture(
    db: GraphDriver, cameo_id: str, capture_id: str, reason: str
) -> Row | None:
    params = {"id": cameo_id, "captureId": capture_id, "reason": reason}
    return _one(await db.write(REJECT_CAPTURE, params), "cameo")


async def usable_cameos(
    db: GraphDriver, user_id: str, cameo_ids: list[str], now: int
) -> list[dict]:
    """One row per known cameo: {id, ownerId, epoch, restrictions, usable, state}; unknown
    ids have no row. `usable`: whether user_id may feature it now (see the module doc)."""
    unique_ids = list(dict.fromkeys(cameo_ids))
    params = {"userId": user_id, "cameoIds": unique_ids, "now": now}
    rows = await db.read(USABLE_CAMEOS, params)
    for row in rows:
        row["restrictions"] = list(row["restrictions"] or [])
        row["usable"] = bool(row["usable"])
    return rows


async def cameo_usable(db: GraphDriver, cameo_id: str, user_id: str, epoch: int, now: int) -> bool:
    """Whether user_id may still feature the cameo under the consent epoch a token names."""
    rows = await usable_cameos(db, user_id, [cameo_id], now)
    return bool(rows) and rows[0]["usable"] and rows[0]["epoch"] == epoch


async def set_audience(db: GraphDriver, owner_id: str, audience: str) -> Row | None:
    rows = await db.write(SET_AUDIENCE, {"ownerId": owner_id, "audience": audience})
    return _one(rows, "cameo")


async def set_restrictions(db: GraphDriver, owner_id: str, restrictions: list[str]) -> Row | None:
    rows = await db.write(SET_RESTRICTIONS, {"ownerId": owner_id, "restrictions": restrictions})
    return _one(rows, "cameo")


async def create_grant(
    db: GraphDriver,
    *,
    owner_id: str,
    grantee_id: str,
    grant_id: str,
    now: int,
    expires_at: int | None,
) -> Row | None:
    """The new grant, or the active one the grantee already holds; None when refused (no
    live cameo, no such grantee, the owner themself, or a block either way)."""
    params = {
        "ownerId": owner_id,
        "granteeId": grantee_id,
        "grantId": grant_id,
        "now": now,
        "expiresAt": expires_at,
    }
    grant = _one(await db.write(CREATE_GRANT, params), "grant")
    if grant is None:
        found = {"ownerId": owner_id, "granteeId": grantee_id, "now": now}
        grant = _one(await db.read(ACTIVE_GRANT, found), "grant")
    return grant


async def grants_by_ids(db: GraphDriver, ids: list[str]) -> dict[str, Row]:
    rows = await db.read(GRANTS_BY_IDS, {"ids": ids})
    return {row["grant"]["id"]: row["grant"] for row in rows}


async def grants_of_cameo(db: GraphDriver, cameo_ids: list[str]) -> dict[str, list[Row]]:
    """Every grant of each cameo (revoked and expired ones too), newest first."""
    rows = await db.read(GRANTS_OF_CAMEOS, {"cameoIds": cameo_ids})
    found: dict[str, list[Row]] = {}
    for row in rows:
        found.setdefault(row["grant"]["cameoId"], []).append(row["grant"])
    return found


async def revoke_grant(db: GraphDriver, owner_id: str, grant_id: str, now: int) -> Row | None:
    """{grant, jtis, clipIds} (the grantee's uses just revoked); None when the owner has no
    such grant."""
    params = {
        "ownerId": owner_id,
        "grantId": grant_id,
        "now": now,
        "unpublished": UNPUBLISHED_STATES,
    }
    rows = await db.write(REVOKE_GRANT, params)
    return rows[0] if rows else None


async def delete_cameo(db: GraphDriver, owner_id: str, now: int) -> Row | None:
    """{cameo, refKeys, jtis, takenDown: [{clipId, authorId}]}; None without a live cameo."""
    params = {"ownerId": owner_id, "now": now, "unpublished": UNPUBLISHED_STATES}
    rows = await db.write(DELETE_CAMEO, params)
    if not rows:
        return None
    row = rows[0]
    row["takenDown"] = [item for item in row["takenDown"] if item]
    return row


async def reference_media(db: GraphDriver, cameo_ids: list[str]) -> dict[str, Row]:
    """{id, ownerId, state, epoch, wrappedKey, kekId, refKeys, faceSealed} by cameo id: for
    workers."""
    rows = await db.read(REFERENCE_MEDIA, {"ids": cameo_ids})
    return {row["id"]: row for row in rows}


async def appearances_page(
    db: GraphDriver,
    cameo_id: str,
    *,
    states: list[str] | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[Row]:
    after_at, after_id = after if after else (None, None)
    params = {
        "cameoId": cameo_id,
        "states": states,
        "afterAt": after_at,
        "afterId": after_id,
        "limit": limit,
    }
    return await db.read(APPEARANCES_PAGE, params)
