"""A newcomer's first `make run`: from a fresh clone to a healthy /health, in seconds.

Clones this checkout's committed HEAD into a temp folder and runs `make run` there on a free
port, timing until /health answers 200, with an empty package cache (a fresh uv and pip cache
folder) and then with the cache the first run filled. For comparison it also times the same
lock (requirements/base.lock) installed by pip instead of uv, both ways.

    .venv/bin/python benchmarks/first_run.py
    .venv/bin/python benchmarks/first_run.py --runs 2 --skip-pip
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from served import ROOT, free_port


def _python() -> str:
    return subprocess.check_output(
        [str(ROOT / ".venv/bin/python"), "-c", "import sys; print(sys._base_executable)"],
        text=True,
    ).strip()


def _clone(into: Path) -> Path:
    clone = into / "reelgraph"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    return clone


def _wait_healthy(port: int, proc: subprocess.Popen, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"make run exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("no healthy /health in time")


def make_run(cache: Path, deadline_s: float) -> float:
    """Seconds from `make run` in a fresh clone to a 200 from /health."""
    with tempfile.TemporaryDirectory(prefix="first-run-") as tmp:
        clone = _clone(Path(tmp))
        port = free_port()
        env = {
            **os.environ,
            "UV_CACHE_DIR": str(cache / "uv"),
            "PIP_CACHE_DIR": str(cache / "pip"),
            "REELGRAPH_PORT": str(port),
        }
        started = time.monotonic()
        proc = subprocess.Popen(
            ["make", "run"],
            cwd=clone,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait_healthy(port, proc, deadline_s)
            return time.monotonic() - started
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def pip_install(cache: Path) -> float:
    """Seconds for a venv and pip's install of the same lock (the install step alone)."""
    with tempfile.TemporaryDirectory(prefix="first-run-pip-") as tmp:
        venv = Path(tmp) / "venv"
        env = {**os.environ, "PIP_CACHE_DIR": str(cache / "pip")}
        started = time.monotonic()
        subprocess.run([_python(), "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--no-deps"]
        subprocess.run(
            [*pip, "--require-hashes", "-r", str(ROOT / "requirements/base.lock")],
            check=True,
            env=env,
        )
        subprocess.run([*pip, "--no-build-isolation", "-e", str(ROOT)], check=True, env=env)
        return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="warm runs after the cold one")
    parser.add_argument("--skip-pip", action="store_true", help="only make run (uv)")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds per run")
    args = parser.parse_args()

    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="first-run-cache-") as cache_dir:
        cache = Path(cache_dir)
        print(f"make run, empty cache:  {make_run(cache, args.deadline):6.1f} s")
        for _ in range(args.runs):
            print(f"make run, warm cache:   {make_run(cache, args.deadline):6.1f} s")
        if not args.skip_pip:
            shutil.rmtree(cache / "pip", ignore_errors=True)
            print(f"pip install of base.lock, empty cache: {pip_install(cache):6.1f} s")
            for _ in range(args.runs):
                print(f"pip install of base.lock, warm cache:  {pip_install(cache):6.1f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
