"""Reports, the moderation queue, take-downs, appeals and restores.

`(:User)-[:FILED]->(:Report {id, kind, reason, note, state, createdAt, outcome, resolvedAt,
resolvedBy, resolutionNote})-[:CONCERNS]->(:Clip)`. `kind` is REPORT (a viewer's) or APPEAL
(the author's, against a take-down); `state` OPEN or RESOLVED; `outcome` DISMISSED,
TAKEN_DOWN or RESTORED once resolved.

A take-down moves the clip to REMOVED as any removal does (graph.clips REMOVE: feeds,
lineage, `clip`, /media and subscriptions all hide a REMOVED clip through graph.visibility
and resolvers.clips), with `removedBy: 'moderation'`, and remembers the state it had
(`takenDownFrom`), so that a restore can put it back. Its file is kept meanwhile (graph.clips
KEYS_IN_USE keeps the file of a clip with `takenDownFrom`). A take-down resolves every open
report of the clip. The author may appeal once per take-down (`appealedAt`): an APPEAL item
in the queue. A restore puts the clip back while consent to it still stands (every featured
cameo ACTIVE, and for a published clip every appearance APPROVED); a featured owner who
removes their appearance from a taken-down clip ends the chance of a restore
(`forfeit_restore`), as their removal would have taken it down; so does the author deleting
it (`author_forfeit`).

Guards read state after `SET x._lock = true REMOVE x._lock` (see graph.clips): on Neo4j two
decisions racing on one report or clip cannot both pass.
"""

from __future__ import annotations

from typing import Any

from graph.driver import Cypher, GraphDriver, Row

__all__ = [
    "appeal",
    "author_forfeit",
    "dismiss",
    "file_report",
    "forfeit_restore",
    "queue_page",
    "reports_by_ids",
    "restore",
    "take_down",
]

_REPORT = "r {.*, clipId: c.id, reporterId: u.id} AS report"
_CLIP = "c {.*, authorId: a.id} AS clip"

# a viewer's report: one OPEN report per reporter and clip (the clip locked first, so two
# racing reports of the same reporter cannot both find none)
FILE_REPORT = Cypher(
    """
MATCH (u:User {id: $reporterId})
MATCH (:User)-[:POSTED]->(c:Clip {id: $clipId})
SET c._lock = true REMOVE c._lock
WITH u, c
OPTIONAL MATCH (u)-[:FILED]->(open:Report {state: 'OPEN', kind: 'REPORT'})-[:CONCERNS]->(c)
WITH u, c, count(open) AS already
WHERE already = 0
CREATE (u)-[:FILED]->(r:Report {id: $id, kind: 'REPORT', reason: $reason, note: $note,
                                 state: 'OPEN', createdAt: $now})-[:CONCERNS]->(c)
RETURN """
    + _REPORT
    + """
"""
)

REPORTS_BY_IDS = Cypher(
    """
UNWIND $ids AS id
MATCH (u:User)-[:FILED]->(r:Report {id: id})-[:CONCERNS]->(c:Clip)
RETURN """
    + _REPORT
    + """
"""
)

# open items, oldest first (keyset on createdAt, id), of one reason or all
QUEUE_PAGE = Cypher(
    """
MATCH (u:User)-[:FILED]->(r:Report {state: 'OPEN'})-[:CONCERNS]->(c:Clip)
WHERE ($reason IS NULL OR r.reason = $reason)
  AND ($afterAt IS NULL OR r.createdAt > $afterAt
       OR (r.createdAt = $afterAt AND r.id > $afterId))
RETURN """
    + _REPORT
    + """, r.createdAt AS at
ORDER BY at ASC, report.id ASC
LIMIT $limit
"""
)

DISMISS = Cypher(
    """
MATCH (u:User)-[:FILED]->(r:Report {id: $reportId})-[:CONCERNS]->(c:Clip)
SET r._lock = true REMOVE r._lock
WITH u, r, c
WHERE r.state = 'OPEN'
SET r.state = 'RESOLVED', r.outcome = 'DISMISSED', r.resolvedAt = $now,
    r.resolvedBy = $moderatorId, r.resolutionNote = $note
RETURN """
    + _REPORT
    + """
"""
)

