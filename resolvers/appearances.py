"""Appearances: owners' decisions on clips featuring their cameo, the inbox, Clip.cameos."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from consent.approvals import approve_appearance as approve_use
from consent.approvals import reject_appearance as reject_use
from errors import NotFound
from graph import appearances as appearance_repo
from provenance.publish import seal_published
from resolvers.audit import record
from resolvers.clips import (
    clip_is_published,
    delete_clip_media,
    fresh_clip,
    notify_owners,
    visible_clip,
)
from resolvers.ids import decode_id
from resolvers.moderation import owner_removed
from resolvers.pagination import Page, make_page, page_size, time_id_cursor
from resolvers.users import now_ms

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = [
    "approve_appearance",
    "cameo_inbox",
    "clip_appearances",
    "reject_appearance",
    "remove_appearance",
]


async def clip_appearances(ctx: Context, clip: dict) -> list[dict]:
    """The cameos featured in a clip the viewer can see, with each owner's decision; an
    appearance of someone with a block between them and the viewer is left out, as that
    cameo is hidden from the viewer everywhere else (graph.visibility.cameo_visible). Only
    the clip's author can meet one: anyone else with such a block does not see the clip."""
    appearances = await ctx.loaders.appearances_by_clip.load(clip["id"])
    viewer_id = ctx.optional_viewer()
    blocks = await ctx.loaders.viewer_blocks()
    if not blocks.hidden:
        return appearances
    return [
        a for a in appearances if a["ownerId"] == viewer_id or a["ownerId"] not in blocks.hidden
    ]


def _fresh(ctx: Context, clip: dict) -> dict:
    """Later fields of the same document read the clip as it is now."""
    fresh_clip(ctx, clip)
    with contextlib.suppress(KeyError):  # clear() raises for a key it never loaded
        ctx.loaders.appearances_by_clip.clear(clip["id"])
    return clip


async def approve_appearance(ctx: Context, clip_id: str) -> dict:
    owner_id = ctx.require_viewer()
    raw_id = decode_id(clip_id, "Clip")
    services = ctx.services
    now = now_ms()
    decision = await approve_use(
        services.graph,
        services.consent_keys,
        services.redis,
        owner_id,
        raw_id,
        ttl_s=ctx.settings.approval_token_ttl_s,
        now=now,
    )
    clip = _fresh(ctx, decision.clip)
    if clip["state"] == "PUBLISHED":  # the last approval: fingerprint and sign it first
        clip = _fresh(ctx, await seal_published(services, clip))
    await _record(ctx, owner_id, "appearance.approve", clip)
    await notify_owners(ctx, clip, [clip["authorId"]], "APPEARANCE_DECIDED", now, owner_id)
    await notify_owners(ctx, clip, decision.asked, "APPEARANCE_REQUESTED", now)
    if clip["state"] == "PUBLISHED":
        await clip_is_published(ctx, clip)
    return clip


async def reject_appearance(ctx: Context, clip_id: str) -> dict:
    owner_id = ctx.require_viewer()
    raw_id = decode_id(clip_id, "Clip")
    now = now_ms()
    clip = _fresh(ctx, await reject_use(ctx.services.graph, owner_id, raw_id, now))
    await _record(ctx, owner_id, "appearance.reject", clip)
    await notify_owners(ctx, clip, [clip["authorId"]], "APPEARANCE_DECIDED", now, owner_id)
    return clip


async def remove_appearance(ctx: Context, clip_id: str) -> dict:
    """The owner takes down a clip featuring their cameo, at any state, and every remix
    below it carrying that cameo; their authors get CLIP_REMOVED."""
    owner_id = ctx.require_viewer()
    raw_id = decode_id(clip_id, "Clip")
    now = now_ms()
    removed = await appearance_repo.remove_featuring(ctx.services.graph, owner_id, raw_id, now)
    for clip in removed:
        _fresh(ctx, clip)
        if clip["authorId"] != owner_id:
            await notify_owners(ctx, clip, [clip["authorId"]], "CLIP_REMOVED", now, owner_id)
        if clip.get("videoKey"):
            await delete_clip_media(ctx, clip["videoKey"])
    # taken down by moderation already: the owner's removal stands over any restore
    forfeited = await owner_removed(ctx, owner_id, raw_id, now)
    if removed:
        ctx.loaders.clip_page_by_author.clear_all()
    for clip in [*removed, *forfeited]:
        await _record(ctx, owner_id, "appearance.remove", clip)
    target = next((clip for clip in [*removed, *forfeited] if clip["id"] == raw_id), None)
    if target is not None:
        return target
    current = await visible_clip(ctx, raw_id)  # already REMOVED, or not theirs to remove
    appearances = await ctx.loaders.appearances_by_clip.load(raw_id) if current else []
    if current is None or not any(a["ownerId"] == owner_id for a in appearances):
        raise NotFound("no such clip features your cameo")
    return current


async def _record(ctx: Context, owner_id: str, action: str, clip: dict) -> None:
    """The owner's decision on a clip featuring their cameo, to the audit log (read by the
    clip's author, and by the owner through their cameo)."""
    cameo = await ctx.loaders.cameo_by_owner.load(owner_id)
    await record(
        ctx.services.graph,
        actor_id=owner_id,
        action=action,
        subject=clip["id"],
        clip_id=clip["id"],
        cameo_id=cameo["id"] if cameo else None,
        details={"state": clip["state"]},
    )


async def cameo_inbox(ctx: Context, first: int | None, after: str | None) -> Page[dict]:
    """Clips awaiting the viewer's approval as a cameo owner, newest request first."""
    owner_id = ctx.require_viewer()
    limit = page_size(first, ctx.settings.max_page_size)
    cursor = time_id_cursor(after)
    blocks = await ctx.loaders.viewer_blocks()
    rows = await appearance_repo.inbox_page(ctx.services.graph, owner_id, cursor, limit + 1, blocks)
    page = make_page(rows, limit, key=lambda row: (row["at"], row["clip"]["id"]))
    return Page([(c, row["clip"]) for c, row in page.items], page.has_next_page)
