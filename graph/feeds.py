"""The feeds' statements: FOLLOWING pages, the FOR_YOU ranking, and a ranked page's clips.

Who may see a clip is graph.visibility's rule (`shown_to`, with the viewer's blocks passed as
$blockers and $hidden: carried through a statement's rows as variables, FalkorDB copies the
lists into every row): a block either way between the viewer and any featured owner hides
a clip, as the author's block does. Feeds also leave
out the viewer's own clips and those of authors the viewer blocked. FOLLOW refuses a pair
with a block either way and BLOCK deletes follows both ways, so a FOLLOWS edge never joins
an author and a viewer with a block between them: the FOLLOWING statements rely on that for
the author and check the featured owners only. For a viewer with no block either way the
rule stops at `size($hidden) = 0`, so a page costs what it did before; otherwise it reads
each candidate's featuredOwnerIds property (no edge is walked).
"""

from __future__ import annotations

from typing import Any

from graph.driver import Cypher, GraphDriver, Row
from graph.visibility import ViewerBlocks, shown_to, viewer_blocks

__all__ = [
    "following_page",
    "for_you_candidates",
    "for_you_viewer",
    "popularity_rows",
    "recent_clip_count",
    "visible_feed_clips",
]

# graph.visibility's rule for clip c by author a, with the viewer's blocks as parameters
# ($blockers, $hidden: ViewerBlocks.params())
_SHOWN = shown_to("$viewerId", "c", "a", "$blockers", "$hidden")

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
  AND """
    + _SHOWN
    + """
WITH a, c
ORDER BY c.publishedAt DESC, c.id DESC
LIMIT $limit
OPTIONAL MATCH (c)-[:REMIX_OF]->(p:Clip)
RETURN c {.*, authorId: a.id, parentId: p.id} AS clip, c.publishedAt AS at, c.id AS id
ORDER BY at DESC, id DESC
"""
)

# The same page read from the publishedAt index: the clips published since $since (and before
# the cursor) whose author the viewer follows. On the seeded graph (follows mostly point at
# prolific authors: 104 follows reach ~45,000 clips) it reads ~1,200 clips instead of every
# clip of every followee: 10-13 ms against 70-190 ms. Exact when it returns $limit rows;
# with fewer, the caller falls back to FOLLOWING_PAGE. (The viewer is matched first and
# carried: matched beside the clips, FalkorDB looked the viewer up again for each clip.)
FOLLOWING_WINDOW_PAGE = Cypher(
    """
MATCH (v:User {id: $viewerId})
WITH v
MATCH (c:Clip)
WHERE c.publishedAt >= $since
WITH v, c
WHERE c.state = 'PUBLISHED' AND ($mood IS NULL OR $mood IN c.moods)
  AND ($afterAt IS NULL OR c.publishedAt < $afterAt
       OR (c.publishedAt = $afterAt AND c.id < $afterId))
MATCH (a:User)-[:POSTED]->(c)
MATCH (v)-[:FOLLOWS]->(a)
WITH a, c
WHERE """
    + _SHOWN
    + """
WITH a, c
ORDER BY c.publishedAt DESC, c.id DESC
LIMIT $limit
OPTIONAL MATCH (c)-[:REMIX_OF]->(p:Clip)
RETURN c {.*, authorId: a.id, parentId: p.id} AS clip, c.publishedAt AS at, c.id AS id
ORDER BY at DESC, id DESC
"""
)

# How many published clips (of the mood) were published since $since, counting no further
# than $enough: sizes FOLLOWING's recent window in a process where no FOR_YOU ranking has
# (the publishedAt index; at most a few times $enough entries are read)
RECENT_CLIPS_SINCE = Cypher(
    """
