"""Start-up problems, through the real CLI in its own process: each is one sentence on stderr
(`reelgraph: ...`) and a non-zero exit, never a traceback, and nothing is left half-started.

Exit codes (startup.py): 2 for settings to fix, 1 for a server that cannot be reached or a
port or data folder in use.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port

from consent.keyring import new_signing_document

SECRET = "startup-errors-secret-" + "s" * 32
TIMEOUT_S = 120  # a slow CI machine imports slowly; nothing here waits on a clock


def _env(**overrides: str) -> dict[str, str]:
    """This environment without any REELGRAPH_ setting of the suite's, plus the overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGRAPH_")}
    if "REELGRAPH_TRACE_STATEMENTS" in os.environ:
        env["REELGRAPH_TRACE_STATEMENTS"] = os.environ["REELGRAPH_TRACE_STATEMENTS"]
    env.update(overrides)
    return env


def reelgraph(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`reelgraph <args> --data-dir data_dir`, run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args, "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def said(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The one sentence the command printed, checked: its exit code, no traceback, short."""
    err = result.stderr
    assert result.returncode == code, err
    assert "Traceback" not in err and "ExceptionGroup" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) < 5, err
    sentences = [line for line in lines if line.startswith("reelgraph: ")]
    assert len(sentences) == 1, err
    for word in words:
        assert word in sentences[0], err
    return sentences[0]


# --- settings production needs


def test_production_without_consent_signing_keys(tmp_path: Path) -> None:
    env = {
        "REELGRAPH_ENVIRONMENT": "production",
        "REELGRAPH_SECRET_KEY": SECRET,
        "REELGRAPH_MEDIA_LINK_KEY": SECRET,
    }
    result = reelgraph(tmp_path / "data", "serve", "--port", "0", **env)
    said(result, 2, "REELGRAPH_CONSENT_SIGNING_KEYS", "production")
    assert not (tmp_path / "data").exists()  # checked before anything started


def test_production_without_a_media_link_key(tmp_path: Path) -> None:
    env = {"REELGRAPH_ENVIRONMENT": "production", "REELGRAPH_SECRET_KEY": SECRET}
    result = reelgraph(tmp_path / "data", "serve", "--port", "0", **env)
    said(result, 2, "REELGRAPH_MEDIA_LINK_KEY", "production")


def test_production_without_a_secret_key(tmp_path: Path) -> None:
    result = reelgraph(
        tmp_path / "data", "serve", "--port", "0", REELGRAPH_ENVIRONMENT="production"
    )
    said(result, 2, "REELGRAPH_SECRET_KEY", "production")


@pytest.mark.parametrize("command", [["worker"], ["run", "--port", "0"]])
def test_production_without_a_cameo_kek(tmp_path: Path, command: list[str]) -> None:
    env = {
        "REELGRAPH_ENVIRONMENT": "production",
        "REELGRAPH_SECRET_KEY": SECRET,
        "REELGRAPH_MEDIA_LINK_KEY": SECRET,
        "REELGRAPH_CONSENT_SIGNING_KEYS": new_signing_document(),
    }
    said(reelgraph(tmp_path / "data", *command, **env), 2, "REELGRAPH_CAMEO_KEK", "production")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REELGRAPH_CAMEO_KEK", "c2hvcnQ="),  # base64, but of 5 bytes
        ("REELGRAPH_CONSENT_SIGNING_KEYS", "not json"),
        ("REELGRAPH_SECRET_KEY", "short"),
        ("REELGRAPH_MEDIA_LINK_KEY", "short"),
        ("REELGRAPH_PORT", "eighty"),
        ("REELGRAPH_ENVIRONMENT", "prod"),
    ],
)
def test_a_malformed_setting_is_named(tmp_path: Path, variable: str, value: str) -> None:
    said(reelgraph(tmp_path / "data", "run", "--port", "0", **{variable: value}), 2, variable)


# --- URLs


@pytest.mark.parametrize(
    "url", ["mysql://x", "falkor+unix:relative", "falkor+unix://relative", "garbage"]
)
@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]])
def test_a_bad_graph_url(tmp_path: Path, url: str, command: list[str]) -> None:
    result = reelgraph(tmp_path / "data", *command, REELGRAPH_GRAPH_URL=url)
    said(result, 2, "REELGRAPH_GRAPH_URL", url)


def test_a_graph_url_never_shows_its_password(tmp_path: Path) -> None:
    url = "bolt://neo4j:hunter2@localhost:seven"
    sentence = said(reelgraph(tmp_path / "data", "worker", REELGRAPH_GRAPH_URL=url), 2)
    assert "REELGRAPH_GRAPH_URL" in sentence and "hunter2" not in sentence


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("REELGRAPH_REDIS_URL", "http://x"),
        ("REELGRAPH_REDIS_URL", "unix:relative/path"),
        ("REELGRAPH_BROKER_URL", "http://x"),
        ("REELGRAPH_BROKER_URL", "unix://relative/path"),
    ],
)
@pytest.mark.parametrize("command", [["run", "--port", "0"], ["worker"]])
def test_a_bad_redis_or_broker_url(
    tmp_path: Path, variable: str, url: str, command: list[str]
) -> None:
    # a graph server, so the Redis URL is one the command would use (checked before use)
    port = free_port()
    env = {
        "REELGRAPH_GRAPH_URL": f"falkor://127.0.0.1:{port}",
        "REELGRAPH_REDIS_URL": f"redis://127.0.0.1:{port}",
        variable: url,
    }
    said(reelgraph(tmp_path / "data", *command, **env), 2, variable, url)


