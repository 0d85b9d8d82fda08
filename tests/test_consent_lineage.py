"""Consent follows lineage, with a real Celery worker (the preview renderer): a remix of a
clip featuring a cameo features it too and needs its owner's approval again, a remix by
someone the owner does not let use the cameo is refused, and removing an appearance takes
down every remix carrying it.

Also here, in-process (no worker takes these clips: they are written through the repository
and never queued): what the worker's consent checks refuse before any reference media is
read, each ending FAILED with a plain reason.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis
import redis.asyncio as aioredis
from conftest import (
    Account,
    GraphQLClient,
    Worker,
    active_cameo,
    cameo_of,
    purge_render_queue,
    raw,
    start_worker,
)
from ulid import ULID

from consent import plan_cameo_uses
from consent.approvals import publish_if_approved
from consent.tokens import mint_approval_token, revoke_jti_sync
from events.notifications import stream_key
from graph import appearances as appearance_repo
from graph import cameos as cameo_repo
from graph import clips as clip_repo
from graph.appearances import approved_key
from graph.driver import Cypher, driver_for
from media.store import open_media_store
from resolvers.ids import decode_id, encode_id
from workers.render_job import RenderConsent, RenderRuntime, run_render
from workers.renderers.preview import PreviewRenderer

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
CLIP = """query($id: ID!) { clip(id: $id) { id state failureReason
  cameos { approval cameo { id } } } }"""
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state } }"
APPROVE = "mutation($id: ID!) { approveAppearance(clipId: $id) { id state } }"
REMOVE = "mutation($id: ID!) { removeAppearance(clipId: $id) { id state } }"
AUDIENCE = "mutation($a: CameoAudience!) { setCameoAudience(audience: $a) { audience } }"
INBOX = "{ cameoInbox(first: 10) { edges { node { id } } } }"

RENDER_JTI = Cypher(
    """
MATCH (:Clip {id: $id})-[f:FEATURES]->(:Cameo)
RETURN f.renderJti AS jti
"""
)
REMOVED_BY = Cypher(
    """
