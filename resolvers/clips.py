"""Clips: create (and queue a render), publish, delete, drafts, and who may see what."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import unicodedata
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from ulid import ULID

from auth.quotas import (
    ACTIVE_FULL,
    DAILY_SPENT,
    GenerationQuotas,
    next_reset,
    seconds_until,
)
from consent import MAX_CAMEOS, plan_cameo_uses
from consent.approvals import request_publication
from consent.policy import enforce_public_figures
from errors import BadUserInput, Conflict, ConsentRequired, Forbidden, NotFound, RateLimited
from events.feed import clip_published
from events.notifications import record_notification
from graph import cameos as cameo_repo
from graph import clips as clip_repo
from graph.visibility import NO_BLOCKS, clip_visible
from provenance.publish import seal_published
from resolvers.ids import decode_id
from resolvers.loaders import ClipPageKey
from resolvers.moods import infer_moods, normalize_moods
from resolvers.pagination import Page, make_page, page_size, time_id_cursor
from resolvers.users import now_ms
from workers import fair_queue

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = [
    "MAX_CAMEOS",
    "MAX_PROMPT",
    "clip_is_published",
    "create_clip",
    "delete_clip",
    "delete_clip_media",
    "drafts",
    "fresh_clip",
    "notify_owners",
    "playable_clip",
    "publish_clip",
    "published_by_author",
    "visible_clip",
]

logger = logging.getLogger(__name__)

MAX_PROMPT = 1000
MIN_DURATION_S, MAX_DURATION_S, DEFAULT_DURATION_S = 1, 20, 5
# a render slot taken for a clip the graph does not have is kept this long (the clip may be
# being written by the createClip that took it) before a reconciliation frees it
_UNWRITTEN_SLOT_GRACE_MS = 120_000


def _prompt(prompt: str) -> str:
    cleaned = unicodedata.normalize("NFC", prompt.strip())
    if not cleaned:
        raise BadUserInput("the prompt is empty")
    if len(cleaned) > MAX_PROMPT:
        raise BadUserInput(f"the prompt is longer than {MAX_PROMPT} characters")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in cleaned):
        raise BadUserInput("the prompt may not contain control characters")
    return cleaned


def _duration(seconds: int | None) -> int:
    if seconds is None:
        return DEFAULT_DURATION_S
    if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
        raise BadUserInput(f"durationSeconds must be between {MIN_DURATION_S} and {MAX_DURATION_S}")
    return seconds


async def visible_clip(ctx: Context, clip_id: str) -> dict | None:
    """The clip, if the viewer may see it (graph.visibility.clip_visible: authors see their
    own clips in every state, owners of cameos in a clip see it in every state unless a
    block stands between them and another featured owner, everyone else sees published
    ones, unless the author blocks them or a block stands between them and a featured
    owner); None otherwise, the same as for no such clip."""
    clip = await ctx.loaders.clip_by_id.load(clip_id)
    if clip is None:
        return None
    viewer_id = ctx.optional_viewer()
    if viewer_id is not None and clip["authorId"] == viewer_id:
        return clip
    if viewer_id is None:  # nobody blocks a signed-out viewer: featured owners do not matter
        return clip if clip_visible(None, clip, (), NO_BLOCKS) else None
    appearances = await ctx.loaders.appearances_by_clip.load(clip_id)
    owners = [appearance["ownerId"] for appearance in appearances]
    blocks = await ctx.loaders.viewer_blocks()
    return clip if clip_visible(viewer_id, clip, owners, blocks) else None


async def playable_clip(ctx: Context, clip_id: str, key: str) -> dict | None:
    """The clip, if the viewer may play its video stored under `key` now: they may see the
    clip (visible_clip), it is not REMOVED, consent to it was not withdrawn (`withdrawnAt`,
    set with a revoked grant or a deleted cameo, see graph.cameos), and it still names that
    very file.
    What /media checks on every request, whatever the link's signature says."""
    clip = await visible_clip(ctx, clip_id)
    if clip is None or clip["state"] == "REMOVED" or clip.get("withdrawnAt") is not None:
        return None
    return clip if clip.get("videoKey") == key else None


