"""Indexes and uniqueness constraints, per engine; created at start-up, idempotently."""

from __future__ import annotations

from graph.driver import Cypher

__all__ = ["FALKOR_INDEXES", "FALKOR_UNIQUE", "NEO4J_SCHEMA"]

# (label, property): unique on both engines
_UNIQUE = [("User", "id"), ("User", "handle"), ("Clip", "id"), ("Cameo", "id")]
# (label, property): plain range indexes
_INDEXED = [("Clip", "createdAt"), ("Clip", "state"), ("Clip", "publishedAt")]

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
]
