"""Celery tasks. Thin: they build the process's runtime once and call render_job."""

from __future__ import annotations

import asyncio
import logging
import os

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import (
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)
from celery.worker import state as worker_state
from celery.worker.request import Request

from graph.driver import driver_for
from media.store import open_media_store
from settings import Settings
from workers.cameo_tasks import register_cameo_tasks
from workers.failures import failure_reason, retry_delay_s, time_limit_reason, transient_reason
from workers.queue import RENDER_TASK
from workers.reaper import start_reaper
from workers.render_job import Busy, Claim, RenderConsent, RenderRuntime, fail, run_render
from workers.renderers import get_renderer

__all__ = ["register_tasks"]

logger = logging.getLogger(__name__)

_runtime: RenderRuntime | None = None


def build_runtime(settings: Settings, *, with_renderer: bool = True) -> RenderRuntime:
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
        media=open_media_store(settings, None),  # workers store files, never sign links
        renderer=renderer,
        lease_s=settings.render_lease_s,
        max_attempts=settings.render_max_retries + 1,
        loop=loop,
        consent=RenderConsent(settings),  # public keys only: workers never mint tokens
    )


def register_tasks(app: Celery, settings: Settings) -> None:
    """Define the tasks on app; the runtime (and any model) is built in each child after fork."""

    def runtime(with_renderer: bool = True) -> RenderRuntime:
        global _runtime
        if _runtime is None:  # a solo pool, or the parent handling a hard time limit
            _runtime = build_runtime(settings, with_renderer=with_renderer)
        return _runtime

    @worker_process_init.connect(weak=False)
    def _init_process(**_: object) -> None:
        warm = getattr(runtime().renderer, "load", None)
        if callable(warm):
            warm()  # load model weights once per process, before the first task

    register_cameo_tasks(app, settings, runtime)  # capture checks share the render queue

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

    class RenderRequest(Request):
        """The parent's view of a render task: it alone outlives a hard time limit."""

        def on_timeout(self, soft: bool, timeout: float) -> None:
            super().on_timeout(soft, timeout)
            if soft or worker_state.should_terminate or not self.args:
                return
            # the hard time limit killed the child: the parent records why, or the clip
            # would wait in RENDERING for a task that no longer exists. It knows the task id
            # and the killed process, not the attempt: it fails the claim that process made
            # (a redelivery of this task running elsewhere claimed from another process)
            reason = time_limit_reason(settings.render_time_limit_s)
            claim = Claim(self.id, worker=_worker_name(self.hostname, self.worker_pid))
            _fail_quietly(runtime(with_renderer=False), self.args[0], claim, reason)

    class RenderTask(Task):
        Request = RenderRequest

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
        claim = Claim(self.request.id, worker=_worker_name(self.request.hostname, os.getpid()))
        try:
            outcome = run_render(rt, clip_id, claim)
        except Busy as busy:
            logger.info(
                "clip %s is being rendered elsewhere; retry in %.1f s", clip_id, busy.retry_in_s
            )
            raise self.retry(
                countdown=busy.retry_in_s, kwargs={"transient_failures": transient_failures}
            ) from None
        except SoftTimeLimitExceeded:
            fail(rt, clip_id, claim, time_limit_reason(settings.render_soft_time_limit_s))
            return "failed"
        except Exception as exc:
            reason = transient_reason(exc)
            if reason is None:
                # the details are for operators; the clip gets a sentence without them
                logger.exception("render of %s failed", clip_id)
                _fail_quietly(rt, clip_id, claim, failure_reason(exc))
                return "failed"
            if transient_failures >= settings.render_max_retries:
                logger.error(
                    "render of %s failed after %d tries: %r",
                    clip_id,
                    transient_failures + 1,
                    exc,
                    exc_info=True,
                )
                _fail_quietly(rt, clip_id, claim, reason)
                return "failed"
            delay = retry_delay_s(transient_failures, settings.render_retry_backoff_s)
            logger.warning(
                "render of %s hit a transient failure (%r); retry %d in %.1f s",
                clip_id,
                exc,
                transient_failures + 1,
                delay,
            )
            raise self.retry(
                countdown=delay, kwargs={"transient_failures": transient_failures + 1}
            ) from exc
        logger.info("clip %s: %s", clip_id, outcome)
        return outcome


def _worker_name(hostname: str | None, pid: int | None) -> str | None:
    """The worker process a claim was made from, as the child and its parent both name it."""
    return f"{hostname}:{pid}" if hostname and pid else None


def _fail_quietly(rt: RenderRuntime, clip_id: str, claim: Claim, reason: str) -> None:
    """Mark the clip failed if the graph answers; if not, the reaper finds it later."""
    try:
        fail(rt, clip_id, claim, reason)
    except Exception as exc:  # the graph or its connection is down too
        logger.warning("could not mark clip %s failed: %r", clip_id, exc)
