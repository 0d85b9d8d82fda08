"""Likes and views: the statements that record them and the batched reads behind the stats.

Counters are stored on the clip node, changed in the same statement as the edge, so a feed's
ORDER BY reads them without touching a single edge:

- `c.likeCount`: the clip's `(:User)-[:LIKED {at}]->(c)` edges;
- `c.viewCount`: views recorded, the sum of `WATCHED.views` over viewers;
- `c.completionCount`: completed views, the sum of `WATCHED.completions`;
- `c.rewatchCount`: views by a viewer whose WATCHED edge already counted a completion.

A clip nobody engaged with has none of them: read them with `coalesce(c.likeCount, 0)`.
Whatever else writes LIKED or WATCHED edges (a seeder) must keep these counters with them.
Rates are derived, never stored: completionRate = completionCount / viewCount and remixRate =
direct PUBLISHED remixes / viewCount (0 with no views).

Each change is one statement that locks the clip first (the `SET c._lock` of graph.clips):
on Neo4j two likes or views racing on one clip queue on its lock, so each reads the counter
and the edges the other wrote and no increment is lost, and a second like by the same viewer
finds the first one's edge. FalkorDB runs writes one at a time. The guard (PUBLISHED, and
a clip the viewer may see: graph.visibility) sits in the statement: no row, no change. A
block racing a like is ordered either way (a block leaves earlier likes and views in place),
so the users are not locked: every like of an author's clips would queue on the author's
node.
"""

from __future__ import annotations

from typing import NamedTuple

from graph.driver import Cypher, GraphDriver, Row
from graph.visibility import ViewerBlocks, shown_to, viewer_blocks, viewer_blocks_clauses

__all__ = [
    "Engaged",
    "like",
    "published_remix_counts",
    "record_view",
    "unlike",
    "viewer_likes",
]

# the clip a viewer may engage with, locked: published, and one the viewer may see
# (graph.visibility: its author does not block the viewer, nor does a block stand between
# the viewer and anyone featured in it)
_GUARD = (
    """
MATCH (v:User {id: $viewerId})
MATCH (a:User)-[:POSTED]->(c:Clip {id: $clipId})
SET c._lock = true REMOVE c._lock
WITH v, a, c
WHERE c.state = 'PUBLISHED'
"""
    + viewer_blocks_clauses("$viewerId", ["v", "a", "c"], node="v")
    + """WITH v, a, c, blockers, hidden
WHERE """
    + shown_to("$viewerId", "c", "a")
    + """
"""
)

# idempotent: a second like finds the edge (under the clip's lock) and adds nothing
LIKE = Cypher(
    _GUARD
    + """OPTIONAL MATCH (v)-[old:LIKED]->(c)
WITH v, a, c, count(old) AS had
MERGE (v)-[l:LIKED]->(c)
ON CREATE SET l.at = $now
SET c.likeCount = coalesce(c.likeCount, 0) + (1 - had)
RETURN c {.*, authorId: a.id} AS clip,
       size([(r:Clip)-[:REMIX_OF]->(c) WHERE r.state = 'PUBLISHED' | 1]) AS remixes
"""
)

UNLIKE = Cypher(
    _GUARD
    + """OPTIONAL MATCH (v)-[l:LIKED]->(c)
WITH a, c, collect(l) AS likes
FOREACH (edge IN likes | DELETE edge)
SET c.likeCount = coalesce(c.likeCount, 0) - size(likes)
RETURN c {.*, authorId: a.id} AS clip,
       size([(r:Clip)-[:REMIX_OF]->(c) WHERE r.state = 'PUBLISHED' | 1]) AS remixes
"""
)

