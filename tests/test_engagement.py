"""Likes and views: likeClip, unlikeClip, recordView, likeCount, viewerHasLiked and stats."""

from __future__ import annotations

import asyncio
import itertools

from conftest import Account, GraphQLClient, rendered_clip

from resolvers.engagement import VIEW_SLACK_MS
from resolvers.ids import decode_id, encode_id

LIKE = "mutation($id: ID!) { likeClip(clipId: $id) { likeCount viewerHasLiked } }"
UNLIKE = "mutation($id: ID!) { unlikeClip(clipId: $id) { likeCount viewerHasLiked } }"
VIEW = """mutation($id: ID!, $ms: Int!, $done: Boolean!) {
  recordView(clipId: $id, watchedMs: $ms, completed: $done) {
    stats { views completions completionRate rewatches remixRate } } }"""
CLIP = """query($id: ID!) { clip(id: $id) { likeCount viewerHasLiked
  stats { views completions completionRate rewatches remixRate } } }"""
DURATION_MS = 1000
_times = itertools.count(1_700_000_000_000, 1000)


async def _clip(graph, author: Account, *, publish: bool = True, parent: str | None = None) -> str:
    """A rendered clip (PUBLISHED, or a DRAFT) at a fixed time, through the repository (no
    worker, no file); its global ID."""
    clip_id = await rendered_clip(
        graph,
        decode_id(author.id, "User"),
        next(_times),
        parent_id=decode_id(parent, "Clip") if parent else None,
        prompt="a clip to like",
        publish=publish,
    )
    return encode_id("Clip", clip_id)


async def _view(gql: GraphQLClient, who: Account, clip: str, ms: int, done: bool) -> dict:
    data = await gql.ok(VIEW, {"id": clip, "ms": ms, "done": done}, who.token)
    return data["recordView"]["stats"]


async def _stats(gql: GraphQLClient, clip: str, token: str | None = None) -> dict:
    return (await gql.ok(CLIP, {"id": clip}, token))["clip"]


async def test_like_and_unlike_are_idempotent(gql: GraphQLClient, graph) -> None:
    author, ann, bob = [x async for x in _accounts(gql, 3)]
    clip = await _clip(graph, author)
    assert (await gql.ok(LIKE, {"id": clip}, ann.token))["likeClip"] == {
        "likeCount": 1,
        "viewerHasLiked": True,
    }
    again = (await gql.ok(LIKE, {"id": clip}, ann.token))["likeClip"]
    assert again == {"likeCount": 1, "viewerHasLiked": True}  # one LIKED edge, counted once
    assert (await gql.ok(LIKE, {"id": clip}, bob.token))["likeClip"]["likeCount"] == 2
    assert (await gql.ok(UNLIKE, {"id": clip}, ann.token))["unlikeClip"] == {
        "likeCount": 1,
        "viewerHasLiked": False,
    }
    assert (await gql.ok(UNLIKE, {"id": clip}, ann.token))["unlikeClip"] == {
        "likeCount": 1,
        "viewerHasLiked": False,
    }
    assert (await _stats(gql, clip, bob.token))["viewerHasLiked"] is True
    anonymous = await _stats(gql, clip)
    assert anonymous["likeCount"] == 1 and anonymous["viewerHasLiked"] is False
    # the author may like their own clip like anyone
    assert (await gql.ok(LIKE, {"id": clip}, author.token))["likeClip"]["likeCount"] == 2


async def _accounts(gql: GraphQLClient, n: int):
    for i in range(n):
        yield await gql.sign_up(f"eng{i}")


async def test_like_state_is_fresh_after_each_mutation_in_one_document(
    gql: GraphQLClient, graph
) -> None:
    author, ann = [x async for x in _accounts(gql, 2)]
    clip = await _clip(graph, author)
    data = await gql.ok(
        """mutation($id: ID!) {
          a: likeClip(clipId: $id) { likeCount viewerHasLiked }
          b: unlikeClip(clipId: $id) { likeCount viewerHasLiked }
          c: likeClip(clipId: $id) { likeCount viewerHasLiked } }""",
        {"id": clip},
        ann.token,
    )
    assert data == {
        "a": {"likeCount": 1, "viewerHasLiked": True},
        "b": {"likeCount": 0, "viewerHasLiked": False},
        "c": {"likeCount": 1, "viewerHasLiked": True},
    }


