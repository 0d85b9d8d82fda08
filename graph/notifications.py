"""Who may receive a live event, read fresh at delivery (subscriptions).

One statement per event and API process covers every subscriber of that process: a block
or a removal made after someone subscribed is seen by the next delivery. Blocks are counted
with OPTIONAL MATCH + count(): FalkorDB served a cached, stale answer for the same test
written as a pattern comprehension between two bound nodes once the plan was cached.
"""

from __future__ import annotations

from graph.driver import Cypher, GraphDriver, Row
from graph.visibility import shown_to, viewer_blocks_clauses

__all__ = ["blocked_actors", "feed_audience"]

# of the viewers given, those a newly published clip belongs in the feed of: not its
# author, no block either way with the author, one who may see the clip (graph.visibility:
# no block either way with any featured owner either), and for FOLLOWING only followers of
# the author. No row when the clip is no longer PUBLISHED or nobody qualifies.
FEED_AUDIENCE = Cypher(
    """
MATCH (a:User)-[:POSTED]->(c:Clip {id: $clipId})
WHERE c.state = 'PUBLISHED'
UNWIND $viewerIds AS viewerId
MATCH (v:User {id: viewerId})
WHERE v <> a
OPTIONAL MATCH (v)-[k:BLOCKS]-(a)
WITH a, c, v, count(k) AS blocks
WHERE blocks = 0
"""
    + viewer_blocks_clauses("v.id", ["a", "c", "v"], node="v")
    + """WITH a, c, v, blockers, hidden
WHERE """
    + shown_to("v.id", "c", "a")
    + """
OPTIONAL MATCH (v)-[f:FOLLOWS]->(a)
WITH a, c, v, count(f) AS follows
WHERE follows > 0 OR NOT $followingOnly
RETURN c {.*, authorId: a.id} AS clip, collect(v.id) AS viewerIds
"""
)

# of the actors given, those the viewer blocks or who block the viewer
BLOCKED_ACTORS = Cypher(
    """
MATCH (v:User {id: $viewerId})
UNWIND $actorIds AS actorId
MATCH (x:User {id: actorId})
OPTIONAL MATCH (v)-[k:BLOCKS]-(x)
WITH x, count(k) AS blocks
WHERE blocks > 0
RETURN x.id AS id
"""
)


async def feed_audience(
    db: GraphDriver, clip_id: str, viewer_ids: list[str], following_only: bool
) -> tuple[Row | None, set[str]]:
    """(the clip's row, the viewers it goes to); (None, empty) when it goes to nobody."""
    rows = await db.read(
        FEED_AUDIENCE,
        {"clipId": clip_id, "viewerIds": viewer_ids, "followingOnly": following_only},
    )
    if not rows:
        return None, set()
    return rows[0]["clip"], set(rows[0]["viewerIds"])


async def blocked_actors(db: GraphDriver, viewer_id: str, actor_ids: list[str]) -> set[str]:
    rows = await db.read(BLOCKED_ACTORS, {"viewerId": viewer_id, "actorIds": actor_ids})
    return {row["id"] for row in rows}
