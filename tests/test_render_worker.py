"""Real Celery workers render real MP4s: DRAFT, publish, media access, double delivery,
a killed worker, renders over their soft and hard time limits, a lost task, a claim that
lost its clip, transient failures, and the tiny diffusers pipeline.

Slow, stuck and killed renders are made deterministic with the gated renderer
(tests/gated_renderer.py): a real preview renderer that holds at a known point until the
test releases it, and says when it got there. Every wait is on a state, a gate event or a
log line, never on time passing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path

import pytest
import redis
from conftest import GraphQLClient, Worker, purge_render_queue, start_worker
from gated_renderer import RENDERER, STUBBORN_RENDERER, Gate

from graph import clips as clip_repo
from media.probe import probe_video
from resolvers.ids import decode_id
from workers import failures

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
CLIP = """query($id: ID!) { clip(id: $id) { id state failureReason renderProgress publishedAt
  video { url mimeType durationMs width height fps hasAudio sha256 } } }"""
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state publishedAt } }"
DELETE = "mutation($id: ID!) { deleteClip(clipId: $id) { id state } }"
TESTS = Path(__file__).resolve().parent
POLL_S = 0.05  # how often a wait looks at the state it waits for


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_tasks(settings) -> None:
    """Other modules create clips without a worker; their tasks are not this module's."""
    purge_render_queue(settings)


async def wait_state(
    gql: GraphQLClient, token: str, clip_id: str, states: set[str], within_s: float = 90
) -> dict:
    return await gql.wait_clip(CLIP, token, clip_id, states, within_s)


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


async def wait_log(log: Path, text: str, within_s: float = 90) -> None:
    deadline = time.monotonic() + within_s
    while text not in read_log(log):
        assert time.monotonic() < deadline, f"never logged {text!r}:\n{read_log(log)[-3000:]}"
        await asyncio.sleep(POLL_S)


def start_gated_worker(settings, log: Path, renderer: str = RENDERER, **env: str) -> Worker:
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    return start_worker(settings, log, REELGRAPH_RENDERER=renderer, PYTHONPATH=pythonpath, **env)


@pytest.fixture
def gate(settings):
    g = Gate(settings.redis_url)
    yield g
    g.close()


async def reached(gate: Gate, clip_id: str) -> dict:
    return await asyncio.to_thread(gate.reached, clip_id)


async def create(gql: GraphQLClient, token: str, prompt: str, **fields) -> tuple[str, str]:
    """(global id, raw id) of a new clip."""
    created = (await gql.ok(CREATE, {"input": {"prompt": prompt, **fields}}, token))["createClip"]
    return created["id"], decode_id(created["id"], "Clip")


def stored_files(settings, raw_id: str) -> list[str]:
    folder = settings.media_dir / "clips" / raw_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def worker_log(tmp_path: Path) -> Path:
    return tmp_path / "worker.log"


@pytest.fixture
def worker(settings, worker_log: Path):
    w = start_worker(settings, worker_log)
    yield w
    w.stop()


async def test_a_clip_renders_to_a_playable_draft_and_publishes(
    gql: GraphQLClient, worker, settings, graph
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

    # after removal the same link serves nothing, and the file is gone from the store
    raw_id = decode_id(created["id"], "Clip")
    key = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]["videoKey"]
    assert (settings.media_dir / key).is_file()
    await gql.ok(DELETE, {"id": created["id"]}, ann.token)
    assert (await http.get(theirs["video"]["url"])).status_code == 404
    assert not (settings.media_dir / key).exists()
    assert stored_files(settings, raw_id) == []


async def test_a_task_delivered_twice_renders_once(
    gql: GraphQLClient, services, graph, settings, worker_log, gate
) -> None:
    ann = await gql.sign_up("twice")
    clip_id, raw_id = await create(gql, ann.token, "duplicate delivery")

    async def never() -> None:
        raise AssertionError("the broker is up")

    await services.render_queue.enqueue(raw_id, on_refused=never)  # the second delivery
    w = start_gated_worker(
        settings, worker_log, REELGRAPH_WORKER_CONCURRENCY="2", REELGRAPH_RENDER_LEASE_S="10"
    )
    try:
        first = await reached(gate, raw_id)
        # the other delivery finds the clip claimed, and retries when the lease may lapse
        await wait_log(worker_log, f"clip {raw_id} is being rendered elsewhere")
        gate.order(raw_id, first["arrival"], "render")
        await wait_state(gql, ann.token, clip_id, {"DRAFT"})
        # its retry then finds the clip rendered, and does nothing
        await wait_log(worker_log, f"clip {raw_id}: skipped:DRAFT")
    finally:
        w.stop()
    row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
    assert row["state"] == "DRAFT" and row["renderAttempts"] == 1
    assert first["arrival"] == 1
    assert stored_files(settings, raw_id) == [Path(row["videoKey"]).name]