UNWIND $ids AS id
MATCH (c:Clip {id: id})
RETURN c.id AS id, c.state AS state, c.removedBy AS removedBy
"""
)


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_tasks(settings) -> None:
    purge_render_queue(settings)


@pytest.fixture(scope="module")
def worker(settings, app, tmp_path_factory) -> Worker:
    w = start_worker(settings, tmp_path_factory.mktemp("lineage-worker") / "worker.log")
    yield w
    w.stop()


async def draft(gql: GraphQLClient, token: str, prompt: str, **fields) -> dict:
    fields.setdefault("durationSeconds", 1)
    created = (await gql.ok(CREATE, {"input": {"prompt": prompt, **fields}}, token))["createClip"]
    clip = await gql.wait_clip(CLIP, token, created["id"], {"DRAFT", "FAILED"})
    assert clip["state"] == "DRAFT", clip["failureReason"]
    return clip


def kinds_about(sync_redis, account, clip_id: str) -> list[str]:
    raw_id = decode_id(clip_id, "Clip")
    found = []
    for _, fields in sync_redis.xrange(stream_key(raw(account))):
        payload = json.loads(fields["payload"])
        if payload["clipId"] == raw_id and fields["kind"] != "RENDER_FINISHED":
            found.append(fields["kind"])
    return found


async def published_with(gql, author, owner, prompt: str, cameo: str) -> dict:
    clip = await draft(gql, author.token, prompt, cameoIds=[cameo])
    await gql.ok(PUBLISH, {"id": clip["id"]}, author.token)
    done = (await gql.ok(APPROVE, {"id": clip["id"]}, owner.token))["approveAppearance"]
    assert done["state"] == "PUBLISHED"
    return clip


async def test_a_strangers_remix_of_an_approved_clip_needs_approval_again(
    gql, graph, services, worker, sync_redis
) -> None:
    ann, carl, dave = [await gql.sign_up(name) for name in ("ann", "carl", "dave")]
    cameo = await cameo_of(graph, services, ann)
    original = await published_with(gql, carl, ann, "ann surfing", cameo)

    remix = await draft(gql, dave.token, "ann surfing at night", remixOf=original["id"])
    # it features the parent's cameo without asking for it, and waits for its owner
    assert [(a["cameo"]["id"], a["approval"]) for a in remix["cameos"]] == [(cameo, "PENDING")]
    # the owner sees the stranger's draft of her likeness
    assert (await gql.ok(CLIP, {"id": remix["id"]}, ann.token))["clip"]["state"] == "DRAFT"
    asked = (await gql.ok(PUBLISH, {"id": remix["id"]}, dave.token))["publishClip"]
    assert asked["state"] == "AWAITING_APPROVAL"  # the parent's approval does not carry over
    assert kinds_about(sync_redis, ann, remix["id"]) == ["APPEARANCE_REQUESTED"]
    code, _ = await gql.error(PUBLISH, {"id": remix["id"]}, dave.token)
    assert code == "CONFLICT"  # nothing the remixer does publishes it
    done = (await gql.ok(APPROVE, {"id": remix["id"]}, ann.token))["approveAppearance"]
    assert done["state"] == "PUBLISHED"

    # the owner's own remix of it features her cameo, approved at once
    own = await draft(gql, ann.token, "me again", remixOf=remix["id"])
    assert own["cameos"][0]["approval"] == "APPROVED"
    assert (await gql.ok(PUBLISH, {"id": own["id"]}, ann.token))["publishClip"]["state"] == (
        "PUBLISHED"
    )

    # with the audience narrowed, strangers cannot remix it at all: nothing is created
    await gql.ok(AUDIENCE, {"a": "ONLY_ME"}, ann.token)
    erin = await gql.sign_up("erin")
    code, _ = await gql.error(
        CREATE, {"input": {"prompt": "x", "remixOf": remix["id"]}}, erin.token
    )
    assert code == "CONSENT_REQUIRED"
    # at most two cameos, counting the inherited one
    await gql.ok(AUDIENCE, {"a": "EVERYONE"}, ann.token)
    more = [await cameo_of(graph, services, await gql.sign_up(f"extra{i}")) for i in range(2)]
    code, message = await gql.error(
        CREATE, {"input": {"prompt": "x", "remixOf": remix["id"], "cameoIds": more}}, erin.token
    )
    assert code == "BAD_USER_INPUT" and "already features 1" in message


async def test_removing_an_appearance_takes_down_the_remixes_carrying_it(
    gql, graph, services, worker, sync_redis
) -> None:
    ann, carl, dave, erin = [await gql.sign_up(n) for n in ("ann", "carl", "dave", "erin")]
    cameo = await cameo_of(graph, services, ann)
    original = await published_with(gql, carl, ann, "ann singing", cameo)
    remix = await draft(gql, dave.token, "ann singing louder", remixOf=original["id"])
    await gql.ok(PUBLISH, {"id": remix["id"]}, dave.token)
    await gql.ok(APPROVE, {"id": remix["id"]}, ann.token)
    deeper = await draft(gql, erin.token, "a draft remix of the remix", remixOf=remix["id"])

    removed = (await gql.ok(REMOVE, {"id": original["id"]}, ann.token))["removeAppearance"]
    assert removed["state"] == "REMOVED"
    ids = [decode_id(c["id"], "Clip") for c in (original, remix, deeper)]
    rows = await graph.read(REMOVED_BY, {"ids": ids})
    assert {(r["state"], r["removedBy"]) for r in rows} == {("REMOVED", "cameo-owner")}
    for author, clip in ((carl, original), (dave, remix), (erin, deeper)):
        assert kinds_about(sync_redis, author, clip["id"])[-1] == "CLIP_REMOVED"
    # taken down for everyone else, idempotent for the owner, refused to others
    assert (await gql.ok(CLIP, {"id": remix["id"]}, erin.token))["clip"] is None
    again = (await gql.ok(REMOVE, {"id": original["id"]}, ann.token))["removeAppearance"]
    assert again["state"] == "REMOVED"
    code, _ = await gql.error(REMOVE, {"id": remix["id"]}, carl.token)
    assert code == "NOT_FOUND"


# --- the worker's checks, in-process on clips no worker is sent


def _runtime(settings, *, consent: bool = True) -> RenderRuntime:
    loop = asyncio.new_event_loop()
    return RenderRuntime(
        graph=driver_for(settings),
        media=open_media_store(settings, None),
        renderer=PreviewRenderer(size=(128, 128)),
        lease_s=60,
        max_attempts=2,
        loop=loop,
        consent=RenderConsent(settings) if consent else None,
    )


def _render(settings, clip_id: str, *, consent: bool = True) -> str:
    rt = _runtime(settings, consent=consent)
    try:
        return run_render(rt, clip_id, f"in-process-{clip_id}")
    finally:
        rt.run(rt.graph.close())
        rt.loop.close()
        if rt.consent is not None:
            rt.consent.redis.close()


async def _featuring_clip(graph, services, author_id: str, cameo_id: str, tamper) -> str:
    """A QUEUED clip featuring the cameo, written as createClip writes it (its uses planned
    by consent.plan_cameo_uses), after `tamper` changed the uses; returns its raw id."""
    now = int(time.time() * 1000)
    params = {
        "authorId": author_id,
        "id": str(ULID()),
        "prompt": "in-process",
        "moods": [],
        "durationS": 1,
        "seed": 1,
        "now": now,
        "parentId": None,
    }
    checked = await cameo_repo.usable_cameos(graph, author_id, [cameo_id], now)
    uses = plan_cameo_uses(
        services.consent_keys, checked, requested=[cameo_id], clip=params, ttl_s=600, now=now
    )
    tamper(uses[0], params)
    assert await clip_repo.create_clip(graph, {**params, "cameos": uses})
    return params["id"]


def _flip(token: str) -> str:
    body = token[: len("v4.public.") + 20]
    swapped = "A" if token[len(body)] != "A" else "B"
    return body + swapped + token[len(body) + 1 :]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda use, p: use.update(token=_flip(use["token"])), id="flipped-byte"),
        pytest.param(lambda use, p: use.update(token="v4.public.AAAA"), id="garbage"),
        pytest.param(lambda use, p: p.update(prompt="another prompt"), id="another-spec"),
        pytest.param(lambda use, p: p.update(durationS=2), id="another-duration"),
        pytest.param(lambda use, p: use.update(token=None), id="no-token"),
    ],
)
async def test_the_worker_refuses_a_token_that_does_not_verify(
    gql, graph, services, settings, tamper
) -> None:
    owner, author = await gql.sign_up("owner"), await gql.sign_up("author")
    cameo = await active_cameo(graph, services.media, raw(owner))
    clip_id = await _featuring_clip(graph, services, raw(author), cameo, tamper)
    assert await asyncio.to_thread(_render, settings, clip_id) == "failed"
    clip = (await clip_repo.clips_by_ids(graph, [clip_id]))[clip_id]
    assert clip["state"] == "FAILED" and "revoked consent" in clip["failureReason"]
    assert owner.handle in clip["failureReason"]


async def test_the_worker_refuses_a_revoked_jti_and_renders_a_good_token(
    gql, graph, services, settings
) -> None:
    owner, author = await gql.sign_up("owner"), await gql.sign_up("author")
    cameo = await active_cameo(graph, services.media, raw(owner))
    good = await _featuring_clip(graph, services, raw(author), cameo, lambda u, p: None)
    assert await asyncio.to_thread(_render, settings, good) == "rendered"
    assert (await clip_repo.clips_by_ids(graph, [good]))[good]["state"] == "DRAFT"

    revoked = await _featuring_clip(graph, services, raw(author), cameo, lambda u, p: None)
    jti = (await graph.read(RENDER_JTI, {"id": revoked}))[0]["jti"]
    client = redis.Redis.from_url(settings.redis_url)
    try:
        revoke_jti_sync(client, jti, int(time.time() * 1000) + 60_000)
    finally:
        client.close()
    assert await asyncio.to_thread(_render, settings, revoked) == "failed"

    # a worker with no consent runtime renders no likeness at all
    bare = await _featuring_clip(graph, services, raw(author), cameo, lambda u, p: None)
    assert await asyncio.to_thread(_render, settings, bare, consent=False) == "failed"


# --- publishing: blocks, deleted cameos, racing approvals, audience changes

BLOCK = "mutation($u: ID!) { blockUser(userId: $u) { id } }"
DELETE_CAMEO = "mutation { deleteCameo { id state } }"
APPROVAL_OF = Cypher(
    """
