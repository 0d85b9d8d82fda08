"""Remix lineage: the Clip fields that walk the remix graph, and remixTree.

What a viewer sees of a lineage (hidden clips cut the chain) is told in resolvers/lineage.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

from resolvers import lineage as lineage_resolvers
from resolvers.ids import encode_id
from schema.base import Connection

if TYPE_CHECKING:
    from schema.clips import Clip

__all__ = ["ClipLineageFields", "LineageQueries", "RemixTree", "RemixTreeNode"]

ClipRef = Annotated["Clip", strawberry.lazy("schema.clips")]


def _clip(row: dict) -> Clip:
    from schema.clips import Clip

    return Clip.from_row(row)


@strawberry.type
class ClipLineageFields:
    """Mixed into Clip: root, lineage, remixes, remixCount, forkDepth."""

    @strawberry.field(
        description="first ancestor of the remix chain (itself for an original); the last one "
        "the viewer may see when an ancestor is hidden from the viewer"
    )
    async def root(self, info: Info) -> ClipRef:
        return _clip(await lineage_resolvers.root(info.context, self.row))

    @strawberry.field(
        description="ancestors, parent first, up to the root; stops before a clip the viewer "
        "may not see"
    )
    async def lineage(self, info: Info) -> list[ClipRef]:
        return [_clip(row) for row in await lineage_resolvers.lineage(info.context, self.row)]

    @strawberry.field(description="direct children the viewer may see, newest first")
    async def remixes(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[ClipRef]:
        from schema.clips import clip_connection

        page = await lineage_resolvers.remixes(info.context, self.row, first, after)
        return clip_connection(page)

    @strawberry.field(description="all published descendants, any depth")
    async def remix_count(self, info: Info) -> int:
        return await lineage_resolvers.remix_count(info.context, self.row)

    @strawberry.field(
        description="longest chain of published descendants below this clip (0 = none)"
    )
    async def fork_depth(self, info: Info) -> int:
        return await lineage_resolvers.fork_depth(info.context, self.row)


@strawberry.type
class RemixTreeNode:
    clip: ClipRef
    depth: int = strawberry.field(description="0 for the tree's root")
    parent_id: strawberry.ID | None


@strawberry.type
class RemixTree:
    root: ClipRef
    nodes: list[RemixTreeNode] = strawberry.field(
        description="breadth-first, at most maxNodes, only clips the viewer may see"
    )
    truncated: bool
    max_depth: int = strawberry.field(description="deepest depth present in the whole tree")
    size: int = strawberry.field(description="all visible descendants plus the root")


_ID_ONLY = frozenset({"id", "__typename"})


def _asks_beyond_id(selections: list) -> bool:
    """Whether a selection (strawberry's, fragments spread) asks a field other than the id."""
    for selection in selections:
        if isinstance(selection, SelectedField):
            if selection.name not in _ID_ONLY:
                return True
        elif not isinstance(selection, (FragmentSpread, InlineFragment)):
            return True  # unknown: count it as asking more
        elif _asks_beyond_id(selection.selections):
            return True
    return False


def _tree_needs_clip_rows(info: Info) -> bool:
    """Whether `nodes { clip { ... } }` asks more of a clip than its id (the walk has the ids;
    a 10k-node tree's full rows cost 1-2 s to read and decode). Anything unexpected counts as
    asking more."""

    def fields(selections: list, name: str) -> list:
        found = []
        for selection in selections:
            if isinstance(selection, SelectedField):
                if selection.name == name:
                    found.append(selection)
            else:  # a fragment on RemixTree or RemixTreeNode
                found.extend(fields(selection.selections, name))
        return found

    for tree in info.selected_fields:
        for nodes in fields(tree.selections, "nodes"):
            for clip in fields(nodes.selections, "clip"):
                if _asks_beyond_id(clip.selections):
                    return True
    return False


def _id_only_clip(raw_id: str, global_id: strawberry.ID) -> Clip:
    """A Clip that carries its id and nothing else, for a selection that asks only the id
    (_tree_needs_clip_rows): no row is read for it."""
    from schema.clips import Clip

    clip = object.__new__(Clip)
    clip.id = global_id
    clip.row = {"id": raw_id}
    return clip


@strawberry.type
class LineageQueries:
    """Mixed into Query: remixTree."""

    @strawberry.field
    async def remix_tree(
        self, info: Info, clip_id: strawberry.ID, max_nodes: int | None = 500
    ) -> RemixTree:
        clip_rows = _tree_needs_clip_rows(info)
        tree, truncated, size, rows = await lineage_resolvers.remix_tree(
            info.context, clip_id, max_nodes, clip_rows=clip_rows
        )
        root = tree.nodes[0]
        root_clip = _clip(rows[root.id])
        nodes = [RemixTreeNode(clip=root_clip, depth=0, parent_id=None)]
        # each id is encoded once: a node's global id is its children's parentId
        global_ids = {root.id: root_clip.id}
        for node in tree.nodes[1:]:
            if clip_rows:
                clip = _clip(rows[node.id])
            else:
                clip = _id_only_clip(node.id, strawberry.ID(encode_id("Clip", node.id)))
            global_ids[node.id] = clip.id
            nodes.append(
                RemixTreeNode(clip=clip, depth=node.depth, parent_id=global_ids[node.parent_id])
            )
        return RemixTree(
            root=root_clip,
            nodes=nodes,
            truncated=truncated,
            max_depth=tree.max_depth,
            size=size,
        )
