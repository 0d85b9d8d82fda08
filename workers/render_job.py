"""One render, from claim to stored draft: plain code the Celery task only schedules.

A job first claims the clip with a lease (one guarded statement), renews the lease with each
progress report, and stores the file before the guarded move to DRAFT. A duplicate delivery
finds the clip claimed or already rendered and does nothing; a clip whose worker died is
claimed again once the lease runs out.

Each claim stores its file under a key of its own (render_video_key), so a claim that lost
the clip to another one deletes only its own file, never the one a DRAFT names, even when
both rendered the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from auth.quotas import render_ended_sync
from consent import ConsentWithdrawn, check_render_uses, withdrawn_reason
from consent.envelope import EnvelopeError, KekRing, KekUnknown, KeyShredded, load_kek_ring
from consent.keyring import KeyringError, VerifyingKeyring
from consent.references import open_reference_frames
from consent.tokens import is_revoked_sync
from events import render as render_events
from graph import appearances as appearance_repo
from graph import cameos as cameo_repo
from graph import clips as clip_repo
from graph.driver import GraphDriver
from media.probe import probe_video
from media.store import MediaMissing, MediaStore, clip_video_key
from settings import Settings
from workers.failures import (
    CAMEO_KEY_PROBLEM,
    CONSENT_KEY_PROBLEM,
    consent_rejection_reason,
    too_many_attempts_reason,
)
from workers.fair_queue import record_render_s
from workers.renderers import RenderCancelled, Renderer, RenderSpec
from workers.renderers.base import CameoReference

__all__ = [
    "Busy",
    "Claim",
    "RenderConsent",
    "RenderRuntime",
    "fail",
    "render_ended",
    "render_video_key",
    "run_render",
]

logger = logging.getLogger(__name__)
_PROGRESS_INTERVAL_S = 0.5
_PROGRESS_STEP = 0.05  # a move of the bar this large is reported at once


class Busy(Exception):
    """Another live worker holds the clip; try again when its lease may have run out."""

    def __init__(self, retry_in_s: float) -> None:
        super().__init__(f"clip is being rendered elsewhere; retry in {retry_in_s:.1f}s")
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
    consent: RenderConsent | None = None  # None: clips featuring cameos fail
    # Redis for the generation quotas and the fair queue's render times (auth.quotas,
    # workers.fair_queue); None: nothing is counted (a render never fails for it)
    counters: redis.Redis | None = None

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


class RenderConsent:
    """What a worker needs to honour consent: public keys only (it verifies render tokens,
    it can never mint one), the revocation list, and the KEK ring that unwraps reference
    keys (each under the KEK it names). Loaded on first use: an API process publishes the
    public keys when it starts."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._keys: VerifyingKeyring | None = None
        self._kek: KekRing | None = None
        self._redis: redis.Redis | None = None

    @property
    def keys(self) -> VerifyingKeyring:
        if self._keys is None:
            self._keys = VerifyingKeyring.load(self._settings)
        return self._keys

    @property
    def kek(self) -> KekRing:
        if self._kek is None:
            self._kek = load_kek_ring(self._settings)
        return self._kek

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self._settings.redis_url or "")
        return self._redis


@dataclass
class Claim:
    """One try of a render task at the clip: the task id (owner), the worker process making
    the try (host:pid), and the attempt its claim got, None until the claim succeeds.

    Only the claim with the clip's current attempt may report, finish or fail the render: a
    redelivery of the same task takes the clip back at once and bumps the attempt.
    """

    owner: str
    worker: str | None = None
    attempt: int | None = None


def _now() -> int:
    return int(time.time() * 1000)


def render_video_key(clip_id: str, sha256: str, owner: str, attempt: int) -> str:
    """The key one claim (task id and attempt) stores its file under: no other claim's."""
    claim = hashlib.sha256(f"{sha256}\n{owner}\n{attempt}".encode()).hexdigest()
    return clip_video_key(clip_id, claim)


