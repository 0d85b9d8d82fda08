"""The follow graph: follow, unfollow, block, counts, lists and their keyset pages."""

from __future__ import annotations

import asyncio

from conftest import Account, GraphQLClient

from graph.driver import Cypher

FOLLOW = "mutation($id: ID!) { follow(userId: $id) { handle followerCount viewerFollows } }"
UNFOLLOW = "mutation($id: ID!) { unfollow(userId: $id) { handle followerCount viewerFollows } }"
BLOCK = "mutation($id: ID!) { blockUser(userId: $id) { handle } }"
FOLLOWERS = """query($h: String!, $first: Int, $after: String) { user(handle: $h) {
  followerCount followingCount
  followers(first: $first, after: $after) {
    edges { cursor node { handle viewerFollows } } pageInfo { hasNextPage endCursor } } } }"""
FOLLOWING = """query($h: String!) { user(handle: $h) {
  following { edges { node { handle } } } } }"""


async def test_follow_and_unfollow_update_counts_and_viewer_follows(gql: GraphQLClient) -> None:
    ann, bob = await gql.sign_up("ann"), await gql.sign_up("bob")
    followed = (await gql.ok(FOLLOW, {"id": bob.id}, ann.token))["follow"]
    assert followed == {"handle": bob.handle, "followerCount": 1, "viewerFollows": True}
    # following twice is idempotent
    assert (await gql.ok(FOLLOW, {"id": bob.id}, ann.token))["follow"]["followerCount"] == 1
    data = await gql.ok(FOLLOWERS, {"h": bob.handle}, ann.token)
    assert data["user"]["followerCount"] == 1
    assert [e["node"]["handle"] for e in data["user"]["followers"]["edges"]] == [ann.handle]
    following = await gql.ok(FOLLOWING, {"h": ann.handle})
    assert [e["node"]["handle"] for e in following["user"]["following"]["edges"]] == [bob.handle]
    # anonymous viewers never "follow"
    anonymous = await gql.ok(
        "query($h: String!) { user(handle: $h) { viewerFollows } }", {"h": bob.handle}
    )
    assert anonymous["user"]["viewerFollows"] is False

    unfollowed = (await gql.ok(UNFOLLOW, {"id": bob.id}, ann.token))["unfollow"]
    assert unfollowed == {"handle": bob.handle, "followerCount": 0, "viewerFollows": False}


async def test_follow_errors_carry_contract_codes_and_write_nothing(gql: GraphQLClient) -> None:
    ann = await gql.sign_up("ann")
    code, _ = await gql.error(FOLLOW, {"id": ann.id})
    assert code == "UNAUTHENTICATED"
    code, _ = await gql.error(FOLLOW, {"id": ann.id}, ann.token)
    assert code == "BAD_USER_INPUT"  # yourself
    code, _ = await gql.error(FOLLOW, {"id": "not-an-id!"}, ann.token)
    assert code == "BAD_USER_INPUT"
    from resolvers.ids import encode_id

    code, _ = await gql.error(FOLLOW, {"id": encode_id("User", "01NOSUCHUSER")}, ann.token)
    assert code == "NOT_FOUND"
    code, _ = await gql.error(FOLLOW, {"id": encode_id("Clip", "01NOSUCHCLIP")}, ann.token)
    assert code == "NOT_FOUND"
    data = await gql.ok(FOLLOWERS, {"h": ann.handle})
    assert data["user"]["followingCount"] == 0 and data["user"]["followerCount"] == 0


async def test_block_removes_follows_and_forbids_following(gql: GraphQLClient) -> None:
    ann, bob = await gql.sign_up("ann"), await gql.sign_up("bob")
    await gql.ok(FOLLOW, {"id": bob.id}, ann.token)
    await gql.ok(FOLLOW, {"id": ann.id}, bob.token)
    await gql.ok(BLOCK, {"id": ann.id}, bob.token)
    code, message = await gql.error(FOLLOW, {"id": bob.id}, ann.token)
    assert code == "FORBIDDEN" and "blocked you" in message
    code, message = await gql.error(FOLLOW, {"id": ann.id}, bob.token)
    assert code == "FORBIDDEN"
    for account in (ann, bob):
        data = await gql.ok(FOLLOWERS, {"h": account.handle})
        assert data["user"]["followerCount"] == 0 and data["user"]["followingCount"] == 0


