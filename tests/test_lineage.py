"""Remix lineage: root, lineage, remixes, remixCount, forkDepth, remixTree, who sees what,
why no cycle can be made, and the CLIP_REMIXED notification record.

Clips are made PUBLISHED through the repository at fixed times (no worker renders here);
createClip's remixes wait in the broker and are dropped when the module ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aredis
import strawberry
from conftest import GraphQLClient, purge_render_queue, rendered_clip, worker_env
from ulid import ULID

from events.notifications import stream_key
from graph import clips as clip_repo
from graph.embedded import EmbeddedServer
from resolvers.ids import decode_id, encode_id
from schema.lineage import LeafListExecutionContext

LINEAGE = """query($id: ID!) { clip(id: $id) { id
  root { id } lineage { id } remixCount forkDepth
  remixes(first: 10) { edges { node { id } } } } }"""
REMIXES = """query($id: ID!, $first: Int, $after: String) { clip(id: $id) {
  remixes(first: $first, after: $after) {
    edges { cursor node { id } } pageInfo { hasNextPage endCursor } } } }"""
TREE = """query($id: ID!, $max: Int) { remixTree(clipId: $id, maxNodes: $max) {
  root { id } nodes { clip { id } depth parentId } truncated maxDepth size } }"""
CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) {
  id state remixOf { id } lineage { id } } }"""
FLAT_AND_NODES = """query($id: ID!, $max: Int) { remixTree(clipId: $id, maxNodes: $max) {
  size truncated maxDepth
  nodes { depth parentId clip { id prompt author { handle } } }
  flat { ids parentIndexes depths prompts authorHandles } } }"""
BLOCK = "mutation($id: ID!) { blockUser(userId: $id) { id } }"
DELETE = "mutation($id: ID!) { deleteClip(clipId: $id) { id state } }"


@pytest.fixture(scope="module", autouse=True)
def _drop_queued_tasks(settings):
    yield
    purge_render_queue(settings)


def _raw(account) -> str:
    return decode_id(account.id, "User")


def _gid(raw: str) -> str:
    return encode_id("Clip", raw)


async def _published(graph, author, at: int, parent: str | None = None, publish=True) -> str:
    """A clip (a remix of parent's raw id when given) rendered and published at a fixed time."""
    return await rendered_clip(
        graph, _raw(author), at, parent_id=parent, prompt="a clip in a lineage", publish=publish
    )


def _ids(items: list[dict]) -> list[str]:
    return [decode_id(item["id"], "Clip") for item in items]


def _edge_ids(connection: dict) -> list[str]:
    return [decode_id(edge["node"]["id"], "Clip") for edge in connection["edges"]]


@pytest.fixture
async def family(gql: GraphQLClient, graph) -> dict:
    """O (by u1) <- A (u2) <- B (u3); O <- C (u2, newest); A <- D (u3, an unpublished draft)."""
    u1, u2, u3 = [await gql.sign_up(name) for name in ("orig", "remixer", "deep")]
    o = await _published(graph, u1, 100)
    a = await _published(graph, u2, 200, o)
    b = await _published(graph, u3, 300, a)
    c = await _published(graph, u2, 400, o)
    d = await _published(graph, u3, 500, a, publish=False)
    return {"u1": u1, "u2": u2, "u3": u3, "O": o, "A": a, "B": b, "C": c, "D": d}


async def test_lineage_fields_of_a_small_family(gql: GraphQLClient, family) -> None:
    f = family
    o = (await gql.ok(LINEAGE, {"id": _gid(f["O"])}))["clip"]
    assert decode_id(o["root"]["id"], "Clip") == f["O"]  # an original is its own root
    assert o["lineage"] == []
    assert _edge_ids(o["remixes"]) == [f["C"], f["A"]]  # newest first, the draft left out
    assert o["remixCount"] == 3 and o["forkDepth"] == 2
    b = (await gql.ok(LINEAGE, {"id": _gid(f["B"])}))["clip"]
    assert _ids(b["lineage"]) == [f["A"], f["O"]]  # parent first, up to the root
    assert decode_id(b["root"]["id"], "Clip") == f["O"]
    assert b["remixCount"] == 0 and b["forkDepth"] == 0 and b["remixes"]["edges"] == []
    a = (await gql.ok(LINEAGE, {"id": _gid(f["A"])}, f["u3"].token))["clip"]
    # even its author's own draft remix is not in the lineage fields (drafts lists it)
    assert a["remixCount"] == 1 and _edge_ids(a["remixes"]) == [f["B"]]