MATCH (c:Clip)
WHERE c.publishedAt >= $since
WITH c
WHERE c.state = 'PUBLISHED' AND ($mood IS NULL OR $mood IN c.moods)
WITH c
LIMIT $enough
RETURN count(c) AS n
"""
)

# FOR_YOU reads candidates, never every clip (see resolvers.feeds for how they are ranked).
# The viewer's social context: whom they follow, and whom those people follow (friends of
# friends, including the followed themselves). Kept for a short while per viewer: on the
# seeded graph (10k users, ~1M follows) it costs ~12 ms, the viewer who follows the most
# returns 10k ids.
FOR_YOU_VIEWER = Cypher(
    """
MATCH (v:User {id: $viewerId})
OPTIONAL MATCH (v)-[:FOLLOWS]->(:User)-[:FOLLOWS]->(g:User)
WITH v, collect(DISTINCT g.id) AS friendsOfFriends
RETURN [(v)-[:FOLLOWS]->(f:User) | f.id] AS followed, friendsOfFriends
"""
)

# The candidates' rows: the newest $recent published clips since $since (the publishedAt
# index: a page reads the window, not the graph), and the clips named in $popular (the top of
# the popularity index); each with its author, its parent's author and what its popularity
# is made of. Left out: unpublished, another mood, the viewer's own, and anyone with a block
# between them and the viewer either way (the caller leaves out popular clips published after
# $now: a publishedAt test here makes FalkorDB look each id up through the publishedAt index,
# twice as slow; the filters sit after a WITH for the same reason). `inWindow` counts the
# window's clips and `edge` is the publishedAt of the oldest recent one, so the caller can
# size the next window.
FOR_YOU_CANDIDATES = Cypher(
    """
OPTIONAL MATCH (c:Clip)
WHERE c.publishedAt >= $since AND c.publishedAt <= $now
WITH c
WHERE c IS NULL OR (c.state = 'PUBLISHED' AND ($mood IS NULL OR $mood IN c.moods))
WITH c.id AS id, c.publishedAt AS at
ORDER BY at DESC, id DESC
WITH collect(id) AS ids, collect(at) AS ats
WITH size(ids) AS inWindow, ids[..$recent] AS recent, ats[..$recent] AS ats
WITH inWindow, CASE WHEN size(ats) = 0 THEN null ELSE ats[-1] END AS edge,
     recent + $popular AS pool
UNWIND pool AS id
WITH DISTINCT inWindow, edge, id
MATCH (a:User)-[:POSTED]->(c:Clip {id: id})
WITH inWindow, edge, a, c
WHERE c.state = 'PUBLISHED' AND ($mood IS NULL OR $mood IN c.moods)
  AND NOT a.id IN $hidden AND ($viewerId IS NULL OR a.id <> $viewerId)
  AND """
    + _SHOWN
    + """
OPTIONAL MATCH (c)-[:REMIX_OF]->(:Clip)<-[:POSTED]-(pa:User)
RETURN c.id AS id, a.id AS authorId, pa.id AS parentAuthorId, c.publishedAt AS publishedAt,
       coalesce(c.likeCount, 0) AS likes, coalesce(c.viewCount, 0) AS views,
       coalesce(c.completionCount, 0) AS completions,
       size([(r:Clip)-[:REMIX_OF]->(c) WHERE r.state = 'PUBLISHED' | 1]) AS remixes,
       inWindow, edge
"""
)

# What the popularity index is rebuilt from: every published clip anyone engaged with (a clip
# nobody liked or viewed has popularity 1 and is found by its age alone). A full scan (~2 s
# on 100k clips): run in the background every few minutes, never for a page.
POPULARITY_ROWS = Cypher(
    """
MATCH (c:Clip)
WHERE c.state = 'PUBLISHED'
WITH c
WHERE coalesce(c.likeCount, 0) > 0 OR coalesce(c.viewCount, 0) > 0
RETURN c.id AS id, c.moods AS moods, c.publishedAt AS publishedAt,
       coalesce(c.likeCount, 0) AS likes, coalesce(c.viewCount, 0) AS views,
       coalesce(c.completionCount, 0) AS completions,
       size([(r:Clip)-[:REMIX_OF]->(c) WHERE r.state = 'PUBLISHED' | 1]) AS remixes
