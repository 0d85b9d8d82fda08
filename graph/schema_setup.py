"""Indexes and uniqueness constraints, per engine, and one-time data backfills; all run at
start-up, idempotently."""

from __future__ import annotations

from graph.driver import Cypher, GraphDriver

__all__ = ["FALKOR_INDEXES", "FALKOR_UNIQUE", "NEO4J_SCHEMA", "backfill"]

# (label, property): unique on both engines
# (the audit log's one head: a MERGE that two processes race on makes one node, on Neo4j too)
_UNIQUE = [
    ("User", "id"),
    ("User", "handle"),
    ("Clip", "id"),
    ("Cameo", "id"),
    ("AuditHead", "id"),
    ("AuditEntry", "seq"),
    ("AuditPseudonym", "userId"),
    ("Report", "id"),
    ("ProtectedWork", "id"),
    ("TrustedDocument", "id"),
    ("FaceRegistry", "key"),
    ("PublicFigureRegistry", "key"),
    ("ProtectedWorkRegistry", "key"),
]
# (label, property): plain range indexes
_INDEXED = [
    ("Clip", "createdAt"),
    ("Clip", "state"),
    ("Clip", "publishedAt"),
    ("AuditEntry", "clipId"),
    ("AuditEntry", "cameoId"),
    ("AuditPseudonym", "pseudonym"),
]

FALKOR_UNIQUE = _UNIQUE
FALKOR_INDEXES = _INDEXED

NEO4J_USER_ID_UNIQUE = Cypher(
    "CREATE CONSTRAINT user_id IF NOT EXISTS FOR (n:User) REQUIRE n.id IS UNIQUE"
)
NEO4J_USER_HANDLE_UNIQUE = Cypher(
    "CREATE CONSTRAINT user_handle IF NOT EXISTS FOR (n:User) REQUIRE n.handle IS UNIQUE"
)
NEO4J_CLIP_ID_UNIQUE = Cypher(
    "CREATE CONSTRAINT clip_id IF NOT EXISTS FOR (n:Clip) REQUIRE n.id IS UNIQUE"
)
NEO4J_CAMEO_ID_UNIQUE = Cypher(
    "CREATE CONSTRAINT cameo_id IF NOT EXISTS FOR (n:Cameo) REQUIRE n.id IS UNIQUE"
)
NEO4J_AUDIT_HEAD_UNIQUE = Cypher(
    "CREATE CONSTRAINT audit_head_id IF NOT EXISTS FOR (n:AuditHead) REQUIRE n.id IS UNIQUE"
)
NEO4J_AUDIT_SEQ_UNIQUE = Cypher(
    "CREATE CONSTRAINT audit_entry_seq IF NOT EXISTS FOR (n:AuditEntry) REQUIRE n.seq IS UNIQUE"
)
NEO4J_AUDIT_PSEUDONYM_UNIQUE = Cypher(
    "CREATE CONSTRAINT audit_pseudonym_user IF NOT EXISTS "
    "FOR (n:AuditPseudonym) REQUIRE n.userId IS UNIQUE"
)
NEO4J_REPORT_ID_UNIQUE = Cypher(
    "CREATE CONSTRAINT report_id IF NOT EXISTS FOR (n:Report) REQUIRE n.id IS UNIQUE"
)
NEO4J_PROTECTED_WORK_ID_UNIQUE = Cypher(
    "CREATE CONSTRAINT protected_work_id IF NOT EXISTS FOR (n:ProtectedWork) REQUIRE n.id IS UNIQUE"
)
NEO4J_TRUSTED_DOCUMENT_ID_UNIQUE = Cypher(
    "CREATE CONSTRAINT trusted_document_id IF NOT EXISTS "
    "FOR (n:TrustedDocument) REQUIRE n.id IS UNIQUE"
)
NEO4J_FACE_REGISTRY_UNIQUE = Cypher(
    "CREATE CONSTRAINT face_registry_key IF NOT EXISTS FOR (n:FaceRegistry) REQUIRE n.key IS UNIQUE"
)
NEO4J_FIGURE_REGISTRY_UNIQUE = Cypher(
    "CREATE CONSTRAINT public_figure_registry_key IF NOT EXISTS "
    "FOR (n:PublicFigureRegistry) REQUIRE n.key IS UNIQUE"
)
NEO4J_WORK_REGISTRY_UNIQUE = Cypher(
    "CREATE CONSTRAINT protected_work_registry_key IF NOT EXISTS "
    "FOR (n:ProtectedWorkRegistry) REQUIRE n.key IS UNIQUE"
)
NEO4J_AUDIT_CLIP_INDEX = Cypher(
    "CREATE INDEX audit_entry_clip IF NOT EXISTS FOR (n:AuditEntry) ON (n.clipId)"
)
NEO4J_AUDIT_CAMEO_INDEX = Cypher(
    "CREATE INDEX audit_entry_cameo IF NOT EXISTS FOR (n:AuditEntry) ON (n.cameoId)"
)
NEO4J_AUDIT_PSEUDONYM_INDEX = Cypher(
    "CREATE INDEX audit_pseudonym IF NOT EXISTS FOR (n:AuditPseudonym) ON (n.pseudonym)"
)
NEO4J_CLIP_CREATED_INDEX = Cypher(
    "CREATE INDEX clip_created_at IF NOT EXISTS FOR (n:Clip) ON (n.createdAt)"
)
NEO4J_CLIP_STATE_INDEX = Cypher("CREATE INDEX clip_state IF NOT EXISTS FOR (n:Clip) ON (n.state)")
NEO4J_CLIP_PUBLISHED_INDEX = Cypher(
    "CREATE INDEX clip_published_at IF NOT EXISTS FOR (n:Clip) ON (n.publishedAt)"
)

