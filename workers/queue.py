"""The API side of the render queue: publishing render tasks, never running them.

New clips go through the fair queue (workers.fair_queue): the clip waits in its author's own
list and a generic RENDER_NEXT_TASK renders whichever clip is next in turn. RENDER_TASK renders
one named clip: the reaper's re-queue of a clip whose task was lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from celery import Celery
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from errors import ServiceUnavailable
from workers import fair_queue

__all__ = ["RENDER_NEXT_TASK", "RENDER_TASK", "RenderQueue"]

logger = logging.getLogger(__name__)
RENDER_TASK = "reelgraph.render_clip"
# renders the next clip in turn; its one argument names the clip whose arrival sent it (for
# logs and the broker's records), which is not necessarily the clip it renders
RENDER_NEXT_TASK = "reelgraph.render_next"
_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2}


class RenderQueue:
    def __init__(self, celery_app: Celery) -> None:
        self._app = celery_app

    def close(self) -> None:
        self._app.close()

    def send(self, clip_id: str) -> None:
        """Publish a render task (blocking); raises kombu's OperationalError when it cannot."""
        self._app.send_task(RENDER_TASK, args=[clip_id], retry=True, retry_policy=_RETRY_POLICY)

    def send_next(self, clip_id: str) -> None:
        """Publish one "render the next clip in turn" task (blocking), sent for clip_id."""
        self._app.send_task(
            RENDER_NEXT_TASK, args=[clip_id], retry=True, retry_policy=_RETRY_POLICY
        )

    async def enqueue_fair(
        self, redis, author_id: str, clip_id: str, on_refused: Callable[[], Awaitable[None]]
    ) -> None:
        """Queue a new clip's render in its author's turn (workers.fair_queue); when Redis or
        the broker is down, undo with on_refused and tell the client."""
        listed = False
        try:
            await fair_queue.enqueue(redis, author_id, clip_id)
            listed = True
            await asyncio.to_thread(self.send_next, clip_id)
        except BaseException as exc:
            # whatever went wrong (even a cancelled request), no clip may wait for no task
            if listed:
                await asyncio.shield(self._withdraw(redis, author_id, clip_id))
            await asyncio.shield(on_refused())
            if isinstance(exc, OperationalError | OSError | RedisError):
                logger.warning("render queue unavailable for clip %s: %s", clip_id, exc)
                raise ServiceUnavailable(
                    "the render queue is unavailable, so the clip was not created; "
                    "try again shortly"
                ) from exc
            raise

    @staticmethod
    async def _withdraw(redis, author_id: str, clip_id: str) -> None:
        try:
            await fair_queue.withdraw(redis, author_id, clip_id)
        except (RedisError, OSError):  # its task never went out: taking it skips it
            logger.warning("could not take clip %s off its author's render list", clip_id)

    async def enqueue(self, clip_id: str, on_refused: Callable[[], Awaitable[None]]) -> None:
        """Queue a render; when the broker is down, undo with on_refused and tell the client."""
        try:
            await asyncio.to_thread(self.send, clip_id)
        except BaseException as exc:
            # whatever went wrong (even a cancelled request), no clip may wait for no task
            await asyncio.shield(on_refused())
            if isinstance(exc, OperationalError | OSError):
                logger.warning("render queue unavailable for clip %s: %s", clip_id, exc)
                raise ServiceUnavailable(
                    "the render queue is unavailable, so the clip was not created; "
                    "try again shortly"
                ) from exc
            raise
