"""Neo4j in production: the compose file's safety (always checked, by reading it), and a live
Neo4j 5 (REELGRAPH_GRAPH_URL=bolt://user:pass@host:7687): schema set-up is idempotent and
uniqueness holds. The rest of the suite runs there too with the same variable."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import pytest
import yaml

from graph import users as user_repo
from graph.driver import open_driver

ROOT = Path(__file__).resolve().parent.parent
URL = os.environ.get("REELGRAPH_GRAPH_URL", "")
live_neo4j = pytest.mark.skipif(
    not URL.startswith(("bolt", "neo4j")), reason="needs a live Neo4j at REELGRAPH_GRAPH_URL"
)


def _compose() -> tuple[str, dict]:
    text = (ROOT / "docker-compose.yml").read_text()
    return text, yaml.safe_load(text)


def test_compose_has_no_default_neo4j_password() -> None:
    text, compose = _compose()
    uses = re.findall(r"\$\{NEO4J_PASSWORD([^}]*)\}", text)
    assert uses, "compose must take the password from NEO4J_PASSWORD"
    # every use is ${NEO4J_PASSWORD:?message}: compose refuses to start without it
    assert all(use.startswith(":?") for use in uses), uses
    assert "change-me" not in text
    auth = compose["services"]["neo4j"]["environment"]["NEO4J_AUTH"]
    assert auth.startswith("neo4j/${NEO4J_PASSWORD:?")


def test_compose_publishes_neo4j_and_redis_on_loopback_only() -> None:
    _, compose = _compose()
    for name in ("neo4j", "redis"):
        for port in compose["services"][name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert compose["services"]["neo4j"]["ports"], "the live-Neo4j test run needs 7687 locally"


def test_the_images_run_in_production_mode() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ENV .*\bREELGRAPH_ENVIRONMENT=production\b", dockerfile, re.M)
    _, compose = _compose()
    assert compose["x-reelgraph-env"]["REELGRAPH_ENVIRONMENT"] == "production"


@live_neo4j
async def test_schema_setup_is_idempotent_and_handles_are_unique() -> None:
    db = open_driver(
        URL,
        graph_name="reelgraph",
        neo4j_database=os.environ.get("REELGRAPH_NEO4J_DATABASE", "neo4j"),
    )
    try:
        await db.ensure_schema()
        await db.ensure_schema()
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


def test_the_api_alone_gets_the_provenance_signing_files() -> None:
    """Production refuses to start without a signing chain for published clips: compose hands
    the API (and nothing else) the two files, as secrets."""
    _, compose = _compose()
    api = compose["services"]["api"]
    assert api["environment"]["REELGRAPH_PROVENANCE_CERT_CHAIN"].startswith("/run/secrets/")
    assert api["environment"]["REELGRAPH_PROVENANCE_PRIVATE_KEY"].startswith("/run/secrets/")
    assert set(api["secrets"]) == set(compose["secrets"])
    for name, secret in compose["secrets"].items():
        assert ":?" in secret["file"], name  # compose refuses to start without the file
    assert "secrets" not in compose["services"]["worker"]