# a node as an older version wrote it: no stored counts (tests only)
FORGET_COUNTS = Cypher(
    """
UNWIND $ids AS id
MATCH (u:User {id: id})
REMOVE u.followerCount, u.followingCount
"""
)
STORED_COUNTS = Cypher(
    """
UNWIND $ids AS id
MATCH (u:User {id: id})
RETURN id, u.followerCount AS followers, u.followingCount AS following
"""
)
COUNTS_AND_EDGES = """query($h: String!) { user(handle: $h) {
  followerCount followingCount
  followers(first: 100) { edges { node { handle } } }
  following(first: 100) { edges { node { handle } } } } }"""


async def _counts_equal_edges(gql: GraphQLClient, accounts: list[Account]) -> dict[str, tuple]:
    """(followerCount, followingCount) per handle, each checked against the edges listed."""
    found = {}
    for account in accounts:
        user = (await gql.ok(COUNTS_AND_EDGES, {"h": account.handle}))["user"]
        edges = (len(user["followers"]["edges"]), len(user["following"]["edges"]))
        assert (user["followerCount"], user["followingCount"]) == edges, account.handle
        found[account.handle] = edges
    return found


async def test_stored_counts_stay_exact_under_concurrent_follows(gql: GraphQLClient) -> None:
    """Through the HTTP endpoint at once: twelve fans follow a star twice each while the star
    follows half of them and the fans follow each other; then repeated unfollows, follows and
    a block race. The stored counts always equal the edges."""
    star = await gql.sign_up("star")
    fans = [await gql.sign_up("fan") for _ in range(12)]
    everyone = [star, *fans]
    await asyncio.gather(
        *(gql.ok(FOLLOW, {"id": star.id}, fan.token) for fan in fans for _ in range(2)),
        *(gql.ok(FOLLOW, {"id": fan.id}, star.token) for fan in fans[:6]),
        *(gql.ok(FOLLOW, {"id": fans[(i + 1) % 12].id}, fan.token) for i, fan in enumerate(fans)),
    )
    counts = await _counts_equal_edges(gql, everyone)
    assert counts[star.handle] == (12, 6)
    for i, fan in enumerate(fans):  # its successor's follow, and the star's for the first six
        assert counts[fan.handle] == (1 + (i < 6), 2), fan.handle
    # half unfollow twice at once, the other half follow again, the star unfollows everyone
    await asyncio.gather(
        *(gql.ok(UNFOLLOW, {"id": star.id}, fan.token) for fan in fans[:6] for _ in range(2)),
        *(gql.ok(FOLLOW, {"id": star.id}, fan.token) for fan in fans[6:]),
        *(gql.ok(UNFOLLOW, {"id": fan.id}, star.token) for fan in fans for _ in range(2)),
    )
    counts = await _counts_equal_edges(gql, everyone)
    assert counts[star.handle] == (6, 0)
    for i, fan in enumerate(fans):
        assert counts[fan.handle] == (1, 1 + (i >= 6)), fan.handle
    # follows and blocks racing between the same pairs: whatever wins, counts match edges
    await asyncio.gather(
        *(gql.ok(BLOCK, {"id": fan.id}, star.token) for fan in fans[4:8]),
        *(gql.raw(FOLLOW, {"id": star.id}, fan.token) for fan in fans[:8]),
        *(gql.raw(FOLLOW, {"id": fan.id}, star.token) for fan in fans[8:]),
    )
    counts = await _counts_equal_edges(gql, everyone)
    assert counts[star.handle] == (8, 4)  # fans 0-3 and 8-11 follow; 4-7 are blocked