# the watched time is bounded by the clip's length plus $slackMs, in the guard, so a bad
# value writes nothing; a view is a rewatch when this viewer had completed the clip before
RECORD_VIEW = Cypher(
    _GUARD
    + """  AND $watchedMs <= coalesce(c.videoDurationMs, c.durationS * 1000) + $slackMs
MERGE (v)-[w:WATCHED]->(c)
ON CREATE SET w.views = 0, w.completions = 0
WITH a, c, w, CASE WHEN w.completions > 0 THEN 1 ELSE 0 END AS rewatch
SET w.views = w.views + 1, w.completions = w.completions + $completed, w.lastAt = $now,
    c.viewCount = coalesce(c.viewCount, 0) + 1,
    c.completionCount = coalesce(c.completionCount, 0) + $completed,
    c.rewatchCount = coalesce(c.rewatchCount, 0) + rewatch
RETURN c {.*, authorId: a.id} AS clip,
       size([(r:Clip)-[:REMIX_OF]->(c) WHERE r.state = 'PUBLISHED' | 1]) AS remixes
"""
)

VIEWER_LIKES_BY_IDS = Cypher(
    """
MATCH (v:User {id: $viewerId})
UNWIND $ids AS id
RETURN id, size([(v)-[:LIKED]->(c:Clip {id: id}) | c.id]) > 0 AS liked
"""
)

# direct published remixes the viewer may see (graph.visibility, the viewer's $blockers and
# $hidden given: a block hides the clips it hides everywhere, counts included; an anonymous
# viewer ($viewerId null) is blocked by nobody)
PUBLISHED_REMIX_COUNTS = Cypher(
    """
UNWIND $ids AS id
MATCH (c:Clip {id: id})
OPTIONAL MATCH (ra:User)-[:POSTED]->(r:Clip)-[:REMIX_OF]->(c)
WHERE r.state = 'PUBLISHED'
WITH id, r, ra
RETURN id,
       sum(CASE WHEN r IS NOT NULL AND coalesce("""
    + shown_to("$viewerId", "r", "ra", "$blockers", "$hidden")
    + """, false) THEN 1 ELSE 0 END) AS remixes
"""
)


class Engaged(NamedTuple):
    """A clip after a like, unlike or view, and its direct PUBLISHED remixes (all of them,
    whoever is looking: what its popularity is made of)."""

    clip: Row
    remixes: int


def _clip(rows: list[Row]) -> Engaged | None:
    return Engaged(rows[0]["clip"], rows[0]["remixes"]) if rows else None


async def like(db: GraphDriver, viewer_id: str, clip_id: str, now: int) -> Engaged | None:
    """The liked clip; None when it is not a published clip the viewer may see."""
    params = {"viewerId": viewer_id, "clipId": clip_id, "now": now}
    return _clip(await db.write(LIKE, params))


async def unlike(db: GraphDriver, viewer_id: str, clip_id: str) -> Engaged | None:
    """The clip without the viewer's like; None as for like()."""
    return _clip(await db.write(UNLIKE, {"viewerId": viewer_id, "clipId": clip_id}))


async def record_view(
    db: GraphDriver,
    viewer_id: str,
    clip_id: str,
    *,
    watched_ms: int,
    completed: bool,
    slack_ms: int,
    now: int,
) -> Engaged | None:
    """The clip with the view counted; None when it may not be viewed or watched_ms is
    longer than the clip (plus slack_ms)."""
    params = {
        "viewerId": viewer_id,
        "clipId": clip_id,
        "watchedMs": watched_ms,
        "completed": int(completed),
        "slackMs": slack_ms,
        "now": now,
    }
    return _clip(await db.write(RECORD_VIEW, params))


async def viewer_likes(db: GraphDriver, viewer_id: str, ids: list[str]) -> dict[str, bool]:
    rows = await db.read(VIEWER_LIKES_BY_IDS, {"viewerId": viewer_id, "ids": ids})
    return {row["id"]: row["liked"] for row in rows}


async def published_remix_counts(
    db: GraphDriver,
    viewer_id: str | None,
    ids: list[str],
    blocks: ViewerBlocks | None = None,
) -> dict[str, int]:
    """Per clip id, its direct published remixes the viewer may see (`blocks`: theirs,
    read when not given)."""
    if blocks is None:
        blocks = await viewer_blocks(db, viewer_id)
    params = {"viewerId": viewer_id, "ids": ids, **blocks.params()}
    rows = await db.read(PUBLISHED_REMIX_COUNTS, params)
    return {row["id"]: row["remixes"] for row in rows}
