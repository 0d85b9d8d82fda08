"""A real preview renderer behind a gate the test controls through Redis.

A worker started with REELGRAPH_RENDERER=gated_renderer:GatedRenderer (and this folder on
its PYTHONPATH) announces each render of a clip when it starts (RENDERING, claimed) and
holds there, renewing its lease, until the test gives that render an order:

- "render": render the clip with the real PreviewRenderer and return it;
- "render-and-hold": render it, announce "rendered", then hold (without renewing the lease,
  so another claim can take the clip over) until the order "go";
- "steps:N": report N denoising steps as a diffusion renderer does (0.85 * k / N), one per
  order "step", announcing "step k" after each; then render with the real PreviewRenderer,
  its encoding reported over the rest of the bar (0.85..0.99), holding once half the frames
  are encoded (announced "encoding") until the order "finish";
- "raise-enospc", "raise-cuda-oom", "raise-redis", "raise-graph", "raise-error": raise the
  real exception a full disk, CUDA, Redis, the graph driver or a broken renderer raises.

Renders of one clip are numbered 1, 2, ... in the order they reach the gate; each has its
own orders, so a test can steer a first claim and a second one apart. StubbornGatedRenderer
also ignores the soft time limit while it holds, so only the hard limit can stop it.
"""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Callable
from pathlib import Path

import redis
from celery.exceptions import SoftTimeLimitExceeded

from graph.driver import GraphUnavailable
from settings import get_settings
from workers.renderers.base import ProgressCallback, RenderSpec
from workers.renderers.preview import PreviewRenderer

__all__ = [
    "DENOISE_SHARE",
    "RENDERER",
    "STUBBORN_RENDERER",
    "Gate",
    "GatedRenderer",
    "StubbornGatedRenderer",
]

RENDERER = "gated_renderer:GatedRenderer"
STUBBORN_RENDERER = "gated_renderer:StubbornGatedRenderer"
DENOISE_SHARE = 0.85  # as the diffusers renderers split their progress
_HOLD_AT_MOST_S = 300  # a forgotten gate fails the render instead of holding it for ever
_POLL_S = 0.2


def _events_key(clip_id: str) -> str:
    return f"test-gate:{clip_id}:events"


def _orders_key(clip_id: str, arrival: int) -> str:
    return f"test-gate:{clip_id}:{arrival}:orders"


def _counter_key(clip_id: str) -> str:
    return f"test-gate:{clip_id}:arrivals"


class GatedRenderer:
    name = "gated"
    swallow_soft_time_limit = False

    def __init__(self) -> None:
        settings = get_settings()
        self._redis = redis.Redis.from_url(settings.redis_url or "")
        # renew the lease well before it runs out, and not at once: a soft time limit shorter
        # than a third of the lease then always fires while the render waits on the gate
        self._heartbeat_s = settings.render_lease_s / 3
        self._inner = PreviewRenderer()

    def _announce(self, clip_id: str, arrival: int, point: str) -> None:
        event = json.dumps({"arrival": arrival, "point": point})
        self._redis.rpush(_events_key(clip_id), event)

    def _wait_order(self, clip_id: str, arrival: int, heartbeat: Callable[[], None] | None) -> str:
        deadline = time.monotonic() + _HOLD_AT_MOST_S
        beat_at = time.monotonic() + self._heartbeat_s
        while time.monotonic() < deadline:
            try:
                if heartbeat is not None and time.monotonic() >= beat_at:
                    beat_at = time.monotonic() + self._heartbeat_s
                    heartbeat()  # a held render is alive: it keeps its lease
                popped = self._redis.blpop([_orders_key(clip_id, arrival)], timeout=_POLL_S)
            except SoftTimeLimitExceeded:
                if not self.swallow_soft_time_limit:
                    raise
                continue
            if popped is not None:
                return popped[1].decode()
        raise RuntimeError(f"the test never opened the gate for render {arrival} of {clip_id}")

    def render(self, spec: RenderSpec, on_progress: ProgressCallback) -> Path:
        arrival = int(self._redis.incr(_counter_key(spec.clip_id)))
        self._announce(spec.clip_id, arrival, "started")
        order = self._wait_order(spec.clip_id, arrival, lambda: on_progress(0.0))
        if order == "raise-enospc":
            raise OSError(errno.ENOSPC, "No space left on device", "/var/tmp/render.mp4")
        if order == "raise-cuda-oom":
            import torch  # the real class, as diffusers would raise it

            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if order == "raise-redis":
            raise redis.exceptions.ConnectionError("Error 111 connecting to 10.0.0.7:6379")
        if order == "raise-graph":
            raise GraphUnavailable("bolt://10.0.0.8:7687 refused the connection")
        if order == "raise-error":
            raise ValueError("internal detail: /srv/models/secret.safetensors is corrupt")
        if order.startswith("steps:"):
            return self._step_through(spec, arrival, int(order.partition(":")[2]), on_progress)
        if order not in ("render", "render-and-hold"):
            raise RuntimeError(f"unknown gate order {order!r}")
        path = self._inner.render(spec, on_progress)
        if order == "render-and-hold":
            self._announce(spec.clip_id, arrival, "rendered")
            if self._wait_order(spec.clip_id, arrival, heartbeat=None) != "go":
                path.unlink()
                raise RuntimeError("expected the order 'go'")
        return path

    def _step_through(
        self, spec: RenderSpec, arrival: int, steps: int, on_progress: ProgressCallback
    ) -> Path:
        for k in range(1, steps + 1):
            if (order := self._wait_order(spec.clip_id, arrival, None)) != "step":
                raise RuntimeError(f"expected the order 'step', got {order!r}")
            on_progress(DENOISE_SHARE * k / steps)
            self._announce(spec.clip_id, arrival, f"step {k}")
        held = False

        def encoding(fraction: float) -> None:
            nonlocal held
            on_progress(DENOISE_SHARE + (0.99 - DENOISE_SHARE) * fraction)
            if fraction >= 0.5 and not held:
                held = True
                self._announce(spec.clip_id, arrival, "encoding")
                if (order := self._wait_order(spec.clip_id, arrival, None)) != "finish":
                    raise RuntimeError(f"expected the order 'finish', got {order!r}")

        return self._inner.render(spec, encoding)


class StubbornGatedRenderer(GatedRenderer):
    """Holds through the soft time limit, as a render stuck in native code would."""

    swallow_soft_time_limit = True


class Gate:
    """The test's side of the gate: wait for renders to arrive, and give them orders."""

    def __init__(self, redis_url: str) -> None:
        # redis-py's 5 s default read timeout would cut a long BLPOP short
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=None)

    def close(self) -> None:
        self._redis.close()

    def reached(self, clip_id: str, within_s: float = 120) -> dict:
        """The next event for clip_id: {"arrival": n, "point": "started" | "rendered"}."""
        popped = self._redis.blpop([_events_key(clip_id)], timeout=within_s)
        assert popped is not None, f"no render of {clip_id} reached the gate in {within_s} s"
        return json.loads(popped[1])

    def arrivals(self, clip_id: str) -> int:
        """How many renders of clip_id reached the gate."""
        return int(self._redis.get(_counter_key(clip_id)) or 0)

    def order(self, clip_id: str, arrival: int, *orders: str) -> None:
        """Orders for one render of clip_id, taken one at a time in the order given."""
        self._redis.rpush(_orders_key(clip_id, arrival), *orders)
