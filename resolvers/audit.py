"""The audit log for a request: recording a decision that was made, and reading the log.

Moderators read all of it (narrowed to a clip or a cameo when asked). Anyone else reads the
entries about their own clips (in every state) and their own cameo: asking for someone
else's clip or cameo is NOT_FOUND, as for one that does not exist. Newest first (by seq);
the actor is named, as a user, to moderators only, and to nobody once erased.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from errors import BadUserInput, NotFound
from graph import audit as audit_repo
from graph.driver import GraphUnavailable
from graph.roles import holds
from resolvers.ids import decode_id
from resolvers.pagination import Page, decode_cursor, make_page, page_size

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = ["audit_page", "record"]

logger = logging.getLogger("reelgraph.audit")


async def record(db: Any, **entry: Any) -> bool:
    """graph.audit.append for a decision already written: a failure is logged loudly, not
    raised, as the decision stands and the client must hear that it does. False if it
    failed."""
    try:
        await audit_repo.append(db, **entry)
    except (GraphUnavailable, audit_repo.AuditContention, OSError):
        logger.exception("could not append %s to the audit log", entry.get("action"))
        return False
    return True


def _after_seq(after: str | None) -> int | None:
    key = decode_cursor(after, 1)
    if key is None:
        return None
    if not isinstance(key[0], int) or key[0] < 1:
        raise BadUserInput("invalid cursor")
    return key[0]


async def audit_page(
    ctx: Context,
    first: int | None,
    after: str | None,
    clip_id: str | None,
    cameo_id: str | None,
) -> Page[dict]:
    viewer_id = ctx.require_viewer()
    limit = page_size(first, ctx.settings.max_page_size)
    after_seq = _after_seq(after)
    raw_clip = decode_id(clip_id, "Clip") if clip_id is not None else None
    raw_cameo = decode_id(cameo_id, "Cameo") if cameo_id is not None else None
    moderator = holds(await ctx.viewer_roles(), "MODERATOR")
    if not moderator:
        if raw_clip is not None:
            clip = await ctx.loaders.clip_by_id.load(raw_clip)
            if clip is None or clip["authorId"] != viewer_id:
                raise NotFound("no such clip of yours")
        if raw_cameo is not None:
            cameo = await ctx.loaders.cameo_by_id.load(raw_cameo)
            if cameo is None or cameo["ownerId"] != viewer_id:
                raise NotFound("no such cameo of yours")
    rows = await audit_repo.entries_page(
        ctx.services.graph,
        user_id=None if moderator else viewer_id,
        clip_id=raw_clip,
        cameo_id=raw_cameo,
        after_seq=after_seq,
        limit=limit + 1,
    )
    entries = [{**row["entry"], "actorId": row["actorId"] if moderator else None} for row in rows]
    return make_page(entries, limit, key=lambda entry: (entry["seq"],))