async def create_clip(
    ctx: Context,
    *,
    prompt: str,
    moods: list[str] | None,
    remix_of: str | None,
    cameo_ids: list[str] | None,
    duration_seconds: int | None,
) -> dict:
    viewer_id = ctx.require_viewer()
    prompt = _prompt(prompt)
    duration = _duration(duration_seconds)
    mood_list = normalize_moods(moods) if moods is not None else infer_moods(prompt)
    parent_id = decode_id(remix_of, "Clip") if remix_of is not None else None
    requested = list(dict.fromkeys(decode_id(c, "Cameo") for c in cameo_ids or []))
    if len(requested) > MAX_CAMEOS:
        raise BadUserInput(f"a clip features at most {MAX_CAMEOS} cameos")

    params = {
        "authorId": viewer_id,
        "id": str(ULID()),
        "prompt": prompt,
        "moods": mood_list,
        "durationS": duration,
        "seed": secrets.randbelow(2**31),
        "now": now_ms(),
        "parentId": parent_id,
    }
    params["cameos"] = await _cameo_uses(ctx, params, requested)
    await _public_figures_allowed(ctx, params)
    # last of the checks: a refused clip takes nothing, and every later failure gives back
    quotas = GenerationQuotas(ctx.services.redis, ctx.settings)
    await _take_generation(ctx, quotas, viewer_id, params["id"], params["now"])
    give_back = _give_back(quotas, viewer_id, params["id"], params["now"])
    try:
        clip = await clip_repo.create_clip(ctx.services.graph, params)
    except BaseException:
        await asyncio.shield(give_back())
        raise
    if clip is None:
        await give_back()
        if parent_id is not None:
            parent = await visible_clip(ctx, parent_id)
            if parent is None or parent["state"] != "PUBLISHED" or not params["cameos"]:
                raise NotFound("the clip to remix does not exist or is not published")
        if params["cameos"]:
            raise ConsentRequired(
                "consent to feature one of these cameos changed while the clip was being "
                "made; nothing was created"
            )
        raise NotFound("your account no longer exists")
    # the clip exists before its task does; if the queue refuses, the clip is taken back.
    # Its render waits for its author's turn (workers.fair_queue)
    await ctx.services.render_queue.enqueue_fair(
        ctx.services.redis, viewer_id, clip["id"], on_refused=_discard(ctx, clip["id"], give_back)
    )
    ctx.loaders.clip_by_id.prime(clip["id"], clip)
    if parent_id is not None:
        from resolvers.lineage import notify_remixed  # lineage builds on this module

        await notify_remixed(ctx, clip)
    return clip


async def _cameo_uses(ctx: Context, params: dict, requested: list[str]) -> list[dict]:
    """The FEATURES edges the new clip gets: a remix features its parent's cameos too
    (consent follows lineage), each needs the author's consent and the prompt must keep
    each owner's rules; one render token each. Nothing is written here."""
    db = ctx.services.graph
    inherited: list[str] = []
    if params["parentId"] is not None:
        parent = await visible_clip(ctx, params["parentId"])
        if parent is None or parent["state"] != "PUBLISHED":  # before saying what it features
            raise NotFound("the clip to remix does not exist or is not published")
        featured = await ctx.loaders.appearances_by_clip.load(params["parentId"])
        inherited = [appearance["cameoId"] for appearance in featured]
    cameo_ids = list(dict.fromkeys([*inherited, *requested]))
    if not cameo_ids:
        return []
    if len(cameo_ids) > MAX_CAMEOS:
        raise BadUserInput(
            f"a clip features at most {MAX_CAMEOS} cameos, and the clip remixed already "
            f"features {len(inherited)}"
        )
    checked = await cameo_repo.usable_cameos(db, params["authorId"], cameo_ids, params["now"])
    return plan_cameo_uses(
        ctx.services.consent_keys,
        checked,
        requested=cameo_ids,
        clip=params,
        ttl_s=ctx.settings.render_token_ttl_s,
        now=params["now"],
    )


async def _public_figures_allowed(ctx: Context, params: dict) -> None:
    """POLICY_VIOLATION when the prompt (or the remixed clip's) names a registered public
    figure whose own cameo is not featured with consent (params["cameos"]: the uses that
    passed the consent checks, the parent's included). Nothing is written yet."""
    parent_prompt = None
    if params["parentId"] is not None:  # read by _cameo_uses already: the loader has it
        parent = await ctx.loaders.clip_by_id.load(params["parentId"])
        parent_prompt = parent["prompt"] if parent is not None else None
    await enforce_public_figures(
        ctx.services.graph,
        params["prompt"],
        [use["ownerId"] for use in params["cameos"]],
        parent_prompt=parent_prompt,
        author_id=params["authorId"],
    )


