"""A user's own data: what `exportMyData` archives, and the last step of `deleteAccount`.

The export reads only what the user wrote or what was decided about their likeness: their
profile, follows and blocks, every clip they posted (any state) with the cameos it featured
and those owners' decisions, their cameos with the grants they gave and every use of them.
Never a password hash, a key, a token or a reference file (see docs/graph-model.md).

Account deletion ends with TOMBSTONE: the user node stays (clips, lineage and audit entries
keep pointing at an id) but holds nothing personal any more: no handle anyone can sign in
with or look up, no display name, no password, no roles, no follows, blocks or likes.
"""

from __future__ import annotations

from graph.driver import Cypher, GraphDriver, Row

__all__ = [
    "EXPORT_PAGE",
    "cameo_export",
    "clip_export_page",
    "profile_export",
    "tombstone",
]

EXPORT_PAGE = 200  # clips per statement while an archive is written

PROFILE_EXPORT = Cypher(
    """
MATCH (u:User {id: $userId})
OPTIONAL MATCH (u)-[f:FOLLOWS]->(x:User)
WITH u, collect(CASE WHEN x IS NULL THEN null ELSE {handle: x.handle, at: f.at} END) AS following
OPTIONAL MATCH (u)-[b:BLOCKS]->(y:User)
WITH u, following,
     collect(CASE WHEN y IS NULL THEN null ELSE {handle: y.handle, at: b.at} END) AS blocks
RETURN u {.id, .handle, .displayName, .createdAt, .followerCount, .followingCount,
          .roles} AS profile,
       following, blocks
"""
)

# one page of the user's clips in id order (ULIDs: creation order), with what they featured
CLIP_EXPORT_PAGE = Cypher(
    """
MATCH (:User {id: $userId})-[:POSTED]->(c:Clip)
WHERE $afterId IS NULL OR c.id > $afterId
WITH c
ORDER BY c.id
LIMIT $limit
OPTIONAL MATCH (c)-[:REMIX_OF]->(p:Clip)
OPTIONAL MATCH (c)-[a:FEATURES]->(m:Cameo)
WITH c, p,
     collect(CASE WHEN m IS NULL THEN null
             ELSE {cameoId: m.id, approval: a.approval, decidedAt: a.decidedAt} END) AS cameos
RETURN c {.id, .prompt, .moods, .state, .createdAt, .updatedAt, .publishedAt, .removedAt,
          .removedBy, .withdrawnAt, .durationS, .videoKey, .sha256, .videoDurationMs, .width,
          .height, .fps, .hasAudio, .sizeBytes, .failureReason, .likeCount,
          .viewCount} AS clip,
       p.id AS remixOf, cameos
ORDER BY c.id
"""
)

# the user's cameos (a deleted one too: its decisions are theirs), grants given, uses
CAMEO_EXPORT = Cypher(
    """
MATCH (:User {id: $userId})-[:OWNS]->(m:Cameo)
OPTIONAL MATCH (m)-[g:GRANTED_TO]->(x:User)
WITH m,
     collect(CASE WHEN x IS NULL THEN null
             ELSE {grantId: g.grantId, grantee: x.handle, at: g.at, expiresAt: g.expiresAt,
                   revokedAt: g.revokedAt} END) AS grants
OPTIONAL MATCH (author:User)-[:POSTED]->(c:Clip)-[a:FEATURES]->(m)
WITH m, grants,
     collect(CASE WHEN c IS NULL THEN null
             ELSE {clipId: c.id, author: author.handle, state: c.state, createdAt: c.createdAt,
                   approval: a.approval, decidedAt: a.decidedAt} END) AS uses
RETURN m {.id, .state, .audience, .restrictions, .createdAt, .verifiedAt,
          .deletedAt} AS cameo,
       grants, uses
ORDER BY m.id
"""
)

# the last step of deleting an account (the cameo and the clips went first): every follow,
# block and like is removed with the counts they moved, and the node keeps nothing personal.
# Both ends' locks first, as the follow statements take them, so the counts stay exact.
TOMBSTONE = Cypher(
    """
MATCH (u:User {id: $userId})
SET u._lock = true REMOVE u._lock
WITH u
OPTIONAL MATCH (u)-[f:FOLLOWS]->(x:User)
WITH u, collect(f) AS out, collect(x) AS followed
FOREACH (x IN followed | SET x.followerCount = coalesce(x.followerCount, 0) - 1)
FOREACH (edge IN out | DELETE edge)
WITH u
OPTIONAL MATCH (y:User)-[f:FOLLOWS]->(u)
WITH u, collect(f) AS incoming, collect(y) AS followers
FOREACH (y IN followers | SET y.followingCount = coalesce(y.followingCount, 0) - 1)
FOREACH (edge IN incoming | DELETE edge)
WITH u
OPTIONAL MATCH (u)-[b:BLOCKS]-(:User)
WITH u, collect(b) AS blocks
FOREACH (edge IN blocks | DELETE edge)
WITH u
OPTIONAL MATCH (u)-[l:LIKED]->(c:Clip)
WITH u, collect(l) AS likes, collect(c) AS liked
FOREACH (c IN liked | SET c.likeCount = coalesce(c.likeCount, 0) - 1)
FOREACH (edge IN likes | DELETE edge)
WITH u
OPTIONAL MATCH (u)-[:FILED]->(r:Report)
WITH u, collect(r) AS reports
FOREACH (r IN reports | SET r.note = null)
SET u.handle = $tombstoneHandle, u.displayName = 'Deleted account', u.deletedAt = $now,
    u.followerCount = 0, u.followingCount = 0, u.passwordHash = null, u.roles = null
RETURN u.id AS id
"""
)


async def profile_export(db: GraphDriver, user_id: str) -> Row | None:
    """{profile, following, blocks}; None when there is no such user."""
    rows = await db.read(PROFILE_EXPORT, {"userId": user_id})
    return rows[0] if rows else None


async def clip_export_page(
    db: GraphDriver, user_id: str, after_id: str | None, limit: int = EXPORT_PAGE
) -> list[Row]:
    """The user's clips after `after_id` in id order: {clip, remixOf, cameos} each."""
    params = {"userId": user_id, "afterId": after_id, "limit": limit}
    return await db.read(CLIP_EXPORT_PAGE, params)


async def cameo_export(db: GraphDriver, user_id: str) -> list[Row]:
    """Each cameo the user owns (or owned): {cameo, grants, uses}."""
    return await db.read(CAMEO_EXPORT, {"userId": user_id})


async def tombstone(db: GraphDriver, user_id: str, now: int) -> bool:
    """Strip the user node of everything personal (see the module's docstring); False when
    there is no such user. The handle becomes one no sign-up can take (over 30 characters)."""
    params = {"userId": user_id, "now": now, "tombstoneHandle": f"deleted_{user_id.lower()}"}
    return bool(await db.write(TOMBSTONE, params))
