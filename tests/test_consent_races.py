"""Consent re-checked by the statements themselves (issue 14, item 6).

The API and the worker check consent in Python, then write with one guarded statement.
Whatever changes between the two (the owner's audience, a block, a lost mutual follow, an
approval running out) must still refuse the write. Each test here takes the Python check
as it passed, then makes the change through the real server or repository, then runs the
statement the caller would have run next: the order that used to slip through. No sleeps:
the interleaving is written out.

Also: the usability rule is one Cypher fragment, included by every statement that needs it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aredis
from conftest import Account, GraphQLClient, active_cameo, raw
from ulid import ULID

from consent import plan_cameo_uses
from consent.approvals import check_approvals
from consent.tokens import mint_approval_token
from graph import appearances as appearance_repo
from graph import cameos as cameo_repo
from graph import clips as clip_repo
from graph.appearances import approved_key
from resolvers.ids import encode_id

APPROVE = "mutation($id: ID!) { approveAppearance(clipId: $id) { id state } }"
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state } }"
AUDIENCE = "mutation($a: CameoAudience!) { setCameoAudience(audience: $a) { audience } }"
BLOCK = "mutation($id: ID!) { blockUser(userId: $id) { id } }"
UNFOLLOW = "mutation($id: ID!) { unfollow(userId: $id) { id } }"
FOLLOW = "mutation($id: ID!) { follow(userId: $id) { id } }"
STATE = "query($id: ID!) { clip(id: $id) { state } }"
VIDEO = {
    "key": "clips/x.mp4",
    "sha256": "0" * 64,
    "durationMs": 1000,
    "width": 64,
    "height": 64,
    "fps": 8.0,
    "hasAudio": False,
    "sizeBytes": 1,
    "mimeType": "video/mp4",
}


@pytest.fixture
async def redis(settings) -> AsyncIterator[aredis.Redis]:
    """A client on the tests' own event loop (the app's runs in the test client's thread)."""
    client = aredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


def _now() -> int:
    return int(time.time() * 1000)


async def _claimed(graph, services, author: Account, cameo: str) -> str:
    """A clip featuring the cameo, written as createClip writes it, claimed by a render
    ("race", attempt 1) that has passed the worker's consent checks; its raw id."""
    now = _now()
    params: dict[str, Any] = {
        "authorId": raw(author),
        "id": str(ULID()),
        "prompt": "a race",
        "moods": [],
        "durationS": 1,
        "seed": 1,
        "now": now,
        "parentId": None,
    }
    checked = await cameo_repo.usable_cameos(graph, raw(author), [cameo], now)
    params["cameos"] = plan_cameo_uses(
        services.consent_keys, checked, requested=[cameo], clip=params, ttl_s=600, now=now
    )
    assert await clip_repo.create_clip(graph, params)
    assert await clip_repo.claim_render(graph, params["id"], "race", now, now + 60_000)
    # what the worker checks last, before it stores the file: the author may use it now
    epoch = params["cameos"][0]["epoch"]
    assert await cameo_repo.cameo_usable(graph, cameo, raw(author), epoch, now)
    return params["id"]


async def _finish(graph, clip_id: str) -> dict | None:
    return await clip_repo.finish_render(graph, clip_id, "race", 1, VIDEO, _now())


async def _draft(graph, services, author: Account, cameo: str) -> str:
    clip_id = await _claimed(graph, services, author, cameo)
    assert await _finish(graph, clip_id)
    return clip_id


async def _checked(graph, services, redis, clip_id: str) -> list[str]:
    """What publishClip's Python check hands the statement: every approval verified."""
    clip = (await clip_repo.clips_by_ids(graph, [clip_id]))[clip_id]
    appearances = (await appearance_repo.appearances_by_clips(graph, [clip_id]))[clip_id]
    check = await check_approvals(services.consent_keys, redis, clip, appearances)
    assert check.approved and not (check.refused or check.pending_owners or check.stale)
    return check.approved


async def _state(gql: GraphQLClient, account: Account, clip_id: str) -> str:
    return (await gql.ok(STATE, {"id": encode_id("Clip", clip_id)}, account.token))["clip"]["state"]


# --- publishing


async def test_publish_refuses_an_approval_given_before_an_audience_change(
    gql: GraphQLClient, graph, services, redis
) -> None:
    """The audience changes (the author keeps the right to use the cameo through a grant)
    after publishClip verified the approval: the epoch the approval was given under is no
    longer the cameo's, and the statement sees it."""
    owner, author = await gql.sign_up("owner"), await gql.sign_up("author")
    cameo = await active_cameo(graph, services.media, raw(owner))
    assert await cameo_repo.create_grant(
        graph, owner_id=raw(owner), grantee_id=raw(author), grant_id=str(ULID()), now=_now(),
        expires_at=None,
    )  # fmt: skip
    clip_id = await _draft(graph, services, author, cameo)
    await gql.ok(APPROVE, {"id": encode_id("Clip", clip_id)}, owner.token)  # still a DRAFT
    approved = await _checked(graph, services, redis, clip_id)

    await gql.ok(AUDIENCE, {"a": "APPROVED"}, owner.token)  # the epoch moves on

    assert await clip_repo.publish(graph, raw(author), clip_id, _now(), approved) is None
    assert await _state(gql, author, clip_id) == "DRAFT"
    # through the API the approval no longer counts: it is asked for again
    asked = await gql.ok(PUBLISH, {"id": encode_id("Clip", clip_id)}, author.token)
    assert asked["publishClip"]["state"] == "AWAITING_APPROVAL"


async def test_publish_refuses_an_expired_approval(
    gql: GraphQLClient, graph, services, redis
) -> None:
    """An approval is a token with an expiry: a verified key naming one that has run out
    does not publish."""
    owner, author = await gql.sign_up("owner"), await gql.sign_up("author")
    cameo = await active_cameo(graph, services.media, raw(owner))
    clip_id = await _draft(graph, services, author, cameo)
    clip = (await clip_repo.clips_by_ids(graph, [clip_id]))[clip_id]
    epoch = (await cameo_repo.usable_cameos(graph, raw(owner), [cameo], _now()))[0]["epoch"]
    signed_at = _now() - 3_600_000  # an hour ago, for a minute
    token, jti = mint_approval_token(
        services.consent_keys, clip_id=clip_id, cameo_id=cameo, epoch=epoch,
        owner_id=raw(owner), sha256=clip["sha256"], ttl_s=60, now_ms=signed_at,
    )  # fmt: skip
    key = approved_key(cameo, jti)
    params = {"id": clip_id, "cameoId": cameo, "ownerId": raw(owner), "epoch": epoch,
              "sha256": clip["sha256"], "token": token, "jti": jti, "now": signed_at,
              "approved": [key]}  # fmt: skip
    assert await appearance_repo.approve(graph, params)  # recorded an hour ago

    assert await clip_repo.publish(graph, raw(author), clip_id, _now(), [key]) is None
    assert await _state(gql, author, clip_id) == "DRAFT"
    # the API's own check finds it expired too, and asks the owner again
    asked = await gql.ok(PUBLISH, {"id": encode_id("Clip", clip_id)}, author.token)
    assert asked["publishClip"]["state"] == "AWAITING_APPROVAL"


async def test_the_last_approval_refuses_to_publish_after_an_audience_change(
    gql: GraphQLClient, graph, services
) -> None:
    """The approval statement publishes the clip it completes with the same guard."""
    owner, author = await gql.sign_up("owner"), await gql.sign_up("author")
    cameo = await active_cameo(graph, services.media, raw(owner))
    clip_id = await _draft(graph, services, author, cameo)
    await gql.ok(PUBLISH, {"id": encode_id("Clip", clip_id)}, author.token)
    clip = (await clip_repo.clips_by_ids(graph, [clip_id]))[clip_id]
    epoch = (await cameo_repo.usable_cameos(graph, raw(owner), [cameo], _now()))[0]["epoch"]
    token, jti = mint_approval_token(
        services.consent_keys, clip_id=clip_id, cameo_id=cameo, epoch=epoch,
        owner_id=raw(owner), sha256=clip["sha256"], ttl_s=600, now_ms=_now(),
    )  # fmt: skip
    params = {"id": clip_id, "cameoId": cameo, "ownerId": raw(owner), "epoch": epoch,
              "sha256": clip["sha256"], "token": token, "jti": jti, "now": _now(),
              "approved": [approved_key(cameo, jti)]}  # fmt: skip

    # the owner narrows to ONLY_ME between approveAppearance's read and its write
    assert await cameo_repo.set_audience(graph, raw(owner), "ONLY_ME")

    assert await appearance_repo.approve(graph, params) is None  # nothing recorded
    assert await _state(gql, author, clip_id) == "AWAITING_APPROVAL"


# --- finishing a render


async def test_finish_render_refuses_after_a_block(gql: GraphQLClient, graph, services) -> None:
    owner, author = await gql.sign_up("owner"), await gql.sign_up("author")
    cameo = await active_cameo(graph, services.media, raw(owner))
    clip_id = await _claimed(graph, services, author, cameo)

    await gql.ok(BLOCK, {"id": author.id}, owner.token)  # after the worker's last check

    assert await _finish(graph, clip_id) is None  # no DRAFT: the worker then fails it
    assert await _state(gql, author, clip_id) == "RENDERING"

    # the block the other way round refuses it the same
    other, author2 = await gql.sign_up("owner"), await gql.sign_up("author")
    cameo2 = await active_cameo(graph, services.media, raw(other))
    clip2 = await _claimed(graph, services, author2, cameo2)
    await gql.ok(BLOCK, {"id": other.id}, author2.token)
    assert await _finish(graph, clip2) is None


async def test_finish_render_refuses_after_an_audience_change_or_a_lost_mutual(
    gql: GraphQLClient, graph, services
) -> None:
    owner, granted, mutual = [await gql.sign_up(n) for n in ("owner", "granted", "mutual")]
    cameo = await active_cameo(graph, services.media, raw(owner), audience="MUTUALS")
    assert await cameo_repo.create_grant(
        graph, owner_id=raw(owner), grantee_id=raw(granted), grant_id=str(ULID()), now=_now(),
        expires_at=None,
    )  # fmt: skip
    await gql.ok(FOLLOW, {"id": mutual.id}, owner.token)
    await gql.ok(FOLLOW, {"id": owner.id}, mutual.token)
    by_grant = await _claimed(graph, services, granted, cameo)
    by_mutual = await _claimed(graph, services, mutual, cameo)

    await gql.ok(UNFOLLOW, {"id": mutual.id}, owner.token)  # the mutual follow is lost
    assert await _finish(graph, by_mutual) is None
    # the grantee may still use it, at the same epoch: that render finishes
    assert (await _finish(graph, by_grant))["state"] == "DRAFT"

    again = await _claimed(graph, services, granted, cameo)
    await gql.ok(AUDIENCE, {"a": "APPROVED"}, owner.token)  # still allowed, a new epoch
    assert await _finish(graph, again) is None


async def test_finish_render_keeps_the_owners_own_render_after_an_audience_change(
    gql: GraphQLClient, graph, services
) -> None:
    """The owner's own use needs nobody's consent: only the cameo ACTIVE (as the worker)."""
    owner = await gql.sign_up("owner")
    cameo = await active_cameo(graph, services.media, raw(owner))
    clip_id = await _claimed(graph, services, owner, cameo)
    await gql.ok(AUDIENCE, {"a": "ONLY_ME"}, owner.token)
    assert (await _finish(graph, clip_id))["state"] == "DRAFT"


# --- one rule


def test_the_usability_rule_is_one_fragment_in_every_statement_that_needs_it() -> None:
    """USABLE_CAMEOS (the API and the workers), the statements that write a clip featuring
    cameos and FINISH_RENDER all carry graph.cameos.usable_by; no statement spells the rule
    out by itself."""
    from graph import cameos, clips
    from tests.statements import all_statements

    fragment_line = "OPTIONAL MATCH (m)-[usableGrant:GRANTED_TO]->(a)"
    for statement in (
        clips.CREATE_CLIP_FEATURING,
        clips.CREATE_REMIX_FEATURING,
        clips.FINISH_RENDER,
    ):
        assert fragment_line in statement
    assert "OPTIONAL MATCH (c)-[usableGrant:GRANTED_TO]->(u)" in cameos.USABLE_CAMEOS
    for name, text in all_statements().items():
        if "m.audience = 'MUTUALS'" in text or "c.audience = 'MUTUALS'" in text:
            assert "usableFollows" in text, f"{name} spells out the usability rule itself"