def _discard(ctx: Context, clip_id: str, give_back):
    async def discard() -> None:
        await clip_repo.discard_unqueued(ctx.services.graph, clip_id)
        await give_back()

    return discard


def _give_back(quotas: GenerationQuotas, user_id: str, clip_id: str, taken_ms: int):
    """Undo of _take_generation, for a clip that was not made after all."""

    async def give_back() -> None:
        try:
            await quotas.give_back(user_id, clip_id, taken_ms)
        except (RedisError, OSError):  # its slot is reconciled away; the unit stays taken
            logger.exception("could not give back the quota of clip %s", clip_id)

    return give_back


async def _take_generation(
    ctx: Context, quotas: GenerationQuotas, user_id: str, clip_id: str, now: int
) -> None:
    """A unit of the user's daily quota and a render slot for the new clip, or RATE_LIMITED
    (auth.quotas). Slots are counted in Redis; before refusing for them, the user's slots are
    checked against the graph, so a clip that finished or was removed never holds one."""
    outcome = await quotas.take(user_id, clip_id, now)
    if outcome == ACTIVE_FULL and await _free_finished_slots(ctx, quotas, user_id, now):
        outcome = await quotas.take(user_id, clip_id, now)
    settings = ctx.settings
    if outcome == DAILY_SPENT:
        resets_at = next_reset(now)
        raise RateLimited(
            f"you have made your {settings.daily_generations} clips for today; the quota "
            f"resets at midnight UTC ({resets_at.isoformat()}). A failed render does not count",
            seconds_until(resets_at, now),
        )
    if outcome == ACTIVE_FULL:
        estimate = await fair_queue.mean_render_s(ctx.services.redis)
        raise RateLimited(
            f"you already have {settings.max_active_renders_per_user} clips waiting or "
            "rendering; make the next one when one of them is done",
            min(3600, max(1, math.ceil(estimate))),
        )


async def _free_finished_slots(
    ctx: Context, quotas: GenerationQuotas, user_id: str, now: int
) -> bool:
    """Free the slots of clips no longer QUEUED or RENDERING in the graph (and of clips it
    never got, past a grace period); whether any was freed."""
    held = await quotas.in_flight(user_id)
    rows = await clip_repo.clips_by_ids(ctx.services.graph, [clip_id for clip_id, _ in held])
    done = [
        clip_id
        for clip_id, taken_at in held
        if ((row := rows.get(clip_id)) is not None and row["state"] not in ("QUEUED", "RENDERING"))
        or (row is None and now - taken_at > _UNWRITTEN_SLOT_GRACE_MS)
    ]
    await quotas.release(user_id, *done)
    return bool(done)


async def _own_clip_or_explain(ctx: Context, viewer_id: str, clip_id: str) -> dict:
    """Why a guarded write on the viewer's clip did not happen, as a client error."""
    clip = await visible_clip(ctx, clip_id)
    if clip is None:
        raise NotFound("no such clip")
    if clip["authorId"] != viewer_id:
        raise Forbidden("only the author can do this")
    return clip


async def publish_clip(ctx: Context, clip_id: str) -> dict:
    """DRAFT -> PUBLISHED, or AWAITING_APPROVAL while owners of cameos in it must approve
    (each asked by an APPEARANCE_REQUESTED notification)."""
    viewer_id = ctx.require_viewer()
    raw_id = decode_id(clip_id, "Clip")
    services = ctx.services
    now = now_ms()
    decision = await request_publication(
        services.graph, services.consent_keys, services.redis, viewer_id, raw_id, now
    )
    if decision is None:
        current = await _own_clip_or_explain(ctx, viewer_id, raw_id)
        raise Conflict(f"only a DRAFT can be published; this clip is {current['state']}")
    clip = fresh_clip(ctx, decision.clip)
    await notify_owners(ctx, clip, decision.asked, "APPEARANCE_REQUESTED", now)
    if clip["state"] == "PUBLISHED":
        # fingerprinted, and the signed file (C2PA manifest) attached: provenance.publish
        clip = fresh_clip(ctx, await seal_published(services, clip))
        await clip_is_published(ctx, clip)
    return clip


def fresh_clip(ctx: Context, clip: dict) -> dict:
    """After a write to the clip: later fields of the same document read it as it is now.
    A transition row names no parent (its statement reads no REMIX_OF) and Clip.remixOf
    looks a missing parent up through clip_by_id, so such a row is not cached there: the
    clip is read again instead (after the write), or every remix would show no parent."""
    loader = ctx.loaders.clip_by_id
    if "parentId" in clip:
        loader.prime(clip["id"], clip, force=True)
    else:
        with contextlib.suppress(KeyError):  # clear() raises for a key it never loaded
            loader.clear(clip["id"])
    return clip


