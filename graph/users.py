"""Accounts and the follow graph: statements and the repository functions that run them."""

from __future__ import annotations

from typing import Any

from graph.driver import ConstraintViolation, Cypher, GraphDriver, Row

__all__ = [
    "block_user",
    "create_user",
    "credentials_by_handle",
    "follow",
    "follow_counts",
    "follow_pages",
    "relation_between",
    "unfollow",
    "users_by_handles",
    "users_by_ids",
    "viewer_follows",
]

_USER_FIELDS = "{.id, .handle, .displayName, .createdAt}"

CREATE_USER = Cypher(
    """
OPTIONAL MATCH (taken:User {handle: $handle})
WITH count(taken) AS taken WHERE taken = 0
CREATE (u:User {id: $id, handle: $handle, displayName: $displayName,
                passwordHash: $passwordHash, role: 'user', createdAt: $now,
                followerCount: 0, followingCount: 0})
RETURN u {.id, .handle, .displayName, .createdAt} AS user
"""
)

CREDENTIALS_BY_HANDLE = Cypher(
    """
MATCH (u:User {handle: $handle})
RETURN u.id AS id, u.passwordHash AS passwordHash
"""
)

USERS_BY_IDS = Cypher(
    """
UNWIND $ids AS id
MATCH (u:User {id: id})
RETURN u {.id, .handle, .displayName, .createdAt} AS user
"""
)

USERS_BY_HANDLES = Cypher(
    """
UNWIND $handles AS handle
MATCH (u:User {handle: handle})
RETURN u {.id, .handle, .displayName, .createdAt} AS user
"""
)

# stored on the node, kept exact by FOLLOW, UNFOLLOW and BLOCK: counting the edges of a
# heavily followed author took most of a feed page. Every user has them (CREATE_USER, the
# seed, the start-up backfill in graph.schema_setup); the coalesce only guards a node written
# by hand.
FOLLOW_COUNTS_BY_IDS = Cypher(
    """
UNWIND $ids AS id
MATCH (u:User {id: id})
RETURN id, coalesce(u.followerCount, 0) AS followers,
       coalesce(u.followingCount, 0) AS following
"""
)

VIEWER_FOLLOWS_BY_IDS = Cypher(
    """
MATCH (v:User {id: $viewerId})
UNWIND $ids AS id
RETURN id, size([(v)-[:FOLLOWS]->(t:User {id: id}) | t.id]) > 0 AS follows
"""
)

# guarded write: no edge unless both exist, they differ, and neither blocks the other; the
# counts move only when MERGE really created the edge (a repeated follow changes nothing),
# under the locks taken first, so concurrent follows stay exact
FOLLOW = Cypher(
    """
MATCH (a:User {id: $viewerId})
MATCH (b:User {id: $targetId})
WHERE a <> b
// both write locks first (Neo4j), so a block racing this follow is seen by one of them
SET a._lock = true, b._lock = true REMOVE a._lock, b._lock
WITH a, b
OPTIONAL MATCH (a)-[k:BLOCKS]-(b)
WITH a, b, count(k) AS blocks
WHERE blocks = 0
MERGE (a)-[f:FOLLOWS]->(b)
ON CREATE SET f.at = $now,
              a.followingCount = coalesce(a.followingCount, 0) + 1,
              b.followerCount = coalesce(b.followerCount, 0) + 1
RETURN b.id AS id
"""
)

# no edge, no row: a repeated unfollow changes nothing. Both locks first, as in FOLLOW, so
# of two racing unfollows only the one that still finds the edge deletes it and decrements
UNFOLLOW = Cypher(
    """
MATCH (a:User {id: $viewerId})
MATCH (b:User {id: $targetId})
SET a._lock = true, b._lock = true REMOVE a._lock, b._lock
WITH a, b
MATCH (a)-[f:FOLLOWS]->(b)
DELETE f
SET a.followingCount = coalesce(a.followingCount, 0) - 1,
    b.followerCount = coalesce(b.followerCount, 0) - 1
RETURN b.id AS id
"""
)

