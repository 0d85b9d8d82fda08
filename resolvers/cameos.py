"""Cameos: capture challenges, audience, restrictions, grants, deletion, and what a viewer
may see of a cameo. The rules live in consent/ and graph.cameos; this module applies them to
a request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from ulid import ULID

from auth.rate_limits import RateLimits
from consent.challenges import Challenge, load_challenge, new_challenge, store_challenge
from consent.grants import AUDIENCES, cameo_visible, grant_expiry, normalize_restrictions
from consent.references import delete_reference_files
from consent.tokens import revoke_jti
from errors import BadUserInput, Conflict, Forbidden, NotFound
from events.notifications import record_notification
from graph import cameos as cameo_repo
from graph import users as user_repo
from resolvers.audit import record
from resolvers.ids import decode_id
from resolvers.pagination import Page, make_page, page_size, time_id_cursor

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = [
    "appearances",
    "cameo_challenge",
    "delete_cameo",
    "grant_cameo",
    "grants",
    "review_cameo",
    "revoke_grant",
    "set_audience",
    "set_restrictions",
    "start_capture",
    "user_cameo",
    "viewer_can_use",
    "visible_cameo",
    "visible_grant",
]

logger = logging.getLogger(__name__)
NO_CAMEO = "you have no cameo yet; start a capture first"
_CHALLENGE_ID_MAX = 64


def now_ms() -> int:
    return int(time.time() * 1000)


# --- capture


async def start_capture(ctx: Context) -> Challenge:
    """A new one-time challenge for the viewer's cameo (created PENDING_VERIFICATION on the
    first capture); counted against the viewer's capture allowance."""
    viewer_id = ctx.require_viewer()
    s = ctx.settings
    await RateLimits(ctx.services.redis, s).cameo_captures(viewer_id)
    now = now_ms()
    cameo = await cameo_repo.ensure_cameo(ctx.services.graph, viewer_id, str(ULID()), now)
    if cameo is None:
        raise NotFound("no such user")
    challenge = new_challenge(viewer_id, cameo["id"], now=now, ttl_s=s.cameo_challenge_ttl_s)
    await store_challenge(ctx.services.redis, challenge)
    return challenge


async def cameo_challenge(ctx: Context, challenge_id: str) -> Challenge | None:
    """The viewer's own unused, unexpired challenge; None for anyone else's or none."""
    viewer_id = ctx.optional_viewer()
    raw_id = decode_id(challenge_id, "CameoChallenge")
    if viewer_id is None or len(raw_id) > _CHALLENGE_ID_MAX:
        return None
    challenge = await load_challenge(ctx.services.redis, raw_id)
    if challenge is None or challenge.user_id != viewer_id or challenge.expires_at <= now_ms():
        return None
    return challenge


# --- reading cameos and grants


async def user_cameo(ctx: Context, owner_id: str) -> dict | None:
    """The user's cameo as far as the viewer may see it (consent.grants.cameo_visible)."""
    cameo = await ctx.loaders.cameo_by_owner.load(owner_id)
    if cameo is None or not cameo_visible(cameo, ctx.optional_viewer()):
        return None
    return cameo


async def visible_cameo(ctx: Context, cameo_id: str) -> dict | None:
    """A cameo by id for node(id): the owner sees it in any state (DELETED included)."""
    cameo = await ctx.loaders.cameo_by_id.load(cameo_id)
    if cameo is None or not cameo_visible(cameo, ctx.optional_viewer()):
        return None
    return cameo


async def visible_grant(ctx: Context, grant_id: str) -> dict | None:
    """A grant by id for node(id): only its owner and its grantee know of it, the grantee
    only while they may see the cameo (CameoGrant.cameo shows it: a block, or the cameo's
    deletion, hides it from them as it hides User.cameo)."""
    viewer_id = ctx.optional_viewer()
    if viewer_id is None:
        return None
    grant = (await cameo_repo.grants_by_ids(ctx.services.graph, [grant_id])).get(grant_id)
    if grant is None or viewer_id not in (grant["ownerId"], grant["granteeId"]):
        return None
    if viewer_id != grant["ownerId"] and await visible_cameo(ctx, grant["cameoId"]) is None:
        return None
    return grant


async def viewer_can_use(ctx: Context, cameo_id: str) -> bool:
    if ctx.optional_viewer() is None:
        return False
    return await ctx.loaders.cameo_usable_by_viewer.load(cameo_id)


def _require_owner(ctx: Context, cameo: dict, what: str) -> None:
    if ctx.require_viewer() != cameo["ownerId"]:
        raise Forbidden(f"only the cameo's owner can see its {what}")