MATCH (:Clip {id: $id})-[f:FEATURES]->(m:Cameo)
RETURN m.id AS cameoId, f.approval AS approval, f.approvalJti AS jti
"""
)


async def test_a_block_after_approval_keeps_the_clip_unpublished(
    gql, graph, services, worker
) -> None:
    ann, carl = await gql.sign_up("ann"), await gql.sign_up("carl")
    cameo = await cameo_of(graph, services, ann)
    clip = await draft(gql, carl.token, "ann at the market", cameoIds=[cameo])
    pending = await draft(gql, carl.token, "ann at the station", cameoIds=[cameo])
    await gql.ok(APPROVE, {"id": clip["id"]}, ann.token)  # approved while still a DRAFT
    await gql.ok(PUBLISH, {"id": pending["id"]}, carl.token)
    await gql.ok(BLOCK, {"u": carl.id}, ann.token)  # blocks always win

    code, message = await gql.error(PUBLISH, {"id": clip["id"]}, carl.token)
    assert code == "CONSENT_REQUIRED" and "blocked" in message
    code, message = await gql.error(APPROVE, {"id": pending["id"]}, ann.token)
    assert code == "FORBIDDEN" and "blocked" in message
    # the statement's own guard refuses it too, given the approval's verified key
    raw_id = decode_id(clip["id"], "Clip")
    edge = (await graph.read(APPROVAL_OF, {"id": raw_id}))[0]
    assert edge["approval"] == "APPROVED"
    key = approved_key(edge["cameoId"], edge["jti"])
    assert await clip_repo.publish(graph, raw(carl), raw_id, 1, approved=[key]) is None
    assert (await gql.ok(CLIP, {"id": clip["id"]}, carl.token))["clip"]["state"] == "DRAFT"


async def test_a_draft_of_the_authors_own_deleted_cameo_cannot_be_published(
    gql, graph, services, worker
) -> None:
    me = await gql.sign_up("me")
    cameo = await cameo_of(graph, services, me, audience="ONLY_ME")
    clip = await draft(gql, me.token, "me in the snow", cameoIds=[cameo])
    await gql.ok(DELETE_CAMEO, token=me.token)
    code, message = await gql.error(PUBLISH, {"id": clip["id"]}, me.token)
    assert code == "CONSENT_REQUIRED" and "deleted" in message


async def test_two_racing_last_approvals_still_publish(
    gql, graph, services, settings, worker
) -> None:
    ann, bob, carl = [await gql.sign_up(n) for n in ("ann", "bob", "carl")]
    cameos = [await cameo_of(graph, services, owner) for owner in (ann, bob)]
    clip = await draft(gql, carl.token, "two friends", cameoIds=cameos)
    await gql.ok(PUBLISH, {"id": clip["id"]}, carl.token)
    raw_id = decode_id(clip["id"], "Clip")
    sha256 = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]["sha256"]
    # each owner's statement ran on a read made before the other's approval was written
    for owner, cameo in zip((ann, bob), cameos, strict=True):
        cameo_id = decode_id(cameo, "Cameo")
        epoch = (await cameo_repo.usable_cameos(graph, raw(owner), [cameo_id], 1))[0]["epoch"]
        token, jti = mint_approval_token(
            services.consent_keys, clip_id=raw_id, cameo_id=cameo_id, epoch=epoch,
            owner_id=raw(owner), sha256=sha256, ttl_s=600, now_ms=int(time.time() * 1000),
        )  # fmt: skip
        params = {"id": raw_id, "cameoId": cameo_id, "ownerId": raw(owner), "epoch": epoch,
                  "sha256": sha256, "token": token, "jti": jti, "now": 1,
                  "approved": [approved_key(cameo_id, jti)]}  # fmt: skip
        written = await appearance_repo.approve(graph, params)
        assert written["state"] == "AWAITING_APPROVAL"  # neither saw the other's approval
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        done = await publish_if_approved(graph, services.consent_keys, client, raw_id, 2)
    finally:
        await client.aclose()
    assert done is not None and done["state"] == "PUBLISHED"


async def test_an_audience_change_asks_again_for_approvals_already_given(
    gql, graph, services, worker, sync_redis
) -> None:
    ann, carl = await gql.sign_up("ann"), await gql.sign_up("carl")
    cameo = await cameo_of(graph, services, ann)
    clip = await draft(gql, carl.token, "ann on a bike", cameoIds=[cameo])
    await gql.ok(APPROVE, {"id": clip["id"]}, ann.token)
    await gql.ok(AUDIENCE, {"a": "APPROVED"}, ann.token)  # narrowed: uses of others stop
    # her approval no longer counts, so approving again is no conflict (it just stays a DRAFT)
    again = (await gql.ok(APPROVE, {"id": clip["id"]}, ann.token))["approveAppearance"]
    assert again["state"] == "DRAFT"
    code, _ = await gql.error(APPROVE, {"id": clip["id"]}, ann.token)
    assert code == "CONFLICT"  # while this one holds
    await gql.ok(AUDIENCE, {"a": "EVERYONE"}, ann.token)
    asked = (await gql.ok(PUBLISH, {"id": clip["id"]}, carl.token))["publishClip"]
    assert asked["state"] == "AWAITING_APPROVAL"
    assert kinds_about(sync_redis, ann, clip["id"]) == ["APPEARANCE_REQUESTED"]
    done = (await gql.ok(APPROVE, {"id": clip["id"]}, ann.token))["approveAppearance"]
    assert done["state"] == "PUBLISHED"

    # a clip that awaits another owner too: her approval, given before her next audience
    # change, no longer counts, so the clip is back in her inbox
    bob = await gql.sign_up("bob")
    both = [cameo, await cameo_of(graph, services, bob)]
    waiting = await draft(gql, carl.token, "ann and bob", cameoIds=both)
    await gql.ok(PUBLISH, {"id": waiting["id"]}, carl.token)
    await gql.ok(APPROVE, {"id": waiting["id"]}, ann.token)
    assert (await gql.ok(INBOX, {}, ann.token))["cameoInbox"]["edges"] == []
    await gql.ok(AUDIENCE, {"a": "MUTUALS"}, ann.token)
    inbox = (await gql.ok(INBOX, {}, ann.token))["cameoInbox"]["edges"]
    assert [edge["node"]["id"] for edge in inbox] == [waiting["id"]]
    assert (await gql.ok(INBOX, {}, carl.token))["cameoInbox"]["edges"] == []
    await gql.ok(APPROVE, {"id": waiting["id"]}, ann.token)
    done = (await gql.ok(APPROVE, {"id": waiting["id"]}, bob.token))["approveAppearance"]
    assert done["state"] == "PUBLISHED"


async def _granted(
    gql: GraphQLClient, graph, services, *, expires_in_ms: int | None
) -> tuple[Account, Account, str]:
    """An owner, a grantee granted the owner's new APPROVED cameo (raw id) until now plus
    expires_in_ms (None: no end), and that cameo."""
    owner, grantee = await gql.sign_up("owner"), await gql.sign_up("grantee")
    cameo = await active_cameo(graph, services.media, raw(owner), audience="APPROVED")
    now = int(time.time() * 1000)
    expires_at = None if expires_in_ms is None else now + expires_in_ms
    assert await cameo_repo.create_grant(
        graph, owner_id=raw(owner), grantee_id=raw(grantee), grant_id=str(ULID()), now=now,
        expires_at=expires_at,
    )  # fmt: skip
    return owner, grantee, cameo


async def test_an_audience_change_stops_others_renders_not_the_owners_own(
    gql, graph, services, settings
) -> None:
    owner, grantee, cameo = await _granted(gql, graph, services, expires_in_ms=None)
    own = await _featuring_clip(graph, services, raw(owner), cameo, lambda u, p: None)
    others = await _featuring_clip(graph, services, raw(grantee), cameo, lambda u, p: None)
    # widened: the grantee may still use it, but tokens minted before the change stop
    assert await cameo_repo.set_audience(graph, raw(owner), "EVERYONE")
    assert await asyncio.to_thread(_render, settings, own) == "rendered"
    assert await asyncio.to_thread(_render, settings, others) == "failed"
    found = await clip_repo.clips_by_ids(graph, [own, others])
    assert found[own]["state"] == "DRAFT" and found[others]["state"] == "FAILED"


EXPIRE_GRANTS = Cypher(
    """
