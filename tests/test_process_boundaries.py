"""The API process never loads a model: torch and diffusers stay in the workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_api_process_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from server import build_app\n"
        "from settings import Settings\n"
        "build_app(Settings(_env_file=None))\n"
        "import workers.tasks, workers.renderers\n"
        "loaded = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_a_worker_without_a_server_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "worker", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "start `reelgraph serve` first" in result.stderr
