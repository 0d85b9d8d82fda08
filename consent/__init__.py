"""Likeness consent: grants, render tokens, approvals, revocation, content policy.

This module is the consent side of making a clip: which cameos a new clip may feature and
the render tokens that carry that consent to the worker (`plan_cameo_uses`), and what a
worker checks before it touches a cameo's reference media and again before it stores the
output (`check_render_uses`). Token crypto lives in consent.tokens and consent.keyring,
reference-media encryption in consent.envelope, owners' rules in consent.policy, and the
owners' decisions on drafts in consent.approvals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from consent.policy import enforce_restrictions
from consent.tokens import TokenRejected, mint_render_token, spec_hash, verify_render_token
from errors import BadUserInput, ConsentRequired

if TYPE_CHECKING:
    from consent.keyring import SigningKeyring, VerifyingKeyring

__all__ = [
    "MAX_CAMEOS",
    "ConsentWithdrawn",
    "check_render_uses",
    "clip_spec_hash",
    "plan_cameo_uses",
    "withdrawn_reason",
]

MAX_CAMEOS = 2


class ConsentWithdrawn(Exception):
    """A render may not use a cameo (any more): `reason` is the clip's failureReason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def withdrawn_reason(handle: str | None) -> str:
    """The FAILED clip's sentence: plain, and naming no token detail."""
    who = f"@{handle}" if handle else "a featured cameo's owner"
    return (
        f"the render was stopped: {who} revoked consent for this clip, or it no longer "
        "holds; ask them again and make a new clip"
    )


def clip_spec_hash(clip: dict[str, Any], cameo_ids: list[str]) -> str:
    """The hash a render token binds, from a clip row as the graph holds it."""
    return spec_hash(
        clip_id=clip["id"],
        author_id=clip["authorId"],
        prompt=clip["prompt"],
        duration_s=clip["durationS"],
        moods=list(clip.get("moods") or []),
        parent_id=clip.get("parentId"),
        cameo_ids=cameo_ids,
    )


def plan_cameo_uses(
    keyring: SigningKeyring,
    checked: list[dict[str, Any]],
    *,
    requested: list[str],
    clip: dict[str, Any],
    ttl_s: int,
    now: int,
) -> list[dict[str, Any]]:
    """The FEATURES edges a new clip gets, one render token each.

    `checked` is graph.cameos.usable_cameos' answer for `requested` (the cameo ids, parent's
    first, de-duplicated) and the author; `clip` holds the new clip's id, authorId, prompt,
    durationS, moods and parentId. CONSENT_REQUIRED when a cameo is unknown, not ACTIVE or
    not usable by the author (one message for all three: it tells nobody whether a cameo
    they may not use exists); POLICY_VIOLATION when the prompt breaks an owner's rule.
    Nothing is written here: the caller writes the clip and these edges in one statement.
    """
    if len(requested) > MAX_CAMEOS:
        raise BadUserInput(f"a clip features at most {MAX_CAMEOS} cameos")
    by_id = {row["id"]: row for row in checked}
    author_id = clip["authorId"]
    for cameo_id in requested:
        row = by_id.get(cameo_id)
        if row is None or not row["usable"]:
            raise ConsentRequired(
                "you may not feature one of these cameos: it is not active, or its owner "
                "has not given you consent"
            )
    for cameo_id in requested:
        row = by_id[cameo_id]
        if row["ownerId"] != author_id:  # an owner's rules bind others, not the owner
            enforce_restrictions(clip["prompt"], row["restrictions"])
    spec = clip_spec_hash(clip, requested)
    uses = []
    for cameo_id in requested:
        row = by_id[cameo_id]
        own = row["ownerId"] == author_id
        token, jti = mint_render_token(
            keyring,
            clip_id=clip["id"],
            cameo_id=cameo_id,
            epoch=row["epoch"],
            owner_id=row["ownerId"],
            grantee_id=author_id,
            spec_hash=spec,
            ttl_s=ttl_s,
            now_ms=now,
        )
        uses.append(
            {
                "cameoId": cameo_id,
                "ownerId": row["ownerId"],
                "epoch": row["epoch"],
                # the author's own likeness needs nobody's approval
                "approval": "APPROVED" if own else "PENDING",
                "decidedAt": now if own else None,
                "token": token,
                "jti": jti,
            }
        )
    return uses


def check_render_uses(
    keyring: VerifyingKeyring,
    clip: dict[str, Any],
    uses: list[dict[str, Any]],
    *,
    is_revoked: Callable[[str], bool],
    usable_epochs: Callable[[list[str]], dict[str, int]],
) -> list[dict]:
    """What a worker checks for each featured cameo, before reading its reference media and
    again before storing the output; the verified claims, or ConsentWithdrawn.

    `uses` are graph.appearances.render_uses rows (token, epoch, approval per cameo);
    `clip` the claimed clip row with parentId. Each token must verify (signature by a live
    key, purpose, this clip, cameo, grantee and spec hash, epoch, expiry), its jti must not be
    revoked, the appearance must not be REVOKED, and the cameo must still be usable by the
    author under the epoch the token names: `usable_epochs(cameo_ids)` answers, in one
    read, the current epoch of each cameo the author may use now (graph.cameos
    usable_cameos: ACTIVE, usable), leaving the others out.

    The epoch binds others' uses only. An owner changing their audience moves the epoch on
    so that uses of others minted under the old audience stop, but the owner's own render of
    their own cameo needs nobody's consent: it only needs the cameo still ACTIVE (deletion
    leaves it DELETED, with its key shredded).
    """
    spec = clip_spec_hash(clip, [use["cameoId"] for use in uses])
    usable = usable_epochs([use["cameoId"] for use in uses])
    verified = []
    for use in uses:
        handle = use.get("ownerHandle")
        if use.get("approval") == "REVOKED":
            raise ConsentWithdrawn(withdrawn_reason(handle))
        try:
            claims = verify_render_token(
                keyring,
                use.get("renderToken") or "",
                clip_id=clip["id"],
                cameo_id=use["cameoId"],
                epoch=use["epoch"],
                grantee_id=clip["authorId"],
                spec_hash=spec,
            )
        except TokenRejected as rejected:
            raise ConsentWithdrawn(withdrawn_reason(handle)) from rejected
        # the owner's own use, as the signed claims and the graph both say
        own = claims.get("owner") == use.get("ownerId") == clip["authorId"]
        current = usable.get(use["cameoId"])
        if is_revoked(claims["jti"]) or current is None or (not own and current != claims["epoch"]):
            raise ConsentWithdrawn(withdrawn_reason(handle))
        verified.append(claims)
    return verified
