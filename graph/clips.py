"""Clips: creation, the render state machine, publishing, and the lists that show them.

States move only forward: QUEUED -> RENDERING -> DRAFT | FAILED; DRAFT -> PUBLISHED;
any -> REMOVED. Each transition is one statement whose WHERE is the guard.

Guards read state after `SET c._lock = true REMOVE c._lock`: on Neo4j (read committed) that
takes the node's write lock first, so two transitions racing on one clip cannot both pass
their guard. FalkorDB runs writes one at a time, where it changes nothing.
"""

from __future__ import annotations

from typing import Any

from graph.appearances import APPROVALS_UNMET
from graph.cameos import usable_by
from graph.driver import Cypher, GraphDriver, Row
from graph.visibility import ViewerBlocks, shown_to, viewer_blocks

__all__ = [
    "claim_render",
    "clips_by_ids",
    "create_clip",
    "discard_unqueued",
    "fail_render",
    "finish_render",
    "keys_in_use",
    "publish",
    "published_pages",
    "remove",
    "report_progress",
]

UNPUBLISHED_STATES = ["QUEUED", "RENDERING", "FAILED", "DRAFT", "AWAITING_APPROVAL"]
_CLIP = "c {.*, authorId: a.id}"

# a new QUEUED clip posted by a
_NEW_CLIP = """
CREATE (a)-[:POSTED]->(c:Clip {id: $id, prompt: $prompt, state: 'QUEUED', moods: $moods,
                               durationS: $durationS, seed: $seed, renderProgress: 0.0,
                               renderAttempts: 0, createdAt: $now, updatedAt: $now})
"""

CREATE_CLIP = Cypher(
    """
MATCH (a:User {id: $authorId})"""
    + _NEW_CLIP
    + """RETURN c {.*, authorId: a.id} AS clip
"""
)

# the guards both remix statements share (see CREATE_REMIX); `blocked` > 0: refused
_REMIX_GUARD = """
MATCH (a:User {id: $authorId})
MATCH (pa:User)-[:POSTED]->(p:Clip {id: $parentId})
SET a._lock = true, pa._lock = true, p._lock = true REMOVE a._lock, pa._lock, p._lock
WITH a, pa, p
WHERE p.state = 'PUBLISHED'
OPTIONAL MATCH (pa)-[k:BLOCKS]->(a)
WITH a, p, count(k) AS blocked
"""

# a remix: the parent must be published and its author must not block the remixer; it
# locks both ends of a block (the two authors) as BLOCK does, and the parent, first
CREATE_REMIX = Cypher(
    _REMIX_GUARD
    + """OPTIONAL MATCH (p)-[pf:FEATURES]->(:Cameo)
WITH a, p, blocked, count(pf) AS parentCameos
WHERE blocked = 0 AND parentCameos = 0"""
    + _NEW_CLIP
    + """CREATE (c)-[:REMIX_OF]->(p)
RETURN c {.*, authorId: a.id, parentId: p.id} AS clip
"""
)

# Featuring cameos, the usability rule (graph.cameos usable_by) is checked again inside the
# statement that writes the clip (a grant revoked, a block or an audience change between
# the resolver's check and this write then refuses it): every cameo in $cameos
# ({cameoId, epoch, approval, decidedAt, token, jti}) is ACTIVE, still at the consent epoch
# its render token names, and usable by the author. The cameos are locked first.
_USABLE_BY_AUTHOR = (
    """
UNWIND $cameos AS use
MATCH (o:User)-[:OWNS]->(m:Cameo {id: use.cameoId})
SET m._lock = true REMOVE m._lock
WITH a, p, use, o, m
"""
    + usable_by("a", "m", "o", ["p", "use"])
    + """WITH a, p, use, m, usable
WHERE usable AND m.consentEpoch = use.epoch
WITH a, p, count(DISTINCT m) AS usableCameos
WHERE usableCameos = size($cameos)
"""
)

