"""One render, from claim to stored draft: plain code the Celery task only schedules.

A job first claims the clip with a lease (one guarded statement), renews the lease with each
progress report, and stores the file before the guarded move to DRAFT. A duplicate delivery
finds the clip claimed or already rendered and does nothing; a clip whose worker died is
claimed again once the lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graph import clips as clip_repo
from graph.driver import GraphDriver
from media.probe import probe_video
from media.store import MediaStore, clip_video_key
from workers.renderers import RenderCancelled, Renderer, RenderSpec

__all__ = ["Busy", "RenderRuntime", "fail", "run_render"]

logger = logging.getLogger(__name__)
_PROGRESS_INTERVAL_S = 0.5


class Busy(Exception):
    """Another live worker holds the clip; try again when its lease may have run out."""

    def __init__(self, retry_in_s: float) -> None:
        super().__init__(f"clip is being rendered elsewhere; retry in {retry_in_s:.0f}s")
        self.retry_in_s = retry_in_s


@dataclass
class RenderRuntime:
    """What a worker process holds for its whole life: built once, after fork."""

    graph: GraphDriver
    media: MediaStore
    renderer: Renderer | None
    lease_s: int
    max_attempts: int
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


def _now() -> int:
    return int(time.time() * 1000)


def run_render(rt: RenderRuntime, clip_id: str, owner: str) -> str:
    """Render a clip to DRAFT. Returns what happened; raises Busy or transient errors.

    owner is the task id: the same across retries and redeliveries of one task.
    """
    now = _now()
    clip = rt.run(clip_repo.claim_render(rt.graph, clip_id, owner, now, now + rt.lease_s * 1000))
    if clip is None:
        state = rt.run(clip_repo.render_state(rt.graph, clip_id))
        if state is None:
            return "gone"
        if state["state"] == "RENDERING" and (state["leaseUntil"] or 0) > now:
            raise Busy(retry_in_s=(state["leaseUntil"] - now) / 1000 + 1)
        return f"skipped:{state['state']}"
    if clip["renderAttempts"] > rt.max_attempts:
        fail(
            rt, clip_id, owner, f"the render was started {rt.max_attempts} times and never finished"
        )
        return "failed"

    spec = RenderSpec(
        clip_id=clip_id,
        prompt=clip["prompt"],
        duration_s=int(clip["durationS"]),
        moods=tuple(clip.get("moods") or ()),
        seed=int(clip.get("seed") or 0),
    )
    last_report = 0.0

    def on_progress(fraction: float) -> None:
        nonlocal last_report
        if time.monotonic() - last_report < _PROGRESS_INTERVAL_S:
            return
        last_report = time.monotonic()
        lease_until = _now() + rt.lease_s * 1000
        # the share after rendering (probe, store) is small: show at most 0.99 until DRAFT
        owned = rt.run(
            clip_repo.report_progress(
                rt.graph, clip_id, owner, round(min(fraction, 0.99), 3), lease_until
            )
        )
        if not owned:
            raise RenderCancelled(f"clip {clip_id} was removed or taken over")

    assert rt.renderer is not None
    try:
        path = rt.renderer.render(spec, on_progress)
    except RenderCancelled:
        logger.info("render of %s cancelled", clip_id)
        return "cancelled"
    try:
        return _store(rt, clip_id, owner, path)
    finally:
        path.unlink(missing_ok=True)


def _store(rt: RenderRuntime, clip_id: str, owner: str, path: Path) -> str:
    info = probe_video(path)  # what the file is, not what was asked for
    key = clip_video_key(clip_id, info.sha256)
    rt.media.put(path, key)
    video = {
        "key": key,
        "sha256": info.sha256,
        "durationMs": info.duration_ms,
        "width": info.width,
        "height": info.height,
        "fps": float(info.fps),
        "hasAudio": info.has_audio,
        "sizeBytes": info.size_bytes,
        "mimeType": info.mime_type,
    }
    if rt.run(clip_repo.finish_render(rt.graph, clip_id, owner, video, _now())) is None:
        current = rt.run(clip_repo.clips_by_ids(rt.graph, [clip_id])).get(clip_id)
        if current is None or current.get("videoKey") != key:
            rt.media.delete(key)  # nobody points at it
        return "lost"
    return "rendered"


def fail(rt: RenderRuntime, clip_id: str, owner: str | None, reason: str) -> None:
    rt.run(clip_repo.fail_render(rt.graph, clip_id, owner, reason[:500], _now()))