async def test_a_killed_worker_loses_nothing(
    gql: GraphQLClient, graph, settings, tmp_path, gate
) -> None:
    # short enough to recover soon, long enough that a slow machine's render never loses
    # its lease or gets its task redelivered while it still runs
    fast_recovery = {"REELGRAPH_RENDER_LEASE_S": "5", "REELGRAPH_RENDER_VISIBILITY_TIMEOUT_S": "10"}
    first = start_gated_worker(settings, tmp_path / "first.log", **fast_recovery)
    ann = await gql.sign_up("crash")
    clip_id, raw_id = await create(gql, ann.token, "long take")
    try:
        await reached(gate, raw_id)  # claimed, and held mid-render
    finally:
        first.kill()
    assert (await gql.ok(CLIP, {"id": clip_id}, ann.token))["clip"]["state"] == "RENDERING"

    # the broker hands the task to the next worker, which renders it: nothing was lost
    second = start_worker(settings, tmp_path / "second.log", **fast_recovery)
    try:
        draft = await wait_state(gql, ann.token, clip_id, {"DRAFT", "FAILED"}, within_s=120)
    finally:
        second.stop()
    assert draft["state"] == "DRAFT", draft["failureReason"]
    assert abs(draft["video"]["durationMs"] - 5000) <= 50
    row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
    assert row["renderAttempts"] == 2


async def test_a_render_over_its_time_limit_fails_with_a_reason(
    gql: GraphQLClient, settings, tmp_path, gate
) -> None:
    w = start_gated_worker(settings, tmp_path / "w.log", REELGRAPH_RENDER_SOFT_TIME_LIMIT_S="2")
    try:
        ann = await gql.sign_up("slow")
        clip_id, raw_id = await create(gql, ann.token, "too long")
        await reached(gate, raw_id)  # held, and never released: the soft limit fires there
        failed = await wait_state(gql, ann.token, clip_id, {"FAILED", "DRAFT"})
    finally:
        w.stop()
    assert failed["state"] == "FAILED"
    assert failed["failureReason"] == "the render took longer than 2 s"
    assert failed["video"] is None
    code, _ = await gql.error(PUBLISH, {"id": clip_id}, ann.token)
    assert code == "CONFLICT"


async def test_a_render_past_its_hard_time_limit_fails_with_a_reason(
    gql: GraphQLClient, settings, tmp_path, gate
) -> None:
    log = tmp_path / "w.log"
    w = start_gated_worker(
        settings,
        log,
        STUBBORN_RENDERER,  # ignores the soft limit, so the hard limit kills its process
        REELGRAPH_RENDER_SOFT_TIME_LIMIT_S="2",
        REELGRAPH_RENDER_TIME_LIMIT_S="4",
    )
    try:
        ann = await gql.sign_up("stuck")
        clip_id, raw_id = await create(gql, ann.token, "stuck in native code")
        await reached(gate, raw_id)
        failed = await wait_state(gql, ann.token, clip_id, {"FAILED", "DRAFT"})
    finally:
        w.stop()
    assert failed["state"] == "FAILED"
    assert failed["failureReason"] == "the render took longer than 4 s"
    assert "Hard time limit (4" in log.read_text()


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
    gql: GraphQLClient, graph, settings, tmp_path, gate
) -> None:
    first = start_gated_worker(settings, tmp_path / "first.log", REELGRAPH_RENDER_LEASE_S="1")
    ann = await gql.sign_up("lost")
    clip_id, raw_id = await create(gql, ann.token, "lost in the broker")
    try:
        await reached(gate, raw_id)
    finally:
        first.kill()
    # the broker loses the dead worker's task too (as after a Redis restart without
    # persistence): no redelivery will come, only the reaper can bring the clip back
    assert _forget_unacked_task(settings, raw_id)
    log = tmp_path / "second.log"
    second = start_worker(
        settings,
        log,
        REELGRAPH_REAPER_INTERVAL_S="1",
        REELGRAPH_RENDER_VISIBILITY_TIMEOUT_S="1",
    )
    try:
        draft = await wait_state(gql, ann.token, clip_id, {"DRAFT", "FAILED"})
    finally:
        second.stop()
    assert draft["state"] == "DRAFT", draft["failureReason"]
    assert "re-queued" in log.read_text()
    assert (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]["renderAttempts"] == 2