# one FEATURES edge per cameo, with its render token: the worker reads the tokens from here,
# so a re-queued task (the reaper's) carries the same consent as the first. The owners of the
# cameos are kept on the clip too (featuredOwnerIds: a clip's FEATURES edges and a cameo's
# owner never change), so graph.visibility's rule reads them without walking an edge
_FEATURE_CAMEOS = """
WITH a, p, c
UNWIND $cameos AS use
MATCH (o:User)-[:OWNS]->(m:Cameo {id: use.cameoId})
CREATE (c)-[:FEATURES {approval: use.approval, decidedAt: use.decidedAt, epoch: use.epoch,
                       renderToken: use.token, renderJti: use.jti}]->(m)
WITH a, p, c, collect(o.id) AS featuredOwnerIds
SET c.featuredOwnerIds = featuredOwnerIds
"""

CREATE_CLIP_FEATURING = Cypher(
    """
MATCH (a:User {id: $authorId})
SET a._lock = true REMOVE a._lock
WITH a, null AS p
"""
    + _USABLE_BY_AUTHOR
    + _NEW_CLIP
    + _FEATURE_CAMEOS
    + """RETURN c {.*, authorId: a.id} AS clip
"""
)

# a remix featuring cameos: CREATE_REMIX's guards, and $cameos holds every cameo the parent
# features (consent follows lineage: a remix features its parent's cameos too)
CREATE_REMIX_FEATURING = Cypher(
    _REMIX_GUARD
    + """OPTIONAL MATCH (p)-[:FEATURES]->(x:Cameo)
WHERE NOT x.id IN $cameoIds
WITH a, p, blocked, count(x) AS leftOut
WHERE blocked = 0 AND leftOut = 0
"""
    + _USABLE_BY_AUTHOR
    + _NEW_CLIP
    + """CREATE (c)-[:REMIX_OF]->(p)
"""
    + _FEATURE_CAMEOS
    + """RETURN c {.*, authorId: a.id, parentId: p.id} AS clip
"""
)

# undo of CREATE_CLIP when the render queue refused the task: nothing else can point at it yet
DISCARD_UNQUEUED = Cypher(
    """
MATCH (c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH c
WHERE c.state = 'QUEUED' AND c.renderAttempts = 0
DETACH DELETE c
RETURN $id AS id
"""
)

CLIPS_BY_IDS = Cypher(
    """
UNWIND $ids AS id
MATCH (a:User)-[:POSTED]->(c:Clip {id: id})
OPTIONAL MATCH (c)-[:REMIX_OF]->(p:Clip)
RETURN c {.*, authorId: a.id, parentId: p.id} AS clip
"""
)

# the worker's claim: a queued clip, one whose worker stopped renewing its lease, or a
# redelivery of the very task (the owner is the task id) whose worker died. renderWorker names
# the worker process (host:pid) that made the claim: the one thing a worker's parent process,
# failing a render its hard time limit killed, knows of the claim besides the task id
CLAIM_RENDER = Cypher(
    """
MATCH (a:User)-[:POSTED]->(c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH a, c
WHERE c.state = 'QUEUED'
   OR (c.state = 'RENDERING' AND (c.renderLeaseUntil < $now OR c.renderOwner = $owner))
SET c.state = 'RENDERING', c.renderOwner = $owner, c.renderLeaseUntil = $leaseUntil,
    c.renderAttempts = c.renderAttempts + 1, c.renderProgress = 0.0, c.updatedAt = $now,
    c.renderWorker = $worker
RETURN c {.*, authorId: a.id} AS clip
"""
)

