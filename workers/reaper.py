"""The reaper: a thread in each worker's main process that re-queues clips whose render task
was lost (a broker that lost data, a worker that died and was never handed back its task).

One reaper sweeps at a time, under a Redis lock. Re-queueing is safe because render tasks
are idempotent: a duplicate finds its clip claimed or rendered and does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import redis
from celery import Celery

from graph import clips as clip_repo
from graph.driver import driver_for
from settings import Settings
from workers.queue import RenderQueue

__all__ = ["Reaper", "start_reaper"]

logger = logging.getLogger(__name__)
_LOCK_KEY = "reelgraph:reaper"
_BATCH = 200


class Reaper:
    def __init__(self, settings: Settings, app: Celery) -> None:
        self._settings = settings
        self._queue = RenderQueue(app)
        self._redis = redis.Redis.from_url(settings.redis_url or "")
        self._loop = asyncio.new_event_loop()
        self._graph = driver_for(settings)

    def sweep(self) -> list[str]:
        """Re-queue what looks lost; returns the clip ids re-queued (none without the lock)."""
        interval = self._settings.reaper_interval_s
        if not self._redis.set(_LOCK_KEY, "1", nx=True, ex=max(interval, 1)):
            return []
        now = int(time.time() * 1000)
        # a dead worker's task comes back after the visibility timeout; only then is it lost
        grace_ms = self._settings.render_visibility_timeout_s * 1000
        ids = self._loop.run_until_complete(
            clip_repo.stale_renders(
                self._graph,
                now=now,
                queued_before=now - self._settings.requeue_after_s * 1000,
                lease_before=now - grace_ms,
                limit=_BATCH,
            )
        )
        for clip_id in ids:
            self._queue.send(clip_id)
        if ids:
            logger.warning("re-queued %d clip(s) whose render task was lost", len(ids))
        return ids

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._settings.reaper_interval_s):
            try:
                self.sweep()
            except Exception:  # the next sweep tries again
                logger.exception("reaper sweep failed")


def start_reaper(settings: Settings, app: Celery) -> threading.Event:
    """Start the reaper thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=Reaper(settings, app).run, args=(stop,), name="reelgraph-reaper", daemon=True
    )
    thread.start()
    return stop