"""
)

# A ranked page's clips, checked again when read: still published, still visible to the
# viewer, and no block either way with the author (any of it may have changed since the
# ranking)
VISIBLE_FEED_CLIPS = Cypher(
    """
UNWIND $ids AS id
MATCH (a:User)-[:POSTED]->(c:Clip {id: id})
WITH a, c
WHERE c.state = 'PUBLISHED' AND NOT a.id IN $hidden
  AND """
    + _SHOWN
    + """
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
    since: int | None = None,
    blocks: ViewerBlocks | None = None,
) -> list[Row]:
    """Rows of {clip, at}, newest first, strictly after the (publishedAt, id) keyset, of the
    clips the viewer may see (`blocks`: the viewer's, read when not given). With `since`,
    the page is first read from the clips published since then (cheap on a large graph)
    and, when that holds fewer than `limit` rows, from all the viewer's follows."""
    if blocks is None:
        blocks = await viewer_blocks(db, viewer_id)
    after_at, after_id = after if after else (None, None)
    params: dict[str, Any] = {
        **blocks.params(),
        "viewerId": viewer_id,
        "mood": mood,
        "afterAt": after_at,
        "afterId": after_id,
        "limit": limit,
    }
    if since is not None:
        rows = await db.read(FOLLOWING_WINDOW_PAGE, {**params, "since": since})
        if len(rows) >= limit:
            return rows
    return await db.read(FOLLOWING_PAGE, params)


async def recent_clip_count(db: GraphDriver, mood: str | None, since: int, enough: int) -> int:
    """Published clips (of the mood) published since `since`, counted up to `enough`."""
    rows = await db.read(RECENT_CLIPS_SINCE, {"mood": mood, "since": since, "enough": enough})
    return rows[0]["n"] if rows else 0


async def for_you_viewer(db: GraphDriver, viewer_id: str) -> tuple[list[str], list[str]]:
    """(ids the viewer follows, ids those people follow); empty for an unknown viewer."""
    rows = await db.read(FOR_YOU_VIEWER, {"viewerId": viewer_id})
    if not rows:
        return [], []
    return rows[0]["followed"], rows[0]["friendsOfFriends"]


async def for_you_candidates(
    db: GraphDriver,
    viewer_id: str | None,
    mood: str | None,
    *,
    now: int,
    since: int,
    recent: int,
    popular: list[str],
    blocks: ViewerBlocks | None = None,
) -> list[Row]:
    """Rows of {id, authorId, parentAuthorId, publishedAt, likes, views, completions, remixes,
    inWindow, edge}, in no particular order; `blocks` are the viewer's (read when not
    given)."""
    if blocks is None:
        blocks = await viewer_blocks(db, viewer_id)
    params = {
        **blocks.params(),
        "viewerId": viewer_id,
        "mood": mood,
        "now": now,
        "since": since,
        "recent": recent,
        "popular": popular,
    }
    return await db.read(FOR_YOU_CANDIDATES, params)


async def popularity_rows(db: GraphDriver) -> list[Row]:
    """Rows of {id, moods, publishedAt, likes, views, completions, remixes}."""
    return await db.read(POPULARITY_ROWS)


async def visible_feed_clips(
    db: GraphDriver,
    viewer_id: str | None,
    ids: list[str],
    blocks: ViewerBlocks | None = None,
) -> dict:
    """The clips of these ids the viewer may see in a feed (`blocks`: the viewer's, read
    when not given), by id."""
    if blocks is None:
        blocks = await viewer_blocks(db, viewer_id)
    params = {"viewerId": viewer_id, "ids": ids, **blocks.params()}
    rows = await db.read(VISIBLE_FEED_CLIPS, params)
    return {row["clip"]["id"]: row["clip"] for row in rows}