# the report's clip goes REMOVED (unless it is already), remembering the state it had; every
# open item on the clip is resolved with it. `before` says what the clip was: REMOVED when
# nothing about the clip changed (the author, an owner or an earlier take-down removed it)
TAKE_DOWN = Cypher(
    """
MATCH (u:User)-[:FILED]->(r:Report {id: $reportId})-[:CONCERNS]->(c:Clip)<-[:POSTED]-(a:User)
SET c._lock = true, r._lock = true REMOVE c._lock, r._lock
WITH u, r, c, a
WHERE r.state = 'OPEN'
WITH u, r, c, a, c.state AS before
OPTIONAL MATCH (:User)-[:FILED]->(other:Report {state: 'OPEN'})-[:CONCERNS]->(c)
WITH u, r, c, a, before, collect(DISTINCT other) AS open
FOREACH (x IN open |
  SET x.state = 'RESOLVED', x.outcome = 'TAKEN_DOWN', x.resolvedAt = $now,
      x.resolvedBy = $moderatorId)
SET r.resolutionNote = $note
FOREACH (_ IN CASE WHEN before <> 'REMOVED' THEN [1] ELSE [] END |
  SET c.state = 'REMOVED', c.removedAt = $now, c.removedBy = 'moderation', c.updatedAt = $now,
      c.takenDownFrom = before, c.takenDownAt = $now, c.appealedAt = null,
      c.renderOwner = null, c.renderWorker = null)
RETURN """
    + _REPORT
    + """, """
    + _CLIP
    + """, before, [x IN open | x.id] AS resolvedIds
"""
)

# the author's one appeal of a take-down: an APPEAL item in the queue, of the reason the clip
# was taken down for (of its latest TAKEN_DOWN report)
APPEAL = Cypher(
    """
MATCH (a:User {id: $authorId})-[:POSTED]->(c:Clip {id: $clipId})
SET c._lock = true REMOVE c._lock
WITH a, c
WHERE c.state = 'REMOVED' AND c.takenDownFrom IS NOT NULL AND c.appealedAt IS NULL
OPTIONAL MATCH (:User)-[:FILED]->(t:Report {outcome: 'TAKEN_DOWN', kind: 'REPORT'})
               -[:CONCERNS]->(c)
WITH a, c, t
ORDER BY t.resolvedAt DESC
WITH a, c, collect(t.reason) AS reasons
SET c.appealedAt = $now
CREATE (a)-[:FILED]->(r:Report {id: $id, kind: 'APPEAL', reason: coalesce(head(reasons), 'OTHER'),
                                 note: $note, state: 'OPEN', createdAt: $now})
       -[:CONCERNS]->(c)
WITH a AS u, r, c
RETURN """
    + _REPORT
    + """, c {.*, authorId: u.id} AS clip
"""
)

# a clip taken down by moderation back to the state it had, while consent to it stands;
# its open appeal is resolved RESTORED. A take-down of a clip still QUEUED or RENDERING ended
# its render (its claim was dropped): it comes back FAILED
RESTORE = Cypher(
    """
MATCH (a:User)-[:POSTED]->(c:Clip {id: $clipId})
SET c._lock = true REMOVE c._lock
WITH a, c
WHERE c.state = 'REMOVED' AND c.takenDownFrom IS NOT NULL
OPTIONAL MATCH (c)-[f:FEATURES]->(m:Cameo)
WITH a, c,
     count(CASE WHEN m.state <> 'ACTIVE'
                  OR (c.takenDownFrom = 'PUBLISHED' AND f.approval <> 'APPROVED')
                THEN 1 END) AS lapsed
WHERE lapsed = 0
SET c.state = CASE WHEN c.takenDownFrom IN ['QUEUED', 'RENDERING'] THEN 'FAILED'
                   ELSE c.takenDownFrom END,
    c.removedAt = null, c.removedBy = null, c.takenDownFrom = null, c.takenDownAt = null,
    c.appealedAt = null, c.restoredAt = $now, c.updatedAt = $now
WITH a, c
OPTIONAL MATCH (:User)-[:FILED]->(x:Report {state: 'OPEN', kind: 'APPEAL'})-[:CONCERNS]->(c)
WITH a, c, collect(x) AS appeals
FOREACH (x IN appeals |
  SET x.state = 'RESOLVED', x.outcome = 'RESTORED', x.resolvedAt = $now,
      x.resolvedBy = $moderatorId)
RETURN """
    + _CLIP
    + """, [x IN appeals | x.id] AS resolvedIds
"""
)