def _forget_unacked_task(settings, clip_id: str) -> bool:
    """Delete the broker's record of a delivered, unacknowledged render task for clip_id."""
    broker = redis.Redis.from_url(settings.redis_url)
    try:
        for tag, entry in broker.hgetall("unacked").items():
            message = json.loads(entry)[0]
            args = json.loads(base64.b64decode(message["body"]))[0]
            if args == [clip_id]:
                broker.hdel("unacked", tag)
                broker.zrem("unacked_index", tag)
                return True
        return False
    finally:
        broker.close()


async def test_a_claim_that_lost_its_clip_deletes_only_its_own_file(
    gql: GraphQLClient, services, graph, settings, worker_log, gate
) -> None:
    """Two claims of one clip render identical bytes; the one that lost finishes last."""
    ann = await gql.sign_up("race")
    clip_id, raw_id = await create(gql, ann.token, "same bytes twice")

    async def never() -> None:
        raise AssertionError("the broker is up")

    await services.render_queue.enqueue(raw_id, on_refused=never)  # a second task
    # the lease outlasts any pause between the first render's progress reports, and the
    # tail of a render (probe, store) on a slow machine
    w = start_gated_worker(
        settings, worker_log, REELGRAPH_WORKER_CONCURRENCY="2", REELGRAPH_RENDER_LEASE_S="10"
    )
    try:
        first = await reached(gate, raw_id)
        # the first claim renders, then stalls before storing, and its lease runs out
        gate.order(raw_id, first["arrival"], "render-and-hold")
        assert (await reached(gate, raw_id))["point"] == "rendered"
        second = await reached(gate, raw_id)  # the other task claimed the clip
        assert second == {"arrival": 2, "point": "started"}
        gate.order(raw_id, second["arrival"], "render")
        draft = await wait_state(gql, ann.token, clip_id, {"DRAFT", "FAILED"})
        assert draft["state"] == "DRAFT", draft["failureReason"]
        named = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]["videoKey"]
        # now the first claim stores its file and finds the clip taken over
        gate.order(raw_id, first["arrival"], "go")
        await wait_log(worker_log, f"clip {raw_id}: removed or taken over; deleted")
    finally:
        w.stop()
    row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
    assert row["videoKey"] == named and row["renderAttempts"] == 2
    deleted_key = worker_log.read_text().split(f"clip {raw_id}: removed or taken over; deleted")
    assert named not in deleted_key[1].splitlines()[0]  # it deleted its own file only
    assert stored_files(settings, raw_id) == [Path(named).name]
    response = await gql.client.get(draft["video"]["url"])
    assert response.status_code == 200 and len(response.content) == row["sizeBytes"]


async def test_transient_failures_are_retried_then_fail_with_a_plain_sentence(
    gql: GraphQLClient, settings, worker_log, gate
) -> None:
    ann = await gql.sign_up("flaky")
    # per clip: what its first and second render (the one retry allowed) run into
    cases = {
        "disk": (("raise-enospc", "raise-enospc"), "FAILED", failures.DISK_FULL),
        "gpu": (("raise-cuda-oom", "render"), "DRAFT", None),
        "services": (("raise-graph", "raise-redis"), "FAILED", failures.REDIS_UNAVAILABLE),
        "bug": (("raise-error",), "FAILED", failures.RENDERER_FAILED),
    }
    clips = {}
    for name, (orders, _, _) in cases.items():
        clips[name] = await create(gql, ann.token, f"flaky {name}")
        for arrival, order in enumerate(orders, start=1):
            gate.order(clips[name][1], arrival, order)
    w = start_gated_worker(
        settings,
        worker_log,
        REELGRAPH_RENDER_MAX_RETRIES="1",
        REELGRAPH_RENDER_RETRY_BACKOFF_S="0.1",
        REELGRAPH_WORKER_CONCURRENCY="2",
    )
    try:
        for name, (_, state, reason) in cases.items():
            clip = await wait_state(gql, ann.token, clips[name][0], {"DRAFT", "FAILED"})
            assert (clip["state"], clip["failureReason"]) == (state, reason), name
    finally:
        w.stop()
    log = worker_log.read_text()
    # the details are in the log, not in what the client sees
    assert "No space left on device" in log and "CUDA out of memory" in log
    assert "secret.safetensors is corrupt" in log
    assert f"render of {clips['gpu'][1]} hit a transient failure" in log
    assert gate.arrivals(clips["bug"][1]) == 1  # a broken renderer is not retried