async def grants(ctx: Context, cameo: dict) -> list[dict]:
    _require_owner(ctx, cameo, "grants")
    return await ctx.loaders.grants_by_cameo.load(cameo["id"])


async def appearances(
    ctx: Context,
    cameo: dict,
    first: int | None,
    after: str | None,
    states: list[str] | None,
) -> Page[dict]:
    """Every clip featuring the cameo (drafts of others included), newest first; owner only."""
    _require_owner(ctx, cameo, "appearances")
    limit = page_size(first, ctx.settings.max_page_size)
    cursor = time_id_cursor(after)
    rows = await cameo_repo.appearances_page(
        ctx.services.graph, cameo["id"], states=states, after=cursor, limit=limit + 1
    )
    # not primed into clip_by_id: these rows name no parent, and Clip.remixOf reads a
    # missing parent through that loader (one batched read when a page asks for it)
    page = make_page(rows, limit, key=lambda row: (row["at"], row["clip"]["id"]))
    return Page([(c, row["clip"]) for c, row in page.items], page.has_next_page)


# --- owner's settings


def _clear(loader: Any, key: str) -> None:
    with contextlib.suppress(KeyError):  # nothing cached for it yet
        loader.clear(key)


def _forget_cameo(ctx: Context, cameo: dict) -> dict:
    """A cameo write: later fields of the same document read it anew."""
    _clear(ctx.loaders.cameo_by_owner, cameo["ownerId"])
    _clear(ctx.loaders.cameo_by_id, cameo["id"])
    _clear(ctx.loaders.cameo_usable_by_viewer, cameo["id"])
    _clear(ctx.loaders.grants_by_cameo, cameo["id"])
    return {**cameo, "blocked": False}  # the owner's own


async def set_audience(ctx: Context, audience: str) -> dict:
    viewer_id = ctx.require_viewer()
    if audience not in AUDIENCES:
        raise BadUserInput(f"audience must be one of {', '.join(AUDIENCES)}")
    cameo = await cameo_repo.set_audience(ctx.services.graph, viewer_id, audience)
    if cameo is None:
        raise NotFound(NO_CAMEO)
    return _forget_cameo(ctx, cameo)


async def set_restrictions(ctx: Context, restrictions: list[str]) -> dict:
    viewer_id = ctx.require_viewer()
    rules = normalize_restrictions(restrictions)
    cameo = await cameo_repo.set_restrictions(ctx.services.graph, viewer_id, rules)
    if cameo is None:
        raise NotFound(NO_CAMEO)
    return _forget_cameo(ctx, cameo)


# --- grants


async def grant_cameo(ctx: Context, grantee_id: str, expires_in_days: int | None) -> dict:
    """A grant to the grantee; re-granting while one is active returns that one."""
    viewer_id = ctx.require_viewer()
    grantee = decode_id(grantee_id, "User")
    now = now_ms()
    expires_at = grant_expiry(expires_in_days, now)
    if grantee == viewer_id:
        raise BadUserInput("you cannot grant your cameo to yourself")
    grant_id = str(ULID())
    grant = await cameo_repo.create_grant(
        ctx.services.graph,
        owner_id=viewer_id,
        grantee_id=grantee,
        grant_id=grant_id,
        now=now,
        expires_at=expires_at,
    )
    if grant is not None:
        _clear(ctx.loaders.grants_by_cameo, grant["cameoId"])
        _clear(ctx.loaders.cameo_usable_by_viewer, grant["cameoId"])
        if grant["id"] == grant_id:  # a new grant, not the one already active
            await _record_grant(ctx, "cameo.grant", grant, expiresAt=grant["expiresAt"])
        return grant
    if await cameo_repo.live_cameo(ctx.services.graph, viewer_id) is None:
        raise NotFound(NO_CAMEO)
    relation = await user_repo.relation_between(ctx.services.graph, viewer_id, grantee)
    if relation["blockedByTarget"]:
        raise Forbidden("this user has blocked you")
    if relation["blocksTarget"]:
        raise Forbidden("you have blocked this user; unblock them first")
    raise NotFound("no such user")


async def _revoke_tokens(ctx: Context, jtis: list[str]) -> None:
    """Revoked jtis are kept until the longest-lived token could have expired. The graph
    already marks each use REVOKED, which workers and publishing check too: a Redis outage
    here is logged, not a failed mutation."""
    s = ctx.settings
    until = now_ms() + max(s.render_token_ttl_s, s.approval_token_ttl_s) * 1000
    try:
        for jti in dict.fromkeys(jtis):
            await revoke_jti(ctx.services.redis, jti, until)
    except RedisError:
        logger.warning("could not revoke %d token ids in Redis", len(jtis), exc_info=True)


