"""createClip with two cameos -> DRAFT, against the same clip without cameos, in one run.

Starts a real `reelgraph run` (API and a preview worker) on a fresh data folder, makes two
ACTIVE cameos (EVERYONE) straight in the running server's engine, with encrypted reference
frames in its media store, as a passed capture leaves them. Then, alternating so that both
kinds meet the same machine load, it creates clips over HTTP and polls each to DRAFT:

- plain: no cameos;
- consent: the same prompt and length featuring both cameos (usability check, owners'
  restrictions, two render tokens minted and written on FEATURES edges; in the worker: two
  token verifications, revocation and usability checks, key unwrap, reference decryption,
  the checks again before storing, and the thumbnails in every frame).

Afterwards, in this process on the same folder, the worker's per-use check is timed alone:
one render-token verification with the worker's public-key ring, and the whole per-use check
(verification + Redis revocation lookup + the usability statement).

    .venv/bin/python benchmarks/consent_create.py --clips 10 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import timeit
from pathlib import Path

from served import ROOT, gql, reelgraph_run

sys.path.insert(0, str(ROOT))
FACE = ROOT / "tests" / "data" / "faces" / "astronaut_face.jpg"


def _sign_up(base: str, handle: str) -> tuple[str, str]:
    data = gql(
        base,
        "mutation($h: String!) { signUp(input: {handle: $h, displayName: $h,"
        ' password: "benchmark-password"}) { accessToken user { id } } }',
        {"h": handle},
    )["signUp"]
    return data["accessToken"], data["user"]["id"]


def _folder_settings(data_dir: Path):
    """Settings that reach the running server's engine, Redis and files on data_dir."""
    from graph.embedded import EmbeddedServer
    from server import embedded_urls
    from settings import Settings

    socket_path = EmbeddedServer.locate(data_dir)
    assert socket_path is not None, "the server is not running"
    return Settings(_env_file=None, data_dir=data_dir, **embedded_urls(socket_path))


async def _active_cameo(settings, owner_id: str) -> str:
    """An ACTIVE, EVERYONE cameo with two encrypted reference frames (as a capture leaves it)."""
    from ulid import ULID

    from consent.envelope import load_kek
    from consent.references import seal_reference_frames
    from graph import cameos as cameo_repo
    from graph.driver import driver_for
    from media.store import open_media_store
    from server import resolve_media_key

    db = driver_for(settings)
    try:
        media = open_media_store(settings, resolve_media_key(settings))
        kek = load_kek(settings)
        now = int(time.time() * 1000)
        cameo = await cameo_repo.ensure_cameo(db, owner_id, str(ULID()), now)
        capture = str(ULID())
        await cameo_repo.accept_capture(db, owner_id, cameo["id"], capture, now)
        frame = FACE.read_bytes()
        wrapped, keys = seal_reference_frames(media, kek, cameo["id"], [frame, frame])
        await cameo_repo.activate_capture(
            db, cameo["id"], capture, wrapped_key=wrapped, kek_id=kek.kid, ref_keys=keys, now=now
        )
        await cameo_repo.set_audience(db, owner_id, "EVERYONE")
        return cameo["id"]
    finally:
        await db.close()


def _to_draft(
    base: str, token: str, prompt: str, duration: int, cameos: list[str]
) -> tuple[float, float]:
    """(seconds until createClip answered, seconds until the clip was seen in DRAFT)."""
    start = time.perf_counter()
    clip = gql(
        base,
        "mutation($i: CreateClipInput!) { createClip(input: $i) { id } }",
        {"i": {"prompt": prompt, "durationSeconds": duration, "cameoIds": cameos or None}},
        token,
    )["createClip"]
    answered = time.perf_counter() - start
    while True:
        state = gql(base, "query($id: ID!) { clip(id: $id) { state failureReason } }", clip, token)
        if state["clip"]["state"] in ("DRAFT", "FAILED"):
            break
        time.sleep(0.01)
    if state["clip"]["state"] != "DRAFT":
        raise RuntimeError(state["clip"]["failureReason"])
    return answered, time.perf_counter() - start


