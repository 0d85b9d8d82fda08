"""Remix lineage: the Clip fields that walk the remix graph, and remixTree.

What a viewer sees of a lineage (hidden clips cut the chain) is told in resolvers/lineage.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from graphql import GraphQLID, GraphQLInt, GraphQLString, is_non_null_type
from graphql.type.scalars import GRAPHQL_MAX_INT, GRAPHQL_MIN_INT
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import Info
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

from resolvers import lineage as lineage_resolvers
from resolvers.ids import encode_id
from schema.base import Connection

if TYPE_CHECKING:
    from schema.clips import Clip

__all__ = [
    "ClipLineageFields",
    "LeafListExecutionContext",
    "LineageQueries",
    "RemixTree",
    "RemixTreeFlat",
    "RemixTreeNode",
]

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


@strawberry.type(
    description="the same nodes as RemixTree.nodes, in the same order, as parallel lists: "
    "node i is ids[i], at depths[i], a remix of ids[parentIndexes[i]]; a tree viewer's "
    "encoding, far cheaper to answer than one object per node"
)
class RemixTreeFlat:
    tree: strawberry.Private[lineage_resolvers.VisibleTree]
    whole: strawberry.Private[int]  # the size of the whole visible tree it was cut from

    @strawberry.field(description="Clip IDs; the root first")
    def ids(self) -> list[strawberry.ID]:
        encode = encode_id
        return [strawberry.ID(encode("Clip", raw)) for raw in self.tree.ids]

    @strawberry.field(description="the index in ids of each clip's parent; -1 for the root")
    def parent_indexes(self) -> list[int]:
        return self.tree.parents

    @strawberry.field(description="0 for the root")
    def depths(self) -> list[int]:
        return self.tree.depths

    @strawberry.field(description="each clip's prompt; read only when asked")
    async def prompts(self, info: Info) -> list[str]:
        return await lineage_resolvers.tree_prompts(info.context, self.tree, self.whole)

    @strawberry.field(description="each clip's author's handle; read only when asked")
    async def author_handles(self, info: Info) -> list[str]:
        return await lineage_resolvers.tree_author_handles(info.context, self.tree, self.whole)


@strawberry.type
class RemixTree:
    tree: strawberry.Private[lineage_resolvers.VisibleTree]  # cut to maxNodes
    rows: strawberry.Private[dict[str, dict]]  # the root's row; the nodes' with clip_rows
    clip_rows: strawberry.Private[bool]  # _tree_needs_clip_rows
    root: ClipRef

    @strawberry.field(description="breadth-first, at most maxNodes, only clips the viewer may see")
    def nodes(self) -> list[RemixTreeNode]:
        tree, rows, root_clip = self.tree, self.rows, self.root
        nodes = [RemixTreeNode(clip=root_clip, depth=0, parent_id=None)]
        # each id is encoded once: a node's global id is its children's parentId
        global_ids = [root_clip.id]
        for raw, depth, parent in zip(tree.ids, tree.depths, tree.parents, strict=True):
            if parent < 0:
                continue  # the root, above
            if self.clip_rows:
                clip = _clip(rows[raw])
            else:
                clip = _id_only_clip(raw, strawberry.ID(encode_id("Clip", raw)))
            global_ids.append(clip.id)
            nodes.append(RemixTreeNode(clip=clip, depth=depth, parent_id=global_ids[parent]))
        return nodes

    truncated: bool
    max_depth: int = strawberry.field(description="deepest depth present in the whole tree")
    size: int = strawberry.field(description="all visible descendants plus the root")

    @strawberry.field(
        description="the nodes as parallel lists (the same clips, order and maxNodes cut)"
    )
    def flat(self) -> RemixTreeFlat:
        return RemixTreeFlat(tree=self.tree, whole=self.size)


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
        return RemixTree(
            tree=tree,
            rows=rows,
            clip_rows=clip_rows,
            root=_clip(rows[tree.ids[0]]),
            truncated=truncated,
            max_depth=tree.max_depth,
            size=size,
        )


class LeafListExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's execution, with lists of plain leaves completed whole.

    graphql-core completes a list one item at a time (a path, a completion and a coercion
    each): about 3 µs an item, so 30 ms for one list of 10,000 ids (RemixTree.flat answers
    three to five). A list of non-null String or ID whose items are all exact `str`, or of
    non-null Int whose items are all exact `int` within 32 bits, is what the per-item
    coercion would return item for item (graphql-core returns such values unchanged), so it
    is returned as it stands. Anything else (another item type, a str subclass, a bool, an
    int out of range, a list under @stream) is completed by graphql-core as before, so the
    answer and its errors are the same either way (tests/test_lineage.py compares them)."""

    @staticmethod
    def plain_leaves(item_type: Any, items: list) -> bool:
        """Whether a list's items are what coercing each would return: all exact `str` for
        non-null String or ID, all exact `int` within 32 bits for non-null Int."""
        if not is_non_null_type(item_type):
            return False
        leaf = item_type.of_type
        if leaf is GraphQLString or leaf is GraphQLID:
            return all(type(item) is str for item in items)
        if leaf is GraphQLInt:
            return all(
                type(item) is int and GRAPHQL_MIN_INT <= item <= GRAPHQL_MAX_INT for item in items
            )
        return False

    def complete_list_value(
        self,
        return_type: Any,
        field_details_list: Any,
        info: Any,
        path: Any,
        result: Any,
        position_context: Any,
    ) -> Any:
        if (
            type(result) is list
            and self.plain_leaves(return_type.of_type, result)
            and self.get_stream_usage(field_details_list, path) is None
        ):
            return result
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )
