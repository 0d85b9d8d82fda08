"""Lint Cypher statements with Neo4j's official Cypher linter.

The linter is the npm package ``@neo4j-cypher/language-support`` (its ``lintCypherQuery``),
pinned in ``tests/cypher_lint/package.json``; ``tests/cypher_lint/lint.mjs`` runs it. This
module installs the package on first use (``npm ci``) and runs the script once per call.

Statements are linted with Cypher 5 semantics and an empty database schema, so the linter
says nothing about unknown labels, relationship types or properties. It does report every
``$parameter`` as undefined, since parameters are only supplied at run time: filter those
out with :func:`is_undefined_parameter`.

A diagnostic is a dict such as::

    {
        "message": "Parameter $id is not defined.",
        "severity": "error",  # or "warning", "information", "hint"
        "range": {"start": {"line": 0, "character": 19}, "end": {"line": 0, "character": 22}},
        "offsets": {"start": 19, "end": 22},
        "source": "neo4j",  # "harness" for the one-statement-per-text check of lint.mjs
        "undefined_parameter": True,
    }

``range`` lines and characters are 0-based; ``offsets`` count UTF-16 code units (the same as
Python string indices unless the text holds characters outside the BMP, such as emoji).
Deprecation warnings may carry ``"tags": ["deprecated"]``.

This module holds no tests; ``tests/test_cypher_lint_harness.py`` tests it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "LINT_DIR",
    "CypherLintError",
    "ensure_installed",
    "format_diagnostics",
    "is_undefined_parameter",
    "lint_statements",
]

LINT_DIR = Path(__file__).resolve().parent / "cypher_lint"
LINT_SCRIPT = LINT_DIR / "lint.mjs"
PACKAGE_NAME = "@neo4j-cypher/language-support"

NPM_TIMEOUT_S = 600
LINT_TIMEOUT_S = 600

# The linter's wording, e.g. "Parameter $id is not defined." or
# "Parameter $`my param` is not defined." (see isNotParamError in the npm package).
_UNDEFINED_PARAMETER = re.compile(r"Parameter \$(?:`(?:[^`]|``)+`|[^\s`]+) is not defined\.")


class CypherLintError(RuntimeError):
    """The linter could not be installed or run."""


def _which(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise CypherLintError(
            f"`{tool}` was not found on PATH. The Cypher lint harness needs Node.js (with npm) "
            f"to run Neo4j's linter {PACKAGE_NAME}; install Node.js 20 or newer."
        )
    return path


def _pinned_version() -> str:
    manifest = json.loads((LINT_DIR / "package.json").read_text(encoding="utf-8"))
    return manifest["dependencies"][PACKAGE_NAME]


def _installed_version() -> str | None:
    manifest = LINT_DIR / "node_modules" / PACKAGE_NAME / "package.json"
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return None


def _locked(func):
    """Run ``func`` while holding an inter-process lock (parallel test workers)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        return func()
    key = re.sub(r"[^A-Za-z0-9]+", "_", str(LINT_DIR)).strip("_")
    lock_path = Path(tempfile.gettempdir()) / f"reelgraph-cypher-lint-{key}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return func()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_installed() -> str:
    """Install the pinned linter into ``tests/cypher_lint/node_modules`` if it is missing
    or another version is installed; return the path of the ``node`` executable."""
    node = _which("node")
    wanted = _pinned_version()
    if _installed_version() == wanted:
        return node

    def install() -> None:
        if _installed_version() == wanted:  # another process installed it meanwhile
            return
        npm = _which("npm")
        cmd = [npm, "ci", "--prefix", str(LINT_DIR), "--no-audit", "--no-fund"]
        try:
            proc = subprocess.run(
                cmd,
                cwd=LINT_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CypherLintError(f"`{' '.join(cmd)}` timed out after {NPM_TIMEOUT_S}s") from exc
        if proc.returncode != 0:
            raise CypherLintError(
                f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n"
                f"{(proc.stdout + proc.stderr)[-4000:]}"
            )
        installed = _installed_version()
        if installed != wanted:
            raise CypherLintError(
                f"after npm ci, {PACKAGE_NAME} is {installed!r} in {LINT_DIR / 'node_modules'}, "
                f"but package.json pins {wanted!r}; is package-lock.json out of date?"
            )

    _locked(install)
    return node


def lint_statements(
    statements: Mapping[str, str], *, check_functions: bool = False
) -> dict[str, list[dict]]:
    """Lint each Cypher text of ``statements`` (name -> text); return name -> diagnostics.

    All statements go through one ``node`` process (starting the linter takes a few
    seconds; each statement then takes roughly 0.1 s). With ``check_functions`` the linter
    also reports calls to functions that are not Neo4j built-ins, and deprecated ones.
    """
    for name, text in statements.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise TypeError(f"statements must map str to str, got {name!r}: {text!r}")
    if not statements:
        return {}
    node = ensure_installed()
    cmd = [node, str(LINT_SCRIPT)]
    if check_functions:
        cmd.append("--check-functions")
    env = dict(os.environ)
    env.pop("NODE_OPTIONS", None)  # e.g. a debugger hook would break the JSON on stdout
    try:
        proc = subprocess.run(
            cmd,
            input=json.dumps(dict(statements)),
            cwd=LINT_DIR,
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=LINT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CypherLintError(f"{LINT_SCRIPT.name} timed out after {LINT_TIMEOUT_S}s") from exc
    if proc.returncode != 0:
        raise CypherLintError(
            f"{LINT_SCRIPT.name} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    try:
        results = json.loads(proc.stdout)
    except ValueError as exc:
        raise CypherLintError(
            f"{LINT_SCRIPT.name} printed no valid JSON: {proc.stdout[:2000]!r}\n"
            f"stderr: {proc.stderr[-2000:]}"
        ) from exc
    if not isinstance(results, dict) or set(results) != set(statements):
        raise CypherLintError(f"{LINT_SCRIPT.name} returned other names than it was given")
    return {name: results[name] for name in statements}


def is_undefined_parameter(diag: Mapping) -> bool:
    """Whether ``diag`` only says that a ``$parameter`` is not defined.

    That is the one diagnostic we allow, since parameters are supplied at run time. Other
    parameter diagnostics (e.g. "Parameter maps cannot be used in `MATCH` patterns") are
    real errors and do not count.
    """
    message = diag.get("message")
    return isinstance(message, str) and _UNDEFINED_PARAMETER.fullmatch(message) is not None


def format_diagnostics(text: str, diagnostics: list[dict]) -> str:
    """Render diagnostics for an assertion message: one line each, with the text they
    point at."""
    lines = []
    for diag in diagnostics:
        start = diag["range"]["start"]
        offsets = diag.get("offsets") or {}
        snippet = text[offsets.get("start", 0) : offsets.get("end", 0)]
        lines.append(
            f"{start['line'] + 1}:{start['character'] + 1} {diag['severity']}: "
            f"{diag['message']}" + (f"  [{snippet[:60]!r}]" if snippet else "")
        )
    return "\n".join(lines)