async def test_remix_tree_is_breadth_first_and_bounded(gql: GraphQLClient, family) -> None:
    f = family
    tree = (await gql.ok(TREE, {"id": _gid(f["O"])}))["remixTree"]
    got = [(decode_id(n["clip"]["id"], "Clip"), n["depth"], n["parentId"]) for n in tree["nodes"]]
    assert got == [
        (f["O"], 0, None),
        (f["C"], 1, _gid(f["O"])),
        (f["A"], 1, _gid(f["O"])),
        (f["B"], 2, _gid(f["A"])),
    ]
    assert (tree["size"], tree["maxDepth"], tree["truncated"]) == (4, 2, False)
    assert decode_id(tree["root"]["id"], "Clip") == f["O"]
    cut = (await gql.ok(TREE, {"id": _gid(f["O"]), "max": 2}))["remixTree"]
    assert [decode_id(n["clip"]["id"], "Clip") for n in cut["nodes"]] == [f["O"], f["C"]]
    # size and maxDepth describe the whole visible tree, not the nodes returned
    assert (cut["size"], cut["maxDepth"], cut["truncated"]) == (4, 2, True)
    sub = (await gql.ok(TREE, {"id": _gid(f["A"]), "max": 1}))["remixTree"]
    assert (sub["size"], sub["maxDepth"], sub["truncated"]) == (2, 1, True)


async def test_a_tree_of_ids_reads_no_clip_rows_and_other_fields_read_them(
    gql: GraphQLClient, family, services
) -> None:
    """`nodes { clip { id } }` is answered from the walk; a clip field beyond the id (asked
    directly or through a fragment) reads the shown clips' rows, in one more round trip."""
    f = family
    fragment = """query($id: ID!) { remixTree(clipId: $id) { ...T } }
      fragment T on RemixTree { nodes { depth clip { ... on Node { id } ...C } } }
      fragment C on Clip { prompt author { handle } }"""
    inline = """query($id: ID!) { remixTree(clipId: $id) {
      nodes { clip { __typename id ... on Clip { state } } } } }"""
    costs, answers = {}, {}
    for name, query in (("ids", TREE), ("fragment", fragment), ("inline", inline)):
        before = services.graph.round_trips
        answers[name] = (await gql.ok(query, {"id": _gid(f["O"])}))["remixTree"]["nodes"]
        costs[name] = services.graph.round_trips - before
    # the clip row of the root, the walk: two reads; the shown clips' rows one more (and
    # their authors one more again)
    assert (costs["ids"], costs["inline"], costs["fragment"]) == (2, 3, 4), costs
    order = [f["O"], f["C"], f["A"], f["B"]]
    assert [decode_id(n["clip"]["id"], "Clip") for n in answers["ids"]] == order
    assert [decode_id(n["clip"]["id"], "Clip") for n in answers["fragment"]] == order
    assert {n["clip"]["prompt"] for n in answers["fragment"]} == {"a clip in a lineage"}
    handles = [n["clip"]["author"]["handle"] for n in answers["fragment"]]
    assert handles == [f[u].handle for u in ("u1", "u2", "u2", "u3")]
    assert {(n["clip"]["__typename"], n["clip"]["state"]) for n in answers["inline"]} == {
        ("Clip", "PUBLISHED")
    }