# the reaper's sweep: clips whose task was lost (no worker ever took it, or its worker died
# and the broker did not hand it back); touching them keeps the next sweep off them
STALE_RENDERS = Cypher(
    """
MATCH (c:Clip)
WHERE (c.state = 'QUEUED' AND c.updatedAt < $queuedBefore)
   OR (c.state = 'RENDERING' AND c.renderLeaseUntil < $leaseBefore)
WITH c
LIMIT $limit
SET c._lock = true REMOVE c._lock
WITH c
WHERE (c.state = 'QUEUED' AND c.updatedAt < $queuedBefore)
   OR (c.state = 'RENDERING' AND c.renderLeaseUntil < $leaseBefore)
SET c.updatedAt = $now,
    c.renderLeaseUntil = CASE WHEN c.state = 'RENDERING' THEN $now ELSE null END
RETURN c.id AS id
"""
)

CLIP_RENDER_STATE = Cypher(
    """
MATCH (c:Clip {id: $id})
RETURN c.state AS state, c.renderLeaseUntil AS leaseUntil
"""
)

# a render's claim is its owner (the task id) and its attempt: a redelivery of the same task
# while the first delivery still runs is a second claim, and only the newest may report or finish
REPORT_PROGRESS = Cypher(
    """
MATCH (c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH c
WHERE c.state = 'RENDERING' AND c.renderOwner = $owner AND c.renderAttempts = $attempt
SET c.renderProgress = $progress, c.renderLeaseUntil = $leaseUntil
RETURN c.id AS id
"""
)

# Consent is checked again by the move to DRAFT itself, so that whatever changed after the
# worker's last check (a use revoked, the audience changed, a block, a lost mutual follow,
# a grant run out, the cameo deleted) keeps the clip from DRAFT: the worker then fails it.
# Each featured cameo must be ACTIVE, its use not REVOKED, and, for someone else's cameo,
# still at the epoch its render token names (FEATURES.epoch) and usable by the author now
# (graph.cameos usable_by); the author's own cameo needs only to be ACTIVE, as in
# consent.check_render_uses. The cameos and both ends of any block are locked first.
FINISH_RENDER = Cypher(
    """
MATCH (a:User)-[:POSTED]->(c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH a, c
WHERE c.state = 'RENDERING' AND c.renderOwner = $owner AND c.renderAttempts = $attempt
OPTIONAL MATCH (c)-[f:FEATURES]->(m:Cameo)
OPTIONAL MATCH (m)<-[:OWNS]-(o:User)
SET a._lock = true, m._lock = true, o._lock = true REMOVE a._lock, m._lock, o._lock
WITH a, c, f, m, o
"""
    + usable_by("a", "m", "o", ["c", "f"])
    + """WITH a, c,
     count(CASE WHEN f IS NOT NULL
                     AND NOT coalesce(f.approval <> 'REVOKED' AND m.state = 'ACTIVE'
                                      AND o IS NOT NULL
                                      AND (o.id = a.id
                                           OR (m.consentEpoch = f.epoch AND usable)),
                                      false)
                THEN 1 END) AS withdrawn
WHERE withdrawn = 0
SET c.state = 'DRAFT', c.renderProgress = 1.0, c.renderedAt = $now, c.updatedAt = $now,
    c.videoKey = $video.key, c.sha256 = $video.sha256, c.videoDurationMs = $video.durationMs,
    c.width = $video.width, c.height = $video.height, c.fps = $video.fps,
    c.hasAudio = $video.hasAudio, c.sizeBytes = $video.sizeBytes, c.mimeType = $video.mimeType,
    c.renderOwner = null, c.renderLeaseUntil = null, c.renderWorker = null
RETURN c {.*, authorId: a.id} AS clip
"""
)

