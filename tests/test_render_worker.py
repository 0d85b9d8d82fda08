"""Real Celery workers render real MP4s: DRAFT, publish, media access, double delivery,
a killed worker, a render over its time limit, and the tiny diffusers pipeline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from conftest import GraphQLClient, start_worker

from graph import clips as clip_repo
from media.probe import probe_video
from resolvers.ids import decode_id

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
CLIP = """query($id: ID!) { clip(id: $id) { id state failureReason renderProgress publishedAt
  video { url mimeType durationMs width height fps hasAudio sha256 } } }"""
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state publishedAt } }"
DELETE = "mutation($id: ID!) { deleteClip(clipId: $id) { id state } }"


async def wait_state(
    gql: GraphQLClient, token: str, clip_id: str, states: set[str], within_s: float = 90
) -> dict:
    deadline = time.monotonic() + within_s
    while True:
        clip = (await gql.ok(CLIP, {"id": clip_id}, token))["clip"]
        if clip["state"] in states:
            return clip
        assert time.monotonic() < deadline, f"clip stuck in {clip['state']}"
        await asyncio.sleep(0.1)


@pytest.fixture
def worker_log(tmp_path: Path) -> Path:
    return tmp_path / "worker.log"


@pytest.fixture
def worker(settings, worker_log: Path):
    w = start_worker(settings, worker_log)
    yield w
    w.stop()


async def test_a_clip_renders_to_a_playable_draft_and_publishes(
    gql: GraphQLClient, worker, settings
) -> None:
    ann, bob = await gql.sign_up("render"), await gql.sign_up("viewer")
    created = (await gql.ok(CREATE, {"input": {"prompt": "a cat astronaut"}}, ann.token))[
        "createClip"
    ]
    draft = await wait_state(gql, ann.token, created["id"], {"DRAFT", "FAILED"})
    assert draft["state"] == "DRAFT", draft["failureReason"]
    assert draft["renderProgress"] is None
    video = draft["video"]

    # the file the author can fetch is the one described, and it plays
    http = gql.client
    response = await http.get(video["url"])
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    downloaded = Path(settings.data_dir) / "downloaded.mp4"
    downloaded.write_bytes(response.content)
    info = probe_video(downloaded)
    assert video["sha256"] == info.sha256
    assert (video["width"], video["height"], video["fps"]) == (info.width, info.height, 24.0)
    assert abs(video["durationMs"] - 5000) <= 50 and video["hasAudio"] is True
    assert video["mimeType"] == "video/mp4"

    # a link is bound to its viewer: nobody else can use the author's link to a draft
    key_url = video["url"].replace(
        f"v={decode_id(ann.id, 'User')}", f"v={decode_id(bob.id, 'User')}"
    )
    assert (await http.get(key_url)).status_code == 404
    assert (await http.get(video["url"].replace("sig=", "sig=0"))).status_code == 404

    published = (await gql.ok(PUBLISH, {"id": created["id"]}, ann.token))["publishClip"]
    assert published["state"] == "PUBLISHED" and published["publishedAt"]
    code, _ = await gql.error(PUBLISH, {"id": created["id"]}, ann.token)
    assert code == "CONFLICT"
    code, _ = await gql.error(PUBLISH, {"id": created["id"]}, bob.token)
    assert code == "FORBIDDEN"

    # now others see it, with a link of their own, and on the author's profile
    theirs = (await gql.ok(CLIP, {"id": created["id"]}, bob.token))["clip"]
    assert theirs["state"] == "PUBLISHED" and theirs["video"]["sha256"] == info.sha256
    profile = await gql.ok(
        "query($h: String!) { user(handle: $h) { clips { edges { node { id } } } } }",
        {"h": ann.handle},
    )
    assert [e["node"]["id"] for e in profile["user"]["clips"]["edges"]] == [created["id"]]
    assert (await http.get(theirs["video"]["url"])).status_code == 200
    odd = theirs["video"]["url"].split("sig=")[0] + "sig=%C3%A9"
    assert (await http.get(odd)).status_code == 404

    # a remix names its parent, in every mutation result too
    remix = (
        await gql.ok(
            """mutation($input: CreateClipInput!) { createClip(input: $input) {
                 id remixOf { id } } }""",
            {"input": {"prompt": "a remix", "remixOf": created["id"]}},
            bob.token,
        )
    )["createClip"]
    assert remix["remixOf"] == {"id": created["id"]}
    deleted = await gql.ok(
        "mutation($id: ID!) { deleteClip(clipId: $id) { state remixOf { id } } }",
        {"id": remix["id"]},
        bob.token,
    )
    assert deleted["deleteClip"] == {"state": "REMOVED", "remixOf": {"id": created["id"]}}

    # someone the author blocked no longer sees the clip, nor can remix it
    carl = await gql.sign_up("blocked")
    await gql.ok("mutation($id: ID!) { blockUser(userId: $id) { id } }", {"id": carl.id}, ann.token)
    assert (await gql.ok(CLIP, {"id": created["id"]}, carl.token))["clip"] is None
    code, _ = await gql.error(
        CREATE, {"input": {"prompt": "remix", "remixOf": created["id"]}}, carl.token
    )
    assert code == "NOT_FOUND"

    # after removal the same link serves nothing
    await gql.ok(DELETE, {"id": created["id"]}, ann.token)
    assert (await http.get(theirs["video"]["url"])).status_code == 404


async def test_a_task_delivered_twice_renders_once(
    gql: GraphQLClient, services, graph, settings, worker_log
) -> None:
    ann = await gql.sign_up("twice")
    created = (await gql.ok(CREATE, {"input": {"prompt": "duplicate delivery"}}, ann.token))[
        "createClip"
    ]
    raw_id = decode_id(created["id"], "Clip")

    async def never() -> None:
        raise AssertionError("the broker is up")

    await services.render_queue.enqueue(raw_id, on_refused=never)  # the second delivery
    w = start_worker(settings, worker_log, REELGRAPH_WORKER_CONCURRENCY="2")
    try:
        await wait_state(gql, ann.token, created["id"], {"DRAFT"})
        await asyncio.sleep(2)  # let the second delivery finish whatever it would do
    finally:
        w.stop()
    row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
    assert row["state"] == "DRAFT" and row["renderAttempts"] == 1
    assert len(list((settings.media_dir / "clips" / raw_id).iterdir())) == 1


async def test_a_killed_worker_loses_nothing(gql: GraphQLClient, graph, settings, tmp_path) -> None:
    fast_recovery = {"REELGRAPH_RENDER_LEASE_S": "2", "REELGRAPH_RENDER_VISIBILITY_TIMEOUT_S": "4"}
    first = start_worker(settings, tmp_path / "first.log", **fast_recovery)
    ann = await gql.sign_up("crash")
    created = (
        await gql.ok(CREATE, {"input": {"prompt": "long take", "durationSeconds": 20}}, ann.token)
    )["createClip"]
    await wait_state(gql, ann.token, created["id"], {"RENDERING"}, within_s=60)
    first.kill()
    assert (await gql.ok(CLIP, {"id": created["id"]}, ann.token))["clip"]["state"] == "RENDERING"

    second = start_worker(settings, tmp_path / "second.log", **fast_recovery)
    try:
        draft = await wait_state(gql, ann.token, created["id"], {"DRAFT", "FAILED"}, within_s=120)
    finally:
        second.stop()
    assert draft["state"] == "DRAFT"
    assert abs(draft["video"]["durationMs"] - 20000) <= 50
    row = await clip_repo.clips_by_ids(graph, [decode_id(created["id"], "Clip")])
    assert next(iter(row.values()))["renderAttempts"] == 2


async def test_a_render_over_its_time_limit_fails_with_a_reason(
    gql: GraphQLClient, settings, tmp_path
) -> None:
    w = start_worker(settings, tmp_path / "w.log", REELGRAPH_RENDER_SOFT_TIME_LIMIT_S="1")
    try:
        ann = await gql.sign_up("slow")
        created = (
            await gql.ok(
                CREATE, {"input": {"prompt": "too long", "durationSeconds": 20}}, ann.token
            )
        )["createClip"]
        failed = await wait_state(gql, ann.token, created["id"], {"FAILED", "DRAFT"})
    finally:
        w.stop()
    assert failed["state"] == "FAILED"
    assert failed["failureReason"] == "the render took longer than 1 s"
    assert failed["video"] is None
    code, _ = await gql.error(PUBLISH, {"id": created["id"]}, ann.token)
    assert code == "CONFLICT"


async def test_the_tiny_diffusers_pipeline_renders_through_the_real_task(
    gql: GraphQLClient, settings, tmp_path: Path
) -> None:
    from workers.renderers.tiny_ltx import build_tiny_ltx_pipeline

    model_dir = build_tiny_ltx_pipeline(tmp_path / "tiny-ltx")
    w = start_worker(
        settings,
        tmp_path / "w.log",
        REELGRAPH_RENDERER="diffusers",
        REELGRAPH_MODEL=str(model_dir),
        REELGRAPH_DIFFUSERS_RESOLUTION="64x96",
        REELGRAPH_DIFFUSERS_STEPS="2",
        HF_HUB_OFFLINE="1",
    )
    try:
        ann = await gql.sign_up("diffuse")
        created = (
            await gql.ok(
                CREATE, {"input": {"prompt": "tiny model", "durationSeconds": 1}}, ann.token
            )
        )["createClip"]
        draft = await wait_state(gql, ann.token, created["id"], {"DRAFT", "FAILED"}, within_s=180)
    finally:
        w.stop()
    assert draft["state"] == "DRAFT", draft["failureReason"]
    assert (draft["video"]["height"], draft["video"]["width"]) == (64, 96)
    assert draft["video"]["fps"] == 24.0


async def test_a_lost_task_is_requeued_by_the_reaper(
    gql: GraphQLClient, settings, tmp_path
) -> None:
    import redis

    ann = await gql.sign_up("lost")
    created = (await gql.ok(CREATE, {"input": {"prompt": "lost in the broker"}}, ann.token))[
        "createClip"
    ]
    # the broker loses every waiting task (as after a Redis restart without persistence)
    broker = redis.Redis.from_url(settings.redis_url)
    assert broker.delete("render") == 1
    broker.close()
    w = start_worker(
        settings, tmp_path / "w.log", REELGRAPH_REAPER_INTERVAL_S="1", REELGRAPH_REQUEUE_AFTER_S="1"
    )
    try:
        draft = await wait_state(gql, ann.token, created["id"], {"DRAFT", "FAILED"})
    finally:
        w.stop()
    assert draft["state"] == "DRAFT"
    assert "re-queued" in (tmp_path / "w.log").read_text()
