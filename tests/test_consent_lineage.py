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
from conftest import GraphQLClient, Worker, active_cameo, purge_render_queue, start_worker
from ulid import ULID

from consent import plan_cameo_uses
from consent.tokens import revoke_jti_sync
from events.notifications import stream_key
from graph import cameos as cameo_repo
from graph import clips as clip_repo
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


@pytest.fixture
def sync_redis(settings):
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    client.close()


def raw(account) -> str:
    return decode_id(account.id, "User")


async def cameo_of(graph, services, account, audience: str = "EVERYONE") -> str:
    cameo_id = await active_cameo(graph, services.media, raw(account), audience=audience)
    return encode_id("Cameo", cameo_id)


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
        media=open_media_store(settings, settings.secret_key),
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
