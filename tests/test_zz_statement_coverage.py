"""Every statement in graph/ was executed by this test run (named last so it runs last).

Each process of the suite (the app, CLI servers, Celery workers) logs a hash of every
statement it sends; see graph.driver.trace_statement.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from statements import NEO4J_ONLY_MODULES, all_statements

TESTS = Path(__file__).resolve().parent


def _whole_suite_ran(session: pytest.Session) -> bool:
    modules = {Path(item.fspath).name for item in session.items}
    expected = {p.name for p in TESTS.glob("test_*.py")}
    return expected <= modules and not session.config.option.keyword


def test_every_statement_was_executed(request: pytest.FixtureRequest, settings) -> None:
    if not _whole_suite_ran(request.session):
        pytest.skip("statement coverage is judged on a run of the whole suite")
    executed = set()
    for log in Path(os.environ["REELGRAPH_TRACE_STATEMENTS"]).glob("*.log"):
        executed.update(log.read_text().split())
    engine_is_neo4j = settings.graph_url.startswith(("bolt", "neo4j"))
    missing = [
        name
        for name, text in all_statements().items()
        if hashlib.sha1(text.encode()).hexdigest() not in executed
        and (engine_is_neo4j or name.rsplit(".", 1)[0] not in NEO4J_ONLY_MODULES)
    ]
    assert not missing, f"never executed by the suite: {missing}"