def _per_use(settings, clip_raw_id: str) -> tuple[float, float]:
    """(µs to verify one render token, µs for the worker's whole per-use check)."""
    import redis

    from consent import clip_spec_hash
    from consent.keyring import VerifyingKeyring
    from consent.tokens import is_revoked_sync, verify_render_token
    from graph import appearances as appearance_repo
    from graph import cameos as cameo_repo
    from graph import clips as clip_repo
    from graph.driver import driver_for

    loop = asyncio.new_event_loop()
    db = driver_for(settings)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        keys = VerifyingKeyring.load(settings)
        uses = loop.run_until_complete(appearance_repo.render_uses(db, clip_raw_id))
        clip = loop.run_until_complete(clip_repo.clips_by_ids(db, [clip_raw_id]))[clip_raw_id]
        clip["parentId"] = uses[0]["parentId"]
        spec = clip_spec_hash(clip, [u["cameoId"] for u in uses])
        use = uses[0]

        def verify() -> dict:
            return verify_render_token(
                keys,
                use["renderToken"],
                clip_id=clip_raw_id,
                cameo_id=use["cameoId"],
                epoch=use["epoch"],
                grantee_id=clip["authorId"],
                spec_hash=spec,
            )

        def whole_check() -> None:
            claims = verify()
            assert not is_revoked_sync(client, claims["jti"])
            usable = cameo_repo.usable_cameos(
                db, clip["authorId"], [use["cameoId"]], int(time.time() * 1000)
            )
            assert loop.run_until_complete(usable)[0]["epoch"] == claims["epoch"]

        def per_call(fn, number: int) -> float:
            fn()
            runs = timeit.repeat(fn, number=number, repeat=5)
            return statistics.median(runs) / number * 1e6

        return per_call(verify, 500), per_call(whole_check, 100)
    finally:
        client.close()
        loop.run_until_complete(db.close())
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=10, help="of each kind")
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()

    plain: list[tuple[float, float]] = []
    consent: list[tuple[float, float]] = []
    with reelgraph_run("reelgraph-consent-bench-") as (base, data_dir):
        settings = _folder_settings(data_dir)
        from resolvers.ids import decode_id, encode_id

        token, _ = _sign_up(base, "author")
        cameos = []
        for handle in ("ann", "bob"):
            _, user_id = _sign_up(base, handle)
            cameo = asyncio.run(_active_cameo(settings, decode_id(user_id, "User")))
            cameos.append(encode_id("Cameo", cameo))
        # warm-up of both paths (worker start, model-free renderer, keyrings, KEK)
        _to_draft(base, token, "warm-up", args.duration, [])
        _to_draft(base, token, "warm-up", args.duration, cameos)
        for i in range(args.clips):
            prompt = f"two friends on a benchmark beach {i}"
            plain.append(_to_draft(base, token, prompt, args.duration, []))
            consent.append(_to_draft(base, token, prompt, args.duration, cameos))
        last = gql(base, "{ drafts(first: 1) { edges { node { id } } } }", {}, token)
        last_raw = decode_id(last["drafts"]["edges"][0]["node"]["id"], "Clip")
        verify_us, check_us = _per_use(settings, last_raw)

    print(f"clips: {args.clips} of each kind x {args.duration} s, preview renderer, alternating")
    medians = {}
    for label, runs in (("no cameos ", plain), ("two cameos", consent)):
        answers, drafts = [r[0] for r in runs], [r[1] for r in runs]
        medians[label] = statistics.median(drafts)
        spread = f"min {min(drafts):.3f}, max {max(drafts):.3f}"
        print(f"{label} -> DRAFT   median {medians[label]:.3f} s  ({spread})")
        print(f"{label} answered median {statistics.median(answers) * 1000:.1f} ms")
    p, c = medians["no cameos "], medians["two cameos"]
    print(f"consent path adds    {c - p:+.3f} s  ratio {c / p:.3f}")
    print(f"verify one render token (worker keyring)        {verify_us:8.1f} µs")
    print(f"whole per-use check (+ revocation, usability)   {check_us:8.1f} µs")


if __name__ == "__main__":
    main()
