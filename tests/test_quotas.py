"""Generation quotas: the daily quota (remixes count, a FAILED render gives its unit back,
RATE_LIMITED until UTC midnight), the cap on renders in flight (it comes back when a render
ends or its clip is removed, by whatever path), and viewer.generationQuota.

Two app instances on one Redis stand for two API processes (as in tests/test_rate_limits.py):
the counters are Redis's, so racing requests spread over both cannot pass the quota. The
FAILED render is a real Celery worker's (the gated renderer, tests/gated_renderer.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from conftest import GraphQLClient, purge_render_queue, raw, rendered_clip
from gated_renderer import Gate
from litestar.testing import AsyncTestClient
from test_render_worker import start_gated_worker

from auth.quotas import render_ended_sync
from graph import clips as clip_repo
from resolvers.ids import decode_id, encode_id
from server import build_app
from settings import Settings

CREATE = "mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"
QUOTA = "{ viewer { generationQuota { used limit resetsAt } } }"
USER_QUOTA = "query($h: String!) { user(handle: $h) { handle generationQuota { used } } }"
DRAFTS = "{ drafts(first: 100) { edges { node { id state } } } }"
DELETE = "mutation($id: ID!) { deleteClip(clipId: $id) { id state } }"
CLIP = "query($id: ID!) { clip(id: $id) { id state failureReason } }"
DAILY = 4


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_renders(settings: Settings) -> None:
    """Clips made here wait for no worker, and earlier modules' clips are not ours."""
    purge_render_queue(settings)
    yield
    purge_render_queue(settings)


@pytest.fixture(scope="module")
async def apis(settings: Settings) -> AsyncIterator[tuple[GraphQLClient, GraphQLClient]]:
    limited = settings.model_copy(
        update={"daily_generations": DAILY, "max_active_renders_per_user": 100}
    )
    first = AsyncTestClient(app=build_app(limited))
    second = AsyncTestClient(app=build_app(limited))
    async with first, second:
        yield GraphQLClient(first), GraphQLClient(second)


def next_utc_midnight() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


async def create(api: GraphQLClient, token: str, prompt: str, **fields) -> dict:
    return await api.raw(CREATE, {"input": {"prompt": prompt, **fields}}, token)


async def quota(api: GraphQLClient, token: str) -> dict:
    return (await api.ok(QUOTA, token=token))["viewer"]["generationQuota"]


async def drafts(api: GraphQLClient, token: str) -> list[str]:
    return [e["node"]["id"] for e in (await api.ok(DRAFTS, token=token))["drafts"]["edges"]]


def assert_rate_limited(body: dict, fragment: str) -> int:
    assert body.get("errors"), body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED", body
    assert fragment in error["message"], error["message"]
    assert body["data"] is None or body["data"].get("createClip") is None
    retry_after = error["extensions"]["retryAfterSeconds"]
    assert isinstance(retry_after, int) and retry_after >= 1
    return retry_after


async def test_a_failed_render_gives_its_unit_back_once(
    apis: tuple[GraphQLClient, GraphQLClient], settings: Settings, graph, tmp_path, sync_redis
) -> None:
    api, _ = apis
    ann = await api.sign_up("failing")
    purge_render_queue(settings)  # nothing else waits in the fair queue for this worker
    gate = Gate(settings.redis_url)
    worker = start_gated_worker(settings, tmp_path / "worker.log")
    try:
        created = (await create(api, ann.token, "this render breaks"))["data"]["createClip"]
        clip_id = decode_id(created["id"], "Clip")
        assert (await quota(api, ann.token))["used"] == 1
        arrival = (await asyncio.to_thread(gate.reached, clip_id))["arrival"]
        gate.order(clip_id, arrival, "raise-error")
        failed = await api.wait_clip(CLIP, ann.token, created["id"], {"FAILED", "DRAFT"})
    finally:
        worker.stop()
        gate.close()
    assert failed["state"] == "FAILED"
    # the unit comes back just after the guarded move to FAILED (the graph, then Redis): a
    # client polling the state may see FAILED a moment before it; the deadline bounds a hang
    deadline = time.monotonic() + 60
    while (await quota(api, ann.token))["used"] != 0:
        assert time.monotonic() < deadline, "the failed render's unit never came back"
        await asyncio.sleep(0.05)
    active = f"reelgraph:quota:active-renders:{raw(ann)}"
    assert sync_redis.zcard(active) == 0  # and so did the render slot

    # the failure reported again (a retried worker, a second delivery) gives nothing more
    await create(api, ann.token, "a clip that waits")
    row = (await clip_repo.clips_by_ids(graph, [clip_id]))[clip_id]
    client = redis.Redis.from_url(settings.redis_url)
    try:
        for _ in range(2):
            render_ended_sync(client, raw(ann), clip_id, row["createdAt"], failed=True)
    finally:
        client.close()
    assert (await quota(api, ann.token))["used"] == 1


