"""Celery tasks. Thin: they build the process's runtime once and call render_job."""

from __future__ import annotations

import asyncio
import logging

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import (
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from graph.driver import GraphUnavailable, driver_for
from media.store import open_media_store
from settings import Settings
from workers.queue import RENDER_TASK
from workers.reaper import start_reaper
from workers.render_job import Busy, RenderRuntime, fail, run_render
from workers.renderers import get_renderer

__all__ = ["register_tasks"]

logger = logging.getLogger(__name__)
TRANSIENT = (GraphUnavailable, RedisConnectionError, RedisTimeoutError, ConnectionError)

_runtime: RenderRuntime | None = None


def build_runtime(settings: Settings, secret: str, *, with_renderer: bool = True) -> RenderRuntime:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    graph = driver_for(settings)
    renderer = None
    if with_renderer:
        renderer = get_renderer(
            settings.renderer,
            settings.model,
            resolution=settings.diffusers_size,
            steps=settings.diffusers_steps,
        )
    return RenderRuntime(
        graph=graph,
        media=open_media_store(settings, secret),
        renderer=renderer,
        lease_s=settings.render_lease_s,
        max_attempts=settings.render_max_retries + 1,
        loop=loop,
    )


def register_tasks(app: Celery, settings: Settings, secret: str) -> None:
    """Define the tasks on app; the runtime (and any model) is built in each child after fork."""

    def runtime(with_renderer: bool = True) -> RenderRuntime:
        global _runtime
        if _runtime is None:  # a solo pool, or the parent handling a hard time limit
            _runtime = build_runtime(settings, secret, with_renderer=with_renderer)
        return _runtime

    @worker_process_init.connect(weak=False)
    def _init_process(**_: object) -> None:
        warm = getattr(runtime().renderer, "load", None)
        if callable(warm):
            warm()  # load model weights once per process, before the first task

    reaper_stop = []

    @worker_ready.connect(weak=False)
    def _start_reaper(**_: object) -> None:
        reaper_stop.append(start_reaper(settings, app))  # main process only

    @worker_shutting_down.connect(weak=False)
    def _stop_reaper(**_: object) -> None:
        for stop in reaper_stop:
            stop.set()

    @worker_process_shutdown.connect(weak=False)
    def _close_process(**_: object) -> None:
        if _runtime is not None:
            _runtime.run(_runtime.graph.close())

    class RenderTask(Task):
        def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
            # the hard time limit killed the child: the parent records why, or the clip
            # would wait in RENDERING for a task that no longer exists
            if isinstance(exc, TimeLimitExceeded) and args:
                reason = f"the render took longer than {settings.render_time_limit_s} s"
                _fail_quietly(runtime(with_renderer=False), args[0], task_id, reason)

    @app.task(
        bind=True,
        base=RenderTask,
        name=RENDER_TASK,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=None,  # waits for another worker's lease are not failures
    )
    def render_clip(self: Task, clip_id: str, transient_failures: int = 0) -> str:
        rt = runtime()
        owner = self.request.id
        try:
            outcome = run_render(rt, clip_id, owner)
        except Busy as busy:
            raise self.retry(
                countdown=busy.retry_in_s, kwargs={"transient_failures": transient_failures}
            ) from None
        except SoftTimeLimitExceeded:
            limit = settings.render_soft_time_limit_s
            fail(rt, clip_id, owner, f"the render took longer than {limit} s")
            return "failed"
        except TRANSIENT as exc:
            if transient_failures >= settings.render_max_retries:
                reason = f"the render failed after {transient_failures + 1} tries: {exc}"
                _fail_quietly(rt, clip_id, owner, reason)
                raise
            raise self.retry(
                exc=exc,
                countdown=min(2**transient_failures, 60),
                kwargs={"transient_failures": transient_failures + 1},
            ) from exc
        except Exception as exc:
            logger.exception("render of %s failed", clip_id)
            fail(rt, clip_id, owner, f"the renderer failed: {type(exc).__name__}: {exc}")
            return "failed"
        logger.info("clip %s: %s", clip_id, outcome)
        return outcome


def _fail_quietly(rt: RenderRuntime, clip_id: str, owner: str, reason: str) -> None:
    try:
        fail(rt, clip_id, owner, reason)
    except TRANSIENT:
        logger.warning("could not mark clip %s failed; the graph is unavailable", clip_id)
