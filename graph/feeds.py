"""The feeds' statements: FOLLOWING pages, the FOR_YOU ranking, and a ranked page's clips.

Blocks: FOLLOW refuses a pair with a block either way and BLOCK deletes follows both ways,
so a FOLLOWS edge never joins two users with a block between them; the FOLLOWING statement
relies on that and checks no BLOCKS edge. The FOR_YOU statements check blocks both ways.
"""

from __future__ import annotations

from typing import Any

from graph.driver import Cypher, GraphDriver, Row

__all__ = ["following_page", "for_you_ranking", "visible_feed_clips"]

# Published clips by people the viewer follows, newest first; (publishedAt, id) keyset
# the filter sits after WITH: in the MATCH's WHERE, FalkorDB planned a scan of every clip and
# walked back to the viewer (47 s on 100k clips); this way it starts at the viewer's index
FOLLOWING_PAGE = Cypher(
    """
MATCH (:User {id: $viewerId})-[:FOLLOWS]->(a:User)-[:POSTED]->(c:Clip)
WITH a, c
WHERE c.state = 'PUBLISHED' AND ($mood IS NULL OR $mood IN c.moods)
  AND ($afterAt IS NULL OR c.publishedAt < $afterAt
       OR (c.publishedAt = $afterAt AND c.id < $afterId))
WITH a, c
ORDER BY c.publishedAt DESC, c.id DESC
LIMIT $limit
OPTIONAL MATCH (c)-[:REMIX_OF]->(p:Clip)
RETURN c {.*, authorId: a.id, parentId: p.id} AS clip, c.publishedAt AS at, c.id AS id
ORDER BY at DESC, id DESC
"""
)

# FOR_YOU candidates, best first, as of $now. Tier 2: by someone the viewer follows, or a
# remix of such a person's clip; tier 1: by someone a followed person follows (a friend of a
# friend); tier 0: everyone else. Within a tier, by popularity decayed with age:
#   (1 + likes + 10 x completion rate + 20 x remix rate) / (hours since publishing + 2)^1.5
# (both rates capped at 1). The viewer's own clips, clips of anyone with a block between
# them and the viewer either way, and clips published after $now are left out.
# Cost: it scores every published clip (of the mood), so it grows with the graph: on this VM,
# 20k clips and 2k users with 50 follows each took ~0.3 s signed out and ~1.9 s signed in
# (the friends-of-friends list test per clip). Large graphs need the popularity precomputed.
FOR_YOU_RANKING = Cypher(
    """
OPTIONAL MATCH (v:User {id: $viewerId})
OPTIONAL MATCH (v)-[:BLOCKS]-(x:User)
WITH v, collect(DISTINCT x.id) AS hidden
OPTIONAL MATCH (v)-[:FOLLOWS]->(f:User)
WITH v, hidden, collect(DISTINCT f.id) AS followed
OPTIONAL MATCH (v)-[:FOLLOWS]->(:User)-[:FOLLOWS]->(g:User)
WITH hidden, followed, collect(DISTINCT g.id) AS friendsOfFriends
MATCH (a:User)-[:POSTED]->(c:Clip)
WHERE c.state = 'PUBLISHED' AND c.publishedAt <= $now
  AND ($mood IS NULL OR $mood IN c.moods)
  AND NOT a.id IN hidden AND ($viewerId IS NULL OR a.id <> $viewerId)
OPTIONAL MATCH (c)-[:REMIX_OF]->(:Clip)<-[:POSTED]-(pa:User)
WITH a, c, followed, friendsOfFriends, pa.id AS parentAuthor,
     coalesce(c.viewCount, 0) AS views,
     size([(r:Clip)-[:REMIX_OF]->(c) WHERE r.state = 'PUBLISHED' | 1]) AS remixes
WITH a, c,
     CASE WHEN a.id IN followed OR (parentAuthor IS NOT NULL AND parentAuthor IN followed)
          THEN 2 WHEN a.id IN friendsOfFriends THEN 1 ELSE 0 END AS tier,
     CASE WHEN views > 0 THEN toFloat(coalesce(c.completionCount, 0)) / views ELSE 0.0 END
       AS completionRate,
     CASE WHEN views > 0 THEN toFloat(remixes) / views ELSE 0.0 END AS remixRate,
     toFloat($now - c.publishedAt) / 3600000.0 AS ageHours
WITH a, c, tier,
     (1.0 + coalesce(c.likeCount, 0)
      + 10.0 * CASE WHEN completionRate > 1.0 THEN 1.0 ELSE completionRate END
      + 20.0 * CASE WHEN remixRate > 1.0 THEN 1.0 ELSE remixRate END)
     / ((ageHours + 2.0) ^ 1.5) AS score
RETURN c.id AS id, a.id AS authorId, tier, score
ORDER BY tier DESC, score DESC, c.publishedAt DESC, c.id DESC
LIMIT $limit
"""
)

# A ranked page's clips, checked again when read: still published, and no block either way
# between the author and the viewer (either may have changed since the ranking)
VISIBLE_FEED_CLIPS = Cypher(
    """
OPTIONAL MATCH (:User {id: $viewerId})-[:BLOCKS]-(x:User)
WITH collect(DISTINCT x.id) AS hidden
UNWIND $ids AS id
MATCH (a:User)-[:POSTED]->(c:Clip {id: id})
WHERE c.state = 'PUBLISHED' AND NOT a.id IN hidden
OPTIONAL MATCH (c)-[:REMIX_OF]->(p:Clip)
RETURN c {.*, authorId: a.id, parentId: p.id} AS clip
"""
)


async def following_page(
    db: GraphDriver,
    viewer_id: str,
    mood: str | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[Row]:
    """Rows of {clip, at}, newest first, strictly after the (publishedAt, id) keyset."""
    after_at, after_id = after if after else (None, None)
    params: dict[str, Any] = {
        "viewerId": viewer_id,
        "mood": mood,
        "afterAt": after_at,
        "afterId": after_id,
        "limit": limit,
    }
    return await db.read(FOLLOWING_PAGE, params)


async def for_you_ranking(
    db: GraphDriver, viewer_id: str | None, mood: str | None, now: int, limit: int
) -> list[Row]:
    """Rows of {id, authorId, tier, score}, best first."""
    params = {"viewerId": viewer_id, "mood": mood, "now": now, "limit": limit}
    return await db.read(FOR_YOU_RANKING, params)


async def visible_feed_clips(db: GraphDriver, viewer_id: str | None, ids: list[str]) -> dict:
    """The clips of these ids the viewer may see in a feed, by id."""
    rows = await db.read(VISIBLE_FEED_CLIPS, {"viewerId": viewer_id, "ids": ids})
    return {row["clip"]["id"]: row["clip"] for row in rows}