BLOCK = Cypher(
    """
MATCH (a:User {id: $viewerId})
MATCH (b:User {id: $targetId})
WHERE a <> b
SET a._lock = true, b._lock = true REMOVE a._lock, b._lock
MERGE (a)-[k:BLOCKS]->(b)
ON CREATE SET k.at = $now
WITH a, b
OPTIONAL MATCH (a)-[ab:FOLLOWS]->(b)
WITH a, b, collect(ab) AS ab
OPTIONAL MATCH (b)-[ba:FOLLOWS]->(a)
WITH a, b, ab, collect(ba) AS ba
FOREACH (edge IN ab | DELETE edge)
FOREACH (edge IN ba | DELETE edge)
// each side loses exactly the edges deleted here (none on a repeated block)
SET a.followingCount = coalesce(a.followingCount, 0) - size(ab),
    b.followerCount = coalesce(b.followerCount, 0) - size(ab),
    b.followingCount = coalesce(b.followingCount, 0) - size(ba),
    a.followerCount = coalesce(a.followerCount, 0) - size(ba)
RETURN b.id AS id
"""
)

RELATION_BETWEEN = Cypher(
    """
OPTIONAL MATCH (b:User {id: $targetId})
OPTIONAL MATCH (a:User {id: $viewerId})
OPTIONAL MATCH (b)-[byTarget:BLOCKS]->(a)
OPTIONAL MATCH (a)-[byViewer:BLOCKS]->(b)
RETURN b IS NOT NULL AS exists,
       count(byTarget) > 0 AS blockedByTarget,
       count(byViewer) > 0 AS blocksTarget
"""
)

# One user's page (the top-level connection, the common case): the engine keeps only the top
# $limit edges while sorting, whatever the user's follower count.
FOLLOWERS_PAGE = Cypher(
    """
MATCH (:User {id: $userId})<-[f:FOLLOWS]-(x:User)
WHERE $afterAt IS NULL OR f.at < $afterAt OR (f.at = $afterAt AND x.id < $afterId)
WITH f.at AS at, x
ORDER BY at DESC, x.id DESC
LIMIT $limit
RETURN x {.id, .handle, .displayName, .createdAt} AS user, at
"""
)

FOLLOWING_PAGE = Cypher(
    """
MATCH (:User {id: $userId})-[f:FOLLOWS]->(x:User)
WHERE $afterAt IS NULL OR f.at < $afterAt OR (f.at = $afterAt AND x.id < $afterId)
WITH f.at AS at, x
ORDER BY at DESC, x.id DESC
LIMIT $limit
RETURN x {.id, .handle, .displayName, .createdAt} AS user, at
"""
)

# One page per parent for many parents at once (a nested connection costs one statement per
# level). FalkorDB has no `CALL (x) { ... LIMIT }` and Neo4j's linter deprecates the importing
# WITH form, so each parent's edges are ordered, collected as (time, node) and sliced; only the
# kept rows are projected. Cost: every edge past the cursor of every parent is sorted and
# collected, so it serves nested levels only (parents already paged, one statement per level),
# never a lone top-level parent. It relies on collect() keeping the order of the ORDER BY
# before it: what both engines do, though Neo4j does not formally promise it.
FOLLOWERS_PAGES = Cypher(
    """
UNWIND $userIds AS userId
MATCH (:User {id: userId})<-[f:FOLLOWS]-(x:User)
WHERE $afterAt IS NULL OR f.at < $afterAt OR (f.at = $afterAt AND x.id < $afterId)
WITH userId, f.at AS at, x
ORDER BY at DESC, x.id DESC
WITH userId, collect({at: at, x: x})[..$limit] AS kept
UNWIND kept AS row
WITH userId, row.at AS at, row.x AS x
RETURN userId, x {.id, .handle, .displayName, .createdAt} AS user, at
"""
)

FOLLOWING_PAGES = Cypher(
    """
UNWIND $userIds AS userId
MATCH (:User {id: userId})-[f:FOLLOWS]->(x:User)
WHERE $afterAt IS NULL OR f.at < $afterAt OR (f.at = $afterAt AND x.id < $afterId)
WITH userId, f.at AS at, x
ORDER BY at DESC, x.id DESC
WITH userId, collect({at: at, x: x})[..$limit] AS kept
UNWIND kept AS row
WITH userId, row.at AS at, row.x AS x
RETURN userId, x {.id, .handle, .displayName, .createdAt} AS user, at
"""
)


