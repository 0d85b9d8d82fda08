"""What the end-to-end benchmarks share: a real `reelgraph run` (API and worker) on a fresh
data folder, and a GraphQL call to it over HTTP.

Imported by the benchmark scripts as `from served import ...`: a script run as
`python benchmarks/<name>.py` has this folder first on its path.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["ROOT", "free_port", "gql", "reelgraph_run"]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gql(base: str, query: str, variables: dict, token: str | None = None) -> dict:
    """The data of one GraphQL request; any GraphQL error raises."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = httpx.post(
        f"{base}/graphql", json={"query": query, "variables": variables}, headers=headers
    ).json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


@contextmanager
def reelgraph_run(prefix: str, **env: str) -> Iterator[tuple[str, Path]]:
    """(base URL, data folder) of a `reelgraph run` on a new temporary folder, answering
    /health; the caller's REELGRAPH_* variables are dropped (env adds settings). Stopped
    with SIGTERM on the way out."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_port()
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("REELGRAPH_")}
    server_env.update(env)
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base, data_dir
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