# Only the claim that holds the render may fail it, as for REPORT_PROGRESS: a stale claim of
# the same task (its soft time limit or retry budget running out after a redelivery took the
# clip back) must not fail the newer claim's render. A claim is its attempt; the parent of a
# worker process its hard time limit killed knows only the task id and that process, so it
# names the process instead ($attempt null): a prefork process runs one task at a time, so
# a newer claim made while it lived came from another process and never matches
FAIL_RENDER = Cypher(
    """
MATCH (a:User)-[:POSTED]->(c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH a, c
WHERE (c.state = 'QUEUED' AND c.renderOwner IS NULL)
   OR (c.state = 'RENDERING' AND c.renderOwner = $owner
       AND (c.renderAttempts = $attempt OR ($attempt IS NULL AND c.renderWorker = $worker)))
SET c.state = 'FAILED', c.failureReason = $reason, c.updatedAt = $now,
    c.renderOwner = null, c.renderLeaseUntil = null, c.renderWorker = null
RETURN c {.*, authorId: a.id} AS clip
"""
)

# DRAFT -> PUBLISHED when every appearance is approved (graph.appearances
# APPROVALS_UNMET; $approved names the approvals whose tokens the caller verified). $from is
# ['DRAFT'] for publishClip, ['AWAITING_APPROVAL'] when an approval completes a clip whose
# last two approvals raced (each statement saw the other's approval still pending)
PUBLISH = Cypher(
    """
MATCH (a:User {id: $authorId})-[:POSTED]->(c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH a, c
WHERE c.state IN $from
"""
    + APPROVALS_UNMET
    + """WHERE unmet = 0
SET c.state = 'PUBLISHED', c.publishedAt = $now, c.updatedAt = $now
RETURN c {.*, authorId: a.id} AS clip
"""
)

REMOVE = Cypher(
    """
MATCH (a:User {id: $authorId})-[:POSTED]->(c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH a, c
WHERE c.state <> 'REMOVED'
SET c.state = 'REMOVED', c.removedAt = $now, c.removedBy = $removedBy, c.updatedAt = $now,
    c.renderOwner = null, c.renderWorker = null
RETURN c {.*, authorId: a.id} AS clip
"""
)

# the media sweep: which of these stored files may not be deleted, because their clip names
# them, or may still name them (a render in flight stores its file before the move to DRAFT)
KEYS_IN_USE = Cypher(
    """
UNWIND $files AS file
MATCH (c:Clip {id: file.clipId})
WHERE c.state IN ['QUEUED', 'RENDERING'] OR (c.state <> 'REMOVED' AND c.videoKey = file.key)
   OR (c.takenDownFrom IS NOT NULL AND c.videoKey = file.key)
RETURN file.key AS key
"""
)

# graph.visibility's rule for clip c by author a, with the request's viewer and blocks
_SHOWN = shown_to("$viewerId", "c", "a", "$blockers", "$hidden")

DRAFTS_PAGE = Cypher(
    """
MATCH (a:User {id: $authorId})-[:POSTED]->(c:Clip)
WHERE c.state IN $states
  AND ($afterAt IS NULL OR c.createdAt < $afterAt OR (c.createdAt = $afterAt AND c.id < $afterId))
RETURN c {.*, authorId: a.id} AS clip, c.createdAt AS at
ORDER BY at DESC, c.id DESC
LIMIT $limit
"""
)

# An author's published clips that the viewer may see (graph.visibility, with the viewer's
# $blockers and $hidden from the request), newest first
PUBLISHED_BY_AUTHOR_PAGE = Cypher(
    """
MATCH (a:User {id: $authorId})-[:POSTED]->(c:Clip)
WHERE c.state = 'PUBLISHED'
  AND ($afterAt IS NULL OR c.publishedAt < $afterAt
       OR (c.publishedAt = $afterAt AND c.id < $afterId))
  AND """
    + _SHOWN
    + """
RETURN c {.*, authorId: a.id} AS clip, c.publishedAt AS at
ORDER BY at DESC, c.id DESC
LIMIT $limit
"""
)