MATCH (:Cameo {id: $cameoId})-[g:GRANTED_TO]->(:User)
SET g.expiresAt = 1
RETURN g.grantId AS id
"""
)


async def test_a_grant_that_expires_before_the_render_fails_it(
    gql, graph, services, settings
) -> None:
    owner, grantee, cameo = await _granted(gql, graph, services, expires_in_ms=3_600_000)
    clip_id = await _featuring_clip(graph, services, raw(grantee), cameo, lambda u, p: None)
    assert await graph.write(EXPIRE_GRANTS, {"cameoId": cameo})  # it ran out while queued
    assert await asyncio.to_thread(_render, settings, clip_id) == "failed"
    clip = (await clip_repo.clips_by_ids(graph, [clip_id]))[clip_id]
    assert clip["state"] == "FAILED" and owner.handle in clip["failureReason"]


REJECT = "mutation($id: ID!) { rejectAppearance(clipId: $id) { id state } }"


async def test_client_mistakes_get_clear_codes_and_change_nothing(
    gql, graph, services, settings
) -> None:
    owner, author, other = [await gql.sign_up(n) for n in ("owner", "author", "other")]
    cameo = await active_cameo(graph, services.media, raw(owner))
    queued = encode_id(
        "Clip", await _featuring_clip(graph, services, raw(author), cameo, lambda u, p: None)
    )
    for mutation in (APPROVE, REJECT):  # no video yet: nothing to decide on
        code, message = await gql.error(mutation, {"id": queued}, owner.token)
        assert code == "CONFLICT" and "QUEUED" in message
    for bad in (owner.id, "not-an-id", encode_id("Clip", "01JNOSUCHCLIP0000000000000")):
        for mutation in (APPROVE, REJECT, REMOVE):
            code, _ = await gql.error(mutation, {"id": bad}, owner.token)
            assert code in ("NOT_FOUND", "BAD_USER_INPUT"), (bad, code)
    for mutation in (APPROVE, REJECT, REMOVE):  # not featured in it
        code, _ = await gql.error(mutation, {"id": queued}, other.token)
        assert code == "NOT_FOUND"
    unchanged = (await gql.ok(CLIP, {"id": queued}, author.token))["clip"]
    assert unchanged["state"] == "QUEUED" and unchanged["cameos"][0]["approval"] == "PENDING"

    drafted = await _featuring_clip(graph, services, raw(author), cameo, lambda u, p: None)
    assert await asyncio.to_thread(_render, settings, drafted) == "rendered"
    drafted = encode_id("Clip", drafted)
    assert (await gql.ok(REJECT, {"id": drafted}, owner.token))["rejectAppearance"]
    code, message = await gql.error(REJECT, {"id": drafted}, owner.token)
    assert code == "CONFLICT" and "REJECTED" in message
    state = (await gql.ok(CLIP, {"id": drafted}, author.token))["clip"]
    assert state["state"] == "DRAFT" and state["cameos"][0]["approval"] == "REJECTED"
    # the owner may change their mind; the author still cannot decide for them
    code, _ = await gql.error(APPROVE, {"id": drafted}, author.token)
    assert code == "NOT_FOUND"  # it features no cameo of theirs
    assert (await gql.ok(APPROVE, {"id": drafted}, owner.token))["approveAppearance"]
    assert (await gql.ok(PUBLISH, {"id": drafted}, author.token))["publishClip"]["state"] == (
        "PUBLISHED"
    )


async def test_an_approval_racing_a_revocation_or_an_audience_change_is_refused(
    gql, graph, services, settings
) -> None:
    """The approval statement re-checks what approveAppearance read: a grant revoked or an
    audience changed between that read and the write leaves nothing approved."""
    owner, grantee = await gql.sign_up("owner"), await gql.sign_up("grantee")
    cameo = await active_cameo(graph, services.media, raw(owner), audience="APPROVED")
    now = int(time.time() * 1000)
    grant = await cameo_repo.create_grant(
        graph, owner_id=raw(owner), grantee_id=raw(grantee), grant_id=str(ULID()), now=now,
        expires_at=None,
    )  # fmt: skip
    clips = []
    for _ in range(2):
        clip_id = await _featuring_clip(graph, services, raw(grantee), cameo, lambda u, p: None)
        assert await asyncio.to_thread(_render, settings, clip_id) == "rendered"
        clips.append((await clip_repo.clips_by_ids(graph, [clip_id]))[clip_id])

    def approval_of(clip: dict, epoch: int) -> dict:  # what approveAppearance read and signed
        token, jti = mint_approval_token(
            services.consent_keys, clip_id=clip["id"], cameo_id=cameo, epoch=epoch,
            owner_id=raw(owner), sha256=clip["sha256"], ttl_s=600, now_ms=now,
        )  # fmt: skip
        return {"id": clip["id"], "cameoId": cameo, "ownerId": raw(owner), "epoch": epoch,
                "sha256": clip["sha256"], "token": token, "jti": jti, "now": now,
                "approved": [approved_key(cameo, jti)]}  # fmt: skip

    first = approval_of(clips[0], 1)
    assert await cameo_repo.set_audience(graph, raw(owner), "MUTUALS")  # epoch 1 -> 2
    assert await appearance_repo.approve(graph, first) is None
    second = approval_of(clips[1], 2)
    assert await cameo_repo.revoke_grant(graph, raw(owner), grant["id"], now)
    assert await appearance_repo.approve(graph, second) is None
    for clip in clips:
        edge = (await graph.read(APPROVAL_OF, {"id": clip["id"]}))[0]
        assert edge["approval"] in ("PENDING", "REVOKED") and edge["jti"] is None
    edge = (await graph.read(APPROVAL_OF, {"id": clips[1]["id"]}))[0]
    assert edge["approval"] == "REVOKED"


FEATURE_PENDING = Cypher(
    """
