"""Reports and moderation: reportClip, the queue, resolveReport, restoreClip, appeals.

Who may do what:
- reportClip: any signed-in viewer, on a clip they may see (resolvers.clips.visible_clip;
  one they may not is NOT_FOUND), not their own; one OPEN report per reporter and clip.
- moderationQueue, resolveReport, restoreClip: moderators (and admins).
- appealTakeDown: the clip's author, once per take-down.
A take-down tells the author and the owners of the cameos featured in the clip
(CLIP_REMOVED, with no actor: moderators act anonymously). Every decision is appended to the
audit log (resolvers.audit.record) after it is written.
"""

from __future__ import annotations

import logging
import unicodedata
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from ulid import ULID

from errors import BadUserInput, Conflict, Forbidden, NotFound
from events.notifications import record_notification
from graph import moderation as moderation_repo
from resolvers.audit import record
from resolvers.clips import clip_is_published, delete_clip_media, fresh_clip, visible_clip
from resolvers.ids import decode_id
from resolvers.pagination import Page, make_page, page_size, time_id_cursor
from resolvers.users import now_ms

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = [
    "MAX_NOTE",
    "REASONS",
    "appeal_take_down",
    "author_deleted",
    "moderation_queue",
    "owner_removed",
    "report",
    "report_clip",
    "resolve_report",
    "restore_clip",
]

logger = logging.getLogger(__name__)

MAX_NOTE = 1000
REASONS = (
    "IMPERSONATION",
    "HARASSMENT",
    "SEXUAL",
    "VIOLENCE",
    "COPYRIGHT",
    "MISINFORMATION",
    "SPAM",
    "OTHER",
)


def _note(note: str | None) -> str | None:
    """A note as stored: trimmed, NFC, None when empty; BAD_USER_INPUT when too long or
    holding control characters."""
    if note is None:
        return None
    cleaned = unicodedata.normalize("NFC", note.strip())
    if len(cleaned) > MAX_NOTE:
        raise BadUserInput(f"the note is longer than {MAX_NOTE} characters")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in cleaned):
        raise BadUserInput("the note may not contain control characters")
    return cleaned or None


def _reason(reason: str) -> str:
    if reason not in REASONS:  # the enum guards the API; this guards other callers
        raise BadUserInput(f"reason must be one of {', '.join(REASONS)}")
    return reason


async def report(ctx: Context, report_id: str) -> dict | None:
    rows = await moderation_repo.reports_by_ids(ctx.services.graph, [report_id])
    return rows.get(report_id)


async def report_clip(ctx: Context, clip_id: str, reason: str, note: str | None) -> dict:
    viewer_id = ctx.require_viewer()
    raw_id = decode_id(clip_id, "Clip")
    reason, note = _reason(reason), _note(note)
    clip = await visible_clip(ctx, raw_id)
    if clip is None:
        raise NotFound("no such clip")
    if clip["authorId"] == viewer_id:
        raise BadUserInput("you cannot report your own clip; delete it instead")
    params = {
        "id": str(ULID()),
        "reporterId": viewer_id,
        "clipId": raw_id,
        "reason": reason,
        "note": note,
        "now": now_ms(),
    }
    filed = await moderation_repo.file_report(ctx.services.graph, params)
    if filed is None:
        raise Conflict("you have an open report on this clip already")
    return filed


async def moderation_queue(
    ctx: Context, reason: str | None, first: int | None, after: str | None
) -> Page[dict]:
    """Open reports and appeals, oldest first."""
    await ctx.require_role("MODERATOR")
    limit = page_size(first, ctx.settings.max_page_size)
    cursor = time_id_cursor(after)
    if reason is not None:
        reason = _reason(reason)
    rows = await moderation_repo.queue_page(ctx.services.graph, reason, cursor, limit + 1)
    page = make_page(rows, limit, key=lambda row: (row["at"], row["report"]["id"]))
    return Page([(c, row["report"]) for c, row in page.items], page.has_next_page)


async def _notify_removed(ctx: Context, clip: dict, at: int) -> None:
    """CLIP_REMOVED to the author and the featured owners, naming no actor; the clip is down
    already, so a Redis failure is logged and the decision still stands."""
    recipients = [clip["authorId"], *(clip.get("featuredOwnerIds") or [])]
    payload = {"clipId": clip["id"], "actorId": None, "at": at}
    for user_id in dict.fromkeys(recipients):
        try:
            await record_notification(ctx.services.redis, user_id, "CLIP_REMOVED", payload)
        except (RedisError, OSError):
            logger.exception("could not tell %s that clip %s was taken down", user_id, clip["id"])


def _forget(ctx: Context, clip: dict) -> None:
    """Later fields of the same document read the clip and its lists anew."""
    fresh_clip(ctx, clip)
    ctx.loaders.clip_page_by_author.clear_all()