async def test_block_decrements_both_directions_once(gql: GraphQLClient, graph) -> None:
    from resolvers.ids import decode_id

    ann, bob, cat = [await gql.sign_up(name) for name in ("ann", "bob", "cat")]
    for a, b in ((ann, bob), (bob, ann), (cat, bob), (bob, cat)):
        await gql.ok(FOLLOW, {"id": b.id}, a.token)
    await gql.ok(BLOCK, {"id": bob.id}, ann.token)
    await gql.ok(BLOCK, {"id": bob.id}, ann.token)  # again: nothing left to take away
    counts = await _counts_equal_edges(gql, [ann, bob, cat])
    assert counts == {ann.handle: (0, 0), bob.handle: (1, 1), cat.handle: (1, 1)}
    ids = [decode_id(a.id, "User") for a in (ann, bob, cat)]
    stored = {r["id"]: (r["followers"], r["following"]) for r in await graph.read(
        STORED_COUNTS, {"ids": ids})}  # fmt: skip
    assert stored == dict(zip(ids, [(0, 0), (1, 1), (1, 1)], strict=True))


async def test_start_up_backfill_fills_missing_counts_once(gql: GraphQLClient, graph) -> None:
    """A data folder from before the stored counts: its users get them from their edges, once;
    a second run writes nothing."""
    from graph.schema_setup import backfill
    from resolvers.ids import decode_id

    star, ann, bob = [await gql.sign_up(name) for name in ("star", "ann", "bob")]
    for fan in (ann, bob):
        await gql.ok(FOLLOW, {"id": star.id}, fan.token)
    await gql.ok(FOLLOW, {"id": ann.id}, star.token)
    ids = [decode_id(a.id, "User") for a in (star, ann, bob)]
    await graph.write(FORGET_COUNTS, {"ids": ids})
    stored = await graph.read(STORED_COUNTS, {"ids": ids})
    assert {(r["followers"], r["following"]) for r in stored} == {(None, None)}
    # reads fall back to 0 rather than failing on such a node
    assert (await gql.ok(FOLLOWERS, {"h": star.handle}))["user"]["followerCount"] == 0
    assert await backfill(graph) >= 3
    stored = {r["id"]: (r["followers"], r["following"]) for r in await graph.read(
        STORED_COUNTS, {"ids": ids})}  # fmt: skip
    assert stored == dict(zip(ids, [(2, 1), (1, 1), (0, 1)], strict=True))
    assert await backfill(graph) == 0  # idempotent: every user has its counts now
    await _counts_equal_edges(gql, [star, ann, bob])


async def _fans(gql: GraphQLClient, star: Account, count: int) -> list[str]:
    handles = []
    for _ in range(count):
        fan = await gql.sign_up("fan")
        await gql.ok(FOLLOW, {"id": star.id}, fan.token)
        handles.append(fan.handle)
    return handles


async def test_followers_pages_are_keyset_and_stable(gql: GraphQLClient) -> None:
    star = await gql.sign_up("star")
    fans = await _fans(gql, star, 5)
    page = (await gql.ok(FOLLOWERS, {"h": star.handle, "first": 2}))["user"]["followers"]
    assert [e["node"]["handle"] for e in page["edges"]] == fans[::-1][:2]
    assert page["pageInfo"]["hasNextPage"] is True
    # a new follower arrives between pages: the next page neither repeats nor skips
    await _fans(gql, star, 1)
    seen = [e["node"]["handle"] for e in page["edges"]]
    after = page["pageInfo"]["endCursor"]
    while after:
        page = (await gql.ok(FOLLOWERS, {"h": star.handle, "first": 2, "after": after}))["user"][
            "followers"
        ]
        seen += [e["node"]["handle"] for e in page["edges"]]
        after = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None
    assert seen == fans[::-1]


async def test_page_size_and_cursor_are_checked(gql: GraphQLClient) -> None:
    star = await gql.sign_up("star")
    await _fans(gql, star, 2)
    for bad_cursor in ("garbage", "WzFd", "eyJhIjoxfQ", "WyJ4IiwgMV0"):
        code, message = await gql.error(
            FOLLOWERS, {"h": star.handle, "first": 1, "after": bad_cursor}
        )
        assert (code, message) == ("BAD_USER_INPUT", "invalid cursor"), bad_cursor
    code, _ = await gql.error(FOLLOWERS, {"h": star.handle, "first": -1})
    assert code == "BAD_USER_INPUT"
    # first is capped at 100, not refused
    page = (await gql.ok(FOLLOWERS, {"h": star.handle, "first": 1000}))["user"]["followers"]
    assert len(page["edges"]) == 2 and page["pageInfo"]["hasNextPage"] is False
    empty = (await gql.ok(FOLLOWERS, {"h": star.handle, "first": 0}))["user"]["followers"]
    assert empty["edges"] == [] and empty["pageInfo"]["hasNextPage"] is True