MATCH (c:Clip {id: $clipId})
MATCH (m:Cameo {id: $cameoId})
CREATE (c)-[:FEATURES {approval: 'PENDING', epoch: m.consentEpoch}]->(m)
SET c.state = 'AWAITING_APPROVAL', c.updatedAt = $at
RETURN c.id AS id
"""
)
PARENT_OF = "{ id remixOf { id } }"


async def test_a_remix_names_its_parent_after_publishing_deciding_or_removal(
    gql, graph, services
) -> None:
    """The consent mutations and Cameo.appearances hand later fields the clip's new row, which
    names no parent: remixOf must still find it (it read null for every remix)."""
    from conftest import rendered_clip

    owner, author = await gql.sign_up("owner"), await gql.sign_up("author")
    cameo = await active_cameo(graph, services.media, raw(owner))
    at = int(time.time() * 1000)
    parent = await rendered_clip(graph, raw(author), at, publish=True)
    want = {"id": encode_id("Clip", parent)}

    plain = encode_id("Clip", await rendered_clip(graph, raw(author), at, parent_id=parent))
    published = await gql.ok(
        f"mutation($id: ID!) {{ publishClip(clipId: $id) {PARENT_OF} }}",
        {"id": plain},
        author.token,
    )
    assert published["publishClip"]["remixOf"] == want

    featuring = []
    for _ in range(2):
        clip_id = await rendered_clip(graph, raw(author), at, parent_id=parent)
        await graph.write(FEATURE_PENDING, {"clipId": clip_id, "cameoId": cameo, "at": at})
        featuring.append(encode_id("Clip", clip_id))
    listed = await gql.ok(
        "query($id: ID!) { node(id: $id) { ... on Cameo { appearances(first: 10) {"
        f" edges {{ node {PARENT_OF} }} }} }} }} }}",
        {"id": encode_id("Cameo", cameo)},
        owner.token,
    )
    edges = listed["node"]["appearances"]["edges"]
    assert [edge["node"]["remixOf"] for edge in edges] == [want, want]
    for mutation in ("approveAppearance", "removeAppearance"):
        done = await gql.ok(
            f"mutation($id: ID!) {{ {mutation}(clipId: $id) {PARENT_OF} }}",
            {"id": featuring.pop()},
            owner.token,
        )
        assert done[mutation]["remixOf"] == want, mutation
