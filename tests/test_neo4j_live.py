"""Against a live Neo4j 5 (REELGRAPH_GRAPH_URL=bolt://user:pass@host:7687): schema set-up is
idempotent and uniqueness holds. The rest of the suite runs there too with the same variable."""

from __future__ import annotations

import os

import pytest

from graph import users as user_repo
from graph.driver import open_driver

URL = os.environ.get("REELGRAPH_GRAPH_URL", "")
pytestmark = pytest.mark.skipif(
    not URL.startswith(("bolt", "neo4j")), reason="needs a live Neo4j at REELGRAPH_GRAPH_URL"
)


async def test_schema_setup_is_idempotent_and_handles_are_unique() -> None:
    db = open_driver(
        URL,
        graph_name="reelgraph",
        neo4j_database=os.environ.get("REELGRAPH_NEO4J_DATABASE", "neo4j"),
    )
    try:
        await db.ensure_schema()
        await db.ensure_schema()
        import secrets

        handle = f"live_{secrets.token_hex(4)}"
        first = await user_repo.create_user(
            db, id=secrets.token_hex(8), handle=handle, display_name="L", password_hash="h", now=1
        )
        again = await user_repo.create_user(
            db, id=secrets.token_hex(8), handle=handle, display_name="L", password_hash="h", now=2
        )
        assert first is not None and again is None
    finally:
        await db.close()