# One page per author for many authors at once: a nested User.clips level costs one statement.
# The same collect-and-slice shape as graph.users FOLLOWERS_PAGES, and for the same reasons
# (no `CALL (a) { ... LIMIT }` in FalkorDB; collect() keeps the ORDER BY before it): it sorts
# every published clip past the cursor of every author, so it serves nested levels only, and a
# lone author is paged by PUBLISHED_BY_AUTHOR_PAGE. Its filter and keyset are that statement's.
PUBLISHED_BY_AUTHORS_PAGES = Cypher(
    """
UNWIND $authorIds AS authorId
MATCH (a:User {id: authorId})-[:POSTED]->(c:Clip)
WHERE c.state = 'PUBLISHED'
  AND ($afterAt IS NULL OR c.publishedAt < $afterAt
       OR (c.publishedAt = $afterAt AND c.id < $afterId))
  AND """
    + _SHOWN
    + """
WITH authorId, c.publishedAt AS at, c
ORDER BY at DESC, c.id DESC
WITH authorId, collect({at: at, c: c})[..$limit] AS kept
UNWIND kept AS row
WITH authorId, row.at AS at, row.c AS c
RETURN authorId, c {.*, authorId: authorId} AS clip, at
"""
)


def _clip(rows: list[Row]) -> Row | None:
    """Outcome of a guarded write: the clip row when it happened, else None."""
    return rows[0]["clip"] if rows else None


async def create_clip(db: GraphDriver, params: dict[str, Any]) -> Row | None:
    """The new QUEUED clip; None when the remix parent is missing, unpublished or blocked,
    or (params["cameos"]: the FEATURES edges to write) a cameo is no longer usable by the
    author at the epoch its token names, or the remix leaves out a cameo of its parent."""
    cameos = params.get("cameos") or []
    if cameos:
        params = {**params, "cameoIds": [use["cameoId"] for use in cameos]}
        statement = CREATE_REMIX_FEATURING if params.get("parentId") else CREATE_CLIP_FEATURING
    else:
        statement = CREATE_REMIX if params.get("parentId") else CREATE_CLIP
    return _clip(await db.write(statement, params))


async def discard_unqueued(db: GraphDriver, clip_id: str) -> bool:
    return bool(await db.write(DISCARD_UNQUEUED, {"id": clip_id}))


async def clips_by_ids(db: GraphDriver, ids: list[str]) -> dict[str, Row]:
    rows = await db.read(CLIPS_BY_IDS, {"ids": ids})
    return {row["clip"]["id"]: row["clip"] for row in rows}


async def claim_render(
    db: GraphDriver,
    clip_id: str,
    owner: str,
    now: int,
    lease_until: int,
    *,
    worker: str | None = None,
) -> Row | None:
    """The clip, claimed by task owner in worker process worker (host:pid); None if held."""
    params = {"id": clip_id, "owner": owner, "now": now, "leaseUntil": lease_until}
    return _clip(await db.write(CLAIM_RENDER, {**params, "worker": worker}))


async def stale_renders(
    db: GraphDriver, *, now: int, queued_before: int, lease_before: int, limit: int
) -> list[str]:
    params = {
        "now": now,
        "queuedBefore": queued_before,
        "leaseBefore": lease_before,
        "limit": limit,
    }
    return [row["id"] for row in await db.write(STALE_RENDERS, params)]


async def render_state(db: GraphDriver, clip_id: str) -> Row | None:
    rows = await db.read(CLIP_RENDER_STATE, {"id": clip_id})
    return rows[0] if rows else None


async def report_progress(
    db: GraphDriver, clip_id: str, owner: str, attempt: int, progress: float, lease_until: int
) -> bool:
    """False when this claim no longer owns the render (the clip was removed or re-claimed)."""
    params = {
        "id": clip_id,
        "owner": owner,
        "attempt": attempt,
        "progress": progress,
        "leaseUntil": lease_until,
    }
    return bool(await db.write(REPORT_PROGRESS, params))


async def finish_render(
    db: GraphDriver, clip_id: str, owner: str, attempt: int, video: dict[str, Any], now: int
) -> Row | None:
    params = {"id": clip_id, "owner": owner, "attempt": attempt, "video": video, "now": now}
    return _clip(await db.write(FINISH_RENDER, params))


