"""Celery tasks. Thin: they build the process's runtime once and call render_job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import redis
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
from workers.fair_queue import FairQueue
from workers.queue import RENDER_NEXT_TASK, RENDER_TASK
from workers.reaper import start_reaper
from workers.render_job import Busy, Claim, RenderConsent, RenderRuntime, fail, run_render
from workers.renderers import get_renderer

__all__ = ["register_tasks"]

logger = logging.getLogger(__name__)

_runtime: RenderRuntime | None = None
# how many finished or removed clips one RENDER_NEXT_TASK skips before it gives up (each
# skipped entry had a task of its own, so giving up never leaves a clip without one)
_MAX_SKIPS = 100


def build_runtime(settings: Settings, *, with_renderer: bool = True) -> RenderRuntime:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    graph = driver_for(settings)
    renderer = None
    if with_renderer:
        renderer = get_renderer(
            settings.renderer,
            settings.av_model if settings.renderer == "diffusers-av" else settings.model,
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
        counters=redis.Redis.from_url(settings.redis_url) if settings.redis_url else None,
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
        renderer = runtime().renderer
        # once per process, before the first task: load the weights and, where the renderer
        # can, render a throwaway clip, so the first user's clip is not the slow one
        warm = getattr(renderer, "warm_up", None) or getattr(renderer, "load", None)
        if callable(warm):
            warm()

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
            rt = runtime(with_renderer=False)
            clip_id = self.args[0]
            fair = self.name == RENDER_NEXT_TASK
            if fair:  # the clip it took, not the one that sent it
                try:
                    clip_id = _fair_queue(rt).taken(self.id)
                except Exception as exc:  # Redis is down: the reaper finds the clip later
                    logger.warning("no clip for timed-out task %s: %r", self.id, exc)
                    return
                if clip_id is None:
                    return
            # the hard time limit killed the child: the parent records why, or the clip
            # would wait in RENDERING for a task that no longer exists. It knows the task id
            # and the killed process, not the attempt: it fails the claim that process made
            # (a redelivery of this task running elsewhere claimed from another process)
            reason = time_limit_reason(settings.render_time_limit_s)
            claim = Claim(self.id, worker=_worker_name(self.hostname, self.worker_pid))
            _fail_quietly(rt, clip_id, claim, reason)
            if fair:
                with contextlib.suppress(Exception):  # its record expires in any case
                    _fair_queue(rt).done(self.id)

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
        """Render one named clip (the reaper's re-queue of a lost task)."""
        outcome = _render(self, runtime(), clip_id, transient_failures)
        logger.info("clip %s: %s", clip_id, outcome)
        return outcome

    @app.task(
        bind=True,
        base=RenderTask,
        name=RENDER_NEXT_TASK,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=None,
    )
    def render_next(self: Task, sent_for: str | None = None, transient_failures: int = 0) -> str:
        """Render the next clip in turn (workers.fair_queue); a redelivery or a retry of this
        task renders the clip it took before."""
        rt = runtime()
        fair = _fair_queue(rt)
        task_id = self.request.id
        for _ in range(_MAX_SKIPS):
            try:
                clip_id = fair.take(task_id)
            except (redis.RedisError, OSError) as exc:
                if transient_failures >= settings.render_max_retries:
                    logger.error("the fair queue's Redis failed; giving up: %r", exc)
                    return "lost"  # the reaper re-queues a clip left QUEUED
                delay = retry_delay_s(transient_failures, settings.render_retry_backoff_s)
                raise self.retry(
                    countdown=delay, kwargs={"transient_failures": transient_failures + 1}
                ) from exc
            if clip_id is None:
                logger.info("no clip waits (sent for %s)", sent_for)
                return "idle"
            outcome = _render(self, rt, clip_id, transient_failures, busy_is_skip=True)
            try:  # not reached by a retry: that renders this clip again
                fair.done(task_id)
            except (redis.RedisError, OSError) as exc:  # the record expires in any case
                logger.warning("could not close task %s's record: %r", task_id, exc)
            logger.info("clip %s: %s", clip_id, outcome)
            if not (outcome == "gone" or outcome.startswith("skipped")):
                return outcome
            transient_failures = 0
        return "skipped"

    def _render(
        self: Task,
        rt: RenderRuntime,
        clip_id: str,
        transient_failures: int,
        *,
        busy_is_skip: bool = False,
    ) -> str:
        """One render of clip_id as this task; raises Celery's Retry to try again later.
        busy_is_skip: a clip another live task holds is that task's to render, not a wait."""
        claim = Claim(self.request.id, worker=_worker_name(self.request.hostname, os.getpid()))
        try:
            return run_render(rt, clip_id, claim)
        except Busy as busy:
            if busy_is_skip:
                return "skipped:busy"
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


def _worker_name(hostname: str | None, pid: int | None) -> str | None:
    """The worker process a claim was made from, as the child and its parent both name it."""
    return f"{hostname}:{pid}" if hostname and pid else None


def _fair_queue(rt: RenderRuntime) -> FairQueue:
    """The fair queue on the runtime's Redis (workers.fair_queue)."""
    if rt.counters is None:
        raise RuntimeError("no Redis for the fair render queue: set REELGRAPH_REDIS_URL")
    return FairQueue(rt.counters)


def _fail_quietly(rt: RenderRuntime, clip_id: str, claim: Claim, reason: str) -> None:
    """Mark the clip failed if the graph answers; if not, the reaper finds it later."""
    try:
        fail(rt, clip_id, claim, reason)
    except Exception as exc:  # the graph or its connection is down too
        logger.warning("could not mark clip %s failed: %r", clip_id, exc)
