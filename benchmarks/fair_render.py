"""Fair rendering: how long another user's short clip waits behind one user's flood.

The measured problem (before): one account queued 120 twenty-second renders in 0.4 s, and
another user's 1 s clip then took 95 s to reach DRAFT. This reproduces it at small scale on a
real `reelgraph run` (API and one worker, preview renderer), three ways, each on a fresh data
folder:

- before: the flood goes the way createClip queued renders before fair rendering, one
  render task per clip on the broker's FIFO queue (written through the repository and sent as
  RENDER_TASK, as the old createClip did), so the other clip waits for the whole flood;
- fair, no cap: the flood through createClip with the in-flight cap raised out of the way,
  so only the turn-taking (workers.fair_queue) stands between the flood and the other clip;
- fair, cap 3: the default, where the flood's fourth createClip on is RATE_LIMITED.

    .venv/bin/python benchmarks/fair_render.py --flood 24 --flood-duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time

from served import ROOT, gql, reelgraph_run

sys.path.insert(0, str(ROOT))

SIGN_UP = """mutation($h: String!) { signUp(input: {handle: $h, displayName: "B",
  password: "benchmark"}) { accessToken user { id } } }"""
CREATE = """mutation($p: String!, $d: Int) { createClip(input: {prompt: $p, durationSeconds: $d})
  { id } }"""
STATE = "query($id: ID!) { clip(id: $id) { state } }"


def sign_up(base: str, prefix: str) -> tuple[str, str]:
    data = gql(base, SIGN_UP, {"h": f"{prefix}_{secrets.token_hex(3)}"})["signUp"]
    return data["accessToken"], data["user"]["id"]


def wait_draft(base: str, token: str, clip_id: str, within_s: float = 1800) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        state = gql(base, STATE, {"id": clip_id}, token)["clip"]["state"]
        if state in ("DRAFT", "FAILED"):
            return state
        time.sleep(0.01)
    raise RuntimeError(f"clip {clip_id} never rendered")


def flood_the_old_way(data_dir, user_gid: str, count: int, duration: int) -> None:
    """What createClip did before fair rendering: a QUEUED clip, then one render task for it
    on the broker's queue (first come, first served)."""
    from ulid import ULID

    from graph import clips as clip_repo
    from graph.driver import driver_for
    from graph.embedded import EmbeddedServer
    from resolvers.ids import decode_id
    from server import embedded_urls
    from settings import Settings
    from workers.celery_app import make_celery
    from workers.queue import RenderQueue

    socket_path = EmbeddedServer.locate(data_dir)
    settings = Settings(_env_file=None, data_dir=data_dir, **embedded_urls(socket_path))
    queue = RenderQueue(make_celery(settings))

    async def write_and_send() -> None:
        graph = driver_for(settings)
        try:
            for n in range(count):
                params = {
                    "authorId": decode_id(user_gid, "User"),
                    "id": str(ULID()),
                    "prompt": f"flood {n}",
                    "moods": [],
                    "durationS": duration,
                    "seed": n,
                    "now": int(time.time() * 1000),
                    "parentId": None,
                }
                clip = await clip_repo.create_clip(graph, params)
                assert clip is not None
                await asyncio.to_thread(queue.send, clip["id"])
        finally:
            await graph.close()

    try:
        asyncio.run(write_and_send())
    finally:
        queue.close()


def run_case(name: str, args: argparse.Namespace, **env: str) -> dict:
    with reelgraph_run("reelgraph-fair-", REELGRAPH_DAILY_GENERATIONS="100000", **env) as (
        base,
        data_dir,
    ):
        flooder, flooder_id = sign_up(base, "flood")
        patient, _ = sign_up(base, "patient")
        # warm the worker (model load, first render) before anything is measured
        warm = gql(base, CREATE, {"p": "warm-up", "d": 1}, patient)["createClip"]["id"]
        wait_draft(base, patient, warm)

        started = time.perf_counter()
        accepted, refused = [], 0
        if name == "before":
            flood_the_old_way(data_dir, flooder_id, args.flood, args.flood_duration)
            accepted = [None] * args.flood
        else:
            for n in range(args.flood):
                try:
                    clip = gql(
                        base, CREATE, {"p": f"flood {n}", "d": args.flood_duration}, flooder
                    )["createClip"]
                    accepted.append(clip["id"])
                except RuntimeError as refusal:
                    assert "RATE_LIMITED" in str(refusal), refusal
                    refused += 1
        flooded_s = time.perf_counter() - started

        asked = time.perf_counter()
        clip_id = gql(base, CREATE, {"p": "a short clip", "d": 1}, patient)["createClip"]["id"]
        state = wait_draft(base, patient, clip_id)
        waited_s = time.perf_counter() - asked
        assert state == "DRAFT", state
        return {
            "case": name,
            "flood_s": flooded_s,
            "accepted": len(accepted),
            "refused": refused,
            "other_to_draft_s": waited_s,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flood", type=int, default=24, help="createClip calls of the flood")
    parser.add_argument("--flood-duration", type=int, default=20, help="seconds per flood clip")
    args = parser.parse_args()

    rows = [
        run_case("before", args),
        run_case("fair, no cap", args, REELGRAPH_MAX_ACTIVE_RENDERS_PER_USER="10000"),
        run_case("fair, cap 3", args),
    ]
    print(
        f"flood: {args.flood} x {args.flood_duration} s clips from one user; then another "
        "user's 1 s clip (preview renderer, one worker, concurrency 1)"
    )
    print(
        f"{'case':<14} {'flood sent':>10} {'accepted':>9} {'refused':>8} {'1 s clip -> DRAFT':>18}"
    )
    for row in rows:
        print(
            f"{row['case']:<14} {row['flood_s']:>9.2f}s {row['accepted']:>9} {row['refused']:>8}"
            f" {row['other_to_draft_s']:>17.2f}s"
        )


if __name__ == "__main__":
    main()
