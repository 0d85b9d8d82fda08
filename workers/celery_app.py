"""The Celery app: Redis broker, JSON only, late acks, one task at a time per process.

Two queues, each consumed by workers of its own: `render` by render workers (`reelgraph
worker`), `cameos` by the capture worker each of them starts (workers.capture_worker). A
capture check never takes a render slot, nor a render a capture slot.
"""

from __future__ import annotations

import redis
from celery import Celery
from celery.app.control import Control
from kombu import Queue

from settings import Settings
from urls import broker_url_for_kombu

__all__ = ["CAMEO_QUEUE", "RENDER_QUEUE", "broker_url", "make_celery"]

RENDER_QUEUE = "render"
CAMEO_QUEUE = "cameos"  # capture verifications: CPU only, in the capture worker alone


def broker_url(settings: Settings) -> str:
    url = settings.broker_url or settings.redis_url
    if not url:
        raise RuntimeError("no broker: set REELGRAPH_REDIS_URL or REELGRAPH_BROKER_URL")
    return broker_url_for_kombu(url)


class RenderControl(Control):
    """Celery's control, whose purge also empties the fair render queue's waiting lists
    (workers.fair_queue): the generic tasks it drops are the only ones those entries had.
    The clips stay QUEUED; the reaper queues a render for each when they go stale."""

    redis_url: str | None = None

    def purge(self, connection=None) -> int:
        purged = super().purge(connection)
        if self.redis_url:
            from workers.fair_queue import purge as purge_waiting  # beside the tasks' modules

            client = redis.Redis.from_url(self.redis_url)
            try:
                purge_waiting(client)
            finally:
                client.close()
        return purged


def make_celery(settings: Settings) -> Celery:
    control = type("ReelgraphControl", (RenderControl,), {"redis_url": settings.redis_url})
    app = Celery("reelgraph", broker=broker_url(settings), set_as_current=False, control=control)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=RENDER_QUEUE,
        # both declared, so a purge or an inspection sees both; each has its own workers
        task_queues=[Queue(RENDER_QUEUE), Queue(CAMEO_QUEUE)],
        # a task is acknowledged only when it has finished; a lost worker's task runs again
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # loading a real model in worker_process_init takes longer than the 4 s default (and
        # a short render limit must not make a slow child start count as a dead one)
        worker_proc_alive_timeout=max(settings.render_time_limit_s, 60),
        task_soft_time_limit=settings.render_soft_time_limit_s,
        task_time_limit=settings.render_time_limit_s,
        broker_transport_options={
            "visibility_timeout": settings.render_visibility_timeout_s,
            # sweep for a dead worker's unacknowledged renders often enough to matter
            "unacked_restore_interval": max(1, min(60, settings.render_visibility_timeout_s // 10)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
