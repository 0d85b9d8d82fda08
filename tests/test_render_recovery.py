"""Recovery after a crash: a render whose worker's whole process group was SIGKILLed, and
whose task the broker lost with it, is taken up again soon after a restart: once its lease
has run out, not after the broker's visibility timeout (15 minutes by default).

Waits are on the gate (the render arriving again) and the clip's state, never on time; the
deadlines only bound a stuck test, and are far below the visibility timeout the restarted
worker keeps at its default, so only the start-up recovery can pass it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import GraphQLClient, purge_render_queue
from gated_renderer import Gate
from test_render_worker import (
    _forget_unacked_task,
    create,
    reached,
    start_gated_worker,
    wait_state,
)

from graph import clips as clip_repo
from settings import Settings

LEASE = {"REELGRAPH_RENDER_LEASE_S": "3"}


@pytest.fixture
def gate(settings: Settings):
    g = Gate(settings.redis_url)
    yield g
    g.close()


async def test_a_crashed_render_is_taken_up_again_after_a_restart(
    gql: GraphQLClient, graph, settings: Settings, tmp_path: Path, gate: Gate
) -> None:
    purge_render_queue(settings)
    first = start_gated_worker(settings, tmp_path / "first.log", **LEASE)
    ann = await gql.sign_up("phoenix")
    clip_id, raw_id = await create(gql, ann.token, "rises again")
    try:
        assert (await reached(gate, raw_id))["arrival"] == 1  # claimed, held mid-render
    finally:
        first.kill()  # SIGKILL to the worker's whole process group
    # as measured with `reelgraph run`: the task went with the crash (rejected while Redis
    # was down), so the broker will never hand it back
    assert _forget_unacked_task(settings, raw_id)
    row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
    assert row["state"] == "RENDERING" and row["renderAttempts"] == 1

    log = tmp_path / "second.log"
    second = start_gated_worker(settings, log, **LEASE)  # visibility timeout: the default
    try:
        again = await reached(gate, raw_id)
        assert again == {"arrival": 2, "point": "started"}
        gate.order(raw_id, 2, "render")
        draft = await wait_state(gql, ann.token, clip_id, {"DRAFT", "FAILED"})
    finally:
        second.stop()
    assert draft["state"] == "DRAFT", draft["failureReason"]
    assert draft["video"]["hasAudio"]
    assert "a crashed render left behind" in log.read_text()
    row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
    assert row["renderAttempts"] == 2
