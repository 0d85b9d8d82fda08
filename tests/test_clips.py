"""createClip's checks, drafts and visibility, publish/delete transitions, and a broker outage.

No worker runs in this module, so clips stay QUEUED here (their tasks wait in the broker
until the module ends, and are then dropped: no later module's worker should meet them).
"""

from __future__ import annotations

import pytest
from conftest import GraphQLClient, purge_render_queue, rendered_clip
from litestar.testing import AsyncTestClient

from resolvers.ids import encode_id
from server import build_app

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) {
  id state prompt moods renderProgress video { url } author { handle } } }"""
DRAFTS = "{ drafts { edges { node { id state } } } }"
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state publishedAt } }"
DELETE = "mutation($id: ID!) { deleteClip(clipId: $id) { id state video { url } } }"
CLIP = "query($id: ID!) { clip(id: $id) { id state } node(id: $id) { id } }"


@pytest.fixture(scope="module", autouse=True)
def _drop_queued_tasks(settings):
    yield
    purge_render_queue(settings)


async def _draft_count(gql: GraphQLClient, token: str) -> int:
    return len((await gql.ok(DRAFTS, token=token))["drafts"]["edges"])


async def test_create_clip_queues_it(gql: GraphQLClient) -> None:
    ann = await gql.sign_up("creator")
    clip = (await gql.ok(CREATE, {"input": {"prompt": "  a dog playing soccer  "}}, ann.token))[
        "createClip"
    ]
    assert clip["state"] == "QUEUED"
    assert clip["prompt"] == "a dog playing soccer"
    assert clip["moods"] == ["animals", "sports"]  # inferred when not given
    assert clip["renderProgress"] == 0.0 and clip["video"] is None
    assert clip["author"]["handle"] == ann.handle
    drafts = (await gql.ok(DRAFTS, token=ann.token))["drafts"]["edges"]
    assert [d["node"]["id"] for d in drafts] == [clip["id"]]


@pytest.mark.parametrize(
    ("change", "code", "fragment"),
    [
        ({"prompt": ""}, "BAD_USER_INPUT", "empty"),
        ({"prompt": "   \n "}, "BAD_USER_INPUT", "empty"),
        ({"prompt": "x" * 1001}, "BAD_USER_INPUT", "1000"),
        ({"prompt": "null\x00byte"}, "BAD_USER_INPUT", "control"),
        ({"durationSeconds": 0}, "BAD_USER_INPUT", "durationSeconds"),
        ({"durationSeconds": 21}, "BAD_USER_INPUT", "durationSeconds"),
        ({"moods": ["funny", "grumpy"]}, "BAD_USER_INPUT", "unknown mood"),
        ({"moods": ["funny", "art", "food", "music"]}, "BAD_USER_INPUT", "at most"),
        ({"cameoIds": [encode_id("Cameo", str(i)) for i in range(3)]}, "BAD_USER_INPUT", "2"),
        ({"cameoIds": [encode_id("Cameo", "01CAMEO")]}, "CONSENT_REQUIRED", "consent"),
        ({"cameoIds": ["%%%"]}, "BAD_USER_INPUT", "ID"),
        ({"remixOf": "not an id"}, "BAD_USER_INPUT", "ID"),
        ({"remixOf": encode_id("Clip", "01NOSUCHCLIP")}, "NOT_FOUND", "remix"),
        ({"remixOf": encode_id("User", "01NOTACLIP")}, "NOT_FOUND", "Clip"),
    ],
)
async def test_create_clip_rejects_bad_input_and_writes_nothing(
    gql: GraphQLClient, change: dict, code: str, fragment: str
) -> None:
    ann = await gql.sign_up("bad_input")
    got_code, message = await gql.error(CREATE, {"input": {"prompt": "ok", **change}}, ann.token)
    assert got_code == code
    assert fragment in message
    assert await _draft_count(gql, ann.token) == 0


async def test_create_clip_needs_a_viewer(gql: GraphQLClient) -> None:
    code, _ = await gql.error(CREATE, {"input": {"prompt": "anonymous"}})
    assert code == "UNAUTHENTICATED"


async def test_remix_of_an_unpublished_clip_is_not_found(gql: GraphQLClient) -> None:
    ann = await gql.sign_up("remixer")
    parent = (await gql.ok(CREATE, {"input": {"prompt": "parent"}}, ann.token))["createClip"]
    code, _ = await gql.error(
        CREATE, {"input": {"prompt": "child", "remixOf": parent["id"]}}, ann.token
    )
    assert code == "NOT_FOUND"
    assert await _draft_count(gql, ann.token) == 1


async def test_drafts_are_invisible_to_everyone_else(gql: GraphQLClient) -> None:
    ann, bob = await gql.sign_up("author"), await gql.sign_up("snoop")
    clip = (await gql.ok(CREATE, {"input": {"prompt": "secret draft"}}, ann.token))["createClip"]
    mine = await gql.ok(CLIP, {"id": clip["id"]}, ann.token)
    assert mine["clip"]["state"] == "QUEUED" and mine["node"]["id"] == clip["id"]
    for token in (bob.token, None):
        theirs = await gql.ok(CLIP, {"id": clip["id"]}, token)
        assert theirs == {"clip": None, "node": None}
    assert await _draft_count(gql, bob.token) == 0
    for mutation in (PUBLISH, DELETE):
        code, _ = await gql.error(mutation, {"id": clip["id"]}, bob.token)
        assert code == "NOT_FOUND"
    assert (await gql.ok(CLIP, {"id": clip["id"]}, ann.token))["clip"]["state"] == "QUEUED"


async def test_only_a_draft_can_be_published(gql: GraphQLClient) -> None:
    ann = await gql.sign_up("hasty")
    clip = (await gql.ok(CREATE, {"input": {"prompt": "not rendered yet"}}, ann.token))[
        "createClip"
    ]
    code, message = await gql.error(PUBLISH, {"id": clip["id"]}, ann.token)
    assert code == "CONFLICT" and "QUEUED" in message
    code, _ = await gql.error(PUBLISH, {"id": clip["id"]})
    assert code == "UNAUTHENTICATED"
    code, _ = await gql.error(PUBLISH, {"id": encode_id("Clip", "01NOSUCH")}, ann.token)
    assert code == "NOT_FOUND"


async def test_delete_moves_any_state_to_removed(gql: GraphQLClient) -> None:
    ann = await gql.sign_up("deleter")
    clip = (await gql.ok(CREATE, {"input": {"prompt": "regret"}}, ann.token))["createClip"]
    removed = (await gql.ok(DELETE, {"id": clip["id"]}, ann.token))["deleteClip"]
    assert removed["state"] == "REMOVED" and removed["video"] is None
    again = (await gql.ok(DELETE, {"id": clip["id"]}, ann.token))["deleteClip"]
    assert again["state"] == "REMOVED"
    code, _ = await gql.error(PUBLISH, {"id": clip["id"]}, ann.token)
    assert code == "CONFLICT"
    # removed clips leave the drafts list
    assert await _draft_count(gql, ann.token) == 0


async def test_a_broker_outage_fails_clearly_and_leaves_no_clip(settings) -> None:
    broken = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    async with AsyncTestClient(app=build_app(broken)) as client:
        gql = GraphQLClient(client)
        ann = await gql.sign_up("outage")
        code, message = await gql.error(CREATE, {"input": {"prompt": "lost?"}}, ann.token)
        assert code == "INTERNAL"
        assert "render queue is unavailable" in message
        assert await _draft_count(gql, ann.token) == 0


# --- User.clips: published clips per author, top-level and nested (one statement per level)

USER_CLIPS = """query($h: String!, $first: Int, $after: String) { user(handle: $h) {
  clips(first: $first, after: $after) {
    edges { cursor node { id publishedAt } } pageInfo { hasNextPage endCursor } } } }"""
NESTED_CLIPS = """query($h: String!, $first: Int, $after: String) { user(handle: $h) {
  following { edges { node { handle
    clips(first: $first, after: $after) {
      edges { cursor node { id publishedAt } } pageInfo { hasNextPage endCursor } } } } } } }"""


async def _rendered_at(graph, author_id: str, at: int) -> str:
    """A DRAFT clip rendered at a fixed time, through the repository (no worker, no file)."""
    return await rendered_clip(graph, author_id, at, prompt="a clip for paging")


async def _published_at(graph, author_id: str, at: int) -> str:
    from graph import clips as clip_repo

    clip_id = await _rendered_at(graph, author_id, at)
    assert await clip_repo.publish(graph, author_id, clip_id, at)
    return clip_id


def decode_id_of(node_id: str) -> str:
    from resolvers.ids import decode_id

    return decode_id(node_id, "Clip")


def _raw(account) -> str:
    from resolvers.ids import decode_id

    return decode_id(account.id, "User")


async def test_nested_user_clips_cost_one_statement_per_level(
    gql: GraphQLClient, graph, services
) -> None:
    """20 users x their clips(first: 5) is one statement for the whole level, not 20."""
    from graph import users as user_repo

    query = """query($h: String!, $first: Int) { user(handle: $h) { followers(first: $first) {
      edges { node { handle clips(first: 5) {
        edges { node { id } } pageInfo { hasNextPage } } } } } } }"""
    star, viewer = await gql.sign_up("star"), await gql.sign_up("viewer")
    fans = [await gql.sign_up("fan") for _ in range(20)]
    clips_of: dict[str, list[str]] = {}
    for i, fan in enumerate(fans):
        assert await user_repo.follow(graph, _raw(fan), _raw(star), 1000 + i)
        # i % 8 clips each: none, fewer than a page, and more than one (a next page)
        published = [await _published_at(graph, _raw(fan), 100 + n) for n in range(i % 8)]
        clips_of[fan.handle] = published[::-1]  # newest first
    costs: dict[tuple[int, bool], int] = {}
    for token in (None, viewer.token):
        for first in (2, 20):
            before = services.graph.round_trips
            data = await gql.ok(query, {"h": star.handle, "first": first}, token)
            costs[first, token is None] = services.graph.round_trips - before
            edges = data["user"]["followers"]["edges"]
            assert len(edges) == first
            for edge in edges:
                node = edge["node"]
                ids = [decode_id_of(e["node"]["id"]) for e in node["clips"]["edges"]]
                assert ids == clips_of[node["handle"]][:5]
                has_next = len(clips_of[node["handle"]]) > 5
                assert node["clips"]["pageInfo"]["hasNextPage"] is has_next
    # user by handle, the star's page, the fans' clip pages; a viewer adds one statement for
    # "which of these authors block me": the same for 2 parents as for 20 (not 2 + 20)
    assert costs == {(2, True): 3, (20, True): 3, (2, False): 4, (20, False): 4}, costs


async def test_top_level_and_nested_clip_pages_agree(gql: GraphQLClient, graph) -> None:
    """The lone top-level author (ORDER BY ... LIMIT) and a nested level of two authors (the
    batched statement) page the same clips into the same edges and cursors, ties included."""
    from graph import clips as clip_repo
    from graph import users as user_repo

    star, other, hub = [await gql.sign_up(name) for name in ("star", "other", "hub")]
    times = (100, 100, 100, 200, 200)  # ties in publishedAt: the id breaks them on both paths
    star_clips = [await _published_at(graph, _raw(star), at) for at in times]
    for at in times:
        await _published_at(graph, _raw(other), at)
    for followed in (star, other):  # the hub's following: a nested level of two authors
        assert await user_repo.follow(graph, _raw(hub), _raw(followed), 300)

    pages_seen, after = [], None
    while True:
        variables = {"first": 2, "after": after}
        top = (await gql.ok(USER_CLIPS, {"h": star.handle, **variables}, hub.token))["user"]
        nested = await gql.ok(NESTED_CLIPS, {"h": hub.handle, **variables}, hub.token)
        parents = {e["node"]["handle"]: e["node"] for e in nested["user"]["following"]["edges"]}
        assert set(parents) == {star.handle, other.handle}  # two parents: the batched path
        assert parents[star.handle]["clips"] == top["clips"]
        pages_seen.append([decode_id_of(e["node"]["id"]) for e in top["clips"]["edges"]])
        if not top["clips"]["pageInfo"]["hasNextPage"]:
            break
        after = top["clips"]["pageInfo"]["endCursor"]
    expected = sorted(star_clips[3:], reverse=True) + sorted(star_clips[:3], reverse=True)
    assert [clip_id for page in pages_seen for clip_id in page] == expected
    assert len(pages_seen) == 3

    # the repository gives the same rows for one author as for that author among others (an
    # author with nothing past the cursor is absent from both)
    both = [_raw(star), _raw(other), _raw(star)]  # a repeated parent does not double its page
    for after_key in (None, (200, min(star_clips[3:])), (100, max(star_clips[:3]))):
        batched = await clip_repo.published_pages(graph, author_ids=both, after=after_key, limit=3)
        assert batched, after_key
        for author in (star, other):
            alone = await clip_repo.published_pages(
                graph, author_ids=[_raw(author)], after=after_key, limit=3
            )
            assert alone.get(_raw(author)) == batched.get(_raw(author)), (author, after_key)


async def test_nested_user_clips_show_published_clips_only_and_none_to_the_blocked(
    gql: GraphQLClient, graph
) -> None:
    from graph import clips as clip_repo
    from graph import users as user_repo

    blocker, author, hub, viewer = [
        await gql.sign_up(name) for name in ("blocker", "author", "hub", "viewer")
    ]
    shown = {}
    for account in (blocker, author):
        shown[account.handle] = await _published_at(graph, _raw(account), 200)
        await _rendered_at(graph, _raw(account), 300)  # a DRAFT: never listed
        removed = await _published_at(graph, _raw(account), 400)
        assert await clip_repo.remove(graph, _raw(account), removed, 500, "author")
        assert await user_repo.follow(graph, _raw(hub), _raw(account), 600)
    assert await user_repo.block_user(graph, _raw(blocker), _raw(viewer), 700)

    def listed(data: dict) -> dict[str, list[str]]:
        return {
            e["node"]["handle"]: [
                decode_id_of(c["node"]["id"]) for c in e["node"]["clips"]["edges"]
            ]
            for e in data["user"]["following"]["edges"]
        }

    everyone = {blocker.handle: [shown[blocker.handle]], author.handle: [shown[author.handle]]}
    for token in (None, hub.token):
        assert listed(await gql.ok(NESTED_CLIPS, {"h": hub.handle}, token)) == everyone
    nested = await gql.ok(NESTED_CLIPS, {"h": hub.handle}, viewer.token)
    assert listed(nested) == {blocker.handle: [], author.handle: [shown[author.handle]]}
    top = await gql.ok(USER_CLIPS, {"h": blocker.handle}, viewer.token)
    assert top["user"]["clips"] == {
        "edges": [],
        "pageInfo": {"hasNextPage": False, "endCursor": None},
    }
    # even its author's own User.clips lists published clips only
    own = await gql.ok(USER_CLIPS, {"h": blocker.handle}, blocker.token)
    assert [decode_id_of(e["node"]["id"]) for e in own["user"]["clips"]["edges"]] == [
        shown[blocker.handle]
    ]


async def test_user_clips_are_fresh_after_a_publish_in_the_same_document(
    gql: GraphQLClient, graph
) -> None:
    ann = await gql.sign_up("ann")
    first, second = [await _rendered_at(graph, _raw(ann), at) for at in (100, 200)]
    data = await gql.ok(
        """mutation($a: ID!, $b: ID!) {
          a: publishClip(clipId: $a) { author { clips { edges { node { id } } } } }
          b: publishClip(clipId: $b) { author { clips { edges { node { id } } } } } }""",
        {"a": encode_id("Clip", first), "b": encode_id("Clip", second)},
        ann.token,
    )
    seen = [
        {decode_id_of(e["node"]["id"]) for e in data[alias]["author"]["clips"]["edges"]}
        for alias in ("a", "b")
    ]
    assert seen == [{first}, {first, second}]
