"""Every statement in graph/ passes Neo4j's own Cypher linter (undefined parameters aside)."""

from __future__ import annotations

from statements import all_statements

from tests.cypher_lint import format_diagnostics, is_undefined_parameter, lint_statements


def test_there_are_statements_to_check() -> None:
    names = all_statements()
    assert len(names) > 20
    assert "graph.users.FOLLOW" in names and "graph.clips.PUBLISH" in names


def test_every_statement_passes_the_neo4j_linter() -> None:
    statements = all_statements()
    results = lint_statements(dict(statements))
    problems = {
        name: [d for d in diagnostics if not is_undefined_parameter(d)]
        for name, diagnostics in results.items()
    }
    report = "\n".join(
        f"{name}:\n{format_diagnostics(statements[name], diags)}"
        for name, diags in problems.items()
        if diags
    )
    assert not report, report