async def test_views_completions_and_rewatches(gql: GraphQLClient, graph) -> None:
    author, ann, bob = [x async for x in _accounts(gql, 3)]
    clip = await _clip(graph, author)
    empty = (await _stats(gql, clip))["stats"]
    assert empty == {
        "views": 0,
        "completions": 0,
        "completionRate": 0.0,
        "rewatches": 0,
        "remixRate": 0.0,
    }
    await _view(gql, ann, clip, 300, False)
    await _view(gql, ann, clip, 0, False)  # not a rewatch: ann had not completed it yet
    assert (await _view(gql, ann, clip, DURATION_MS, True))["rewatches"] == 0
    # from here on ann has completed it: each further view of hers is a rewatch
    stats = await _view(gql, ann, clip, DURATION_MS + VIEW_SLACK_MS, True)
    assert stats == {
        "views": 4,
        "completions": 2,
        "completionRate": 0.5,
        "rewatches": 1,
        "remixRate": 0.0,
    }
    stats = await _view(gql, bob, clip, 500, False)
    assert (stats["views"], stats["completions"], stats["rewatches"]) == (5, 2, 1)
    assert stats["completionRate"] == 2 / 5
    # anyone reads the same stats; they are the clip's, not the viewer's
    assert (await _stats(gql, clip))["stats"] == stats


async def test_remix_rate_counts_direct_published_remixes_the_viewer_may_see(
    gql: GraphQLClient, graph
) -> None:
    author, remixer, blocker, viewer = [x async for x in _accounts(gql, 4)]
    clip = await _clip(graph, author)
    child = await _clip(graph, remixer, parent=clip)
    await _clip(graph, remixer, parent=child)  # a grandchild: not a direct remix
    await _clip(graph, remixer, parent=clip, publish=False)  # a draft remix: not counted
    await _clip(graph, blocker, parent=clip)
    for who in (author, remixer, viewer, blocker):
        await _view(gql, who, clip, 100, False)
    # two direct published remixes over four views
    assert (await _stats(gql, clip, viewer.token))["stats"]["remixRate"] == 0.5
    assert (await _stats(gql, clip))["stats"]["remixRate"] == 0.5
    # the blocker's remix is hidden from the blocked viewer, in counts too
    await gql.ok(
        "mutation($id: ID!) { blockUser(userId: $id) { id } }", {"id": viewer.id}, blocker.token
    )
    assert (await _stats(gql, clip, viewer.token))["stats"]["remixRate"] == 0.25
    assert (await _stats(gql, clip, author.token))["stats"]["remixRate"] == 0.5


async def test_engagement_needs_a_viewer(gql: GraphQLClient, graph) -> None:
    author = await gql.sign_up("author")
    clip = await _clip(graph, author)
    for query, variables in (
        (LIKE, {"id": clip}),
        (UNLIKE, {"id": clip}),
        (VIEW, {"id": clip, "ms": 10, "done": False}),
    ):
        code, _ = await gql.error(query, variables)
        assert code == "UNAUTHENTICATED"
    assert (await _stats(gql, clip))["stats"]["views"] == 0  # anonymous views are not counted


async def test_bad_input_is_refused_and_writes_nothing(gql: GraphQLClient, graph) -> None:
    author, ann = [x async for x in _accounts(gql, 2)]
    clip = await _clip(graph, author)
    unknown = encode_id("Clip", "01NOSUCHCLIP0000000000000")
    for query in (LIKE, UNLIKE):
        assert (await gql.error(query, {"id": "%%%"}, ann.token))[0] == "BAD_USER_INPUT"
        assert (await gql.error(query, {"id": unknown}, ann.token))[0] == "NOT_FOUND"
        assert (await gql.error(query, {"id": ann.id}, ann.token))[0] == "NOT_FOUND"
    for variables, expected in (
        ({"id": "%%%", "ms": 10, "done": False}, "BAD_USER_INPUT"),
        ({"id": unknown, "ms": 10, "done": False}, "NOT_FOUND"),
        ({"id": clip, "ms": -1, "done": False}, "BAD_USER_INPUT"),
        ({"id": clip, "ms": DURATION_MS + VIEW_SLACK_MS + 1, "done": True}, "BAD_USER_INPUT"),
        ({"id": clip, "ms": 2**31 - 1, "done": True}, "BAD_USER_INPUT"),
    ):
        code, message = await gql.error(VIEW, variables, ann.token)
        assert code == expected, (variables, message)
    code, message = await gql.error(VIEW, {"id": clip, "ms": 10**12, "done": False}, ann.token)
    assert code in ("BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"), message  # not an Int
    state = await _stats(gql, clip, ann.token)
    assert state["likeCount"] == 0 and state["stats"]["views"] == 0


async def test_only_published_clips_the_viewer_may_see_can_be_liked_or_viewed(
    gql: GraphQLClient, graph
) -> None:
    author, ann = [x async for x in _accounts(gql, 2)]
    draft = await _clip(graph, author, publish=False)
    mutations = (
        (LIKE, {"id": draft}),
        (UNLIKE, {"id": draft}),
        (VIEW, {"id": draft, "ms": 10, "done": False}),
    )
    for query, variables in mutations:
        # someone else's draft does not exist for ann; the author is told why
        assert (await gql.error(query, variables, ann.token))[0] == "NOT_FOUND"
        code, message = await gql.error(query, variables, author.token)
        assert code == "CONFLICT" and "DRAFT" in message, message

    removed = await _clip(graph, author)
    await gql.ok(LIKE, {"id": removed}, ann.token)
    await gql.ok(
        "mutation($id: ID!) { deleteClip(clipId: $id) { state } }", {"id": removed}, author.token
    )
    for query, variables in mutations:
        variables = {**variables, "id": removed}
        assert (await gql.error(query, variables, ann.token))[0] == "NOT_FOUND"
        assert (await gql.error(query, variables, author.token))[0] == "NOT_FOUND"


