"""renderProgress is honest: each denoising step and the encoding as they happen, over a real
socket from a real worker, ending at 1.0 with DRAFT.

The gated renderer (tests/gated_renderer.py) steps through a diffusion schedule one order at
a time and holds once mid-encoding, so each point is observed, never guessed by time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import GraphQLClient, purge_render_queue
from gated_renderer import DENOISE_SHARE, Gate
from test_render_worker import start_gated_worker
from test_subscriptions import PROGRESS, Client, server, url  # noqa: F401 (fixtures)

from resolvers.ids import decode_id
from settings import Settings

CREATE = "mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"
STEPS = 4


async def _progress_until(client: Client, done) -> list[dict]:
    """renderProgress events until done(event) holds; the last one is the one that did."""
    events = []
    while True:
        event = (await client.next("p"))["renderProgress"]
        events.append(event)
        if done(event):
            return events


async def test_render_progress_reports_each_step_then_encoding_then_draft(
    gql: GraphQLClient,
    url: str,  # noqa: F811 (the fixture)
    settings: Settings,
    tmp_path: Path,
) -> None:
    purge_render_queue(settings)
    worker = start_gated_worker(settings, tmp_path / "worker.log")
    gate = Gate(settings.redis_url)
    try:
        author = await gql.sign_up("stepper")
        created = (await gql.ok(CREATE, {"input": {"prompt": "a slow pan"}}, author.token))[
            "createClip"
        ]
        raw_id = decode_id(created["id"], "Clip")
        assert (await asyncio.to_thread(gate.reached, raw_id))["point"] == "started"
        async with Client.open(url, author.token) as client:
            await client.subscribe("p", PROGRESS, {"id": created["id"]})
            seen = [(await client.next("p"))["renderProgress"]]
            assert seen[0]["state"] == "RENDERING" and seen[0]["progress"] == 0.0
            gate.order(raw_id, 1, f"steps:{STEPS}")
            for k in range(1, STEPS + 1):
                gate.order(raw_id, 1, "step")
                want = round(DENOISE_SHARE * k / STEPS, 3)
                seen += await _progress_until(client, lambda e, w=want: e["progress"] >= w)
                assert seen[-1]["progress"] == want, seen  # this step, not a later one
                assert seen[-1]["state"] == "RENDERING"
            # encoding, while it happens: held halfway through the frames
            for k in range(1, STEPS + 1):
                assert (await asyncio.to_thread(gate.reached, raw_id))["point"] == f"step {k}"
            assert (await asyncio.to_thread(gate.reached, raw_id))["point"] == "encoding"
            seen += await _progress_until(client, lambda e: e["progress"] > DENOISE_SHARE)
            assert seen[-1]["state"] == "RENDERING" and seen[-1]["progress"] < 1.0
            gate.order(raw_id, 1, "finish")
            seen += await _progress_until(client, lambda e: e["state"] != "RENDERING")
    finally:
        gate.close()
        worker.stop()
    assert seen[-1] == {**seen[-1], "state": "DRAFT", "progress": 1.0}
    values = [e["progress"] for e in seen]
    assert values == sorted(values), values  # a bar that never goes back
    assert all(0.0 <= v < 1.0 for v in values[:-1])