async def test_user_lookup_by_handle_and_node(gql: GraphQLClient) -> None:
    ann = await gql.sign_up("ann")
    found = await gql.ok(
        "query($h: String!) { user(handle: $h) { id } }", {"h": ann.handle.upper()}
    )
    assert found["user"]["id"] == ann.id
    node = await gql.ok(
        "query($id: ID!) { node(id: $id) { id ... on User { handle } } }", {"id": ann.id}
    )
    assert node["node"] == {"id": ann.id, "handle": ann.handle}
    assert (await gql.ok('{ user(handle: "no such handle!") { id } }'))["user"] is None
    code, _ = await gql.error('{ node(id: "%%%") { id } }')
    assert code == "BAD_USER_INPUT"


async def test_a_page_of_users_with_counts_costs_constant_round_trips(
    gql: GraphQLClient, services
) -> None:
    """DataLoaders batch per field: the cost of a page does not grow with its size."""
    query = """query($h: String!, $first: Int) { user(handle: $h) { followers(first: $first) {
      edges { node { handle followerCount followingCount viewerFollows } } } } }"""
    star = await gql.sign_up("star")
    await _fans(gql, star, 20)
    viewer = await gql.sign_up("viewer")
    costs = {}
    for first in (2, 20):
        before = services.graph.round_trips
        data = await gql.ok(query, {"h": star.handle, "first": first}, viewer.token)
        assert len(data["user"]["followers"]["edges"]) == first
        costs[first] = services.graph.round_trips - before
    # user by handle, the page, the counts, viewerFollows: four, whatever the page size
    assert costs == {2: 4, 20: 4}


async def test_counts_are_fresh_after_each_mutation_in_one_document(gql: GraphQLClient) -> None:
    ann, bob = await gql.sign_up("ann"), await gql.sign_up("bob")
    data = await gql.ok(
        """mutation($id: ID!) { a: follow(userId: $id) { followerCount viewerFollows }
                                b: unfollow(userId: $id) { followerCount viewerFollows } }""",
        {"id": bob.id},
        ann.token,
    )
    assert data["a"] == {"followerCount": 1, "viewerFollows": True}
    assert data["b"] == {"followerCount": 0, "viewerFollows": False}


async def test_out_of_range_cursor_values_are_bad_input(gql: GraphQLClient) -> None:
    import base64
    import json

    star = await gql.sign_up("star")
    for key in ([10**30, "x"], [1, "\ud800"], [1, "y" * 65]):
        cursor = base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")
        code, _ = await gql.error(FOLLOWERS, {"h": star.handle, "after": cursor})
        assert code == "BAD_USER_INPUT", key


async def test_nested_follower_pages_cost_one_statement_per_level(
    gql: GraphQLClient, services
) -> None:
    """20 users x their followers(first: 5) is one statement for the whole level, not 20."""
    query = """query($h: String!, $first: Int) { user(handle: $h) { followers(first: $first) {
      edges { node { handle followerCount
        followers(first: 5) { edges { node { handle followerCount } }
                              pageInfo { hasNextPage } }
        following(first: 5) { edges { node { handle } } } } } } } }"""
    star = await gql.sign_up("star")
    fans = [await gql.sign_up("fan") for _ in range(20)]
    for fan in fans:
        await gql.ok(FOLLOW, {"id": star.id}, fan.token)
    # each fan gets followers of its own: the i-th fan is followed by the next six fans
    for i, fan in enumerate(fans):
        for other in fans[i + 1 : i + 7]:
            await gql.ok(FOLLOW, {"id": fan.id}, other.token)
    costs = {}
    for first in (2, 20):
        before = services.graph.round_trips
        data = await gql.ok(query, {"h": star.handle, "first": first})
        costs[first] = services.graph.round_trips - before
        edges = data["user"]["followers"]["edges"]
        assert len(edges) == first
    # user by handle, the star's page, the counts (one batch, or one per level), the fans'
    # followers pages, the fans' following pages: at most six, whatever the page size (one
    # statement per parent would be 2 + 2 x 20 here)
    assert max(costs.values()) <= 6, costs
    by_handle = {e["node"]["handle"]: e["node"] for e in edges}
    followers_of = {fan.handle: fans[i + 1 : i + 7] for i, fan in enumerate(fans)}
    for handle, node in by_handle.items():
        expected = [f.handle for f in followers_of[handle]][::-1][:5]  # newest first
        assert [e["node"]["handle"] for e in node["followers"]["edges"]] == expected
        assert node["followers"]["pageInfo"]["hasNextPage"] is (len(followers_of[handle]) > 5)
        assert node["followerCount"] == len(followers_of[handle])
        i = next(i for i, fan in enumerate(fans) if fan.handle == handle)
        follows = {star.handle, *(f.handle for f in fans[max(0, i - 6) : i])}
        following = [e["node"]["handle"] for e in node["following"]["edges"]]
        assert set(following) <= follows and len(following) == min(5, len(follows))