async def test_bad_arguments_are_client_errors(gql: GraphQLClient, family) -> None:
    for bad in (0, -1, 10_001):
        code, message = await gql.error(TREE, {"id": _gid(family["O"]), "max": bad})
        assert code == "BAD_USER_INPUT" and "maxNodes" in message
    code, _ = await gql.error(REMIXES, {"id": _gid(family["O"]), "after": "not-a-cursor"})
    assert code == "BAD_USER_INPUT"
    code, _ = await gql.error(REMIXES, {"id": _gid(family["O"]), "first": -1})
    assert code == "BAD_USER_INPUT"
    draft = _gid(family["D"])  # someone else's draft is no tree root for anyone else
    code, _ = await gql.error(TREE, {"id": draft}, family["u1"].token)
    assert code == "NOT_FOUND"


def _flat_as_nodes(flat: dict) -> list[dict]:
    """RemixTree.flat's parallel lists as the nodes list would give them."""
    ids = flat["ids"]
    return [
        {
            "depth": depth,
            "parentId": None if parent == -1 else ids[parent],
            "clip": {"id": clip_id, "prompt": prompt, "author": {"handle": handle}},
        }
        for clip_id, parent, depth, prompt, handle in zip(
            ids,
            flat["parentIndexes"],
            flat["depths"],
            flat["prompts"],
            flat["authorHandles"],
            strict=True,
        )
    ]


async def test_flat_tree_agrees_with_the_nodes_where_parts_are_hidden(
    gql: GraphQLClient, family, graph
) -> None:
    """RemixTree.flat is the nodes list as parallel lists: the same clips in the same order,
    the same maxNodes cut, and the same cuts where a removed or blocked clip hides a branch."""
    f = family
    e = await _published(graph, f["u1"], 600, f["B"])  # below B: cut with B for the viewer
    g = await _published(graph, f["u1"], 700, f["C"])
    h = await _published(graph, f["u2"], 800, g)  # below G, which is removed below
    i = await _published(graph, f["u1"], 900, f["O"])
    j = await _published(graph, f["u1"], 950, i)
    viewer = await gql.sign_up("flatview")
    await gql.ok(BLOCK, {"id": viewer.id}, f["u3"].token)  # hides B (and E) from the viewer
    await gql.ok(DELETE, {"id": _gid(g)}, f["u1"].token)  # hides G (and H) from everyone
    seen = {}
    for who, token in (("anyone", None), ("viewer", viewer.token)):
        for limit in (None, 1, 3, 5, 10_000):
            got = (await gql.ok(FLAT_AND_NODES, {"id": _gid(f["O"]), "max": limit}, token))[
                "remixTree"
            ]
            assert _flat_as_nodes(got["flat"]) == got["nodes"], (who, limit)
            seen[who, limit] = [decode_id(n["clip"]["id"], "Clip") for n in got["nodes"]]
    # what the lists hold: breadth-first, newest first, the hidden parts cut
    assert seen["anyone", None] == [f["O"], i, f["C"], f["A"], j, f["B"], e]
    assert seen["viewer", None] == [f["O"], i, f["C"], f["A"], j]
    assert seen["viewer", 3] == [f["O"], i, f["C"]] and seen["anyone", 1] == [f["O"]]
    assert h not in seen["anyone", 10_000]
    # ids alone: the flat lists of a sub-tree, with its own root at index 0
    sub = """query($id: ID!) { remixTree(clipId: $id) { flat { ids parentIndexes depths } } }"""
    flat = (await gql.ok(sub, {"id": _gid(f["A"])}))["remixTree"]["flat"]
    assert flat == {
        "ids": [_gid(f["A"]), _gid(f["B"]), _gid(e)],
        "parentIndexes": [-1, 0, 1],
        "depths": [0, 1, 2],
    }


async def test_a_flat_tree_reads_only_what_it_is_asked(
    gql: GraphQLClient, family, services
) -> None:
    """flat's ids, parents and depths come from the walk; prompts and authorHandles are one
    narrow read each, and only when asked."""
    f = family
    base = "query($id: ID!) { remixTree(clipId: $id) { flat { %s } } }"
    costs = {}
    for name, fields in (
        ("ids", "ids parentIndexes depths"),
        ("prompts", "ids prompts"),
        ("handles", "authorHandles"),
        ("both", "prompts authorHandles"),
    ):
        before = services.graph.round_trips
        answer = (await gql.ok(base % fields, {"id": _gid(f["O"])}))["remixTree"]["flat"]
        costs[name] = services.graph.round_trips - before
        if "authorHandles" in answer:
            handles = [f[u].handle for u in ("u1", "u2", "u2", "u3")]
            assert answer["authorHandles"] == handles
        if "prompts" in answer:
            assert answer["prompts"] == ["a clip in a lineage"] * 4
    # the root's row and the walk: two reads; each label one more
    assert costs == {"ids": 2, "prompts": 3, "handles": 3, "both": 4}, costs