async def keys_in_use(db: GraphDriver, files: list[tuple[str, str]]) -> set[str]:
    """Of these (media key, clip id) pairs, the keys a clip names or may yet name."""
    params = {"files": [{"key": key, "clipId": clip_id} for key, clip_id in files]}
    return {row["key"] for row in await db.read(KEYS_IN_USE, params)}


async def fail_render(
    db: GraphDriver,
    clip_id: str,
    owner: str | None,
    reason: str,
    now: int,
    *,
    attempt: int | None = None,
    worker: str | None = None,
) -> Row | None:
    """The FAILED clip; None when this claim (owner and attempt, or owner and worker when
    the attempt is unknown) does not hold the render. With neither, only a clip no claim
    ever took (QUEUED) fails."""
    params = {
        "id": clip_id,
        "owner": owner or "",
        "attempt": attempt,
        "worker": worker,
        "reason": reason,
        "now": now,
    }
    return _clip(await db.write(FAIL_RENDER, params))


async def publish(
    db: GraphDriver,
    author_id: str,
    clip_id: str,
    now: int,
    approved: list[str] | None = None,
    *,
    from_states: tuple[str, ...] = ("DRAFT",),
) -> Row | None:
    """The PUBLISHED clip; None unless it was in one of `from_states` (a DRAFT) and its
    appearances are all approved, those of others' cameos by the verified approvals named in
    `approved` (graph.appearances.approved_key)."""
    params = {
        "authorId": author_id,
        "id": clip_id,
        "now": now,
        "approved": approved or [],
        "from": list(from_states),
    }
    return _clip(await db.write(PUBLISH, params))


async def remove(
    db: GraphDriver, author_id: str, clip_id: str, now: int, removed_by: str
) -> Row | None:
    params = {"authorId": author_id, "id": clip_id, "now": now, "removedBy": removed_by}
    return _clip(await db.write(REMOVE, params))


async def drafts_page(
    db: GraphDriver, author_id: str, after: tuple[Any, ...] | None, limit: int
) -> list[Row]:
    after_at, after_id = after if after else (None, None)
    params = {
        "authorId": author_id,
        "states": UNPUBLISHED_STATES,
        "afterAt": after_at,
        "afterId": after_id,
        "limit": limit,
    }
    return await db.read(DRAFTS_PAGE, params)


async def published_pages(
    db: GraphDriver,
    *,
    author_ids: list[str],
    after: tuple[Any, str] | None,
    limit: int,
    viewer_id: str | None = None,
    blocks: ViewerBlocks | None = None,
) -> dict[str, list[Row]]:
    """One keyset page of published clips per author, newest first: rows of {clip, at}, by
    author id (an author with no rows on the page is absent). Only the clips the viewer may
    see (graph.visibility; `blocks` are the viewer's, read when not given) are listed."""
    if blocks is None:
        blocks = await viewer_blocks(db, viewer_id)
    unique_ids = list(dict.fromkeys(author_ids))  # a repeated id would double its page
    after_at, after_id = after if after else (None, None)
    params: dict[str, Any] = {
        "afterAt": after_at,
        "afterId": after_id,
        "limit": limit,
        "viewerId": viewer_id,
        **blocks.params(),
    }
    if len(unique_ids) == 1:  # ORDER BY ... LIMIT: only the top rows are kept, never all
        rows = await db.read(PUBLISHED_BY_AUTHOR_PAGE, {**params, "authorId": unique_ids[0]})
        return {unique_ids[0]: rows} if rows else {}
    rows = await db.read(PUBLISHED_BY_AUTHORS_PAGES, {**params, "authorIds": unique_ids})
    pages: dict[str, list[Row]] = {}
    for row in rows:  # UNWIND keeps each author's collected order
        pages.setdefault(row["authorId"], []).append({"clip": row["clip"], "at": row["at"]})
    return pages