def run_render(rt: RenderRuntime, clip_id: str, claim: Claim | str) -> str:
    """Render a clip to DRAFT. Returns what happened; raises Busy or transient errors.

    claim.owner (or claim itself, a bare task id) is the task id: the same across retries and
    redeliveries of one task. claim.attempt is set once the clip is claimed, so a caller that
    catches an error from here fails the render as this claim, never as a newer one.
    """
    claim = Claim(claim) if isinstance(claim, str) else claim
    owner = claim.owner
    now = _now()
    clip = rt.run(
        clip_repo.claim_render(
            rt.graph, clip_id, owner, now, now + rt.lease_s * 1000, worker=claim.worker
        )
    )
    if clip is None:
        state = rt.run(clip_repo.render_state(rt.graph, clip_id))
        if state is None:
            return "gone"
        if state["state"] == "RENDERING" and (state["leaseUntil"] or 0) > now:
            # the holder renews its lease while it renders: look again when it may have lapsed
            raise Busy(retry_in_s=(state["leaseUntil"] - now) / 1000 + _PROGRESS_INTERVAL_S)
        return f"skipped:{state['state']}"
    attempt = claim.attempt = int(clip["renderAttempts"])
    if attempt > rt.max_attempts:
        fail(rt, clip_id, claim, too_many_attempts_reason(rt.max_attempts))
        return "failed"

    # consent before any reference media is read: every featured cameo's token verifies,
    # is not revoked, and its owner's consent still holds; then the frames are decrypted
    uses = rt.run(appearance_repo.render_uses(rt.graph, clip_id))
    cameos: tuple[CameoReference, ...] = ()
    if uses:
        clip = {**clip, "parentId": uses[0]["parentId"]}
        try:
            _check_consent(rt, clip, uses)
            cameos = _decrypt_references(rt, uses)
        except ConsentWithdrawn as withdrawn:
            logger.info("clip %s: consent check failed: %s", clip_id, withdrawn.__cause__)
            fail(rt, clip_id, claim, withdrawn.reason)
            return "failed"

    spec = RenderSpec(
        clip_id=clip_id,
        prompt=clip["prompt"],
        duration_s=int(clip["durationS"]),
        moods=tuple(clip.get("moods") or ()),
        seed=int(clip.get("seed") or 0),
        cameo_labels=tuple(cameo.label for cameo in cameos),
        cameos=cameos,
        author_handle=_author_handle(rt, clip["authorId"]),  # the visible mark's (provenance)
    )
    del cameos  # the spec holds the only reference; it dies with the render
    last_report = 0.0
    last_shown = -1.0

    def on_progress(fraction: float) -> None:
        # honest progress (denoising steps, then encoded frames) at a bounded write rate:
        # a report goes out when half a second passed or the bar moved by a step's worth,
        # so every denoising step of a short schedule is seen, and a heartbeat (the same
        # fraction again) still renews the lease
        nonlocal last_report, last_shown
        shown = round(min(fraction, 0.99), 3)  # probe and store follow: 1.0 only at DRAFT
        moved = shown - last_shown >= _PROGRESS_STEP
        if not moved and time.monotonic() - last_report < _PROGRESS_INTERVAL_S:
            return
        last_report = time.monotonic()
        last_shown = max(last_shown, shown)
        lease_until = _now() + rt.lease_s * 1000
        owned = rt.run(
            clip_repo.report_progress(rt.graph, clip_id, owner, attempt, last_shown, lease_until)
        )
        if not owned:
            raise RenderCancelled(f"clip {clip_id} was removed or taken over")
        render_events.render_progressed(clip_id)  # renderProgress subscribers

    assert rt.renderer is not None
    started = time.monotonic()
    try:
        path = rt.renderer.render(spec, on_progress)
    except RenderCancelled:
        logger.info("render of %s cancelled", clip_id)
        return "cancelled"
    try:
        if uses:
            # consent may have been revoked while the render ran: then nothing is stored
            try:
                _check_consent(rt, clip, rt.run(appearance_repo.render_uses(rt.graph, clip_id)))
            except ConsentWithdrawn as withdrawn:
                logger.info("clip %s: consent withdrawn during the render", clip_id)
                fail(rt, clip_id, claim, withdrawn.reason)
                return "failed"
        outcome = _store(rt, clip_id, owner, attempt, path)
        if outcome == "rendered" and rt.counters is not None:
            with _counting("the render time of", clip_id):
                record_render_s(rt.counters, time.monotonic() - started)
        # the store's guard refuses a clip whose use was revoked after the check above
        if outcome == "lost" and uses and fail(rt, clip_id, claim, withdrawn_reason(None)):
            return "failed"
        return outcome
    finally:
        path.unlink(missing_ok=True)


def _author_handle(rt: RenderRuntime, author_id: str) -> str:
    """The creator's handle, which every render shows as its visible mark (provenance.mark)."""
    from graph import users as user_repo

    author = rt.run(user_repo.users_by_ids(rt.graph, [author_id])).get(author_id)
    return author["handle"] if author else author_id


def _store(rt: RenderRuntime, clip_id: str, owner: str, attempt: int, path: Path) -> str:
    info = probe_video(path)  # what the file is, not what was asked for
    key = render_video_key(clip_id, info.sha256, owner, attempt)
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
    # if this raises, whether the move to DRAFT happened is unknown: the file stays, and the
    # media sweep deletes it later if no clip names it
    finished = rt.run(clip_repo.finish_render(rt.graph, clip_id, owner, attempt, video, _now()))
    render_ended(rt, finished)  # before the event: a client told it is done may queue again
    render_events.render_finished(finished)  # renderProgress, and RENDER_FINISHED to the author
    if finished is None:
        # removed or taken over by another claim: the key is this claim's alone, so no clip
        # names it, now or later
        rt.media.delete(key)
        logger.info("clip %s: removed or taken over; deleted this render's %s", clip_id, key)
        return "lost"
    return "rendered"