NESTED_FOLLOWERS = """query($h: String!, $first: Int, $after: String) { user(handle: $h) {
  following { edges { node { handle
    followers(first: $first, after: $after) {
      edges { cursor node { handle viewerFollows } }
      pageInfo { hasNextPage endCursor } } } } } } }"""


async def test_top_level_and_nested_follower_pages_agree(gql: GraphQLClient, graph) -> None:
    """The lone top-level parent (ORDER BY ... LIMIT) and a nested level of two parents (the
    batched statement) page the same followers into the same edges and cursors, ties included."""
    from graph import users as user_repo
    from resolvers.ids import decode_id

    star, other, hub = [await gql.sign_up(name) for name in ("star", "other", "hub")]
    fans = [await gql.sign_up("fan") for _ in range(5)]
    raw = {a.handle: decode_id(a.id, "User") for a in (star, other, hub, *fans)}
    # fixed follow times with ties, so the id tie-break is exercised on both paths
    for fan, at in zip(fans, (100, 100, 100, 200, 200), strict=True):
        assert await user_repo.follow(graph, raw[fan.handle], raw[star.handle], at)
        assert await user_repo.follow(graph, raw[fan.handle], raw[other.handle], at)
    # the hub follows both: its following is a nested level of two parents
    for followed in (star, other):
        assert await user_repo.follow(graph, raw[hub.handle], raw[followed.handle], 300)

    def top_level(after: str | None) -> dict:
        return {"h": star.handle, "first": 2, "after": after}

    pages_seen, after = [], None
    while True:
        top = (await gql.ok(FOLLOWERS, top_level(after), fans[0].token))["user"]["followers"]
        nested_data = await gql.ok(
            NESTED_FOLLOWERS, {"h": hub.handle, "first": 2, "after": after}, fans[0].token
        )
        parents = {
            e["node"]["handle"]: e["node"] for e in nested_data["user"]["following"]["edges"]
        }
        assert set(parents) == {star.handle, other.handle}  # two parents: the batched path
        assert parents[star.handle]["followers"] == top
        pages_seen.append([e["node"]["handle"] for e in top["edges"]])
        if not top["pageInfo"]["hasNextPage"]:
            break
        after = top["pageInfo"]["endCursor"]
    by_id_desc = sorted(fans[:3], key=lambda a: raw[a.handle], reverse=True)
    newest_first = sorted(fans[3:], key=lambda a: raw[a.handle], reverse=True) + by_id_desc
    expected = [hub.handle, *(a.handle for a in newest_first)]  # the hub follows at 300
    assert [h for page in pages_seen for h in page] == expected
    assert len(pages_seen) == 3

    # the repository gives the same rows for one parent as for that parent among others
    for direction, user in (("followers", star), ("following", fans[0])):
        for after_key in (None, (200, raw[fans[4].handle])):
            alone = await user_repo.follow_pages(
                graph, user_ids=[raw[user.handle]], direction=direction, after=after_key, limit=3
            )
            batched = await user_repo.follow_pages(
                graph,
                user_ids=[raw[user.handle], raw[hub.handle]],
                direction=direction,
                after=after_key,
                limit=3,
            )
            assert alone[raw[user.handle]] == batched[raw[user.handle]], (direction, after_key)
