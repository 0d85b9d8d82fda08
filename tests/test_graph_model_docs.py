"""docs/graph-model.md: every ```cypher block passes Neo4j's linter and, run on the embedded
engine against a small graph seeded through the repository functions, gives the answers the
doc promises. The graph is a graph of its own (its own FalkorDB key), so the rest of the
suite's data never changes the answers.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import rendered_clip
from ulid import ULID

from graph import clips as clip_repo
from graph import engagement as engagement_repo
from graph import users as user_repo
from graph.driver import Cypher, driver_for
from tests.cypher_lint import format_diagnostics, is_undefined_parameter, lint_statements

DOC = Path(__file__).resolve().parent.parent / "docs" / "graph-model.md"
_BLOCK = re.compile(r"<!-- query: (\w+) -->\n```cypher\n(.*?)```", re.S)


def doc_queries() -> dict[str, str]:
    text = DOC.read_text()
    queries = dict(_BLOCK.findall(text))
    # every cypher block is named, so none escapes the checks below
    assert len(queries) == text.count("```cypher"), "a ```cypher block without a query name"
    return queries


def test_the_doc_has_the_promised_queries() -> None:
    assert set(doc_queries()) == {
        "fork_depth",
        "remix_rate",
        "remix_share",
        "top_lineages",
        "most_followed",
        "follow_count_drift",
    }


def test_doc_queries_pass_the_neo4j_linter() -> None:
    queries = doc_queries()
    results = lint_statements(queries)
    report = "\n".join(
        f"{name}:\n{format_diagnostics(queries[name], diags)}"
        for name, diagnostics in results.items()
        if (diags := [d for d in diagnostics if not is_undefined_parameter(d)])
    )
    assert not report, report


@pytest.fixture(scope="module")
async def model(settings) -> AsyncIterator[tuple[Any, dict[str, str]]]:
    """O1 (u1) <- A (u2) <- B (u3) <- C (u2); O1 <- E (u3); O1 <- G (a draft);
    A <- R (u1, removed) <- X (u2); O2 (u2) <- F (u1); O3 (u3), never remixed.
    Views: O1 twice, O2 four times. Follows: u2 -> u1, u3 -> u1, u1 -> u2, u3 -> u2, then u2
    blocks u3 (which removes u3 -> u2)."""
    db = driver_for(settings.model_copy(update={"graph_name": f"docs_{secrets.token_hex(4)}"}))
    users = {}
    for name in ("u1", "u2", "u3"):
        user_id = str(ULID())
        assert await user_repo.create_user(
            db, id=user_id, handle=name, display_name=name, password_hash="x", now=1
        )
        users[name] = user_id
    ids: dict[str, str] = {}

    async def clip(name: str, author: str, at: int, parent: str | None, state: str) -> None:
        ids[name] = await rendered_clip(
            db,
            users[author],
            at,
            parent_id=ids[parent] if parent else None,
            prompt=f"clip {name}",
            publish=state != "DRAFT",
        )

    for name, author, parent, state in [
        ("O1", "u1", None, "PUBLISHED"),
        ("A", "u2", "O1", "PUBLISHED"),
        ("B", "u3", "A", "PUBLISHED"),
        ("C", "u2", "B", "PUBLISHED"),
        ("E", "u3", "O1", "PUBLISHED"),
        ("G", "u3", "O1", "DRAFT"),
        ("R", "u1", "A", "PUBLISHED"),
        ("X", "u2", "R", "PUBLISHED"),
        ("O2", "u2", None, "PUBLISHED"),
        ("F", "u1", "O2", "PUBLISHED"),
        ("O3", "u3", None, "PUBLISHED"),
    ]:
        await clip(name, author, 100 + len(ids), parent, state)
    assert await clip_repo.remove(db, users["u1"], ids["R"], 500, "author")
    for viewer, name in [("u2", "O1"), ("u3", "O1")] + [("u3", "O2")] * 2 + [("u1", "O2")] * 2:
        assert await engagement_repo.record_view(
            db, users[viewer], ids[name], watched_ms=500, completed=False, slack_ms=0, now=600
        )
    # last: a block would refuse the remixes and views above across it
    for a, b in (("u2", "u1"), ("u3", "u1"), ("u1", "u2"), ("u3", "u2")):
        assert await user_repo.follow(db, users[a], users[b], 2)
    assert await user_repo.block_user(db, users["u2"], users["u3"], 3)
    yield db, ids
    await db.close()


async def _run(db, name: str, **params: Any) -> list[dict]:
    return await db.read(Cypher(doc_queries()[name]), params)


async def test_fork_depth(model) -> None:
    db, ids = model
    # A, B, C and E; the removed R cuts X off, the draft G is not published
    assert await _run(db, "fork_depth", clipId=ids["O1"]) == [
        {"clipId": ids["O1"], "remixCount": 4, "forkDepth": 3}
    ]
    assert await _run(db, "fork_depth", clipId=ids["O3"]) == [
        {"clipId": ids["O3"], "remixCount": 0, "forkDepth": 0}
    ]


async def test_remix_rate(model) -> None:
    db, ids = model
    rows = await _run(db, "remix_rate")
    by_clip = {row["clipId"]: row for row in rows}
    assert (by_clip[ids["O1"]]["remixes"], by_clip[ids["O1"]]["views"]) == (2, 2)
    assert by_clip[ids["O1"]]["remixRate"] == pytest.approx(1.0)
    assert by_clip[ids["O2"]]["remixRate"] == pytest.approx(0.25)
    assert by_clip[ids["A"]]["remixRate"] == 0.0  # no views: 0, however many remixes
    assert [row["clipId"] for row in rows[:2]] == [ids["O1"], ids["O2"]]
    assert ids["R"] not in by_clip and ids["G"] not in by_clip


async def test_remix_share(model) -> None:
    db, _ = model
    [row] = await _run(db, "remix_share")
    # published: O1 A B C E X O2 F O3; of them remixes: A B C E X F
    assert (row["published"], row["remixes"]) == (9, 6)
    assert row["remixShare"] == pytest.approx(6 / 9)


async def test_top_lineages(model) -> None:
    db, ids = model
    rows = await _run(db, "top_lineages")
    assert rows == [
        {"rootId": ids["O1"], "remixes": 4, "forkDepth": 3, "remixers": 2},
        {"rootId": ids["O2"], "remixes": 1, "forkDepth": 1, "remixers": 1},
    ]


async def test_most_followed(model) -> None:
    db, _ = model
    assert await _run(db, "most_followed") == [
        {"handle": "u1", "followers": 2, "following": 1},
        {"handle": "u2", "followers": 1, "following": 1},
        {"handle": "u3", "followers": 0, "following": 1},
    ]


async def test_follow_count_drift(model) -> None:
    db, _ = model
    assert await _run(db, "follow_count_drift") == []
