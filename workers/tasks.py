"""Celery tasks. Thin: they build the process's runtime once and call render_job."""

from __future__ import annotations

import asyncio
import logging

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_process_shutdown
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from graph.driver import GraphUnavailable, open_driver
from media.store import open_media_store
from settings import Settings
from workers.queue import RENDER_TASK
from workers.render_job import Busy, RenderRuntime, fail, new_owner, run_render
from workers.renderers import get_renderer

__all__ = ["register_tasks"]

logger = logging.getLogger(__name__)
TRANSIENT = (GraphUnavailable, RedisConnectionError, RedisTimeoutError, ConnectionError)

_runtime: RenderRuntime | None = None


def build_runtime(settings: Settings, secret: str) -> RenderRuntime:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    graph = open_driver(
        settings.graph_url, graph_name=settings.graph_name, neo4j_database=settings.neo4j_database
    )
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
        loop=loop,
    )


def register_tasks(app: Celery, settings: Settings, secret: str) -> None:
    """Define the tasks on app; the runtime (and any model) is built in each child after fork."""

    @worker_process_init.connect(weak=False)
    def _init_process(**_: object) -> None:
        global _runtime
        _runtime = build_runtime(settings, secret)
        warm = getattr(_runtime.renderer, "load", None)
        if callable(warm):
            warm()  # load model weights once per process, before the first task

    @worker_process_shutdown.connect(weak=False)
    def _close_process(**_: object) -> None:
        if _runtime is not None:
            _runtime.run(_runtime.graph.close())

    @app.task(
        bind=True,
        name=RENDER_TASK,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=settings.render_max_retries,
    )
    def render_clip(self: Task, clip_id: str) -> str:
        global _runtime
        if _runtime is None:  # a solo/threads pool has no process-init signal
            _runtime = build_runtime(settings, secret)
        owner = new_owner()
        try:
            outcome = run_render(_runtime, clip_id, owner)
        except Busy as busy:
            raise self.retry(countdown=busy.retry_in_s, max_retries=None) from None
        except SoftTimeLimitExceeded:
            fail(
                _runtime,
                clip_id,
                owner,
                f"the render took longer than {settings.render_soft_time_limit_s} s",
            )
            return "failed"
        except TRANSIENT as exc:
            if self.request.retries >= self.max_retries:
                _fail_quietly(
                    clip_id, owner, f"the render failed after {self.max_retries + 1} tries: {exc}"
                )
                raise
            raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc
        except Exception as exc:
            logger.exception("render of %s failed", clip_id)
            fail(_runtime, clip_id, owner, f"the renderer failed: {type(exc).__name__}: {exc}")
            return "failed"
        logger.info("clip %s: %s", clip_id, outcome)
        return outcome


def _fail_quietly(clip_id: str, owner: str, reason: str) -> None:
    try:
        if _runtime is not None:
            fail(_runtime, clip_id, owner, reason)
    except TRANSIENT:
        logger.warning("could not mark clip %s failed; the graph is unavailable", clip_id)