async def clip_is_published(ctx: Context, clip: dict) -> None:
    """What follows a clip's move to PUBLISHED, by its author or by the last approval."""
    _forget_clip_pages(ctx)
    await clip_published(ctx.services.redis, clip)  # feedUpdates subscribers, every process


async def notify_owners(
    ctx: Context, clip: dict, user_ids: list[str], kind: str, at: int, actor_id: str | None = None
) -> None:
    """One notification per user about clip; the clip changed already, so a Redis failure
    is logged and the mutation still succeeds."""
    payload = {"clipId": clip["id"], "actorId": actor_id or clip["authorId"], "at": at}
    for user_id in dict.fromkeys(user_ids):
        try:
            await record_notification(ctx.services.redis, user_id, kind, payload)
        except (RedisError, OSError):
            logger.exception("could not record %s for clip %s", kind, clip["id"])


async def delete_clip(ctx: Context, clip_id: str) -> dict:
    viewer_id = ctx.require_viewer()
    raw_id = decode_id(clip_id, "Clip")
    clip = await clip_repo.remove(ctx.services.graph, viewer_id, raw_id, now_ms(), "author")
    from resolvers.moderation import author_deleted  # audit log; ends a take-down's restore

    await author_deleted(ctx, viewer_id, raw_id, removed=clip is not None)
    if clip is None:
        return await _own_clip_or_explain(ctx, viewer_id, raw_id)  # already REMOVED
    _forget_clip_pages(ctx)
    await _render_withdrawn(ctx, viewer_id, raw_id)
    if clip.get("videoKey"):
        await delete_clip_media(ctx, clip["videoKey"])
    return clip


async def _render_withdrawn(ctx: Context, author_id: str, clip_id: str) -> None:
    """A removed clip no longer waits for a render nor holds a render slot (a no-op for one
    that was not QUEUED or RENDERING). The clip is removed either way: a Redis failure is
    logged, and the slot is reconciled against the graph when next needed."""
    try:
        await GenerationQuotas(ctx.services.redis, ctx.settings).release(author_id, clip_id)
        await fair_queue.withdraw(ctx.services.redis, author_id, clip_id)
    except (RedisError, OSError):
        logger.exception("could not free the render slot of removed clip %s", clip_id)


def _forget_clip_pages(ctx: Context) -> None:
    """A clip was published or removed: later fields in the same document must not be served
    a page cached before it (pages are keyed by more than the author)."""
    ctx.loaders.clip_page_by_author.clear_all()


async def delete_clip_media(ctx: Context, key: str) -> None:
    """Delete a removed clip's file; if the store fails, the workers' media sweep retries."""
    try:
        await asyncio.to_thread(ctx.services.media.delete, key)
    except Exception:  # the clip is removed either way; the mutation must say so
        logger.exception("could not delete %s of a removed clip; the media sweep will", key)


def _clip_page(rows: list[dict], limit: int) -> Page[dict]:
    page = make_page(rows, limit, key=lambda row: (row["at"], row["clip"]["id"]))
    return Page([(c, row["clip"]) for c, row in page.items], page.has_next_page)


async def drafts(ctx: Context, first: int | None, after: str | None) -> Page[dict]:
    """The viewer's own unpublished clips, newest first."""
    viewer_id = ctx.require_viewer()
    limit = page_size(first, ctx.settings.max_page_size)
    cursor = time_id_cursor(after)
    rows = await clip_repo.drafts_page(ctx.services.graph, viewer_id, cursor, limit + 1)
    return _clip_page(rows, limit)


async def published_by_author(
    ctx: Context, author_id: str, first: int | None, after: str | None
) -> Page[dict]:
    """An author's published clips that the viewer may see (graph.visibility: none for a
    viewer the author blocked), newest first."""
    limit = page_size(first, ctx.settings.max_page_size)  # bad arguments fail before any read
    cursor = time_id_cursor(after)
    ctx.optional_viewer()  # a bad token is an error here too
    # through a DataLoader: a nested User.clips level is one statement for all its authors
    key = ClipPageKey(author_id, limit + 1, cursor)
    return _clip_page(await ctx.loaders.clip_page_by_author.load(key), limit)
