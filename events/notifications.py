"""Notification records: one capped Redis stream per recipient, and live delivery.

`notifications:<userId>` holds the user's newest notifications (about the last
MAX_PER_USER; XADD's approximate trim keeps it cheap), each entry
`{kind: <NotificationKind>, payload: <JSON object>}`; the payload names the clip and the
actor and when it happened (`clipId`, `actorId`, `at` in epoch ms).

Recording a notification appends it to the stream, then rings the recipient's pub/sub
channel (events/bus.py). The stream is the record and pub/sub only the doorbell: a
subscriber subscribes first, then reads the stream after its cursor, then reads again after
the last entry it delivered whenever the doorbell rings. Entry ids only grow, so nothing is
delivered twice, and nothing recorded after the subscription started can be missed.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from events.bus import notifications_channel, publish, publish_sync

__all__ = [
    "KINDS",
    "MAX_PER_USER",
    "Entry",
    "entries_after",
    "is_entry_id",
    "last_entry_id",
    "record_notification",
    "record_notification_sync",
    "stream_key",
]

logger = logging.getLogger("reelgraph.events")

MAX_PER_USER = 1000
KINDS = frozenset(
    {
        "APPEARANCE_REQUESTED",
        "APPEARANCE_DECIDED",
        "CLIP_REMIXED",
        "RENDER_FINISHED",
        "CLIP_REMOVED",
        "NEW_FOLLOWER",
        "CAMEO_FACE_CLAIMED",
    }
)
_ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")


def stream_key(user_id: str) -> str:
    return f"notifications:{user_id}"


def is_entry_id(value: object) -> bool:
    return isinstance(value, str) and _ENTRY_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Entry:
    """One notification as stored: its stream id (the cursor), kind and payload."""

    id: str
    kind: str
    payload: dict[str, Any]

    @property
    def at(self) -> int:
        at = self.payload.get("at")
        return at if isinstance(at, int) else int(self.id.split("-")[0])


def _fields(kind: str, payload: dict[str, Any]) -> dict[str, str]:
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    return {"kind": kind, "payload": json.dumps(payload, separators=(",", ":"))}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else value.decode()


async def record_notification(redis: Any, user_id: str, kind: str, payload: dict[str, Any]) -> str:
    """Append a notification for user_id and ring their live subscriptions; returns the
    stream entry id. Once the entry is written, a failed doorbell is only logged: the
    subscriber's periodic re-read still delivers it."""
    entry_id = _text(
        await redis.xadd(
            stream_key(user_id), _fields(kind, payload), maxlen=MAX_PER_USER, approximate=True
        )
    )
    try:
        await publish(redis, notifications_channel(user_id), {"id": entry_id})
    except (RedisError, OSError):
        logger.warning("could not ring %s's notifications", user_id, exc_info=True)
    return entry_id


def record_notification_sync(
    client: Any, user_id: str, kind: str, payload: dict[str, Any]
) -> str | None:
    """A worker's record_notification (blocking client). Never raises: returns None when
    Redis refused, which is logged; the render it reports on stands either way."""
    try:
        entry_id = _text(
            client.xadd(
                stream_key(user_id), _fields(kind, payload), maxlen=MAX_PER_USER, approximate=True
            )
        )
    except (RedisError, OSError):
        logger.warning("could not record a %s notification for %s", kind, user_id, exc_info=True)
        return None
    publish_sync(notifications_channel(user_id), {"id": entry_id}, client)
    return entry_id


def _entry(entry_id: Any, fields: dict[Any, Any]) -> Entry | None:
    fields = {_text(k): _text(v) for k, v in fields.items()}
    try:
        payload = json.loads(fields.get("payload") or "{}")
    except ValueError:
        payload = None
    if fields.get("kind") not in KINDS or not isinstance(payload, dict):
        logger.warning("skipping malformed notification entry %s", entry_id)
        return None
    return Entry(_text(entry_id), fields["kind"], payload)


async def entries_after(redis: Any, user_id: str, after: str | None, count: int) -> list[Entry]:
    """Up to `count` entries recorded after entry id `after` (from the oldest kept when
    None), oldest first."""
    start = f"({after}" if after else "-"
    rows = await redis.xrange(stream_key(user_id), min=start, max="+", count=count)
    return [e for e in (_entry(i, f) for i, f in rows) if e is not None]


async def last_entry_id(redis: Any, user_id: str) -> str:
    """The newest entry's id ("0-0" for an empty stream): live delivery starts after it."""
    rows = await redis.xrevrange(stream_key(user_id), max="+", min="-", count=1)
    return _text(rows[0][0]) if rows else "0-0"
