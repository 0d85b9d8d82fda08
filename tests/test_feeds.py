"""The feeds: FOLLOWING and FOR_YOU pages, their cursors, ranking, diversity and visibility.

Clips are made PUBLISHED through the repository at fixed times (no worker, no file), as
tests/test_clips.py does. The graph is shared with every other module, so FOR_YOU checks
look at the clips made here (and at rules that hold for every clip), never at exact lists.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
import redis.asyncio as aredis
from conftest import Account, GraphQLClient, rendered_clip

from graph import clips as clip_repo
from graph import feeds as feed_repo
from resolvers import popularity
from resolvers.feeds import MIN_WINDOW_MS, RECENT_CLIPS, _next_window, diversify, rank_candidates
from resolvers.ids import decode_id, encode_id
from resolvers.users import now_ms

FEED = """query($kind: FeedKind!, $mood: String, $first: Int, $after: String) {
  feed(kind: $kind, mood: $mood, first: $first, after: $after) {
    edges { cursor node { id moods author { id handle } } }
    pageInfo { hasNextPage endCursor } } }"""
FOLLOW = "mutation($id: ID!) { follow(userId: $id) { id } }"
BLOCK = "mutation($id: ID!) { blockUser(userId: $id) { id } }"
MINUTE, HOUR = 60_000, 3_600_000


def _raw(account: Account) -> str:
    return decode_id(account.id, "User")


async def _clip(
    graph,
    author: Account,
    at: int,
    *,
    moods: list[str] | None = None,
    parent: str | None = None,
    publish: bool = True,
) -> str:
    """A clip rendered (and published) at a fixed time; its global id."""
    clip_id = await rendered_clip(
        graph,
        _raw(author),
        at,
        parent_id=decode_id(parent, "Clip") if parent else None,
        moods=moods,
        prompt="a clip for feeds",
        publish=publish,
    )
    return encode_id("Clip", clip_id)


async def _page(
    gql: GraphQLClient,
    kind: str,
    token: str | None = None,
    *,
    first: int | None = None,
    after: str | None = None,
    mood: str | None = None,
) -> dict:
    variables = {"kind": kind, "first": first, "after": after, "mood": mood}
    return (await gql.ok(FEED, variables, token))["feed"]


async def _all(
    gql: GraphQLClient, kind: str, token: str | None = None, *, first: int = 100, **kw
) -> list[dict]:
    """Every node of the feed, page after page."""
    nodes, after = [], None
    while True:
        page = await _page(gql, kind, token, first=first, after=after, **kw)
        nodes += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


def _ids(nodes: list[dict]) -> list[str]:
    return [node["id"] for node in nodes]


def _cursor(*key) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


# ---------- FOLLOWING ----------


async def test_following_is_newest_first_and_stable_while_clips_are_published(
    gql: GraphQLClient, graph
) -> None:
    viewer, ann, bob, stranger = [await gql.sign_up(p) for p in ("v", "ann", "bob", "str")]
    for author in (ann, bob):
        await gql.ok(FOLLOW, {"id": author.id}, viewer.token)
    base = now_ms() - 10 * HOUR
    older = [await _clip(graph, (ann, bob)[i % 2], base + i * MINUTE) for i in range(9)]
    await _clip(graph, stranger, base + 30 * MINUTE)  # not followed: never shown
    expected = list(reversed(older))

    first = await _page(gql, "FOLLOWING", viewer.token, first=4)
    assert _ids(e["node"] for e in first["edges"]) == expected[:4]
    # published between pages: newer than any cursor, so later pages neither repeat nor skip
    newer = [await _clip(graph, ann, base + (40 + i) * MINUTE) for i in range(3)]
    rest, after = [], first["pageInfo"]["endCursor"]
    while after:
        page = await _page(gql, "FOLLOWING", viewer.token, first=2, after=after)
        rest += _ids(e["node"] for e in page["edges"])
        after = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None
    assert rest == expected[4:]
    # a fresh first page shows them
    assert _ids(await _all(gql, "FOLLOWING", viewer.token)) == list(reversed(newer)) + expected


async def test_following_needs_a_viewer(gql: GraphQLClient) -> None:
    code, message = await gql.error(FEED, {"kind": "FOLLOWING"})
    assert code == "UNAUTHENTICATED" and message


async def test_following_never_shows_drafts_removed_or_blocked_clips(
    gql: GraphQLClient, graph
) -> None:
    viewer, ann, bob, cat = [await gql.sign_up(p) for p in ("v", "ann", "bob", "cat")]
    for author in (ann, bob, cat):
        await gql.ok(FOLLOW, {"id": author.id}, viewer.token)
    at = now_ms() - HOUR
    shown = await _clip(graph, ann, at)
    await _clip(graph, ann, at + 1, publish=False)  # a draft
    removed = await _clip(graph, ann, at + 2)
    assert await clip_repo.remove(graph, _raw(ann), decode_id(removed, "Clip"), at + 3, "author")
    await _clip(graph, bob, at + 4)
    await _clip(graph, cat, at + 5)
    await gql.ok(BLOCK, {"id": viewer.id}, bob.token)  # bob blocks the viewer
    await gql.ok(BLOCK, {"id": cat.id}, viewer.token)  # the viewer blocks cat
    assert _ids(await _all(gql, "FOLLOWING", viewer.token)) == [shown]


async def test_first_is_capped_at_100_and_defaults_to_20(gql: GraphQLClient, graph) -> None:
    viewer, ann = await gql.sign_up("v"), await gql.sign_up("prolific")
    await gql.ok(FOLLOW, {"id": ann.id}, viewer.token)
    base = now_ms() - 20 * HOUR
    for i in range(101):
        await _clip(graph, ann, base + i)
    page = await _page(gql, "FOLLOWING", viewer.token, first=1000)
    assert len(page["edges"]) == 100 and page["pageInfo"]["hasNextPage"]
    assert len((await _page(gql, "FOLLOWING", viewer.token))["edges"]) == 20
    rest = await _page(gql, "FOLLOWING", viewer.token, after=page["pageInfo"]["endCursor"])
    assert len(rest["edges"]) == 1 and not rest["pageInfo"]["hasNextPage"]


# ---------- FOR_YOU ----------


async def test_for_you_ranks_connected_clips_first(gql: GraphQLClient, graph) -> None:
    viewer, ann, remixer, friend, stranger = [
        await gql.sign_up(p) for p in ("v", "ann", "remixer", "fof", "stranger")
    ]
    await gql.ok(FOLLOW, {"id": ann.id}, viewer.token)
    await gql.ok(FOLLOW, {"id": friend.id}, ann.token)  # a friend of a friend
    now = now_ms()
    # the unconnected clip is the newest: connection outranks freshness
    by_ann = await _clip(graph, ann, now - 5 * HOUR)
    remix = await _clip(graph, remixer, now - 4 * HOUR, parent=by_ann)
    by_friend = await _clip(graph, friend, now - 2 * HOUR)
    by_stranger = await _clip(graph, stranger, now - MINUTE)
    own = await _clip(graph, viewer, now - MINUTE)

    ids = _ids(await _all(gql, "FOR_YOU", viewer.token))
    assert set(ids[:2]) == {by_ann, remix}  # followed people and remixes of their clips
    assert ids[2] == by_friend
    assert by_stranger in ids and ids.index(by_stranger) > 2
    assert own not in ids  # not the viewer's own clips


async def test_for_you_prefers_fresher_clips_among_strangers(gql: GraphQLClient, graph) -> None:
    old_author, new_author = await gql.sign_up("old"), await gql.sign_up("new")
    now = now_ms()
    old = await _clip(graph, old_author, now - 30 * HOUR, moods=["gaming"])
    new = await _clip(graph, new_author, now - 2 * MINUTE, moods=["gaming"])
    for token in (None, (await gql.sign_up("nofollows")).token):  # anonymous, and no follows
        ids = _ids(await _all(gql, "FOR_YOU", token, mood="gaming"))
        assert new in ids and old in ids and ids.index(new) < ids.index(old)


async def test_for_you_ranks_strangers_by_likes_completions_and_remixes(
    gql: GraphQLClient, graph
) -> None:
    like = "mutation($id: ID!) { likeClip(clipId: $id) { likeCount } }"
    view = """mutation($id: ID!, $done: Boolean!) {
      recordView(clipId: $id, watchedMs: 1000, completed: $done) { id } }"""
    authors = [await gql.sign_up(f"pop{i}") for i in range(4)]
    fans = [await gql.sign_up("fan") for _ in range(3)]
    at = now_ms() - HOUR  # one age for all: only engagement tells them apart
    plain, liked, watched, remixed = [
        await _clip(graph, author, at, moods=["gaming"]) for author in authors
    ]
    for fan in fans:
        await gql.ok(like, {"id": liked}, fan.token)  # 1 + 3 likes = 4
        await gql.ok(view, {"id": watched, "done": True}, fan.token)  # 1 + 10 x 1.0 = 11
        await gql.ok(view, {"id": remixed, "done": False}, fan.token)
    for fan in fans[:2]:  # 1 + 20 x 2/3 remix rate (no completions) = 14.3
        await _clip(graph, fan, at, parent=remixed, moods=["art"])
    ids = _ids(await _all(gql, "FOR_YOU", mood="gaming"))
    ranks = [ids.index(clip) for clip in (remixed, watched, liked, plain)]
    assert ranks == sorted(ranks), ranks


async def test_for_you_is_stable_while_clips_are_published(gql: GraphQLClient, graph) -> None:
    viewer = await gql.sign_up("v")
    authors = [await gql.sign_up(f"a{i}") for i in range(5)]
    for author in authors:
        await gql.ok(FOLLOW, {"id": author.id}, viewer.token)
    base = now_ms() - 3 * HOUR
    older = {
        await _clip(graph, a, base + i * MINUTE + j)
        for i in range(3)
        for j, a in enumerate(authors)
    }
    first = await _page(gql, "FOR_YOU", viewer.token, first=5)
    seen = _ids(e["node"] for e in first["edges"])
    # new clips by followed people would rank at the very top of a fresh ranking
    newer = {await _clip(graph, a, now_ms() - 1) for a in authors}
    after = first["pageInfo"]["endCursor"]
    while after:
        page = await _page(gql, "FOR_YOU", viewer.token, first=7, after=after)
        seen += _ids(e["node"] for e in page["edges"])
        after = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None
    assert len(seen) == len(set(seen)), "a clip was shown twice"
    assert older <= set(seen), "an older clip was skipped"
    assert not newer & set(seen)
    assert seen[:15] and set(seen[:15]) == older  # connected first
    fresh = _ids(await _all(gql, "FOR_YOU", viewer.token))
    assert newer <= set(fresh[:20])


def test_diversify_keeps_two_per_author_in_any_ten() -> None:
    rows = [{"id": f"a{i}", "authorId": "a"} for i in range(5)]
    rows += [{"id": f"o{i}", "authorId": f"o{i}"} for i in range(8)]
    out = [row["id"] for row in diversify(rows)]
    assert out == ["a0", "a1", "o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7", "a2", "a3"]
    # too few other authors: what cannot be placed is left out
    assert [r["id"] for r in diversify(rows[:5])] == ["a0", "a1"]
    assert diversify(rows) == diversify(list(rows))  # deterministic


def _assert_diverse(nodes: list[dict]) -> None:
    authors = [node["author"]["id"] for node in nodes]
    for start in range(max(1, len(authors) - 9)):
        window = authors[start : start + 10]
        assert max(window.count(a) for a in window) <= 2, (start, window)


async def test_for_you_shows_at_most_two_clips_per_author_in_any_ten(
    gql: GraphQLClient, graph
) -> None:
    viewer, ann, bob = await gql.sign_up("v"), await gql.sign_up("ann"), await gql.sign_up("bob")
    await gql.ok(FOLLOW, {"id": ann.id}, viewer.token)
    await gql.ok(FOLLOW, {"id": bob.id}, viewer.token)
    now = now_ms()
    prolific = {await _clip(graph, a, now - i * MINUTE) for i in range(6) for a in (ann, bob)}
    friends = [await gql.sign_up(f"f{i}") for i in range(18)]
    for friend in friends:  # friends of friends fill the windows between them
        await gql.ok(FOLLOW, {"id": friend.id}, ann.token)
        await _clip(graph, friend, now - 2 * HOUR)
    for first in (3, 10, 100):  # the rule holds across page boundaries, whatever the size
        nodes = await _all(gql, "FOR_YOU", viewer.token, first=first)
        _assert_diverse(nodes)
        assert prolific <= set(_ids(nodes))
    _assert_diverse(await _all(gql, "FOR_YOU"))


async def test_for_you_never_shows_drafts_removed_or_blocked_clips(
    gql: GraphQLClient, graph
) -> None:
    viewer, ann, blocker, blocked, late = [
        await gql.sign_up(p) for p in ("v", "ann", "blocker", "blocked", "late")
    ]
    for author in (ann, blocker, blocked, late):
        await gql.ok(FOLLOW, {"id": author.id}, viewer.token)
    now = now_ms()
    shown = await _clip(graph, ann, now - MINUTE)
    draft = await _clip(graph, ann, now - 2 * MINUTE, publish=False)
    removed = await _clip(graph, ann, now - 3 * MINUTE)
    assert await clip_repo.remove(graph, _raw(ann), decode_id(removed, "Clip"), now, "author")
    by_blocker = await _clip(graph, blocker, now - 4 * MINUTE)
    by_blocked = await _clip(graph, blocked, now - 5 * MINUTE)
    by_late = await _clip(graph, late, now - 6 * HOUR)  # ranked last of the connected clips
    await gql.ok(BLOCK, {"id": viewer.id}, blocker.token)
    await gql.ok(BLOCK, {"id": blocked.id}, viewer.token)

    first = await _page(gql, "FOR_YOU", viewer.token, first=1)
    assert _ids(e["node"] for e in first["edges"]) == [shown]
    # a block made after the ranking still hides the blocker's clips on later pages
    await gql.ok(BLOCK, {"id": viewer.id}, late.token)
    rest, after = [], first["pageInfo"]["endCursor"]
    while after:
        page = await _page(gql, "FOR_YOU", viewer.token, after=after, first=100)
        rest += _ids(e["node"] for e in page["edges"])
        after = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None
    hidden = {draft, removed, by_blocker, by_blocked, by_late}
    assert not hidden & set(rest)
    everyone = set(_ids(await _all(gql, "FOR_YOU")))  # anonymous: published clips only
    assert shown in everyone and not {draft, removed} & everyone


# ---------- both ----------


async def test_mood_filters_either_feed(gql: GraphQLClient, graph) -> None:
    viewer, ann = await gql.sign_up("v"), await gql.sign_up("ann")
    await gql.ok(FOLLOW, {"id": ann.id}, viewer.token)
    now = now_ms()
    funny = await _clip(graph, ann, now - MINUTE, moods=["funny", "animals"])
    calm = await _clip(graph, ann, now - 2 * MINUTE, moods=["relaxing"])
    for kind in ("FOLLOWING", "FOR_YOU"):
        nodes = await _all(gql, kind, viewer.token, mood="Funny")
        assert funny in _ids(nodes) and calm not in _ids(nodes)
        assert all("funny" in node["moods"] for node in nodes)
        code, message = await gql.error(FEED, {"kind": kind, "mood": "grumpy"}, viewer.token)
        assert code == "BAD_USER_INPUT" and "unknown mood" in message


@pytest.mark.parametrize("kind", ["FOLLOWING", "FOR_YOU"])
async def test_bad_arguments_are_bad_user_input(gql: GraphQLClient, graph, kind: str) -> None:
    viewer, other, ann = [await gql.sign_up(p) for p in ("v", "other", "ann")]
    await gql.ok(FOLLOW, {"id": ann.id}, viewer.token)
    for i in range(3):
        await _clip(graph, ann, now_ms() - HOUR + i)
    following = await _page(gql, "FOLLOWING", viewer.token, first=1)
    for_you = await _page(gql, "FOR_YOU", viewer.token, first=1)
    own, foreign = (following, for_you) if kind == "FOLLOWING" else (for_you, following)
    bad = [
        "%%%",
        _cursor(1, "x"),
        _cursor("F", "x", 1),
        _cursor("Y", 1, "x"),
        _cursor("Y", "token", -1),
        _cursor("Q", 1, "x"),
        foreign["pageInfo"]["endCursor"],
    ]
    for after in bad:
        code, message = await gql.error(FEED, {"kind": kind, "after": after}, viewer.token)
        assert code == "BAD_USER_INPUT", (after, message)
    code, message = await gql.error(FEED, {"kind": kind, "first": -1}, viewer.token)
    assert code == "BAD_USER_INPUT" and "first" in message
    if kind == "FOR_YOU":
        mine = own["pageInfo"]["endCursor"]
        for variables, token, fragment in [
            ({"after": mine}, other.token, "another viewer"),
            ({"after": mine, "mood": "funny"}, viewer.token, "mood"),
            ({"after": _cursor("Y", "gone", 3)}, viewer.token, "expired"),
        ]:
            code, message = await gql.error(FEED, {"kind": kind, **variables}, token)
            assert code == "BAD_USER_INPUT" and fragment in message


@pytest.mark.parametrize("kind", ["FOLLOWING", "FOR_YOU"])
async def test_a_feed_page_costs_constant_statements(
    gql: GraphQLClient, graph, services, kind: str
) -> None:
    query = """query($kind: FeedKind!, $first: Int) { feed(kind: $kind, first: $first) {
      edges { node { id prompt moods publishedAt remixOf { id } author { handle followerCount
      viewerFollows } } } } }"""
    viewer = await gql.sign_up("v")
    authors = [await gql.sign_up(f"a{i}") for i in range(10)]
    now = now_ms()
    for author in authors:
        await gql.ok(FOLLOW, {"id": author.id}, viewer.token)
        parent = await _clip(graph, author, now - HOUR)
        await _clip(graph, author, now - MINUTE, parent=parent)
    await _page(gql, "FOR_YOU")  # the popularity index is built (once per process)
    costs = {}
    for first in (2, 20):
        before = services.graph.round_trips
        data = await gql.ok(query, {"kind": kind, "first": first}, viewer.token)
        costs[first] = services.graph.round_trips - before
        assert len(data["feed"]["edges"]) == first
    # the page, the parents (when not on the page) and their authors' blocks, the authors,
    # their counts, viewerFollows, the clips' cameos: never one per clip; FOR_YOU adds its
    # candidates and, once a minute per viewer, the viewer's follows and friends of friends
    assert max(costs.values()) <= (7 if kind == "FOLLOWING" else 9), costs


# ---------- FOR_YOU candidates and the popularity index ----------


@pytest.fixture
async def redis(settings) -> AsyncIterator[aredis.Redis]:
    """The app's Redis on the tests' own event loop (the app's runs in the client's thread)."""
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


def test_rank_candidates_orders_by_tier_then_decayed_popularity() -> None:
    now = 100 * HOUR

    def row(clip_id, author, at, likes=0, parent_author=None):
        return {
            "id": clip_id,
            "authorId": author,
            "parentAuthorId": parent_author,
            "publishedAt": at,
            "likes": likes,
            "views": 0,
            "completions": 0,
            "remixes": 0,
        }

    rows = [
        row("stranger-hot", "s1", now - MINUTE, likes=50),
        row("stranger-old-hot", "s2", now - 24 * HOUR, likes=50),  # 50 x 2^-4 < 4 x 2^0
        row("stranger-fresh", "s3", now - MINUTE, likes=3),
        row("fof", "f1", now - 10 * HOUR),
        row("followed-old", "a", now - 50 * HOUR),
        row("remix-of-followed", "r", now - HOUR, parent_author="a"),
        row("future", "a", now + 1),
    ]
    ranked = [r["id"] for r in rank_candidates(rows, {"a"}, {"a", "f1"}, now)]
    assert ranked == [
        "remix-of-followed",
        "followed-old",
        "fof",
        "stranger-hot",
        "stranger-fresh",
        "stranger-old-hot",
    ]


async def test_likes_and_views_keep_the_popularity_index_current(
    gql: GraphQLClient, graph, redis
) -> None:
    like = "mutation($id: ID!) { likeClip(clipId: $id) { likeCount } }"
    unlike = "mutation($id: ID!) { unlikeClip(clipId: $id) { likeCount } }"
    view = """mutation($id: ID!) {
      recordView(clipId: $id, watchedMs: 1000, completed: true) { id } }"""
    author, fan = await gql.sign_up("author"), await gql.sign_up("fan")
    clip = await _clip(graph, author, now_ms() - HOUR, moods=["gaming"])
    raw = decode_id(clip, "Clip")
    await _page(gql, "FOR_YOU")  # the index exists

    async def scores() -> tuple[float | None, float | None]:
        everyone = await redis.zscore(popularity.index_key(None), raw)
        gaming = await redis.zscore(popularity.index_key("gaming"), raw)
        assert everyone == gaming  # one entry per mood, and one over every mood
        return everyone, gaming

    await gql.ok(like, {"id": clip}, fan.token)
    liked, _ = await scores()
    await gql.ok(view, {"id": clip}, fan.token)
    viewed, _ = await scores()
    await gql.ok(unlike, {"id": clip}, fan.token)
    unliked, _ = await scores()
    assert liked is not None and viewed > unliked > liked  # 1+1+10 > 1+10 > 1+1
    published_at = (await clip_repo.clips_by_ids(graph, [raw]))[raw]["publishedAt"]
    expected = math.log2(popularity.popularity(0, 1, 1, 0)) + (
        published_at / popularity.HALF_LIFE_MS
    )
    assert unliked == pytest.approx(expected)


async def test_popular_clips_older_than_the_window_are_candidates(
    gql: GraphQLClient, graph, redis
) -> None:
    """The statement reads the window's newest clips and the popular ids it is given, and
    checks the popular ones like the others: drafts, removed clips, the viewer's own and
    blocked authors' clips never come back."""
    viewer, ann, blocker = [await gql.sign_up(p) for p in ("v", "ann", "blocker")]
    old = now_ms() - 200 * HOUR
    popular = await _clip(graph, ann, old)
    draft = await _clip(graph, ann, old, publish=False)
    removed = await _clip(graph, ann, old)
    fan = await gql.sign_up("fan")
    like = "mutation($id: ID!) { likeClip(clipId: $id) { id } }"
    for clip in (popular, removed):  # both in the index, then one removed
        await gql.ok(like, {"id": clip}, fan.token)
    assert await clip_repo.remove(graph, _raw(ann), decode_id(removed, "Clip"), old, "author")
    own = await _clip(graph, viewer, old)
    blocked = await _clip(graph, blocker, old)
    await gql.ok(BLOCK, {"id": viewer.id}, blocker.token)
    ids = [decode_id(c, "Clip") for c in (popular, draft, removed, own, blocked)]
    now = now_ms()
    rows = await feed_repo.for_you_candidates(
        graph, _raw(viewer), None, now=now, since=now, recent=10, popular=ids
    )
    assert [row["id"] for row in rows] == [ids[0]]
    assert rows[0]["authorId"] == _raw(ann) and rows[0]["inWindow"] == 0

    # the likes put both in the index; a rebuild (every engaged published clip) drops the
    # removed one, and the feed shows the popular one although it is 200 hours old
    indexed = await redis.zrange(popularity.index_key(None), 0, -1)
    assert ids[0] in indexed and ids[2] in indexed
    assert await popularity.rebuild(SimpleNamespace(graph=graph, redis=redis)) > 0
    indexed = await redis.zrange(popularity.index_key(None), 0, -1)
    assert ids[0] in indexed and ids[2] not in indexed
    assert popular in _ids(await _all(gql, "FOR_YOU", viewer.token))


