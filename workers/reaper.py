"""The reaper: a thread in each worker's main process that re-queues clips whose render task
was lost (a broker that lost data, a worker that died and was never handed back its task),
and deletes stored files that no clip names (a crash between storing a file and the move to
DRAFT, a removed clip whose file could not be deleted at once).

One reaper sweeps at a time, under a Redis lock. Re-queueing is safe because render tasks
are idempotent: a duplicate finds its clip claimed or rendered and does nothing. Deleting is
safe because a file is deleted only when no clip names it, its clip is not queued or
rendering (a render stores its file before the move to DRAFT), and it was already seen
orphaned by sweeps for the whole grace period.

After a start, the reaper also takes up at once the renders a crash left behind: for one
lease (and a few seconds) it looks every second for RENDERING clips whose lease has run out
and re-queues each once. A clip whose worker died with its broker (a killed `reelgraph run`:
the task rejected, or Redis down, when the process group went) is thus rendered again a
second or so after its lease ends, instead of after the broker's visibility timeout or not at
all. Taking over an expired lease is what any delivery may do already (CLAIM_RENDER); a
duplicate task finds the clip claimed or rendered and does nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time

import redis
from celery import Celery

from graph import clips as clip_repo
from graph.driver import driver_for
from media.store import MediaStore, clip_id_from_key, open_media_store
from settings import Settings
from workers.queue import RenderQueue

__all__ = ["Reaper", "start_reaper"]

logger = logging.getLogger(__name__)
_LOCK_KEY = "reelgraph:reaper"
# media key -> when a sweep first saw it with no clip naming it (epoch ms)
_ORPHANS_KEY = "reelgraph:media-orphans"
_BATCH = 200
_RECOVERY_POLL_S = 1.0
_RECOVERY_SLACK_S = 5.0  # past one lease: a render killed just before the restart


class Reaper:
    def __init__(self, settings: Settings, app: Celery) -> None:
        self._settings = settings
        self._queue = RenderQueue(app)
        self._redis = redis.Redis.from_url(settings.redis_url or "")
        self._loop = asyncio.new_event_loop()
        self._graph = driver_for(settings)
        self._media: MediaStore = open_media_store(settings, None)  # deletes, never links
        self._recovered: set[str] = set()  # ids the start-up recovery re-queued

    def sweep(self) -> tuple[list[str], list[str]]:
        """One sweep under the lock: (clip ids re-queued, media keys deleted); ([], []) when
        another reaper holds the lock."""
        interval = self._settings.reaper_interval_s
        if not self._redis.set(_LOCK_KEY, "1", nx=True, ex=max(interval, 1)):
            return [], []
        return self.requeue_lost(), self.delete_orphans()

    def requeue_lost(self) -> list[str]:
        """Send a render task again for each clip whose task looks lost; their ids."""
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

    def requeue_expired_leases(self) -> list[str]:
        """Re-queue RENDERING clips whose lease has run out (a start-up's recovery); their ids.

        Not under the sweep lock: each clip is returned once by the guarded statement (it
        touches the clip), and this reaper re-queues an id at most once a lease."""
        now = int(time.time() * 1000)
        ids = self._loop.run_until_complete(
            clip_repo.stale_renders(
                self._graph, now=now, queued_before=0, lease_before=now, limit=_BATCH
            )
        )
        fresh = [clip_id for clip_id in ids if clip_id not in self._recovered]
        for clip_id in fresh:
            self._queue.send(clip_id)
            self._recovered.add(clip_id)
        if fresh:
            logger.warning("re-queued %d clip(s) a crashed render left behind", len(fresh))
        return fresh

    def delete_orphans(self) -> list[str]:
        """Delete the stored files no clip names that were orphaned for the grace period."""
        now = int(time.time() * 1000)
        grace_ms = self._settings.media_orphan_grace_s * 1000
        first_seen = {
            key.decode(): int(at) for key, at in self._redis.hgetall(_ORPHANS_KEY).items()
        }
        orphans: dict[str, int] = {}
        keys = iter(self._media.keys())
        while batch := list(itertools.islice(keys, _BATCH)):
            # keys this code base did not write are never touched
            files = [(key, clip_id) for key in batch if (clip_id := clip_id_from_key(key))]
            in_use = self._loop.run_until_complete(clip_repo.keys_in_use(self._graph, files))
            for key, _ in files:
                if key not in in_use:
                    orphans[key] = first_seen.get(key, now)
        deleted = [key for key, seen_at in orphans.items() if now - seen_at >= grace_ms]
        for key in deleted:
            self._media.delete(key)
        still_waiting = {key: at for key, at in orphans.items() if now - at < grace_ms}
        with self._redis.pipeline() as pipe:  # forget what is gone or named again
            pipe.delete(_ORPHANS_KEY)
            if still_waiting:
                pipe.hset(_ORPHANS_KEY, mapping=still_waiting)
            pipe.execute()
        if deleted:
            logger.warning("deleted %d stored file(s) that no clip names", len(deleted))
        return deleted

    def close(self) -> None:
        self._loop.run_until_complete(self._graph.close())
        self._loop.close()
        self._redis.close()

    def run(self, stop: threading.Event) -> None:
        interval = self._settings.reaper_interval_s
        started = time.monotonic()
        recover_until = started + self._settings.render_lease_s + _RECOVERY_SLACK_S
        next_sweep = started + interval
        while True:
            now = time.monotonic()
            recovering = now < recover_until
            wait = min(_RECOVERY_POLL_S, next_sweep - now) if recovering else next_sweep - now
            if stop.wait(max(0.0, wait)):
                return
            try:
                if recovering:
                    self.requeue_expired_leases()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + interval
                    self.sweep()
            except Exception:  # the next look tries again
                logger.exception("reaper sweep failed")


def start_reaper(settings: Settings, app: Celery) -> threading.Event:
    """Start the reaper thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=Reaper(settings, app).run,
        args=(stop,),
        name="reelgraph-reaper",
        daemon=True,
    )
    thread.start()
    return stop
