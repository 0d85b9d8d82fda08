"""The tests' npm harnesses (the graphql-http audit, the PASETO interop check, the graphql-ws
reference client): each a folder with a package.json pinning its package and a lockfile,
installed with `npm ci` once, under a lock, when the pinned version is not there."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cypher_lint import _locked

__all__ = ["NPM_TIMEOUT_S", "ensure_installed", "installed_version"]

NPM_TIMEOUT_S = 600


def installed_version(folder: Path, package: str) -> str | None:
    manifest = folder / "node_modules" / package / "package.json"
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed(
    folder: Path, package: str, *, why: str, missing: Callable[[str], object] = pytest.fail
) -> str:
    """Install folder's pinned packages if `package` is not at its pinned version; the path of
    `node`. Without node or npm, `missing` (pytest.fail, or pytest.skip) says what needs them."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing(f"{why} needs Node.js 20+ with npm on PATH")
    wanted = json.loads((folder / "package.json").read_text(encoding="utf-8"))["dependencies"][
        package
    ]

    def install() -> None:
        if installed_version(folder, package) == wanted:
            return
        proc = subprocess.run(
            [npm, "ci", "--prefix", str(folder), "--no-audit", "--no-fund"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        assert installed_version(folder, package) == wanted, "package-lock.json is out of date"

    _locked(install)
    return node