async def resolve_report(ctx: Context, report_id: str, action: str, note: str | None) -> dict:
    moderator_id = await ctx.require_role("MODERATOR")
    raw_id = decode_id(report_id, "Report")
    note = _note(note)
    db, now = ctx.services.graph, now_ms()
    if action == "DISMISS":
        resolved = await moderation_repo.dismiss(db, raw_id, moderator_id, note, now)
        if resolved is None:
            raise await _why_not_open(ctx, raw_id)
        kind = "appeal" if resolved["kind"] == "APPEAL" else "report"
        await _record(ctx, moderator_id, f"{kind}.dismiss", resolved, note)
        return resolved
    if action != "TAKE_DOWN":
        raise BadUserInput("action must be DISMISS or TAKE_DOWN")
    done = await moderation_repo.take_down(db, raw_id, moderator_id, note, now)
    if done is None:
        raise await _why_not_open(ctx, raw_id)
    clip, resolved = done["clip"], done["report"]
    _forget(ctx, clip)
    if done["before"] != "REMOVED":
        await _notify_removed(ctx, clip, now)
    action_name = "appeal.uphold" if resolved["kind"] == "APPEAL" else "report.take_down"
    await _record(
        ctx,
        moderator_id,
        action_name,
        resolved,
        note,
        resolvedReports=done["resolvedIds"],
        before=done["before"],
    )
    return resolved


async def _why_not_open(ctx: Context, report_id: str) -> Exception:
    found = await report(ctx, report_id)
    if found is None:
        return NotFound("no such report")
    return Conflict(f"this report is resolved already ({found.get('outcome')})")


async def _record(
    ctx: Context,
    actor_id: str,
    action: str,
    resolved: dict,
    note: str | None,
    **details: object,
) -> None:
    await record(
        ctx.services.graph,
        actor_id=actor_id,
        action=action,
        subject=resolved["id"],
        reason=note,
        clip_id=resolved["clipId"],
        details={"reportReason": resolved["reason"], "kind": resolved["kind"], **details},
    )


async def restore_clip(ctx: Context, clip_id: str) -> dict:
    moderator_id = await ctx.require_role("MODERATOR")
    raw_id = decode_id(clip_id, "Clip")
    now = now_ms()
    done = await moderation_repo.restore(ctx.services.graph, raw_id, moderator_id, now)
    if done is None:
        current = await ctx.loaders.clip_by_id.load(raw_id)
        if current is None:
            raise NotFound("no such clip")
        if current["state"] != "REMOVED" or current.get("takenDownFrom") is None:
            raise Conflict("only a clip taken down by moderation can be restored")
        raise Conflict("consent to a cameo in this clip no longer stands; it stays removed")
    clip = done["clip"]
    _forget(ctx, clip)
    if clip["state"] == "PUBLISHED":
        await clip_is_published(ctx, clip)  # back in feeds, and to feedUpdates
    await record(
        ctx.services.graph,
        actor_id=moderator_id,
        action="clip.restore",
        subject=raw_id,
        clip_id=raw_id,
        details={"state": clip["state"], "resolvedReports": done["resolvedIds"]},
    )
    return clip


async def appeal_take_down(ctx: Context, clip_id: str, note: str | None) -> dict:
    viewer_id = ctx.require_viewer()
    raw_id = decode_id(clip_id, "Clip")
    note = _note(note)
    now = now_ms()
    done = await moderation_repo.appeal(
        ctx.services.graph, viewer_id, raw_id, str(ULID()), note, now
    )
    if done is None:
        current = await visible_clip(ctx, raw_id)
        if current is None:
            raise NotFound("no such clip")
        if current["authorId"] != viewer_id:
            raise Forbidden("only the author can appeal a take-down")
        if current["state"] != "REMOVED" or current.get("takenDownFrom") is None:
            raise Conflict("only a clip taken down by moderation can be appealed")
        raise Conflict("this take-down was appealed already")
    clip = fresh_clip(ctx, done["clip"])
    await record(
        ctx.services.graph,
        actor_id=viewer_id,
        action="clip.appeal",
        subject=done["report"]["id"],
        reason=note,
        clip_id=raw_id,
        details={"reportReason": done["report"]["reason"]},
    )
    return clip


async def author_deleted(ctx: Context, author_id: str, clip_id: str, *, removed: bool) -> None:
    """After deleteClip: the deletion goes to the audit log. A clip that was REMOVED already
    (`removed` False) by a take-down is now the author's removal: no restore brings it back,
    and its file goes."""
    if not removed:
        clip = await moderation_repo.author_forfeit(
            ctx.services.graph, author_id, clip_id, now_ms()
        )
        if clip is None:
            return
        fresh_clip(ctx, clip)
        if clip.get("videoKey"):
            await delete_clip_media(ctx, clip["videoKey"])
    await record(
        ctx.services.graph,
        actor_id=author_id,
        action="clip.delete",
        subject=clip_id,
        clip_id=clip_id,
        details={} if removed else {"wasTakenDown": True},
    )


async def owner_removed(ctx: Context, owner_id: str, clip_id: str, now: int) -> list[dict]:
    """removeAppearance on a clip taken down by moderation (and remixes below it carrying
    the owner's cameo): the owner's removal stands, no restore brings them back, their files
    go. The clips it applied to."""
    clips = await moderation_repo.forfeit_restore(ctx.services.graph, owner_id, clip_id, now)
    for clip in clips:
        fresh_clip(ctx, clip)
        if clip.get("videoKey"):
            await delete_clip_media(ctx, clip["videoKey"])
    return clips
