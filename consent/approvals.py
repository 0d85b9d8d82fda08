"""Owners' approvals of drafts that feature them: what publishing may rely on.

An approval is a token the owner's decision mints (consent.tokens.mint_approval_token),
bound to the clip, the cameo, its consent epoch and the clip's video sha256, and stored on
the FEATURES edge with the epoch it was given under and its expiry. The publish paths never
trust the edge's `approval` alone: they verify every stored approval token against the
clip's current sha256 and the cameo's current epoch, check it has not expired, that the
edge's epoch and expiry are the token's own, and that its jti is not revoked, and hand only
the approvals that passed to the guarded statement (graph.appearances APPROVALS_UNMET),
which checks the epoch, the expiry and blocks again itself, so a change landing between
this check and the write still refuses it. A token copied onto another clip's edge, a video
changed after approval, an expired approval, or one from before the owner changed their
audience therefore does not publish: such approvals go back to PENDING and are asked again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from consent.tokens import TokenRejected, is_revoked, mint_approval_token, verify_approval_token
from errors import Conflict, ConsentRequired, Forbidden, NotFound
from graph import appearances as appearance_repo
from graph import clips as clip_repo
from graph.appearances import approved_key
from graph.visibility import clip_visible, viewer_blocks

if TYPE_CHECKING:
    from consent.keyring import SigningKeyring, VerifyingKeyring
    from graph.driver import GraphDriver

__all__ = [
    "ApprovalCheck",
    "Decision",
    "approve_appearance",
    "check_approvals",
    "publish_if_approved",
    "reject_appearance",
    "request_publication",
]


@dataclass
class ApprovalCheck:
    """A clip's appearances, sorted by what publishing can make of them."""

    approved: list[str] = field(default_factory=list)  # approved_key of verified approvals
    stale: list[str] = field(default_factory=list)  # approved_key of ones that did not verify
    stale_owners: list[str] = field(default_factory=list)
    pending_owners: list[str] = field(default_factory=list)
    # appearances that keep the clip from publishing until something changes: REJECTED or
    # REVOKED, an owner and the author who block each other, a featured cameo deleted
    refused: list[dict] = field(default_factory=list)


@dataclass
class Decision:
    """The clip after a publish request or an owner's decision, and whom to tell."""

    clip: dict[str, Any]
    asked: list[str] = field(default_factory=list)  # owners whose approval is now requested


async def check_approvals(
    keyring: SigningKeyring | VerifyingKeyring,
    redis: Any,
    clip: dict[str, Any],
    appearances: list[dict[str, Any]],
) -> ApprovalCheck:
    """Verify every approval of an appearance of someone else's cameo in `clip` (a row with
    id, authorId, sha256); the author's own cameos need no approval, only to be ACTIVE."""
    check = ApprovalCheck()
    for appearance in appearances:
        owner_id = appearance["ownerId"]
        if owner_id == clip["authorId"]:
            if appearance["cameoState"] != "ACTIVE":  # the author deleted their cameo
                check.refused.append(appearance)
            continue
        approval = appearance["approval"]
        # blocks always win: an approval given before a block does not publish after it
        if approval in ("REJECTED", "REVOKED") or appearance.get("blocked"):
            check.refused.append(appearance)
        elif approval == "PENDING":
            check.pending_owners.append(owner_id)
        else:
            key = approved_key(appearance["cameoId"], appearance.get("approvalJti"))
            if await _approval_holds(keyring, redis, clip, appearance):
                check.approved.append(key)
            else:
                check.stale.append(key)
                check.stale_owners.append(owner_id)
    return check


async def _approval_holds(
    keyring: SigningKeyring | VerifyingKeyring, redis: Any, clip: dict, appearance: dict
) -> bool:
    if appearance.get("cameoState") != "ACTIVE" or not clip.get("sha256"):
        return False
    try:
        claims = verify_approval_token(
            keyring,
            appearance.get("approvalToken") or "",
            clip_id=clip["id"],
            cameo_id=appearance["cameoId"],
            epoch=appearance["cameoEpoch"],
            sha256=clip["sha256"],
        )
    except TokenRejected:
        return False
    # what the publish statement reads from the edge must be the token's own: the epoch it
    # was given under and its expiry, which must still be ahead (no clock leeway here, so
    # that an approval this check passes is one the statement passes too)
    expires_ms = _expiry_ms(claims)
    if (
        claims["jti"] != appearance.get("approvalJti")
        or appearance.get("approvalEpoch") != claims["epoch"]
        or appearance.get("approvalExpiresAt") != expires_ms
        or expires_ms is None
        or expires_ms <= time.time() * 1000
    ):
        return False
    return not await is_revoked(redis, claims["jti"])