def test_the_recent_window_follows_the_publishing_rate() -> None:
    now = 1000 * HOUR
    # a window holding many times RECENT_CLIPS shrinks to twice the span of the newest ones
    assert _next_window(None, 100 * RECENT_CLIPS, now - HOUR, now) == 2 * HOUR
    assert _next_window(24 * HOUR, 5 * RECENT_CLIPS, now - HOUR, now) == 2 * HOUR
    # never below the minimum
    assert _next_window(HOUR, 10 * RECENT_CLIPS, now - 1, now) == MIN_WINDOW_MS
    # too few clips: wider next time, then no bound at all
    assert _next_window(HOUR, RECENT_CLIPS - 1, now - HOUR, now) == 4 * HOUR
    assert _next_window(60 * 24 * HOUR, 1, now - HOUR, now) is None
    # about right: unchanged
    assert _next_window(HOUR, 2 * RECENT_CLIPS, now - HOUR, now) == HOUR
    assert _next_window(None, 2 * RECENT_CLIPS, now - HOUR, now) is None


async def test_following_read_from_a_recent_window_is_the_same_feed(
    gql: GraphQLClient, graph, monkeypatch
) -> None:
    """On a large graph FOLLOWING reads a page from the recent window FOR_YOU sized, and from
    all the viewer's follows when the window holds less than a page: the pages are the same."""
    from resolvers import feeds as feed_resolvers

    viewer, ann, bob = [await gql.sign_up(p) for p in ("v", "ann", "bob")]
    for author in (ann, bob):
        await gql.ok(FOLLOW, {"id": author.id}, viewer.token)
    now = now_ms()
    recent = [await _clip(graph, (ann, bob)[i % 2], now - i * MINUTE) for i in range(1, 6)]
    old = [await _clip(graph, ann, now - (30 + i) * HOUR) for i in range(3)]
    expected = recent + old

    # straight from the statements: a full window page, and a short one that falls back
    rows = await feed_repo.following_page(graph, _raw(viewer), None, None, 3, now - HOUR)
    assert [encode_id("Clip", r["clip"]["id"]) for r in rows] == expected[:3]
    rows = await feed_repo.following_page(graph, _raw(viewer), None, None, 7, now - HOUR)
    assert [encode_id("Clip", r["clip"]["id"]) for r in rows] == expected[:7]

    # through the feed, page after page (each cursor moves the window down with it)
    monkeypatch.setitem(feed_resolvers._windows, None, 2 * HOUR)
    monkeypatch.setitem(feed_resolvers._sized_at, None, time.monotonic())
    assert _ids(await _all(gql, "FOLLOWING", viewer.token, first=2)) == expected


