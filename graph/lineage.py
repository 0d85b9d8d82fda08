"""Remix lineage: ancestors, descendants and direct remixes of clips.

`(:Clip)-[:REMIX_OF]->(:Clip)` points from a remix to its parent and is written once, by
CREATE_REMIX, when the remix is created: a clip has at most one parent and never changes it,
so the remix graph is a forest (a new clip can only become a leaf, so no cycle can form) and a
variable-length walk from a clip meets each ancestor or descendant exactly once. The walks are
unbounded (`*1..`): up is one chain, down is one tree, so a walk touches each node once, and
both engines run a single traversal instead of one statement per level.

Who may see which clip is graph.visibility's rule. ANCESTORS and DESCENDANTS return every
state, with the author (and an ancestor's featured owners), so one read serves every
viewer and the caller (resolvers/lineage.py) applies the rule in Python; HIDDEN_DESCENDANTS
and REMIX_PAGES apply it in Cypher, with the viewer's blocks as parameters.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from graph.driver import Cypher, GraphDriver, Row
from graph.visibility import ViewerBlocks, shown_to

__all__ = [
    "NO_DESCENDANTS",
    "Descendants",
    "ancestors",
    "author_handles",
    "blocked_either_way",
    "descendants",
    "hidden_descendants",
    "prompts",
    "remix_pages",
]

# every ancestor of each clip, with its distance (1 = the parent) and the owners of the
# cameos it features (what graph.visibility's rule needs besides the author)
ANCESTORS = Cypher(
    """
UNWIND $ids AS id
MATCH path = (:Clip {id: id})-[:REMIX_OF*1..]->(p:Clip)
MATCH (a:User)-[:POSTED]->(p)
RETURN id, length(path) AS depth,
       p {.*, authorId: a.id,
          featuredOwners: [(p)-[:FEATURES]->(:Cameo)<-[:OWNS]-(o:User) | o.id]} AS clip
"""
)

# every PUBLISHED descendant of each clip: its id and its parent's, as one row per clip of
# two parallel lists. As narrow as the tree needs: on a 10k-node tree each further column
# costs about as much as the walk itself, and 10k rows cost the client more to decode than
# two lists of 10k strings (on the 100k seed, 11,512 descendants: 70-140 ms as rows, 50-65 ms
# as lists). Full rows of the nodes shown are read by id afterwards, and only when a field
# other than the id is asked; ids are time-ordered ULIDs, so they also order siblings newest
# first. The filter sits after WITH: written in the MATCH's WHERE, FalkorDB planned it as a
# scan of the state index (every published clip in the graph) and ran three times slower.
# `*0..` lets p be the starting clip itself, so one pattern gives every (parent, remix) pair
# of the tree. A clip without published descendants has no row.
DESCENDANTS = Cypher(
    """
UNWIND $ids AS rootId
MATCH (:Clip {id: rootId})<-[:REMIX_OF*0..]-(p:Clip)<-[:REMIX_OF]-(d:Clip)
WITH rootId, p, d
WHERE d.state = 'PUBLISHED'
RETURN rootId, collect(d.id) AS ids, collect(p.id) AS parentIds
"""
)

# the descendants of each clip the viewer may not see (graph.visibility, the viewer's
# $blockers and $hidden given), read only for a viewer with some block
HIDDEN_DESCENDANTS = Cypher(
    """
UNWIND $ids AS rootId
MATCH (:Clip {id: rootId})<-[:REMIX_OF*1..]-(d:Clip)
MATCH (a:User)-[:POSTED]->(d)
WITH rootId, a, d
WHERE NOT coalesce("""
    + shown_to("$viewerId", "d", "a", "$blockers", "$hidden")
    + """, false)
RETURN rootId, d.id AS id
"""
)

# one page of published direct remixes per parent that the viewer may see (graph.visibility,
# the viewer's $blockers and $hidden given), newest first; the collect-and-slice shape of
# graph.clips PUBLISHED_BY_AUTHORS_PAGES, for the same reasons
REMIX_PAGES = Cypher(
    """
UNWIND $parentIds AS parentId
MATCH (:Clip {id: parentId})<-[:REMIX_OF]-(c:Clip)
MATCH (a:User)-[:POSTED]->(c)
WHERE c.state = 'PUBLISHED'
  AND """
    + shown_to("$viewerId", "c", "a", "$blockers", "$hidden")
    + """
  AND ($afterAt IS NULL OR c.publishedAt < $afterAt
       OR (c.publishedAt = $afterAt AND c.id < $afterId))
WITH parentId, c.publishedAt AS at, c, a.id AS authorId
ORDER BY at DESC, c.id DESC
WITH parentId, collect({at: at, c: c, authorId: authorId})[..$limit] AS kept
UNWIND kept AS row
WITH parentId, row.at AS at, row.c AS c, row.authorId AS authorId
RETURN parentId, c {.*, authorId: authorId, parentId: parentId} AS clip, at
"""
)

# what a tree viewer labels each node with (resolvers/lineage.py, RemixTree.flat): one
# property per clip, as one row of parallel lists (10k rows of full clips cost 1-2 s to read
# and decode, two lists of 10k strings a few ms); the ids come back beside them, since a
# collect need not keep the order of what it collects. Clips that are gone have no entry.
# By id for a few clips of a big tree; for most of a tree, the walk from its root is cheaper
# than an index lookup per clip (on the 100k seed's 11,512-clip tree: 40 ms against 75 ms).
PROMPTS = Cypher(
    """