def _check_consent(rt: RenderRuntime, clip: dict, uses: list[dict]) -> None:
    """ConsentWithdrawn unless every use still carries its owner's consent."""
    if rt.consent is None:
        raise ConsentWithdrawn(withdrawn_reason(None))
    consent = rt.consent
    author_id = clip["authorId"]

    def usable_epochs(cameo_ids: list[str]) -> dict[str, int]:
        rows = rt.run(cameo_repo.usable_cameos(rt.graph, author_id, cameo_ids, _now()))
        return {row["id"]: row["epoch"] for row in rows if row["usable"]}

    try:
        check_render_uses(
            consent.keys,
            clip,
            uses,
            is_revoked=lambda jti: is_revoked_sync(consent.redis, jti),
            usable_epochs=usable_epochs,
        )
    except KeyringError as broken:  # no public keys to verify with: the operator's to fix
        logger.error("consent public keys cannot be loaded: %s", broken)
        raise ConsentWithdrawn(CONSENT_KEY_PROBLEM) from broken
    except ConsentWithdrawn as withdrawn:
        # an expired token or a key problem is not the owner's doing: say which it was
        reason = consent_rejection_reason(withdrawn.__cause__)
        if reason is None:
            raise
        raise ConsentWithdrawn(reason) from withdrawn.__cause__


def _decrypt_references(rt: RenderRuntime, uses: list[dict]) -> tuple[CameoReference, ...]:
    """Each featured cameo's reference frames, decrypted into memory (never to disk)."""
    assert rt.consent is not None
    ids = [use["cameoId"] for use in uses]
    media = rt.run(cameo_repo.reference_media(rt.graph, ids))
    references = []
    for use in uses:
        row = media.get(use["cameoId"])
        handle = use.get("ownerHandle")
        try:
            if row is None or row["state"] != "ACTIVE":
                raise KeyShredded("the cameo is gone")
            frames = open_reference_frames(
                rt.media, rt.consent.kek, row["id"], row["wrappedKey"], row["refKeys"]
            )
        except KeyShredded as shredded:  # deleted meanwhile: its likeness is unreadable
            raise ConsentWithdrawn(withdrawn_reason(handle)) from shredded
        except KekUnknown as unknown:  # its KEK was retired before its key was rewrapped
            logger.error("cameo %s: %s", use["cameoId"], unknown)
            raise ConsentWithdrawn(CAMEO_KEY_PROBLEM) from unknown
        except (EnvelopeError, MediaMissing) as broken:
            logger.error("cameo %s: reference media does not open: %r", use["cameoId"], broken)
            raise ConsentWithdrawn(
                "a featured cameo's reference media could not be read, so the clip was not "
                "rendered; try again later"
            ) from broken
        references.append(CameoReference(label=handle or "cameo", frames=tuple(frames)))
    return tuple(references)


def fail(rt: RenderRuntime, clip_id: str, claim: Claim, reason: str) -> bool:
    """Fail the render as this claim; False (and the clip untouched) when it no longer holds
    it: removed, finished, or taken over by a newer claim, of this task or another."""
    failed = rt.run(
        clip_repo.fail_render(
            rt.graph,
            clip_id,
            claim.owner,
            reason[:500],
            _now(),
            attempt=claim.attempt,
            worker=claim.worker,
        )
    )
    render_ended(rt, failed)  # before the event: a client told of the failure sees its unit back
    render_events.render_finished(failed)  # renderProgress, and RENDER_FINISHED to the author
    if failed is None:
        logger.info(
            "clip %s: not failed; claim %s attempt %s no longer holds it",
            clip_id,
            claim.owner,
            claim.attempt,
        )
    return failed is not None


def render_ended(rt: RenderRuntime, row: dict[str, Any] | None) -> None:
    """After the guarded move to DRAFT or FAILED (row: what it returned, None when it did not
    happen): the author's render slot is free, and a FAILED render gives its unit of the
    daily quota back (auth.quotas; idempotent, so a failure reported again gives back
    nothing more). A Redis failure is logged: the API reconciles slots against the graph."""
    if row is None or rt.counters is None or not row.get("authorId"):
        return
    with _counting("the quota of", row["id"]):
        render_ended_sync(
            rt.counters,
            row["authorId"],
            row["id"],
            row.get("createdAt"),
            failed=row.get("state") == "FAILED",
        )


@contextlib.contextmanager
def _counting(what: str, clip_id: str) -> Iterator[None]:
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        logger.warning("could not update %s clip %s: %r", what, clip_id, exc)