async def create_user(
    db: GraphDriver, *, id: str, handle: str, display_name: str, password_hash: str, now: int
) -> Row | None:
    """The new user, or None when the handle is taken."""
    try:
        rows = await db.write(
            CREATE_USER,
            {
                "id": id,
                "handle": handle,
                "displayName": display_name,
                "passwordHash": password_hash,
                "now": now,
            },
        )
    except ConstraintViolation:  # a concurrent sign-up took the handle first
        return None
    return rows[0]["user"] if rows else None


async def credentials_by_handle(db: GraphDriver, handle: str) -> Row | None:
    rows = await db.read(CREDENTIALS_BY_HANDLE, {"handle": handle})
    return rows[0] if rows else None


async def users_by_ids(db: GraphDriver, ids: list[str]) -> dict[str, Row]:
    rows = await db.read(USERS_BY_IDS, {"ids": ids})
    return {row["user"]["id"]: row["user"] for row in rows}


async def users_by_handles(db: GraphDriver, handles: list[str]) -> dict[str, Row]:
    rows = await db.read(USERS_BY_HANDLES, {"handles": handles})
    return {row["user"]["handle"]: row["user"] for row in rows}


async def follow_counts(db: GraphDriver, ids: list[str]) -> dict[str, tuple[int, int]]:
    rows = await db.read(FOLLOW_COUNTS_BY_IDS, {"ids": ids})
    return {row["id"]: (row["followers"], row["following"]) for row in rows}


async def viewer_follows(db: GraphDriver, viewer_id: str, ids: list[str]) -> dict[str, bool]:
    rows = await db.read(VIEWER_FOLLOWS_BY_IDS, {"viewerId": viewer_id, "ids": ids})
    return {row["id"]: row["follows"] for row in rows}


async def follow(db: GraphDriver, viewer_id: str, target_id: str, now: int) -> bool:
    rows = await db.write(FOLLOW, {"viewerId": viewer_id, "targetId": target_id, "now": now})
    return bool(rows)


async def unfollow(db: GraphDriver, viewer_id: str, target_id: str) -> bool:
    rows = await db.write(UNFOLLOW, {"viewerId": viewer_id, "targetId": target_id})
    return bool(rows)


async def block_user(db: GraphDriver, viewer_id: str, target_id: str, now: int) -> bool:
    rows = await db.write(BLOCK, {"viewerId": viewer_id, "targetId": target_id, "now": now})
    return bool(rows)


async def relation_between(db: GraphDriver, viewer_id: str, target_id: str) -> Row:
    rows = await db.read(RELATION_BETWEEN, {"viewerId": viewer_id, "targetId": target_id})
    return rows[0]


async def follow_pages(
    db: GraphDriver,
    *,
    user_ids: list[str],
    direction: str,
    after: tuple[Any, str] | None,
    limit: int,
) -> dict[str, list[Row]]:
    """One keyset page of followers or following per user, newest edge first: rows of
    {user, at}, by user id (a user with no rows on the page is absent)."""
    unique_ids = list(dict.fromkeys(user_ids))  # a repeated id would double its page
    after_at, after_id = after if after else (None, None)
    params: dict[str, Any] = {"afterAt": after_at, "afterId": after_id, "limit": limit}
    if len(unique_ids) == 1:  # ORDER BY ... LIMIT: only the top rows are kept, never all
        statement = FOLLOWERS_PAGE if direction == "followers" else FOLLOWING_PAGE
        rows = await db.read(statement, {**params, "userId": unique_ids[0]})
        return {unique_ids[0]: rows} if rows else {}
    statement = FOLLOWERS_PAGES if direction == "followers" else FOLLOWING_PAGES
    rows = await db.read(statement, {**params, "userIds": unique_ids})
    pages: dict[str, list[Row]] = {}
    for row in rows:  # UNWIND keeps each user's collected order
        pages.setdefault(row["userId"], []).append({"user": row["user"], "at": row["at"]})
    return pages