# a featured owner removes their appearance from a clip taken down by moderation (and from
# the remixes below it carrying their cameo, as graph.appearances REMOVE_FEATURING does):
# their removal stands, so no restore may bring it back
FORFEIT_RESTORE = Cypher(
    """
MATCH (:User {id: $ownerId})-[:OWNS]->(m:Cameo)<-[:FEATURES]-(c:Clip {id: $id})
WITH DISTINCT m, c
MATCH (t:Clip)-[:REMIX_OF*0..]->(c)
MATCH (t)-[:FEATURES]->(m)
MATCH (ta:User)-[:POSTED]->(t)
SET t._lock = true REMOVE t._lock
WITH DISTINCT t, ta
WHERE t.state = 'REMOVED' AND t.takenDownFrom IS NOT NULL
SET t.takenDownFrom = null, t.removedBy = 'cameo-owner', t.updatedAt = $now
RETURN t {.*, authorId: ta.id} AS clip
"""
)

# the author deletes their clip while it is taken down: it stays REMOVED, as theirs to remove
AUTHOR_FORFEIT = Cypher(
    """
MATCH (a:User {id: $authorId})-[:POSTED]->(c:Clip {id: $id})
SET c._lock = true REMOVE c._lock
WITH a, c
WHERE c.state = 'REMOVED' AND c.takenDownFrom IS NOT NULL
SET c.takenDownFrom = null, c.removedBy = 'author', c.updatedAt = $now
RETURN """
    + _CLIP
    + """
"""
)


async def file_report(db: GraphDriver, params: dict[str, Any]) -> Row | None:
    """The new report ({id, reporterId, clipId, reason, note, now}); None when the reporter
    has an open one on the clip already (or the clip or reporter is gone)."""
    rows = await db.write(FILE_REPORT, params)
    return rows[0]["report"] if rows else None


async def reports_by_ids(db: GraphDriver, ids: list[str]) -> dict[str, Row]:
    rows = await db.read(REPORTS_BY_IDS, {"ids": ids})
    return {row["report"]["id"]: row["report"] for row in rows}


async def queue_page(
    db: GraphDriver, reason: str | None, after: tuple[int, str] | None, limit: int
) -> list[Row]:
    after_at, after_id = after if after else (None, None)
    params = {"reason": reason, "afterAt": after_at, "afterId": after_id, "limit": limit}
    return await db.read(QUEUE_PAGE, params)


async def dismiss(
    db: GraphDriver, report_id: str, moderator_id: str, note: str | None, now: int
) -> Row | None:
    """The dismissed report; None unless it was open."""
    params = {"reportId": report_id, "moderatorId": moderator_id, "note": note, "now": now}
    rows = await db.write(DISMISS, params)
    return rows[0]["report"] if rows else None


async def take_down(
    db: GraphDriver, report_id: str, moderator_id: str, note: str | None, now: int
) -> Row | None:
    """{report, clip, before, resolvedIds}; None unless the report was open."""
    params = {"reportId": report_id, "moderatorId": moderator_id, "note": note, "now": now}
    rows = await db.write(TAKE_DOWN, params)
    return rows[0] if rows else None


async def appeal(
    db: GraphDriver, author_id: str, clip_id: str, report_id: str, note: str | None, now: int
) -> Row | None:
    """{report, clip}; None unless the clip is the author's, taken down by moderation and
    not appealed yet."""
    params = {"authorId": author_id, "clipId": clip_id, "id": report_id, "note": note, "now": now}
    rows = await db.write(APPEAL, params)
    return rows[0] if rows else None


async def restore(db: GraphDriver, clip_id: str, moderator_id: str, now: int) -> Row | None:
    """{clip, resolvedIds}; None unless the clip was taken down by moderation and consent to
    it still stands."""
    params = {"clipId": clip_id, "moderatorId": moderator_id, "now": now}
    rows = await db.write(RESTORE, params)
    return rows[0] if rows else None


async def author_forfeit(db: GraphDriver, author_id: str, clip_id: str, now: int) -> Row | None:
    """The author's clip taken down by moderation, now theirs removed: no restore brings it
    back; None when it was not taken down by moderation."""
    rows = await db.write(AUTHOR_FORFEIT, {"authorId": author_id, "id": clip_id, "now": now})
    return rows[0]["clip"] if rows else None


async def forfeit_restore(db: GraphDriver, owner_id: str, clip_id: str, now: int) -> list[Row]:
    """The clips (this one and remixes below it carrying the owner's cameo) taken down by
    moderation that no restore may bring back now."""
    params = {"ownerId": owner_id, "id": clip_id, "now": now}
    return [row["clip"] for row in await db.write(FORFEIT_RESTORE, params)]