UNWIND $ids AS id
MATCH (c:Clip {id: id})
RETURN collect(c.id) AS ids, collect(c.prompt) AS prompts
"""
)

AUTHOR_HANDLES = Cypher(
    """
UNWIND $ids AS id
MATCH (a:User)-[:POSTED]->(c:Clip {id: id})
RETURN collect(c.id) AS ids, collect(a.handle) AS handles
"""
)

PROMPTS_BELOW = Cypher(
    """
MATCH (:Clip {id: $rootId})<-[:REMIX_OF*0..]-(c:Clip)
RETURN collect(c.id) AS ids, collect(c.prompt) AS prompts
"""
)

AUTHOR_HANDLES_BELOW = Cypher(
    """
MATCH (:Clip {id: $rootId})<-[:REMIX_OF*0..]-(c:Clip)
MATCH (a:User)-[:POSTED]->(c)
RETURN collect(c.id) AS ids, collect(a.handle) AS handles
"""
)

BLOCKED_EITHER_WAY = Cypher(
    """
MATCH (a:User {id: $a})
OPTIONAL MATCH (a)-[k:BLOCKS]-(:User {id: $b})
RETURN count(k) > 0 AS blocked
"""
)


async def ancestors(db: GraphDriver, ids: list[str]) -> dict[str, list[Row]]:
    """Per clip id, its ancestors, parent first, each row with `parentId` filled in."""
    found: dict[str, list[Row]] = {i: [] for i in ids}
    rows = await db.read(ANCESTORS, {"ids": ids})
    for row in sorted(rows, key=lambda r: r["depth"]):  # the parent first
        found[row["id"]].append(row["clip"])
    for chain in found.values():
        for depth, clip in enumerate(chain):  # the walk is whole: the last one has no parent
            clip["parentId"] = chain[depth + 1]["id"] if depth + 1 < len(chain) else None
    return found


class Descendants(NamedTuple):
    """A clip's PUBLISHED descendants: ids[i] is a remix of parent_ids[i]."""

    ids: list[str]
    parent_ids: list[str]


NO_DESCENDANTS = Descendants([], [])


async def descendants(db: GraphDriver, ids: list[str]) -> dict[str, Descendants]:
    """Per clip id, its PUBLISHED descendants (any order)."""
    found = dict.fromkeys(ids, NO_DESCENDANTS)
    for row in await db.read(DESCENDANTS, {"ids": ids}):
        found[row["rootId"]] = Descendants(row["ids"], row["parentIds"])
    return found


async def hidden_descendants(
    db: GraphDriver, ids: list[str], viewer_id: str, blocks: ViewerBlocks
) -> dict[str, set[str]]:
    """Per clip id, the ids of its descendants the viewer may not see."""
    found: dict[str, set[str]] = {i: set() for i in ids}
    params = {"ids": ids, "viewerId": viewer_id, **blocks.params()}
    for row in await db.read(HIDDEN_DESCENDANTS, params):
        found[row["rootId"]].add(row["id"])
    return found


async def remix_pages(
    db: GraphDriver,
    *,
    parent_ids: list[str],
    viewer_id: str | None,
    blocks: ViewerBlocks,
    after: tuple[Any, ...] | None,
    limit: int,
) -> dict[str, list[Row]]:
    """Per parent, up to `limit` rows {clip, at} of its published remixes the viewer may
    see, newest first."""
    after_at, after_id = after if after else (None, None)
    params = {
        "parentIds": parent_ids,
        "viewerId": viewer_id,
        **blocks.params(),
        "afterAt": after_at,
        "afterId": after_id,
        "limit": limit,
    }
    found: dict[str, list[Row]] = {}
    for row in await db.read(REMIX_PAGES, params):
        found.setdefault(row["parentId"], []).append(row)
    return found


async def prompts(db: GraphDriver, ids: list[str], *, below: str | None = None) -> dict[str, str]:
    """Each clip's prompt by id: of the clips ids, or of every clip of the tree below (and
    with) the clip `below`. Clips that are gone are left out."""
    if below is None:
        rows = await db.read(PROMPTS, {"ids": ids})
    else:
        rows = await db.read(PROMPTS_BELOW, {"rootId": below})
    return dict(zip(rows[0]["ids"], rows[0]["prompts"], strict=True)) if rows else {}


async def author_handles(
    db: GraphDriver, ids: list[str], *, below: str | None = None
) -> dict[str, str]:
    """Each clip's author's handle by clip id, as prompts() reads them."""
    if below is None:
        rows = await db.read(AUTHOR_HANDLES, {"ids": ids})
    else:
        rows = await db.read(AUTHOR_HANDLES_BELOW, {"rootId": below})
    return dict(zip(rows[0]["ids"], rows[0]["handles"], strict=True)) if rows else {}


async def blocked_either_way(db: GraphDriver, a: str, b: str) -> bool:
    rows = await db.read(BLOCKED_EITHER_WAY, {"a": a, "b": b})
    return bool(rows and rows[0]["blocked"])