async def test_the_daily_quota_counts_remixes_and_refuses_until_utc_midnight(
    apis: tuple[GraphQLClient, GraphQLClient], graph
) -> None:
    api, _ = apis
    ann, bob = await api.sign_up("quota"), await api.sign_up("other")
    fresh = await quota(api, ann.token)
    assert fresh["used"] == 0 and fresh["limit"] == DAILY
    assert datetime.fromisoformat(fresh["resetsAt"]) == next_utc_midnight()

    parent = await rendered_clip(graph, raw(bob), int(time.time() * 1000), publish=True)
    remix = await create(api, ann.token, "a remix", remixOf=encode_id("Clip", parent))
    assert remix["data"]["createClip"]["state"] == "QUEUED", remix
    assert (await quota(api, ann.token))["used"] == 1  # a remix takes a unit too
    for n in range(DAILY - 1):
        body = await create(api, ann.token, f"clip {n}")
        assert not body.get("errors"), body
    made = await drafts(api, ann.token)
    assert len(made) == DAILY

    refused = await create(api, ann.token, "one too many")
    retry_after = assert_rate_limited(refused, "midnight UTC")
    until_midnight = (next_utc_midnight() - datetime.now(UTC)).total_seconds()
    assert retry_after <= 86_400 and abs(retry_after - until_midnight) < 120
    remix_refused = await create(api, ann.token, "remix", remixOf=encode_id("Clip", parent))
    assert_rate_limited(remix_refused, "midnight UTC")
    # a refusal writes nothing and takes nothing
    assert await drafts(api, ann.token) == made
    assert (await quota(api, ann.token))["used"] == DAILY

    # the quota is the user's own: bob's is untouched, and nobody else may read ann's
    assert (await quota(api, bob.token))["used"] == 0
    others = await api.ok(USER_QUOTA, {"h": ann.handle}, bob.token)
    assert others["user"] == {"handle": ann.handle, "generationQuota": None}
    assert (await api.ok(USER_QUOTA, {"h": ann.handle}))["user"]["generationQuota"] is None
    own = await api.ok(USER_QUOTA, {"h": ann.handle}, ann.token)
    assert own["user"]["generationQuota"] == {"used": DAILY}
    # bad input is refused as such and takes no unit
    bad = await create(api, bob.token, "   ")
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await quota(api, bob.token))["used"] == 0


async def test_the_quota_holds_across_two_api_processes(
    apis: tuple[GraphQLClient, GraphQLClient],
) -> None:
    first, second = apis
    ann = await first.sign_up("racer")
    bodies = await asyncio.gather(
        *(create((first, second)[n % 2], ann.token, f"race {n}") for n in range(3 * DAILY))
    )
    made = [b for b in bodies if not b.get("errors")]
    assert len(made) == DAILY, bodies
    for body in bodies:
        if body.get("errors"):
            assert_rate_limited(body, "midnight UTC")
    assert len(await drafts(second, ann.token)) == DAILY
    assert (await quota(first, ann.token))["used"] == DAILY
    assert (await quota(second, ann.token))["used"] == DAILY


async def test_renders_in_flight_are_capped_and_come_back_however_they_end(
    settings: Settings, graph
) -> None:
    assert Settings.model_fields["max_active_renders_per_user"].default == 3
    capped = settings.model_copy(
        update={"daily_generations": 100, "max_active_renders_per_user": 3}  # the default cap
    )
    async with AsyncTestClient(app=build_app(capped)) as client:
        api = GraphQLClient(client)
        ann = await api.sign_up("inflight")
        ids = []
        for n in range(3):
            ids.append((await create(api, ann.token, f"queued {n}"))["data"]["createClip"]["id"])
        refused = await create(api, ann.token, "a fourth")
        assert_rate_limited(refused, "waiting or rendering")
        assert len(await drafts(api, ann.token)) == 3
        assert (await quota(api, ann.token))["used"] == 3  # the refusal took no unit

        # a clip its author deletes gives its slot back at once
        assert (await api.ok(DELETE, {"id": ids[0]}, ann.token))["deleteClip"]["state"] == (
            "REMOVED"
        )
        fourth = await create(api, ann.token, "a fourth")
        assert not fourth.get("errors"), fourth
        assert_rate_limited(await create(api, ann.token, "a fifth"), "waiting or rendering")

        # a clip that left QUEUED by a path that frees nothing (a moderator's take-down, a
        # render finished while Redis was away) is found by reconciling with the graph
        now = int(time.time() * 1000)
        assert await clip_repo.remove(graph, raw(ann), decode_id(ids[1], "Clip"), now, "moderator")
        sixth = await create(api, ann.token, "a fifth")
        assert not sixth.get("errors"), sixth
        raw_id = decode_id(ids[2], "Clip")
        assert await clip_repo.claim_render(graph, raw_id, "test-task", now, now + 60_000)
        assert_rate_limited(await create(api, ann.token, "a sixth"), "waiting or rendering")
        assert await clip_repo.fail_render(graph, raw_id, "test-task", "broken", now, attempt=1)
        seventh = await create(api, ann.token, "a sixth")
        assert not seventh.get("errors"), seventh


async def test_a_clip_the_render_queue_refused_takes_nothing(
    settings: Settings, sync_redis
) -> None:
    """The broker is down: the clip is not made, and its unit, render slot and place in its
    author's turn are all given back."""
    broken = settings.model_copy(
        update={"broker_url": "redis://127.0.0.1:1/0", "daily_generations": DAILY}
    )
    async with AsyncTestClient(app=build_app(broken)) as client:
        api = GraphQLClient(client)
        ann = await api.sign_up("outage")
        body = await create(api, ann.token, "lost?")
        assert body["errors"][0]["message"].startswith("the render queue is unavailable"), body
        assert (await quota(api, ann.token))["used"] == 0
        assert await drafts(api, ann.token) == []
    assert sync_redis.zcard(f"reelgraph:quota:active-renders:{raw(ann)}") == 0
    assert sync_redis.llen(f"reelgraph:render:waiting:{raw(ann)}") == 0
