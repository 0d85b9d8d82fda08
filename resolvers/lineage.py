"""Remix lineage as one viewer sees it: root, lineage, remixes, counts, fork depth, trees.

What a viewer sees of a lineage: a lineage is a chain of clips the viewer may see. A clip is
in it when it is PUBLISHED and the viewer may see it (graph.visibility: its author does not
block the viewer, and no block stands between the viewer and an owner of a cameo it
features); the viewer's own drafts are listed by `drafts`, not here. A hidden clip (removed,
by someone who blocks the viewer, or featuring someone with a block between them and the
viewer) cuts the chain where it stands, both ways:
- up: `lineage` stops before the first hidden ancestor and `root` is the last ancestor
  before it (the clip itself when its parent is hidden);
- down: a hidden clip leaves `remixes`, `remixCount`, `forkDepth` and `remixTree`, and so
  do the remixes below it (they are reached only through it).
So a clip is in remixTree(R) exactly when R is in its lineage: every field tells one story.

Cycles: REMIX_OF is written only when a clip is created (graph.clips CREATE_REMIX), from the
new clip to an existing parent, and never changed; a new clip has no remixes, so it can only
become a leaf. A remix of one's own descendant is one more new leaf under that descendant.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from redis.exceptions import RedisError

from errors import BadUserInput, NotFound
from events.notifications import record_notification
from graph import clips as clip_repo
from graph import lineage as lineage_repo
from graph.lineage import Descendants
from graph.visibility import ViewerBlocks, clip_visible
from resolvers.clips import visible_clip
from resolvers.ids import decode_id
from resolvers.loaders import RemixPageKey
from resolvers.pagination import Page, make_page, page_size, time_id_cursor

if TYPE_CHECKING:
    from graph.driver import GraphDriver
    from resolvers.context import Context

__all__ = [
    "DEFAULT_TREE_NODES",
    "MAX_TREE_NODES",
    "TreeNode",
    "VisibleTree",
    "build_tree",
    "fork_depth",
    "lineage",
    "notify_remixed",
    "public_tree",
    "remix_count",
    "remix_tree",
    "remixes",
    "root",
    "tree_author_handles",
    "tree_graphml",
    "tree_node_link",
    "tree_prompts",
    "visible_tree",
]

logger = logging.getLogger(__name__)

DEFAULT_TREE_NODES = 500
MAX_TREE_NODES = 10_000


class TreeNode(NamedTuple):
    id: str
    depth: int
    parent_id: str | None


@dataclass(frozen=True)
class VisibleTree:
    """A clip and every descendant the viewer may see, breadth-first (the root first, then by
    depth, siblings newest first), as parallel lists: node i is ids[i] at depths[i], a remix
    of ids[parents[i]] (-1 for the root). Lists, not one object per node: an 11.5k-node tree
    is built in about 10 ms this way, and RemixTree.flat answers the lists as they are."""

    ids: list[str]
    parents: list[int]
    depths: list[int]
    max_depth: int  # of the whole visible tree, also when this one is cut (first)

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def nodes(self) -> list[TreeNode]:
        ids = self.ids
        return [
            TreeNode(clip_id, depth, None if parent < 0 else ids[parent])
            for clip_id, depth, parent in zip(ids, self.depths, self.parents, strict=True)
        ]

    def first(self, count: int) -> VisibleTree:
        """The first count nodes (breadth-first, so every parent is among them)."""
        return VisibleTree(
            self.ids[:count], self.parents[:count], self.depths[:count], self.max_depth
        )


def _in_lineage(clip: dict, viewer_id: str | None, blocks: ViewerBlocks) -> bool:
    """A published clip the viewer may see; an ancestor row names its featured owners."""
    owners = clip.get("featuredOwners") or ()
    return clip["state"] == "PUBLISHED" and clip_visible(viewer_id, clip, owners, blocks)


async def lineage(ctx: Context, clip: dict) -> list[dict]:
    """The ancestors the viewer may see, parent first, up to the first hidden one."""
    viewer_id = ctx.optional_viewer()
    blocks = await ctx.loaders.viewer_blocks()
    shown: list[dict] = []
    for ancestor in await ctx.loaders.ancestors_by_clip.load(clip["id"]):
        if not _in_lineage(ancestor, viewer_id, blocks):
            break
        shown.append(ancestor)
    return shown


async def root(ctx: Context, clip: dict) -> dict:
    """The first ancestor of the chain the viewer sees (the clip itself for an original)."""
    chain = await lineage(ctx, clip)
    return chain[-1] if chain else clip


async def visible_tree(ctx: Context, clip: dict) -> VisibleTree:
    rows = await ctx.loaders.descendants_by_clip.load(clip["id"])
    hidden: set[str] = set()
    ctx.optional_viewer()
    if (await ctx.loaders.viewer_blocks()).hidden:  # a block cuts the tree where it hides
        hidden = await ctx.loaders.hidden_descendants_by_clip.load(clip["id"])
    return build_tree(clip["id"], rows, hidden)


def build_tree(root_id: str, descendants: Descendants, hidden: set[str]) -> VisibleTree:
    """The tree below root_id made of its published descendants (graph.lineage) less the
    hidden ones; a hidden clip is never reached, so what hangs below it is cut too."""
    parent_of = dict(zip(descendants.ids, descendants.parent_ids, strict=True))
    # newest first: ids are time-ordered (ULIDs), so one sort orders every sibling list
    remixes = sorted(parent_of, reverse=True)
    if hidden:
        remixes = [clip_id for clip_id in remixes if clip_id not in hidden]
    children: dict[str, list[str]] = defaultdict(list)
    for child in remixes:
        children[parent_of[child]].append(child)
    ids, parents, depths = [root_id], [-1], [0]
    below_of = children.get
    i = 0
    while i < len(ids):  # breadth-first: the lists are their own queue
        below = below_of(ids[i])
        if below:
            ids.extend(below)
            parents.extend([i] * len(below))
            depths.extend([depths[i] + 1] * len(below))
        i += 1
    return VisibleTree(ids, parents, depths, depths[-1])  # breadth-first: the last is deepest


async def remix_count(ctx: Context, clip: dict) -> int:
    return (await visible_tree(ctx, clip)).size - 1


async def fork_depth(ctx: Context, clip: dict) -> int:
    return (await visible_tree(ctx, clip)).max_depth


async def remixes(ctx: Context, clip: dict, first: int | None, after: str | None) -> Page[dict]:
    """Direct published remixes the viewer may see, newest first."""
    limit = page_size(first, ctx.settings.max_page_size)
    cursor = time_id_cursor(after)
    rows = await ctx.loaders.remix_page_by_parent.load(RemixPageKey(clip["id"], limit + 1, cursor))
    page = make_page(rows, limit, key=lambda row: (row["at"], row["clip"]["id"]))
    return Page([(c, row["clip"]) for c, row in page.items], page.has_next_page)


async def remix_tree(
    ctx: Context, clip_id: str, max_nodes: int | None, *, clip_rows: bool = True
) -> tuple[VisibleTree, bool, int, dict[str, dict]]:
    """(the tree cut to max_nodes, truncated, size of the whole visible tree, the clips' rows
    by id: the root's always, the shown nodes' only with clip_rows: the walk read their ids,
    and a 10k-node tree's full rows cost 1-2 s to read and decode)."""
    max_nodes = DEFAULT_TREE_NODES if max_nodes is None else max_nodes
    if not 1 <= max_nodes <= MAX_TREE_NODES:  # before any read
        raise BadUserInput(f"maxNodes must be between 1 and {MAX_TREE_NODES}")
    clip = await visible_clip(ctx, decode_id(clip_id, "Clip"))
    if clip is None:
        raise NotFound("no such clip")
    tree = await visible_tree(ctx, clip)
    shown = tree.first(max_nodes)
    rows = {clip["id"]: clip}
    if clip_rows:  # one read by id, of the shown nodes only
        rows.update((row["id"], row) for row in await _rows(ctx, shown.ids[1:]))
    return shown, tree.size > max_nodes, tree.size, rows


async def tree_prompts(ctx: Context, tree: VisibleTree, whole: int) -> list[str]:
    """The prompt of each clip of tree (cut from a visible tree of `whole` clips), in its
    order: one narrow read, no clip rows."""
    below = _walk_from(tree, whole)
    found = await lineage_repo.prompts(ctx.services.graph, tree.ids, below=below)
    return _in_order(tree.ids, found)


async def tree_author_handles(ctx: Context, tree: VisibleTree, whole: int) -> list[str]:
    """The handle of each clip's author, as tree_prompts reads prompts."""
    below = _walk_from(tree, whole)
    found = await lineage_repo.author_handles(ctx.services.graph, tree.ids, below=below)
    return _in_order(tree.ids, found)


def _walk_from(tree: VisibleTree, whole: int) -> str | None:
    """Read labels by walking from the root when the tree shows most of the whole (a lookup
    per id costs more then), by id when it shows a few clips of a big tree."""
    return tree.ids[0] if 2 * tree.size >= whole else None


def _in_order(ids: list[str], found: dict[str, str]) -> list[str]:
    try:
        return [found[i] for i in ids]
    except KeyError:  # deleted between the walk and this read (a published clip never is)
        raise NotFound("a clip of this tree is gone; ask again") from None


async def _rows(ctx: Context, ids: list[str]) -> list[dict]:
    return [row for row in await ctx.loaders.clip_by_id.load_many(ids) if row is not None]


async def notify_remixed(ctx: Context, clip: dict) -> None:
    """Tell the parent's author that clip (a new remix) was made: a CLIP_REMIXED record.

    Never for a self-remix nor between users where either blocks the other. The remix exists
    already, so a Redis failure here is logged and the mutation still succeeds."""
    parent = await ctx.loaders.clip_by_id.load(clip["parentId"])
    actor_id = clip["authorId"]
    if parent is None or parent["authorId"] == actor_id:
        return
    if await lineage_repo.blocked_either_way(ctx.services.graph, actor_id, parent["authorId"]):
        return
    payload = {"clipId": clip["id"], "actorId": actor_id, "at": clip["createdAt"]}
    try:
        await record_notification(ctx.services.redis, parent["authorId"], "CLIP_REMIXED", payload)
    except (RedisError, OSError):
        logger.exception("could not record CLIP_REMIXED for remix %s", clip["id"])


# --- export for analysts (`reelgraph export-lineage`): networkx, Gephi, notebooks


async def public_tree(db: GraphDriver, clip_id: str) -> tuple[VisibleTree, dict] | None:
    """The whole tree below a published clip as a signed-out viewer sees it, and its clips'
    rows by id; None when there is no such published clip."""
    root = (await clip_repo.clips_by_ids(db, [clip_id])).get(clip_id)
    if root is None or root["state"] != "PUBLISHED":
        return None
    found = await lineage_repo.descendants(db, [clip_id])
    tree = build_tree(clip_id, found[clip_id], set())
    return tree, await clip_repo.clips_by_ids(db, tree.ids)


_NODE_ATTRS = (
    ("prompt", "string"),
    ("authorId", "string"),
    ("publishedAt", "long"),
    ("depth", "int"),
)


def _node_attrs(node: TreeNode, rows: dict[str, dict]) -> dict:
    clip = rows[node.id]
    return {
        "prompt": clip.get("prompt", ""),
        "authorId": clip["authorId"],
        "publishedAt": clip.get("publishedAt") or 0,
        "depth": node.depth,
    }


def tree_node_link(tree: VisibleTree, rows: dict[str, dict]) -> dict:
    """Node-link JSON (`networkx.node_link_graph(data, edges="edges")`), parent -> remix."""
    return {
        "directed": True,
        "multigraph": False,
        "graph": {"root": tree.ids[0], "maxDepth": tree.max_depth},
        "nodes": [{"id": node.id, **_node_attrs(node, rows)} for node in tree.nodes],
        "edges": [
            {"source": node.parent_id, "target": node.id}
            for node in tree.nodes
            if node.parent_id is not None
        ],
    }


def tree_graphml(tree: VisibleTree, rows: dict[str, dict]) -> bytes:
    """GraphML (`networkx.read_graphml`, Gephi): a directed graph, parent -> remix."""
    ns = "http://graphml.graphdrawing.org/xmlns"
    root = ET.Element("graphml", {"xmlns": ns})
    for name, kind in _NODE_ATTRS:
        key = {"id": name, "for": "node", "attr.name": name, "attr.type": kind}
        ET.SubElement(root, "key", key)
    graph = ET.SubElement(root, "graph", {"id": "remixes", "edgedefault": "directed"})
    for node in tree.nodes:
        element = ET.SubElement(graph, "node", {"id": node.id})
        for name, value in _node_attrs(node, rows).items():
            ET.SubElement(element, "data", {"key": name}).text = str(value)
    for node in tree.nodes:
        if node.parent_id is not None:
            ET.SubElement(graph, "edge", {"source": node.parent_id, "target": node.id})
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
