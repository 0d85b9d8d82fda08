"""Fair rendering through a real Celery worker: users are served in turn (workers.fair_queue),
so one user's backlog delays another user's clip by at most one render.

The worker runs the gated renderer (tests/gated_renderer.py): each render holds at the gate
until the test releases it, so the order renders start in is observed, never timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from conftest import GraphQLClient, purge_render_queue
from gated_renderer import Gate
from litestar.testing import AsyncTestClient
from test_render_worker import start_gated_worker

from resolvers.ids import decode_id
from server import build_app
from settings import Settings

CREATE = "mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"
DELETE = "mutation($id: ID!) { deleteClip(clipId: $id) { id state } }"
CLIP = "query($id: ID!) { clip(id: $id) { id state failureReason } }"


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_renders(settings: Settings) -> None:
    purge_render_queue(settings)
    yield
    purge_render_queue(settings)


@pytest.fixture(scope="module")
async def api(settings: Settings) -> AsyncIterator[GraphQLClient]:
    fair = settings.model_copy(update={"max_active_renders_per_user": 3, "daily_generations": 100})
    async with AsyncTestClient(app=build_app(fair)) as client:
        yield GraphQLClient(client)


@pytest.fixture
def gate(settings: Settings):
    g = Gate(settings.redis_url)
    yield g
    g.close()


async def create(api: GraphQLClient, token: str, prompt: str) -> tuple[str, str]:
    """(global id, raw id) of a new clip."""
    body = await api.ok(CREATE, {"input": {"prompt": prompt, "durationSeconds": 1}}, token)
    return body["createClip"]["id"], decode_id(body["createClip"]["id"], "Clip")


async def reached(gate: Gate, clip_id: str) -> int:
    """The arrival number of the next render of clip_id to reach the gate."""
    event = await asyncio.to_thread(gate.reached, clip_id)
    assert event["point"] == "started", event
    return event["arrival"]


async def test_one_users_backlog_delays_anothers_clip_by_at_most_one_render(
    api: GraphQLClient, settings: Settings, gate: Gate, tmp_path
) -> None:
    """A queues three renders, B one; one worker, one render at a time. A's first is
    rendering when B asks: B's clip renders right after A's second, before A's third."""
    purge_render_queue(settings)
    ann, bob = await api.sign_up("flooder"), await api.sign_up("patient")
    worker = start_gated_worker(settings, tmp_path / "worker.log", REELGRAPH_WORKER_CONCURRENCY="1")
    try:
        a1 = await create(api, ann.token, "flood one")
        first = await reached(gate, a1[1])  # rendering, and held there
        a2 = await create(api, ann.token, "flood two")
        a3 = await create(api, ann.token, "flood three")
        b1 = await create(api, bob.token, "a short clip")
        gate.order(a1[1], first, "render")

        # A was back on the ring (with two waiting) before B joined it: A's second comes next
        gate.order(a2[1], await reached(gate, a2[1]), "render")
        # then B's, while A's third still waits: the one slot is B's until the gate opens
        arrival = await reached(gate, b1[1])
        assert gate.arrivals(a3[1]) == 0
        gate.order(b1[1], arrival, "render")
        gate.order(a3[1], await reached(gate, a3[1]), "render")

        for token, (clip_id, _) in ((ann.token, a1), (ann.token, a2), (bob.token, b1)):
            clip = await api.wait_clip(CLIP, token, clip_id, {"DRAFT", "FAILED"})
            assert clip["state"] == "DRAFT", clip
        clip = await api.wait_clip(CLIP, ann.token, a3[0], {"DRAFT", "FAILED"})
        assert clip["state"] == "DRAFT", clip

        # the renders ended, so A's three slots are free again: A may queue three more
        more = [await create(api, ann.token, f"again {n}") for n in range(3)]
        for clip_id, raw_id in more:
            gate.order(raw_id, await reached(gate, raw_id), "render")
            assert (await api.wait_clip(CLIP, ann.token, clip_id, {"DRAFT"}))["state"] == "DRAFT"
    finally:
        worker.stop()


async def test_a_withdrawn_clips_task_renders_the_next_one_instead(
    api: GraphQLClient, settings: Settings, gate: Gate, tmp_path
) -> None:
    """Each createClip sends one generic task; a clip deleted while it waits is taken off its
    author's list, and the tasks that remain still render every waiting clip, oldest first."""
    purge_render_queue(settings)
    ann, bob = await api.sign_up("withdraws"), await api.sign_up("waits")
    a1 = await create(api, ann.token, "deleted before its turn")
    a2 = await create(api, ann.token, "kept")
    b1 = await create(api, bob.token, "bob's")
    assert (await api.ok(DELETE, {"id": a1[0]}, ann.token))["deleteClip"]["state"] == "REMOVED"
    worker = start_gated_worker(settings, tmp_path / "worker.log", REELGRAPH_WORKER_CONCURRENCY="1")
    try:
        # ann's turn first (she joined the ring first): her oldest waiting clip is a2
        gate.order(a2[1], await reached(gate, a2[1]), "render")
        gate.order(b1[1], await reached(gate, b1[1]), "render")
        for token, (clip_id, _) in ((ann.token, a2), (bob.token, b1)):
            assert (await api.wait_clip(CLIP, token, clip_id, {"DRAFT"}))["state"] == "DRAFT"
    finally:
        worker.stop()
    assert gate.arrivals(a1[1]) == 0  # the removed clip never rendered