async def test_following_sizes_its_window_where_no_for_you_ranking_did(
    gql: GraphQLClient, graph, monkeypatch
) -> None:
    """In a process where no FOR_YOU ranking sized the recent window, the first FOLLOWING page
    sizes it by counting the newest clips (the narrowest MIN_WINDOW_MS x 4^k holding
    RECENT_CLIPS, here 3); the pages are the same as without a window."""
    from resolvers import feeds as feed_resolvers

    monkeypatch.setattr(feed_resolvers, "RECENT_CLIPS", 3)
    monkeypatch.setattr(feed_resolvers, "_windows", {})
    monkeypatch.setattr(feed_resolvers, "_sized_at", {})
    viewer, ann = [await gql.sign_up(p) for p in ("v", "ann")]
    await gql.ok(FOLLOW, {"id": ann.id}, viewer.token)
    now = now_ms()
    recent = [await _clip(graph, ann, now - i * MINUTE) for i in range(1, 5)]
    old = [await _clip(graph, ann, now - (30 + i) * HOUR) for i in range(2)]
    # page after page: the window moves down with the cursor, the last pages fall back
    assert _ids(await _all(gql, "FOLLOWING", viewer.token, first=2)) == recent + old
    assert feed_resolvers._windows == {None: MIN_WINDOW_MS}  # 4 clips in the last 15 min
    # a mood has a window of its own
    gaming = await _clip(graph, ann, now - 40 * HOUR, moods=["gaming"])
    assert _ids(await _all(gql, "FOLLOWING", viewer.token, mood="gaming")) == [gaming]
    assert "gaming" in feed_resolvers._windows
