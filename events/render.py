"""Render events from workers: progress for `renderProgress`, and RENDER_FINISHED.

Workers call these after the graph write they report on, so a subscriber that re-reads
the clip when the doorbell rings sees at least what was announced. Nothing here raises:
a render never fails because an event could not be sent.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from events.bus import publish_sync, render_channel, sync_client
from events.notifications import record_notification_sync

__all__ = ["render_finished", "render_progressed"]

logger = logging.getLogger("reelgraph.events")


def render_progressed(clip_id: str) -> None:
    """The clip's renderProgress (or state) changed in the graph."""
    publish_sync(render_channel(clip_id), {"clipId": clip_id})


def render_finished(clip_row: dict[str, Any] | None) -> None:
    """A render ended (DRAFT or FAILED; clip_row as the guarded write returned it, None
    when the write did not happen): ring renderProgress and tell the author."""
    if not clip_row:
        return
    render_progressed(clip_row["id"])
    author_id = clip_row.get("authorId")
    if not author_id:
        return
    try:
        client = sync_client()
    except Exception:
        logger.warning("no Redis for the RENDER_FINISHED of %s", clip_row["id"], exc_info=True)
        return
    payload = {"clipId": clip_row["id"], "actorId": author_id, "at": int(time.time() * 1000)}
    record_notification_sync(client, author_id, "RENDER_FINISHED", payload)
