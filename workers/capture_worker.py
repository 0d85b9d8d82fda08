"""The capture worker: a Celery worker of its own for the `cameos` queue.

Renders and capture checks never share a slot. `reelgraph worker` consumes `render` only and
starts this worker beside it (start_capture_worker, stop_capture_worker), which consumes
`cameos` only, with `capture_worker_concurrency` processes (1 by default) and no renderer
loaded. A long capture check (at worst the sandbox's wall-time limit, workers.sandbox) holds
a capture slot, never the render slot; a long render never delays a capture's verdict.

Run on its own (a CPU-only machine beside GPU render workers): `python -m workers.capture_worker`,
with the same REELGRAPH_* settings as a render worker.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from settings import Settings
    from workers.render_job import RenderRuntime

__all__ = [
    "capture_worker",
    "capture_worker_argv",
    "main",
    "start_capture_worker",
    "stop_capture_worker",
]

logger = logging.getLogger(__name__)

_runtime: RenderRuntime | None = None


def capture_worker_argv(settings: Settings) -> list[str]:
    """Celery's worker arguments for the capture worker."""
    from workers.celery_app import CAMEO_QUEUE

    concurrency = settings.capture_worker_concurrency
    return [
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        f"--queues={CAMEO_QUEUE}",
        "--without-gossip",
        "--without-mingle",
        f"--hostname=captures-{os.getpid()}@%h",
    ]


def capture_worker(settings: Settings) -> int:
    """Run the capture worker in this process until it is told to stop (SIGTERM: the check
    under way finishes). Raises startup.StartupError as `reelgraph worker` does."""
    from celery.signals import worker_process_shutdown

    from startup import worker_settings
    from workers.cameo_tasks import register_cameo_tasks
    from workers.celery_app import make_celery
    from workers.tasks import build_runtime

    settings = worker_settings(settings)
    app = make_celery(settings)

    def runtime() -> RenderRuntime:
        global _runtime
        if _runtime is None:  # once per pool process, after the fork; no renderer, no model
            _runtime = build_runtime(settings, with_renderer=False)
        return _runtime

    @worker_process_shutdown.connect(weak=False)
    def _close_process(**_: object) -> None:
        if _runtime is not None:
            _runtime.run(_runtime.graph.close())

    register_cameo_tasks(app, settings, runtime)
    app.worker_main(capture_worker_argv(settings))
    return 0


def start_capture_worker(settings: Settings) -> subprocess.Popen:
    """Start the capture worker beside this (render) worker: `python -m
    workers.capture_worker` on the same graph, broker and data folder, in this process group
    (a signal to the group reaches both), killed by the kernel if this process dies. Call it
    from the main thread of the process that will stop it."""
    from graph.embedded import child_argv
    from startup import worker_env

    argv, preexec = child_argv([sys.executable, "-m", "workers.capture_worker"])
    return subprocess.Popen(argv, env=worker_env(settings), preexec_fn=preexec)


def stop_capture_worker(proc: subprocess.Popen, timeout_s: float = 100.0) -> None:
    """Warm shutdown: the check under way finishes (within the sandbox's wall-time limit);
    past timeout_s it is killed, and the task comes back to the queue (acks_late)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    """`python -m workers.capture_worker`: settings from the environment, as `reelgraph`."""
    from pydantic import ValidationError

    from settings import get_settings
    from startup import invalid_settings, run_command

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def command() -> int:
        try:
            settings = get_settings()
        except ValidationError as exc:
            raise invalid_settings(exc) from None
        return capture_worker(settings)

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
