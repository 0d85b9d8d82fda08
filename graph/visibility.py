"""Who may see a clip, and who may see a cameo: the one rule, for statements and for rows.

The rule, for a viewer V (None: signed out) and a clip C by author A featuring the cameos
of owners F (possibly empty, possibly including A), where "a block stands between" two
users when either BLOCKS the other:

1. A sees C, in every state.
2. An owner in F sees C in every state (their likeness is in it), unless a block stands
   between V and another owner in F other than A (a co-featured owner's block). A block
   between the owner and the author does not hide it: the owner can still see, decide on
   and take down any clip featuring them.
3. Anyone else sees C when it is PUBLISHED, A does not block V, and no block stands
   between V and any owner in F (a block by or of a featured owner hides the clip as the
   author's own block does).

A clip hidden from V hides what hangs below it in the remix graph too (graph.lineage).
Feeds and feedUpdates show only clips the rule lets V see, less V's own and those by
authors V blocked (a viewer who blocked someone does not want their clips pushed at them;
`node` still opens such a clip, so a blocker can remix what they were sent).

A cameo: its owner sees it in every state; anyone else sees it when it is ACTIVE and no
block stands between them and the owner (`cameo_visible`).

It is written twice, and only here, side by side:
- `shown_to(...)`: a Cypher boolean expression for statements, over the viewer's id, the
  clip and author variables, and two lists of ids: `blockers` (users who block the viewer)
  and `hidden` (users with a block either way with the viewer). `viewer_blocks_clauses(...)`
  binds those two lists inside a statement; a request that has them already (the
  `blocks_of_viewer` DataLoader) passes them as parameters instead. A clip's featured
  owners are read from `Clip.featuredOwnerIds` (the owners of the cameos its FEATURES edges
  point at, written with them, in the same statement, and never changed; older clips get it
  from graph.schema_setup's start-up backfill): a per-row walk of FEATURES edges cost a
  FOLLOWING page on 45k candidate clips 15-40 times its time on FalkorDB.
- `clip_visible(...)`: the same rule for a clip row in memory, given its featured owners
  and the viewer's `ViewerBlocks`.
Resolvers (`node`, `clip`, `User.clips`, likes and views, remix parents), `/media`, the
feeds, lineage and subscriptions all decide through one of these two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from graph.driver import Cypher, GraphDriver

__all__ = [
    "NO_BLOCKS",
    "ViewerBlocks",
    "cameo_visible",
    "clip_visible",
    "shown_to",
    "viewer_blocks",
    "viewer_blocks_clauses",
]


def viewer_blocks_clauses(viewer: str, carry: Sequence[str] = (), *, node: str = "") -> str:
    """Cypher clauses that bind `blockers` and `hidden` (lists of user ids; see the module
    doc) for the viewer whose id is the expression `viewer` (null: nobody blocks them), or
    who is the bound node variable `node`, keeping the variables in `carry`. Each input row
    stays one row."""
    keep = "".join(f"{name}, " for name in carry)
    who = node or f":User {{id: coalesce({viewer}, '')}}"
    return f"""OPTIONAL MATCH (viewerBlocker:User)-[:BLOCKS]->({who})
WITH {keep}collect(DISTINCT viewerBlocker.id) AS blockers
OPTIONAL MATCH ({who})-[:BLOCKS]->(viewerBlocked:User)
WITH {keep}blockers, blockers + collect(DISTINCT viewerBlocked.id) AS hidden
"""


def shown_to(
    viewer: str,
    clip: str = "c",
    author: str = "a",
    blockers: str = "blockers",
    hidden: str = "hidden",
    *,
    viewer_featured: str | None = None,
) -> str:
    """A Cypher predicate for a WHERE: whether the viewer (the id expression
    `viewer`, null when signed out) may see `clip` posted by `author` (variables), given
    `blockers` and `hidden` (list expressions: variables bound by viewer_blocks_clauses, or
    parameters). The clip's featured owners are read from `Clip.featuredOwnerIds`, written
    with its FEATURES edges (graph.clips), so the check walks no edge and costs a published
    clip without cameos nothing but two list tests. `viewer_featured`: an expression that
    says whether the viewer is one of them, for a statement that matched the viewer's own
    FEATURES edge already (default: read from featuredOwnerIds). For a signed-out viewer
    it can be null where it is false: wrap it in coalesce(..., false) to negate or return
    it."""
    owners = f"{clip}.featuredOwnerIds"
    featured = viewer_featured or f"({owners} IS NOT NULL AND {viewer} IN {owners})"
    # cheapest first, as both engines filter left to right: with no block either way nothing
    # else can hide a clip, and a clip featuring nobody has no featuredOwnerIds
    return f"""((size({hidden}) = 0 AND {clip}.state = 'PUBLISHED')
 OR {author}.id = {viewer}
 OR ({clip}.state = 'PUBLISHED' AND NOT {author}.id IN {blockers}
     AND ({owners} IS NULL OR none(owner IN {owners} WHERE owner IN {hidden})))
 OR ({featured}
     AND (size({hidden}) = 0 OR {owners} IS NULL
          OR none(owner IN {owners} WHERE owner <> {author}.id AND owner IN {hidden}))))"""


@dataclass(frozen=True)
class ViewerBlocks:
    """The viewer's blocks: `blockers` block the viewer; `hidden` have a block either way
    with the viewer (blockers included)."""

    blockers: frozenset[str]
    hidden: frozenset[str]

    def params(self) -> dict[str, list[str]]:
        """As the parameters $blockers and $hidden of a statement using shown_to."""
        return {"blockers": sorted(self.blockers), "hidden": sorted(self.hidden)}


NO_BLOCKS = ViewerBlocks(frozenset(), frozenset())


def clip_visible(
    viewer_id: str | None,
    clip: dict[str, Any],
    featured_owner_ids: Iterable[str],
    blocks: ViewerBlocks,
) -> bool:
    """The rule of the module doc for a clip row (`authorId`, `state`), its featured owners'
    ids, and the viewer's blocks (NO_BLOCKS for a signed-out viewer)."""
    author_id = clip["authorId"]
    if viewer_id is not None and author_id == viewer_id:
        return True
    featured = set(featured_owner_ids)
    if viewer_id is not None and viewer_id in featured:
        return not (featured - {viewer_id, author_id}) & blocks.hidden
    return (
        clip["state"] == "PUBLISHED"
        and author_id not in blocks.blockers
        and not featured & blocks.hidden
    )


def cameo_visible(cameo: dict[str, Any], viewer_id: str | None) -> bool:
    """The owner sees their cameo in any state; others see an ACTIVE one unless a block
    stands between them and the owner (`blocked`, as graph.cameos reads it for the viewer)."""
    if viewer_id is not None and cameo["ownerId"] == viewer_id:
        return True
    return cameo["state"] == "ACTIVE" and not cameo.get("blocked", False)


VIEWER_BLOCKS = Cypher(
    """
WITH $viewerId AS viewerId
"""
    + viewer_blocks_clauses("viewerId", ["viewerId"])
    + """RETURN blockers, hidden
"""
)


async def viewer_blocks(db: GraphDriver, viewer_id: str | None) -> ViewerBlocks:
    """The viewer's blocks, both ways; NO_BLOCKS for a signed-out viewer (no read)."""
    if viewer_id is None:
        return NO_BLOCKS
    rows = await db.read(VIEWER_BLOCKS, {"viewerId": viewer_id})
    if not rows:
        return NO_BLOCKS
    return ViewerBlocks(frozenset(rows[0]["blockers"]), frozenset(rows[0]["hidden"]))