def test_a_graph_server_needs_a_redis_url(tmp_path: Path) -> None:
    result = reelgraph(
        tmp_path / "data", "serve", REELGRAPH_GRAPH_URL=f"falkor://127.0.0.1:{free_port()}"
    )
    said(result, 2, "REELGRAPH_REDIS_URL")


# --- servers that cannot be reached (nothing listens on a free port)


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]])
def test_an_unreachable_neo4j(tmp_path: Path, command: list[str]) -> None:
    port = free_port()
    env = {
        "REELGRAPH_GRAPH_URL": f"bolt://neo4j:hunter2@127.0.0.1:{port}",
        "REELGRAPH_REDIS_URL": f"redis://127.0.0.1:{free_port()}",
        # the driver's own retries stay, bounded: kept short here
        "REELGRAPH_GRAPH_TRANSACTION_TIMEOUT_S": "2",
        "REELGRAPH_GRAPH_ACQUISITION_TIMEOUT_S": "2",
    }
    sentence = said(reelgraph(tmp_path / "data", *command, **env), 1, "REELGRAPH_GRAPH_URL")
    assert f"cannot reach the Neo4j server at 127.0.0.1:{port}" in sentence
    assert "hunter2" not in sentence


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]])
def test_an_unreachable_falkordb(tmp_path: Path, command: list[str]) -> None:
    port = free_port()
    env = {
        "REELGRAPH_GRAPH_URL": f"falkor://127.0.0.1:{port}",
        "REELGRAPH_REDIS_URL": f"redis://127.0.0.1:{port}",
    }
    sentence = said(reelgraph(tmp_path / "data", *command, **env), 1, "REELGRAPH_GRAPH_URL")
    assert f"cannot reach the FalkorDB server at 127.0.0.1:{port}" in sentence


# --- a running server: its data folder, its port, its engine with an unreachable Redis


@dataclass
class Running:
    port: int
    data_dir: Path
    socket_path: Path


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A real `reelgraph serve` on a data folder of its own, answering /health."""
    root = tmp_path_factory.mktemp("startup-errors")
    data_dir, log = root / "data", root / "serve.log"
    port = free_port()
    args = ["serve", "--port", str(port), "--data-dir", str(data_dir)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            cwd=ROOT,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the server did not start:\n{log.read_text()}"
            time.sleep(0.1)
        socket_path = Path((data_dir / "run" / "socket.path").read_text().strip())
        yield Running(port, data_dir, socket_path)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["run", "--port", "0"]])
def test_a_data_folder_another_server_owns(running: Running, command: list[str]) -> None:
    result = reelgraph(running.data_dir, *command)
    said(result, 1, "in use by another reelgraph server", str(running.data_dir.resolve()))
    assert httpx.get(f"http://127.0.0.1:{running.port}/health").status_code == 200


@pytest.mark.parametrize("command", ["serve", "run"])
def test_a_port_in_use(running: Running, tmp_path: Path, command: str) -> None:
    data_dir = tmp_path / "data"
    result = reelgraph(data_dir, command, "--port", str(running.port))
    sentence = said(result, 1, f"port {running.port} on 127.0.0.1 is in use", "--port")
    assert sentence.endswith("stop what holds it or pass --port")
    # the port is checked first: no engine was started, the folder is not held
    assert not (data_dir / "run" / "socket.path").exists()
    if (data_dir / "reelgraph.lock").exists():
        fd = os.open(data_dir / "reelgraph.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if anything holds it
        finally:
            os.close(fd)


@pytest.mark.parametrize(
    ("command", "variable"),
    [(["serve", "--port", "0"], "REELGRAPH_REDIS_URL"), (["worker"], "REELGRAPH_BROKER_URL")],
)
def test_an_unreachable_redis_beside_a_reachable_graph(
    running: Running, tmp_path: Path, command: list[str], variable: str
) -> None:
    port = free_port()
    engine = f"unix://{running.socket_path}"
    env = {
        "REELGRAPH_GRAPH_URL": f"falkor+unix://{running.socket_path}",
        "REELGRAPH_REDIS_URL": engine,
        "REELGRAPH_SECRET_KEY": SECRET,
        variable: f"redis://127.0.0.1:{port}",
    }
    sentence = said(reelgraph(tmp_path / "data", *command, **env), 1, variable)
    assert f"cannot reach the Redis server at 127.0.0.1:{port}" in sentence


def test_the_installed_command_runs_from_any_folder(tmp_path: Path) -> None:
    """`reelgraph` as installed (the console script, outside the checkout): every module the
    CLI imports must be installed with the project (pyproject's py-modules and packages),
    not only importable from the repository's root."""
    script = Path(sys.executable).parent / "reelgraph"
    for command in ([], ["admin"], ["audit"], ["documents"], ["verify"], ["policy"], ["keys"]):
        result = subprocess.run(
            [str(script), *command, "--help"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (command, result.stderr)
        assert "Traceback" not in result.stderr
