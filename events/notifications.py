"""Notification records: one capped Redis stream per recipient.

`notifications:<userId>` holds the user's newest notifications (about the last
MAX_PER_USER; XADD's approximate trim keeps it cheap), each entry
`{kind: <NotificationKind>, payload: <JSON object>}`; the payload names the clip and the
actor and when it happened (`clipId`, `actorId`, `at` in epoch ms). Live delivery (the
subscriptions issue) reads these streams from an entry id on, so a reconnecting client can
resume where it stopped.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_PER_USER", "record_notification", "stream_key"]

MAX_PER_USER = 1000


def stream_key(user_id: str) -> str:
    return f"notifications:{user_id}"


async def record_notification(redis: Any, user_id: str, kind: str, payload: dict[str, Any]) -> str:
    """Append a notification for user_id; returns the stream entry id."""
    fields = {"kind": kind, "payload": json.dumps(payload, separators=(",", ":"))}
    entry_id = await redis.xadd(stream_key(user_id), fields, maxlen=MAX_PER_USER, approximate=True)
    return entry_id if isinstance(entry_id, str) else entry_id.decode()