async def revoke_grant(ctx: Context, grant_id: str) -> dict:
    """Revokes the grant and the grantee's unpublished uses of the cameo (owner only)."""
    viewer_id = ctx.require_viewer()
    raw_id = decode_id(grant_id, "CameoGrant")
    now = now_ms()
    result = await cameo_repo.revoke_grant(ctx.services.graph, viewer_id, raw_id, now)
    if result is None:
        grant = (await cameo_repo.grants_by_ids(ctx.services.graph, [raw_id])).get(raw_id)
        if grant is not None and grant["granteeId"] == viewer_id:
            raise Forbidden("only the cameo's owner can revoke its grants")
        raise NotFound("no such grant")
    await _revoke_tokens(ctx, result["jtis"])
    for clip_id in result["clipIds"]:
        _clear(ctx.loaders.clip_by_id, clip_id)
    grant = result["grant"]
    if grant["revokedAt"] == now:  # revoked now, not before
        await _record_grant(ctx, "cameo.revoke_grant", grant, withdrawnClips=result["clipIds"])
    _clear(ctx.loaders.grants_by_cameo, grant["cameoId"])
    _clear(ctx.loaders.cameo_usable_by_viewer, grant["cameoId"])
    return grant


async def _record_grant(ctx: Context, action: str, grant: dict, **details: object) -> None:
    """A grant decision to the audit log; the grantee is chained as a pseudonym."""
    await record(
        ctx.services.graph,
        actor_id=grant["ownerId"],
        action=action,
        subject=grant["granteeId"],
        cameo_id=grant["cameoId"],
        details={"grantId": grant["id"], **details},
    )


# --- deletion


async def delete_cameo(ctx: Context) -> dict:
    """Crypto-shreds the viewer's cameo (graph.cameos DELETE_CAMEO), then revokes its token
    ids, deletes its reference files and tells the authors whose clips were taken down."""
    viewer_id = ctx.require_viewer()
    now = now_ms()
    result = await cameo_repo.delete_cameo(ctx.services.graph, viewer_id, now)
    if result is None:
        raise NotFound(NO_CAMEO)
    await _revoke_tokens(ctx, result["jtis"])
    cameo = result["cameo"]
    await record(
        ctx.services.graph,
        actor_id=viewer_id,
        action="cameo.delete",
        subject=cameo["id"],
        cameo_id=cameo["id"],
        details={"takenDown": [item["clipId"] for item in result["takenDown"]]},
    )
    # the wrapped key is already gone: a file left behind by a failed delete is unreadable
    await asyncio.to_thread(delete_reference_files, ctx.services.media, result["refKeys"])
    for item in result["takenDown"]:
        _clear(ctx.loaders.clip_by_id, item["clipId"])
        try:
            await record_notification(
                ctx.services.redis,
                item["authorId"],
                "CLIP_REMOVED",
                {"clipId": item["clipId"], "actorId": viewer_id, "at": now},
            )
        except RedisError:
            logger.warning("could not notify %s of a removed clip", item["authorId"])
    return _forget_cameo(ctx, result["cameo"])


# --- review (public figures)

REVIEW_REJECTED = (
    "An operator found that this capture shows a protected public figure, so it cannot become"
    " a cameo; if it is you, contact support."
)


async def review_cameo(ctx: Context, cameo_id: str, approve: bool) -> dict:
    """An admin's decision on a capture held for review (graph.cameos REVIEW_CAMEO): ACTIVE,
    or REJECTED with its likeness shredded (the files deleted here); audited either way."""
    admin_id = await ctx.require_role("ADMIN")
    raw_id = decode_id(cameo_id, "Cameo")
    result = await cameo_repo.review_cameo(
        ctx.services.graph,
        raw_id,
        approve=approve,
        admin_id=admin_id,
        now=now_ms(),
        reason=REVIEW_REJECTED,
    )
    if result is None:
        if not (await cameo_repo.cameos_by_ids(ctx.services.graph, [raw_id])).get(raw_id):
            raise NotFound("no such cameo")
        raise Conflict("this cameo is not awaiting review")
    cameo = result["cameo"]
    await record(
        ctx.services.graph,
        actor_id=admin_id,
        action="cameo.review.approve" if approve else "cameo.review.reject",
        subject=cameo["id"],
        cameo_id=cameo["id"],
    )
    await asyncio.to_thread(delete_reference_files, ctx.services.media, list(result["refKeys"]))
    return _forget_cameo(ctx, cameo)