NEO4J_SCHEMA = [
    NEO4J_USER_ID_UNIQUE,
    NEO4J_USER_HANDLE_UNIQUE,
    NEO4J_CLIP_ID_UNIQUE,
    NEO4J_CAMEO_ID_UNIQUE,
    NEO4J_CLIP_CREATED_INDEX,
    NEO4J_CLIP_STATE_INDEX,
    NEO4J_CLIP_PUBLISHED_INDEX,
    NEO4J_AUDIT_HEAD_UNIQUE,
    NEO4J_AUDIT_SEQ_UNIQUE,
    NEO4J_AUDIT_PSEUDONYM_UNIQUE,
    NEO4J_REPORT_ID_UNIQUE,
    NEO4J_PROTECTED_WORK_ID_UNIQUE,
    NEO4J_TRUSTED_DOCUMENT_ID_UNIQUE,
    NEO4J_FACE_REGISTRY_UNIQUE,
    NEO4J_FIGURE_REGISTRY_UNIQUE,
    NEO4J_WORK_REGISTRY_UNIQUE,
    NEO4J_AUDIT_CLIP_INDEX,
    NEO4J_AUDIT_CAMEO_INDEX,
    NEO4J_AUDIT_PSEUDONYM_INDEX,
]

# Users written before User.followerCount/followingCount were stored (graph.users keeps them
# from then on) get them from their edges, once: a user that has both is left alone, so on a
# backfilled folder this is one label scan that writes nothing. Portable (both engines).
BACKFILL_FOLLOW_COUNTS = Cypher(
    """
MATCH (u:User)
WHERE u.followerCount IS NULL OR u.followingCount IS NULL
OPTIONAL MATCH (u)<-[byFollower:FOLLOWS]-(:User)
WITH u, count(byFollower) AS followers
OPTIONAL MATCH (u)-[toFollowed:FOLLOWS]->(:User)
WITH u, followers, count(toFollowed) AS following
SET u.followerCount = followers, u.followingCount = following
RETURN count(u) AS filled
"""
)


# Clips written before Clip.featuredOwnerIds was stored (graph.clips writes it with the
# FEATURES edges, and it never changes: nor do a clip's FEATURES edges or a cameo's owner)
# get it from their edges, once; graph.visibility reads it. A clip without FEATURES edges
# needs none (a missing list reads as empty), so on a backfilled folder this walks the
# FEATURES edges and writes nothing. Portable (both engines).
BACKFILL_FEATURED_OWNERS = Cypher(
    """
MATCH (c:Clip)-[:FEATURES]->(:Cameo)
WITH DISTINCT c
WHERE c.featuredOwnerIds IS NULL
MATCH (c)-[:FEATURES]->(:Cameo)<-[:OWNS]-(o:User)
WITH c, collect(DISTINCT o.id) AS owners
SET c.featuredOwnerIds = owners
RETURN count(c) AS filled
"""
)


# Drafts whose consent was withdrawn (a REVOKED use: a grant revoked, the cameo deleted)
# before withdrawal took their video away in the same statement (graph.cameos
# _WITHDRAWN_CLIP) are withdrawn now, as they would be today: marked withdrawnAt (when the
# use was revoked), AWAITING_APPROVAL back to DRAFT, their videoKey gone, so /media refuses
# them and the media sweep deletes their files. Once done, it finds nothing.
BACKFILL_WITHDRAWN = Cypher(
    """
MATCH (c:Clip)-[f:FEATURES {approval: 'REVOKED'}]->(:Cameo)
WHERE c.state IN ['DRAFT', 'AWAITING_APPROVAL'] AND c.withdrawnAt IS NULL
WITH c, max(coalesce(f.decidedAt, 0)) AS revokedAt
SET c.withdrawnAt = revokedAt, c.videoKey = null,
    c.state = CASE WHEN c.state = 'AWAITING_APPROVAL' THEN 'DRAFT' ELSE c.state END
RETURN count(c) AS filled
"""
)


async def backfill(db: GraphDriver) -> int:
    """Fill the stored properties older data folders lack; the number of nodes written.
    Run after ensure_schema, before serving (a follow racing it on a user still lacking
    its counts would count from 0)."""
    filled = 0
    for statement in (BACKFILL_FOLLOW_COUNTS, BACKFILL_FEATURED_OWNERS, BACKFILL_WITHDRAWN):
        rows = await db.write(statement)
        filled += int(rows[0]["filled"]) if rows else 0
    return filled
