"""Remix lineage: the Clip fields that walk the remix graph, and remixTree.

What a viewer sees of a lineage (hidden clips cut the chain) is told in resolvers/lineage.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

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


@strawberry.type
class LineageQueries:
    """Mixed into Query: remixTree."""

    @strawberry.field
    async def remix_tree(
        self, info: Info, clip_id: strawberry.ID, max_nodes: int | None = 500
    ) -> RemixTree:
        tree, truncated, size, rows = await lineage_resolvers.remix_tree(
            info.context, clip_id, max_nodes
        )
        nodes = [
            RemixTreeNode(
                clip=_clip(rows[node.id]),
                depth=node.depth,
                parent_id=strawberry.ID(encode_id("Clip", node.parent_id))
                if node.parent_id
                else None,
            )
            for node in tree.nodes
        ]
        return RemixTree(
            root=nodes[0].clip,
            nodes=nodes,
            truncated=truncated,
            max_depth=tree.max_depth,
            size=size,
        )
