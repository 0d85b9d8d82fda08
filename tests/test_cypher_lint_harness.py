"""Tests of the Cypher lint harness (tests/cypher_lint.py + tests/cypher_lint/lint.mjs)."""

from __future__ import annotations

import pytest

from tests.cypher_lint import (
    format_diagnostics,
    is_undefined_parameter,
    lint_statements,
)

STATEMENTS = {
    "valid_with_parameter": "MATCH (u:User {id: $id}) RETURN u.handle AS handle",
    "valid_write": (
        "MATCH (a:User {id: $follower})\n"
        "MATCH (b:User {id: $followee})\n"
        "MERGE (a)-[f:FOLLOWS]->(b)\n"
        "ON CREATE SET f.created_at = $now\n"
        "RETURN count(f) AS n"
    ),
    "backticked_parameter": "RETURN $`my param` AS p",
    "syntax_error": "MATCH (u:User RETURN u",
    "undefined_variable": "MATCH (n:User) RETURN m",
    "deprecated_function": "MATCH (n:User) RETURN id(n) AS i",
    "deprecated_subquery_import": "MATCH (n:User) CALL { WITH n RETURN n.x AS x } RETURN x",
    "cartesian_product": "MATCH (a:User {id: $a}), (b:User {id: $b}) RETURN a, b",
    "parameter_map_in_match": "MATCH (n:User $props) RETURN n",
    "cypher25_only_clause": "LET x = 1 RETURN x",
    "explicit_cypher25": "CYPHER 25 LET x = 1 RETURN x",
    "two_statements": "MATCH (n) RETURN n;\nMATCH (m) RETURN m",
    "trailing_semicolon": "MATCH (n:User) RETURN n.id AS id;",
    "unknown_function": "RETURN toLowr('A') AS a",
}


@pytest.fixture(scope="module")
def lint() -> dict[str, list[dict]]:
    return lint_statements(STATEMENTS)


def _unexpected(diags: list[dict]) -> list[dict]:
    return [d for d in diags if not is_undefined_parameter(d)]


def test_returns_one_entry_per_statement(lint):
    assert list(lint) == list(STATEMENTS)
    for diags in lint.values():
        for diag in diags:
            assert {"message", "severity", "range", "offsets", "source"} <= set(diag)


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        ("valid_with_parameter", ["id"]),
        ("valid_write", ["follower", "followee", "now"]),
        ("backticked_parameter", ["`my param`"]),
    ],
)
def test_valid_statement_has_only_undefined_parameter_diagnostics(lint, name, parameters):
    diags = lint[name]
    assert _unexpected(diags) == [], format_diagnostics(STATEMENTS[name], diags)
    # Labels, relationship types and properties are not checked (empty schema), but
    # every parameter is reported once, at its position in the text.
    assert sorted(d["message"] for d in diags) == sorted(
        f"Parameter ${p} is not defined." for p in parameters
    )
    for diag in diags:
        assert diag["severity"] == "error"
        assert diag["undefined_parameter"] is True  # the npm package's own predicate agrees
        start, end = diag["offsets"]["start"], diag["offsets"]["end"]
        assert STATEMENTS[name][start:end].startswith("$")


def test_syntax_error_is_reported(lint):
    errors = [d for d in lint["syntax_error"] if d["severity"] == "error"]
    assert errors
    assert any("Invalid input 'RETURN'" in d["message"] for d in errors)
    assert not any(is_undefined_parameter(d) for d in errors)
    first = min(errors, key=lambda d: d["offsets"]["start"])
    assert first["range"]["start"] == {"line": 0, "character": 14}


def test_semantic_error_is_reported(lint):
    messages = [d["message"] for d in lint["undefined_variable"] if d["severity"] == "error"]
    assert messages == ["Variable `m` not defined"]


@pytest.mark.parametrize("name", ["deprecated_function", "deprecated_subquery_import"])
def test_deprecated_construct_is_a_warning(lint, name):
    diags = _unexpected(lint[name])
    assert diags, f"{name}: no diagnostic"
    assert all(d["severity"] == "warning" for d in diags)
    assert any("deprecated" in d["message"] for d in diags)


def test_performance_notifications_are_warnings(lint):
    # Neo4j's planner-style notifications come through too: comma-separated disconnected
    # patterns in one MATCH warn about a cartesian product (two MATCH clauses do not).
    diags = _unexpected(lint["cartesian_product"])
    assert [d["severity"] for d in diags] == ["warning"]
    assert "cartesian product" in diags[0]["message"]


def test_other_parameter_errors_are_not_allowed(lint):
    unexpected = _unexpected(lint["parameter_map_in_match"])
    assert [d["severity"] for d in unexpected] == ["error"]
    assert unexpected[0]["message"].startswith("Parameter maps cannot be used")
    assert unexpected[0]["undefined_parameter"] is False


def test_linted_as_cypher_5(lint):
    # LET exists only in Cypher 25: an error under the default Cypher 5 semantics...
    errors = [d for d in lint["cypher25_only_clause"] if d["severity"] == "error"]
    assert any("Invalid input 'LET'" in d["message"] for d in errors)
    # ...unless the statement itself selects Cypher 25.
    assert lint["explicit_cypher25"] == []


def test_more_than_one_statement_is_an_error(lint):
    diags = lint["two_statements"]
    assert [(d["source"], d["severity"]) for d in diags] == [("harness", "error")]
    assert "2 ';'-separated statements" in diags[0]["message"]
    assert lint["trailing_semicolon"] == []


def test_unknown_functions_are_not_checked_by_default(lint):
    assert lint["unknown_function"] == []


def test_check_functions_reports_unknown_functions():
    statements = {
        "typo": STATEMENTS["unknown_function"],
        "builtin": "RETURN toLower('A') AS a, size([1]) AS s",
    }
    result = lint_statements(statements, check_functions=True)
    assert [d["message"].split(".")[0] for d in result["typo"]] == [
        "Function toLowr is not present in the database"
    ]
    assert result["builtin"] == []


def test_empty_input_runs_nothing():
    assert lint_statements({}) == {}


def test_rejects_non_string_statement():
    with pytest.raises(TypeError):
        lint_statements({"bad": 1})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Parameter $id is not defined.", True),
        ("Parameter $user_id2 is not defined.", True),
        ("Parameter $0 is not defined.", True),
        ("Parameter $`my param` is not defined.", True),
        ("Parameter maps cannot be used in `MATCH` patterns (use a literal map instead)", False),
        ("Variable `id` not defined", False),
        ("Parameter $id is not defined. Also something else.", False),
        ("Invalid input 'RETURN': expected a parameter, '&', ')' or ':'", False),
    ],
)
def test_is_undefined_parameter(message, expected):
    assert is_undefined_parameter({"message": message, "severity": "error"}) is expected


def test_is_undefined_parameter_tolerates_odd_dicts():
    assert is_undefined_parameter({}) is False
    assert is_undefined_parameter({"message": None}) is False
