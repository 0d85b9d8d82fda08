"""The API side of the render queue: publishing render tasks, never running them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from celery import Celery
from kombu.exceptions import OperationalError

from errors import ServiceUnavailable

__all__ = ["RENDER_TASK", "RenderQueue"]

logger = logging.getLogger(__name__)
RENDER_TASK = "reelgraph.render_clip"


class RenderQueue:
    def __init__(self, celery_app: Celery) -> None:
        self._app = celery_app

    def close(self) -> None:
        self._app.close()

    def send(self, clip_id: str) -> None:
        """Publish a render task (blocking); raises kombu's OperationalError when it cannot."""
        self._app.send_task(
            RENDER_TASK,
            args=[clip_id],
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
        )

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