def _expiry_ms(claims: dict) -> int | None:
    try:
        return int(datetime.fromisoformat(claims["exp"]).timestamp() * 1000)
    except (KeyError, TypeError, ValueError):
        return None


async def _read(db: GraphDriver, clip_id: str) -> tuple[dict | None, list[dict]]:
    clip = (await clip_repo.clips_by_ids(db, [clip_id])).get(clip_id)
    appearances = (await appearance_repo.appearances_by_clips(db, [clip_id])).get(clip_id, [])
    return clip, appearances


async def request_publication(
    db: GraphDriver,
    keyring: SigningKeyring,
    redis: Any,
    author_id: str,
    clip_id: str,
    now: int,
) -> Decision | None:
    """publishClip: PUBLISHED when every appearance holds a verified approval (or is the
    author's own), else AWAITING_APPROVAL with the owners to ask. None when the author's
    clip is not a DRAFT (the caller explains); CONSENT_REQUIRED when an owner rejected
    this clip or consent to it was revoked."""
    clip, appearances = await _read(db, clip_id)
    if clip is None or clip["authorId"] != author_id or clip["state"] != "DRAFT":
        return None
    check = await check_approvals(keyring, redis, clip, appearances)
    if check.refused:
        raise ConsentRequired(_refusal(check.refused[0], author_id))
    if check.stale:
        await appearance_repo.reset_stale_approvals(db, clip_id, check.stale)
    if check.pending_owners or check.stale:
        submitted = await appearance_repo.submit_for_approval(db, author_id, clip_id, now)
        if submitted is None:
            return None
        return Decision(submitted[0], asked=submitted[1])
    published = await clip_repo.publish(db, author_id, clip_id, now, approved=check.approved)
    return Decision(published) if published is not None else None


def _refusal(appearance: dict, author_id: str) -> str:
    """Why a refused appearance keeps the clip from publishing, said to its author."""
    if appearance["ownerId"] == author_id:
        return "your cameo featured in this clip was deleted, so the clip cannot be published"
    if appearance["approval"] in ("REJECTED", "REVOKED"):
        return (
            "a cameo owner featured in this clip rejected it, or their consent was revoked, "
            "so it cannot be published"
        )
    return (
        "you and a cameo owner featured in this clip have blocked one another, so it cannot "
        "be published"
    )


async def publish_if_approved(
    db: GraphDriver,
    keyring: SigningKeyring | VerifyingKeyring,
    redis: Any,
    clip_id: str,
    now: int,
) -> dict | None:
    """Publish an AWAITING_APPROVAL clip whose approvals all verify now; None otherwise.

    Two owners approving the last two appearances at once each verify the other's
    appearance as still PENDING, so neither statement publishes and the clip would wait
    forever with every approval given: the approval that wrote last finds both here."""
    clip, appearances = await _read(db, clip_id)
    if clip is None or clip["state"] != "AWAITING_APPROVAL":
        return None
    check = await check_approvals(keyring, redis, clip, appearances)
    if check.refused or check.pending_owners or check.stale:
        return None
    return await clip_repo.publish(
        db,
        clip["authorId"],
        clip_id,
        now,
        approved=check.approved,
        from_states=("AWAITING_APPROVAL",),
    )


def _own_appearance(clip: dict | None, appearances: list[dict], owner_id: str) -> dict:
    """The owner's appearance in someone else's clip, or the client error saying why not."""
    mine = [a for a in appearances if a["ownerId"] == owner_id]
    if clip is None or not mine:
        raise NotFound("no such clip features your cameo")
    if clip["authorId"] == owner_id:
        raise Forbidden("this is your own clip: your cameo in it needs no approval")
    live = [a for a in mine if a["cameoState"] != "DELETED"]
    return (live or mine)[0]