async def test_a_render_that_finishes_after_its_clip_was_removed_leaves_no_file(
    gql: GraphQLClient, graph, settings, worker_log, gate
) -> None:
    ann = await gql.sign_up("regret")
    clip_id, raw_id = await create(gql, ann.token, "removed mid-render")
    w = start_gated_worker(settings, worker_log)
    try:
        first = await reached(gate, raw_id)
        gate.order(raw_id, first["arrival"], "render-and-hold")
        assert (await reached(gate, raw_id))["point"] == "rendered"
        assert (await gql.ok(DELETE, {"id": clip_id}, ann.token))["deleteClip"]["state"] == (
            "REMOVED"
        )
        gate.order(raw_id, first["arrival"], "go")  # it stores its file, then finds the clip gone
        await wait_log(worker_log, f"clip {raw_id}: removed or taken over; deleted")
    finally:
        w.stop()
    row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
    assert row["state"] == "REMOVED" and row.get("videoKey") is None
    assert stored_files(settings, raw_id) == []


def _send_render(settings, clip_id: str, task_id: str) -> None:
    """Publish a render task with a chosen id: a second send is a redelivery of the first."""
    from workers.celery_app import make_celery
    from workers.queue import RENDER_TASK

    celery_app = make_celery(settings)
    try:
        celery_app.send_task(RENDER_TASK, args=[clip_id], task_id=task_id)
    finally:
        celery_app.close()


async def test_a_stale_claim_of_the_same_task_cannot_fail_the_newer_claims_render(
    gql: GraphQLClient, graph, settings, worker_log, gate
) -> None:
    """Two deliveries of one task claim one clip; the older one fails last, and is refused."""
    ann = await gql.sign_up("stale")
    clip_id, raw_id = await create(gql, ann.token, "redelivered while rendering")
    purge_render_queue(settings)  # the deliveries are the test's, with one task id
    task_id = f"render-{raw_id}"
    w = start_gated_worker(
        settings, worker_log, REELGRAPH_WORKER_CONCURRENCY="2", REELGRAPH_RENDER_LEASE_S="10"
    )
    try:
        await asyncio.to_thread(_send_render, settings, raw_id, task_id)
        first = await reached(gate, raw_id)
        # the first delivery renders, then holds without renewing its lease, so it never
        # learns before it fails that the redelivery took the clip back
        gate.order(raw_id, first["arrival"], "render-and-hold")
        assert (await reached(gate, raw_id))["point"] == "rendered"
        await asyncio.to_thread(_send_render, settings, raw_id, task_id)
        second = await reached(gate, raw_id)  # the owner matched: claimed again at once
        assert second == {"arrival": 2, "point": "started"}
        row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
        assert (row["state"], row["renderAttempts"]) == ("RENDERING", 2)

        # the first delivery's renderer breaks: it fails as its own claim (attempt 1)
        gate.order(raw_id, first["arrival"], "break")
        await wait_log(worker_log, f"clip {raw_id}: not failed; claim {task_id} attempt 1")
        row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
        assert (row["state"], row["renderAttempts"]) == ("RENDERING", 2)
        assert row.get("failureReason") is None

        gate.order(raw_id, second["arrival"], "render")
        draft = await wait_state(gql, ann.token, clip_id, {"DRAFT", "FAILED"})
    finally:
        w.stop()
    assert draft["state"] == "DRAFT", draft["failureReason"]
    row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
    assert row["renderAttempts"] == 2 and row.get("failureReason") is None
    assert stored_files(settings, raw_id) == [Path(row["videoKey"]).name]


async def test_only_the_claim_holding_a_render_fails_it(gql: GraphQLClient, graph) -> None:
    """FAIL_RENDER's guard: the claim's attempt, or (for a hard time limit's parent, which
    knows no attempt) the worker process that made the claim; the newest claim wins."""
    ann = await gql.sign_up("guard")
    author, raw_id, now = decode_id(ann.id, "User"), f"guard-{time.time_ns()}", 1_000
    params = {"authorId": author, "id": raw_id, "prompt": "guarded", "moods": []}
    assert await clip_repo.create_clip(graph, {**params, "durationS": 5, "seed": 1, "now": now})
    lease = now + 60_000
    for worker in ("host:1", "host:2"):  # a redelivery of task-1, from another process
        claimed = await clip_repo.claim_render(graph, raw_id, "task-1", now, lease, worker=worker)
        assert claimed is not None
    assert claimed["renderAttempts"] == 2

    refused = [
        {"attempt": 1},  # the stale claim
        {"attempt": None, "worker": "host:1"},  # the stale claim's process, killed
        {"attempt": None},  # neither known: only a clip nothing claimed may fail
    ]
    for claim in refused:
        assert await clip_repo.fail_render(graph, raw_id, "task-1", "no", now, **claim) is None
    assert await clip_repo.fail_render(graph, raw_id, "task-2", "no", now, attempt=2) is None
    row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
    assert row["state"] == "RENDERING"

    failed = await clip_repo.fail_render(graph, raw_id, "task-1", "late", now, worker="host:2")
    assert failed is not None and failed["failureReason"] == "late"
    assert failed["state"] == "FAILED" and failed.get("renderWorker") is None