async def test_remixes_page_with_keyset_cursors(gql: GraphQLClient, graph) -> None:
    author, fan = await gql.sign_up("paged"), await gql.sign_up("pagefan")
    parent = await _published(graph, author, 1000)
    times = (1100, 1100, 1200, 1300, 1300)  # ties in publishedAt: the id breaks them
    kids = [await _published(graph, fan, at, parent) for at in times]
    expected = [k for _, k in sorted(zip(times, kids, strict=True), reverse=True)]
    seen, after = [], None
    while True:
        data = await gql.ok(REMIXES, {"id": _gid(parent), "first": 2, "after": after})
        page = data["clip"]["remixes"]
        seen += _edge_ids(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == expected
    # a remix published between pages lands on the first page, not in the middle
    first = (await gql.ok(REMIXES, {"id": _gid(parent), "first": 2}))["clip"]["remixes"]
    newer = await _published(graph, fan, 2000, parent)
    rest = await gql.ok(
        REMIXES, {"id": _gid(parent), "first": 10, "after": first["pageInfo"]["endCursor"]}
    )
    assert _edge_ids(rest["clip"]["remixes"]) == expected[2:]
    assert newer not in expected


async def test_a_removed_clip_cuts_its_branch(gql: GraphQLClient, family) -> None:
    f = family
    await gql.ok(DELETE, {"id": _gid(f["A"])}, f["u2"].token)
    o = (await gql.ok(LINEAGE, {"id": _gid(f["O"])}))["clip"]
    assert _edge_ids(o["remixes"]) == [f["C"]]
    assert o["remixCount"] == 1 and o["forkDepth"] == 1
    tree = (await gql.ok(TREE, {"id": _gid(f["O"])}))["remixTree"]
    assert [decode_id(n["clip"]["id"], "Clip") for n in tree["nodes"]] == [f["O"], f["C"]]
    assert (tree["size"], tree["maxDepth"]) == (2, 1)
    b = (await gql.ok(LINEAGE, {"id": _gid(f["B"])}))["clip"]
    # the chain stops before the removed parent: B is the root of what remains visible
    assert b["lineage"] == [] and decode_id(b["root"]["id"], "Clip") == f["B"]


async def test_a_block_hides_the_blockers_clips_in_every_lineage_field(
    gql: GraphQLClient, family
) -> None:
    f = family
    viewer = await gql.sign_up("blocked")
    await gql.ok(BLOCK, {"id": viewer.id}, f["u2"].token)  # u2 (A and C) blocks the viewer
    o = (await gql.ok(LINEAGE, {"id": _gid(f["O"])}, viewer.token))["clip"]
    assert o["remixes"]["edges"] == [] and o["remixCount"] == 0 and o["forkDepth"] == 0
    tree = (await gql.ok(TREE, {"id": _gid(f["O"])}, viewer.token))["remixTree"]
    assert len(tree["nodes"]) == 1 and (tree["size"], tree["maxDepth"]) == (1, 0)
    b = (await gql.ok(LINEAGE, {"id": _gid(f["B"])}, viewer.token))["clip"]
    assert b["lineage"] == [] and decode_id(b["root"]["id"], "Clip") == f["B"]
    code, _ = await gql.error(TREE, {"id": _gid(f["A"])}, viewer.token)
    assert code == "NOT_FOUND"
    # everyone else still sees the whole family
    other = (await gql.ok(LINEAGE, {"id": _gid(f["B"])}, f["u1"].token))["clip"]
    assert _ids(other["lineage"]) == [f["A"], f["O"]]


async def test_remixing_a_descendant_makes_a_new_leaf_never_a_cycle(
    gql: GraphQLClient, family, graph
) -> None:
    f = family
    made = await gql.ok(
        CREATE, {"input": {"prompt": "back to the start", "remixOf": _gid(f["B"])}}, f["u1"].token
    )
    leaf = made["createClip"]
    assert leaf["remixOf"]["id"] == _gid(f["B"])
    assert _ids(leaf["lineage"]) == [f["B"], f["A"], f["O"]]
    # O keeps its place as the root; the leaf (not published yet) is in no one's count
    o = (await gql.ok(LINEAGE, {"id": _gid(f["O"])}))["clip"]
    assert o["lineage"] == [] and o["remixCount"] == 3
    leaf_id = decode_id(leaf["id"], "Clip")
    rows = await clip_repo.clips_by_ids(graph, [f["O"], leaf_id])
    assert rows[f["O"]]["parentId"] is None and rows[leaf_id]["parentId"] == f["B"]


async def test_a_chain_of_depth_50(gql: GraphQLClient, graph) -> None:
    author = await gql.sign_up("chain")
    chain = [await _published(graph, author, 10_000)]
    for n in range(50):
        chain.append(await _published(graph, author, 10_001 + n, chain[-1]))
    top = (await gql.ok(LINEAGE, {"id": _gid(chain[0])}))["clip"]
    assert top["forkDepth"] == 50 and top["remixCount"] == 50
    bottom = (await gql.ok(LINEAGE, {"id": _gid(chain[-1])}))["clip"]
    assert _ids(bottom["lineage"]) == chain[-2::-1]
    assert decode_id(bottom["root"]["id"], "Clip") == chain[0]
    # several clips in one document: one read of ancestors and one of descendants for all
    query = """query($a: ID!, $b: ID!) { a: clip(id: $a) { forkDepth lineage { id } }
      b: clip(id: $b) { forkDepth lineage { id } } }"""
    both = await gql.ok(query, {"a": _gid(chain[1]), "b": _gid(chain[2])})
    assert (both["a"]["forkDepth"], both["b"]["forkDepth"]) == (49, 48)
    assert _ids(both["b"]["lineage"]) == [chain[1], chain[0]]


async def _notifications(settings, user) -> list[tuple[str, dict]]:
    """The user's notification stream, read by a client on the tests' own loop."""
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        entries = await client.xrange(stream_key(_raw(user)))
    finally:
        await client.aclose()
    return [(fields["kind"], json.loads(fields["payload"])) for _, fields in entries]


async def test_a_remix_records_clip_remixed_for_the_parents_author(
    gql: GraphQLClient, graph, settings
) -> None:
    owner, fan, loner = [await gql.sign_up(n) for n in ("notified", "notifier", "loner")]
    parent = await _published(graph, owner, 100)
    remix = {"input": {"prompt": "my take", "remixOf": _gid(parent)}}
    made = await gql.ok(CREATE, remix, fan.token)
    records = await _notifications(settings, owner)
    assert len(records) == 1
    kind, payload = records[0]
    assert kind == "CLIP_REMIXED"
    assert payload["clipId"] == decode_id(made["createClip"]["id"], "Clip")
    assert payload["actorId"] == _raw(fan) and isinstance(payload["at"], int)
    # never for a self-remix
    await gql.ok(CREATE, {"input": {"prompt": "mine again", "remixOf": _gid(parent)}}, owner.token)
    # never between a blocked pair (the remixer blocked the parent's author here; the other
    # way round the remix itself is refused)
    await gql.ok(BLOCK, {"id": owner.id}, loner.token)
    await gql.ok(CREATE, {"input": {"prompt": "a quiet one", "remixOf": _gid(parent)}}, loner.token)
    assert len(await _notifications(settings, owner)) == 1


# --- reelgraph export-lineage


def _export(settings, *args: str) -> subprocess.CompletedProcess:
    """The CLI in its own process; on the embedded engine it finds the suite's running server
    through --data-dir, as it would a `reelgraph serve` on that folder."""
    env = worker_env(settings)
    extra: list[str] = []
    if settings.graph_url.startswith("falkor+unix"):
        env["REELGRAPH_GRAPH_URL"] = "embedded:"
        extra = ["--data-dir", str(settings.data_dir)]
    return subprocess.run(
        [sys.executable, "-m", "cli", "export-lineage", *args, *extra],
        env=env,
        capture_output=True,
        timeout=120,
    )


async def test_export_lineage_writes_graphml_and_json_that_networkx_reads(
    gql: GraphQLClient, family, settings, tmp_path: Path
) -> None:
    nx = pytest.importorskip("networkx")
    f = family
    graphml = tmp_path / "tree.graphml"
    done = await asyncio.to_thread(
        _export, settings, _gid(f["O"]), "--format", "graphml", "--out", str(graphml)
    )
    assert done.returncode == 0, done.stderr.decode()
    tree = nx.read_graphml(graphml)
    assert tree.is_directed()
    assert set(tree.nodes) == {f["O"], f["A"], f["B"], f["C"]}  # the draft D is not public
    assert set(tree.edges) == {(f["O"], f["A"]), (f["A"], f["B"]), (f["O"], f["C"])}
    assert tree.nodes[f["B"]]["depth"] == 2 and tree.nodes[f["B"]]["authorId"] == _raw(f["u3"])

    done = await asyncio.to_thread(_export, settings, f["O"], "--format", "json")
    assert done.returncode == 0, done.stderr.decode()
    data = json.loads(done.stdout)
    linked = nx.node_link_graph(data, edges="edges")
    assert nx.is_isomorphic(linked, tree) and data["graph"]["maxDepth"] == 2

    done = await asyncio.to_thread(_export, settings, f["D"], "--format", "json")
    assert done.returncode == 1 and b"no published clip" in done.stderr


def test_export_lineage_opens_a_data_folder_no_server_runs_on(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGRAPH_")}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "export-lineage", str(ULID()), "--data-dir", str(tmp_path)],
        env={**env, "REELGRAPH_SECRET_KEY": "x" * 40},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 1 and b"no published clip" in done.stderr, done.stderr
    assert EmbeddedServer.locate(tmp_path) is None  # and it stopped the engine it started


# --- lists of leaves completed whole (schema.lineage.LeafListExecutionContext)


class _Text(str):
    """A str subclass: graphql-core's String coercion keeps it, the fast path passes it by."""


LEAF_LISTS = {
    "ids": ["Q2xpcDox", "", "é"],
    "texts": ["a", _Text("b")],
    "ints": [0, -(2**31), 2**31 - 1],
    "too_big": [1, 2**31],
    "bools": [True, 0],
    "int_ids": ["a", 7],
    "holes": ["a", None],
    "floats": [1.0, 2],
    "empty": [],
}


@pytest.mark.parametrize("name", sorted(LEAF_LISTS))
def test_leaf_lists_complete_as_graphql_core_does(name: str) -> None:
    """The same data and errors, item for item, with and without the whole-list path."""
    values = LEAF_LISTS[name]

    @strawberry.type
    class Query:
        @strawberry.field
        def strings(self) -> list[str]:
            return values  # type: ignore[return-value]

        @strawberry.field
        def ids(self) -> list[strawberry.ID]:
            return values  # type: ignore[return-value]

        @strawberry.field
        def ints(self) -> list[int]:
            return values  # type: ignore[return-value]

        @strawberry.field
        def maybe_ints(self) -> list[int | None]:
            return values  # type: ignore[return-value]

        @strawberry.field
        def nested(self) -> list[list[int]]:
            return [values, values]  # type: ignore[list-item]

    answers = []
    for context in (None, LeafListExecutionContext):
        schema = strawberry.Schema(Query, execution_context_class=context)
        for field in ("strings", "ids", "ints", "maybeInts", "nested"):
            result = schema.execute_sync("{ " + field + " }")
            errors = [(e.message, e.path) for e in result.errors or ()]
            answers.append((field, json.dumps(result.data), errors))
    half = len(answers) // 2
    assert answers[:half] == answers[half:]