async def approve_appearance(
    db: GraphDriver,
    keyring: SigningKeyring,
    redis: Any,
    owner_id: str,
    clip_id: str,
    *,
    ttl_s: int,
    now: int,
) -> Decision:
    """approveAppearance: the owner signs an approval of this exact video. When it was the
    last approval awaited the clip is PUBLISHED by the same statement."""
    clip, appearances = await _read(db, clip_id)
    appearance = _own_appearance(clip, appearances, owner_id)
    assert clip is not None
    if clip["state"] not in appearance_repo.UNPUBLISHED_WITH_VIDEO:
        raise Conflict(f"only a rendered, unpublished clip can be approved; it is {clip['state']}")
    if appearance["approval"] == "APPROVED":
        if await _approval_holds(keyring, redis, clip, appearance):
            raise Conflict("you already approved this clip")
        # an approval that no longer counts (given before an audience change, or expired)
        # is asked for again: this owner may give it again now
        own_key = approved_key(appearance["cameoId"], appearance.get("approvalJti"))
        await appearance_repo.reset_stale_approvals(db, clip_id, [own_key])
        appearance = {**appearance, "approval": "PENDING"}
    if appearance["approval"] == "REVOKED":
        raise Conflict("your consent to this clip was revoked; it cannot be approved")
    if appearance["cameoState"] != "ACTIVE":
        raise Conflict("your cameo is not active, so it cannot be approved")
    if appearance.get("blocked"):  # blocks always win, whoever blocked whom
        raise Forbidden(
            "you and the author of this clip have blocked one another; unblock first to approve it"
        )
    # an owner approves only what they may see (graph.visibility): not while a block stands
    # between them and another person featured in the clip
    blocks = await viewer_blocks(db, owner_id)
    if not clip_visible(owner_id, clip, [a["ownerId"] for a in appearances], blocks):
        raise Forbidden(
            "you and another person featured in this clip have blocked one another; unblock "
            "first to approve it"
        )
    token, jti = mint_approval_token(
        keyring,
        clip_id=clip_id,
        cameo_id=appearance["cameoId"],
        epoch=appearance["cameoEpoch"],
        owner_id=owner_id,
        sha256=clip["sha256"],
        ttl_s=ttl_s,
        now_ms=now,
    )
    others = [a for a in appearances if a is not appearance]
    check = await check_approvals(keyring, redis, clip, others)
    if check.stale:  # asked again, so the clip can still be published
        await appearance_repo.reset_stale_approvals(db, clip_id, check.stale)
    params = {
        "id": clip_id,
        "cameoId": appearance["cameoId"],
        "ownerId": owner_id,
        "epoch": appearance["cameoEpoch"],
        "sha256": clip["sha256"],
        "token": token,
        "jti": jti,
        "now": now,
        "approved": [*check.approved, approved_key(appearance["cameoId"], jti)],
    }
    approved = await appearance_repo.approve(db, params)
    if approved is None:
        raise Conflict("the clip changed while you approved it; look at it again")
    if approved["state"] == "AWAITING_APPROVAL" and not check.stale_owners:
        # another owner's approval may have landed after this one's read: look again
        approved = await publish_if_approved(db, keyring, redis, clip_id, now) or approved
    asked = check.stale_owners if approved["state"] == "AWAITING_APPROVAL" else []
    return Decision(approved, asked=asked)


async def reject_appearance(db: GraphDriver, owner_id: str, clip_id: str, now: int) -> dict:
    """rejectAppearance: the clip goes back to DRAFT with the REJECTED decision on it."""
    clip, appearances = await _read(db, clip_id)
    appearance = _own_appearance(clip, appearances, owner_id)
    assert clip is not None
    rejected = await appearance_repo.reject(db, owner_id, clip_id, now)
    if rejected is not None:
        return rejected
    if clip["state"] not in appearance_repo.UNPUBLISHED_WITH_VIDEO:
        raise Conflict(
            f"only a rendered, unpublished clip can be rejected; it is {clip['state']} "
            "(removeAppearance takes down a published one)"
        )
    raise Conflict(f"your decision on this clip is already {appearance['approval']}")