async def test_a_viewer_blocked_by_the_author_cannot_like_or_view(
    gql: GraphQLClient, graph
) -> None:
    author, ann = [x async for x in _accounts(gql, 2)]
    clip = await _clip(graph, author)
    await gql.ok(LIKE, {"id": clip}, ann.token)
    await gql.ok(
        "mutation($id: ID!) { blockUser(userId: $id) { id } }", {"id": ann.id}, author.token
    )
    for query, variables in (
        (LIKE, {"id": clip}),
        (UNLIKE, {"id": clip}),
        (VIEW, {"id": clip, "ms": 10, "done": False}),
    ):
        assert (await gql.error(query, variables, ann.token))[0] == "NOT_FOUND"
    seen_by_author = await _stats(gql, clip, author.token)
    assert seen_by_author["likeCount"] == 1 and seen_by_author["stats"]["views"] == 0
    # the blocked viewer cannot see the clip at all
    assert (await gql.ok(CLIP, {"id": clip}, ann.token))["clip"] is None


async def test_a_page_of_clips_with_engagement_costs_constant_round_trips(
    gql: GraphQLClient, graph, services
) -> None:
    """likeCount and stats' counters come with the clip's row; viewerHasLiked and the remixes
    behind remixRate are one batch each, whatever the page size."""
    author, viewer = [x async for x in _accounts(gql, 2)]
    clips = [await _clip(graph, author) for _ in range(20)]
    for clip in clips[::2]:
        await gql.ok(LIKE, {"id": clip}, viewer.token)
        await _view(gql, viewer, clip, 100, True)
    await _clip(graph, viewer, parent=clips[0])
    query = """query($h: String!, $first: Int) { user(handle: $h) { clips(first: $first) {
      edges { node { id likeCount viewerHasLiked
        stats { views completions completionRate rewatches remixRate } } } } } }"""
    costs = {}
    for first in (2, 20):
        before = services.graph.round_trips
        data = await gql.ok(query, {"h": author.handle, "first": first}, viewer.token)
        costs[first] = services.graph.round_trips - before
        nodes = {e["node"]["id"]: e["node"] for e in data["user"]["clips"]["edges"]}
        assert len(nodes) == first
    # user by handle, blocks, the page, viewerHasLiked, remix counts: five, whatever the size
    assert costs == {2: 5, 20: 5}, costs
    liked = set(clips[::2])
    for clip_id, node in nodes.items():
        assert node["viewerHasLiked"] is (clip_id in liked)
        assert node["likeCount"] == (clip_id in liked)
        assert node["stats"]["views"] == node["stats"]["completions"] == (clip_id in liked)
    assert nodes[clips[0]]["stats"]["remixRate"] == 1.0


async def test_counters_stay_exact_under_concurrent_requests(gql: GraphQLClient, graph) -> None:
    """Twenty viewers like (twice each) and view one clip at the same time through the HTTP
    endpoint; then half of them unlike at once. Every count is exact."""
    author = await gql.sign_up("author")
    clip = await _clip(graph, author)
    viewers = [x async for x in _accounts(gql, 20)]
    await asyncio.gather(
        *(gql.ok(LIKE, {"id": clip}, v.token) for v in viewers for _ in range(2)),
        *(_view(gql, v, clip, DURATION_MS, True) for v in viewers),
        *(_view(gql, v, clip, 10, False) for v in viewers),
    )
    state = await _stats(gql, clip)
    assert state["likeCount"] == 20
    stats = state["stats"]
    assert (stats["views"], stats["completions"], stats["completionRate"]) == (40, 20, 0.5)
    # whether a viewer's short view came before or after the full one decides a rewatch
    assert 0 <= stats["rewatches"] <= 20
    await asyncio.gather(
        *(gql.ok(UNLIKE, {"id": clip}, v.token) for v in viewers[:10]),
        *(_view(gql, v, clip, 10, False) for v in viewers),
    )
    state = await _stats(gql, clip)
    assert state["likeCount"] == 10
    # every viewer had completed it by now: each of these twenty views is a rewatch
    assert state["stats"]["views"] == 60 and state["stats"]["rewatches"] == stats["rewatches"] + 20
    likes = await asyncio.gather(*(_stats(gql, clip, v.token) for v in viewers))
    assert [x["viewerHasLiked"] for x in likes] == [False] * 10 + [True] * 10
