"""The cameo verification task: a capture upload checked offline, its verdict recorded.

The task is thin (STYLE): `verify_upload` is the plain function. It runs the liveness
check on the uploaded file against the capture's challenge (its digits and head moves, sent
with the task by the upload route; a task without one is rejected), in a confined child
process (workers.sandbox: no secrets, no graph, CPU, memory and wall-time limits; a child
over a limit or crashed is a rejection with a sentence, not a worker crash); on success it
seals the reference frames and the face's embedding under a new data key
(consent.references) and records ACTIVE with the wrapped key in one statement, then deletes
the reference files of the capture it replaced; on failure it records REJECTED (or, for a
cameo already ACTIVE, keeps it and records the failure) with a reason a person can act on.
The upload file is always deleted. Only the latest accepted capture of a cameo may record a
verdict (graph.cameos ACTIVATE_CAPTURE/REJECT_CAPTURE guard on its id).

One face, one owner (workers.face_index): a passed capture's face is matched against the face
of every other account's cameo (FaceIndex, kept in this process); a match is REJECTED
(FACE_TAKEN), the face's owner is notified (CAMEO_FACE_CLAIMED: that someone tried, not who:
the attempt may be an impostor or an honest mistake, and naming an account to the person
whose face it used invites the harassment this guards against; operators find the account in
the audit log, `cameo.capture.face_taken`), and the attempt is logged. A re-capture of an
ACTIVE cameo whose face is not the owner's current one is a new likeness: the activation
moves the consent epoch on and withdraws other authors' unpublished uses (their token ids
are revoked here). A face that matches a registered public figure's reference photo (and is
not the cameo's current, already accepted face) is held for an operator: PENDING_REVIEW,
with a sentence for the owner (HELD_FOR_REVIEW), until `reviewCameo`. The activation is a
compare-and-set on the faces' version, so two captures of one face racing on two workers
cannot both win: the loser matches again (FACE_TRIES).

A decoder crashing on a crafted file kills only the sandbox's child. Should the check still
kill its worker process, the task is redelivered (acks_late, reject_on_worker_lost); a
marker file beside the upload, made before the check starts, tells the redelivered task
that this file already took a worker down, so it is rejected instead of checked again: one
poisoned upload cannot keep crashing workers.

Tasks go to the `cameos` queue, which only the capture worker consumes
(workers.capture_worker, started beside every render worker): a check never holds a render
slot, and a render never delays a check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from consent.envelope import Kek, KekRing, load_kek_ring
from consent.references import delete_reference_files, seal_face, seal_reference_frames
from graph import audit as audit_repo
from graph import cameos as cameo_repo
from workers.face_index import MATCH_DISTANCE, FaceEntry, FaceIndex, FigureIndex, distance

if TYPE_CHECKING:
    from consent.challenges import Challenge
    from settings import Settings
    from workers.liveness import CaptureChallenge, LivenessResult
    from workers.render_job import RenderRuntime
    from workers.sandbox import SandboxReport

    Check = Callable[[Path, CaptureChallenge], tuple[LivenessResult, SandboxReport | None]]

__all__ = [
    "ATTEMPT_SUFFIX",
    "CRASHED",
    "FACE_TAKEN",
    "HELD_FOR_REVIEW",
    "VERIFY_CAMEO_TASK",
    "FaceChecks",
    "capture_upload_dir",
    "register_cameo_tasks",
    "sandboxed_check",
    "send_verification",
    "verify_upload",
]

logger = logging.getLogger(__name__)

VERIFY_CAMEO_TASK = "reelgraph.verify_cameo"
SERVER_PROBLEM = (
    "We could not check this capture because of a problem on our side; start a new capture"
    " and upload it again."
)
TOO_SLOW = "Checking this capture took too long; record a shorter video (3 to 15 seconds)."
NO_CHALLENGE = (
    "This capture was not sent with its challenge, so it could not be checked; start a new"
    " capture and upload it again."
)
CRASHED = (
    "Checking this capture stopped part-way, so it was not tried again; record a new video"
    " with your camera app and upload the file unchanged."
)
FACE_TAKEN = (
    "This face already belongs to a cameo of another account, so it cannot become yours; if"
    " it is your own face, contact support."
)
HELD_FOR_REVIEW = (
    "Your capture looks like a public figure we protect, so a person on our team will review"
    " it before your cameo can be used; you do not need to do anything."
)
ATTEMPT_SUFFIX = ".checking"  # the marker of a check under way, beside the upload
FACE_TRIES = 5  # matches made again when faces changed before the activation could write


@dataclass
class FaceChecks:
    """What the matching holds in a worker process: the faces of cameos and public figures,
    and Redis (a blocking client) for the notification and token revocations (None: skipped,
    and logged)."""

    faces: FaceIndex
    figures: FigureIndex
    redis: Any = None
    revoke_for_ms: int = 24 * 3600 * 1000  # how long a withdrawn use's token ids stay revoked


def capture_upload_dir(settings: Settings) -> Path:
    """Where the API streams capture uploads and the worker reads them (a shared folder)."""
    return settings.data_dir / "uploads" / "cameos"


def _now() -> int:
    return int(time.time() * 1000)


def sandboxed_check(settings: Settings) -> Check:
    """The capture check verify_upload runs: workers.sandbox with the limits of `settings`.

    The child's wall-time limit stays 15 s inside the task's own soft time limit, so the
    verdict is recorded before Celery would interrupt the task.
    """
    from workers.sandbox import SandboxLimits, check_in_sandbox

    wall_s = settings.capture_sandbox_wall_s
    wall_s = max(1, min(wall_s, settings.cameo_verify_time_limit_s - 15))
    limits = SandboxLimits(wall_s=wall_s, memory_mb=settings.capture_sandbox_memory_mb)
    hold = settings.capture_sandbox_hold_file  # tests only
    hold_file = Path(hold) if hold else None

    def check(
        path: Path, challenge: CaptureChallenge
    ) -> tuple[LivenessResult, SandboxReport | None]:
        return check_in_sandbox(path, limits=limits, hold_file=hold_file, challenge=challenge)

    return check


_warned: list[bool] = []


def _log_check(cameo_id: str, result: LivenessResult, report: SandboxReport | None) -> None:
    if report is None:
        return
    logger.info(
        "cameo %s capture check: %s (%s); %d frames decoded, peak %d MB, %.1f s CPU, %.1f s;"
        " confined by %s; moves seen: %s; digits heard: %s",
        cameo_id,
        "passed" if result.ok else result.code,
        report.outcome,
        report.frames_decoded,
        report.max_rss_kb // 1024,
        report.cpu_s,
        report.wall_s,
        ", ".join(report.confinement) or "nothing",
        " ".join(result.moves_seen) or "none",
        result.digits_heard if result.digits_heard is not None else "-",
    )
    if report.outcome != "ok" and report.stderr:
        logger.warning("cameo %s capture check stderr: %s", cameo_id, report.stderr[-2000:])
    kinds = {name.partition("-")[0] for name in report.confinement}
    if report.confinement and not {"landlock", "seccomp"} <= kinds and not _warned:
        _warned.append(True)  # once per process
        logger.warning(
            "capture checks run without Landlock or seccomp on this kernel (%s): only "
            "resource limits and an empty environment hold them",
            ", ".join(report.confinement),
        )


def verify_upload(
    rt: RenderRuntime,
    kek: Kek,
    cameo_id: str,
    capture_id: str,
    path: Path,
    upload_dir: Path,
    check: Check | None = None,
    challenge: CaptureChallenge | None = None,
    matching: FaceChecks | None = None,
    ring: KekRing | None = None,
) -> str:
    """Check one uploaded capture against its challenge and record the verdict: "active",
    "held" (for review), "rejected", or "stale" (a newer capture was accepted, or the cameo
    deleted, meanwhile). check: how the file is checked (default: workers.sandbox with its
    default limits). Without a challenge the capture is rejected (NO_CHALLENGE): nothing else
    proves it was recorded for this capture. matching: the faces held by this process
    (default: read afresh, opened with `ring`, or `kek` alone)."""
    if check is None:
        from workers.sandbox import check_in_sandbox

        def check(path: Path, challenge: CaptureChallenge):  # type: ignore[no-redef]
            return check_in_sandbox(path, challenge=challenge)

    # a task names only our uploads; anything else is neither read nor deleted
    if not path.resolve().is_relative_to(upload_dir.resolve()):
        raise ValueError(f"not a capture upload: {path}")
    attempt = path.with_name(path.name + ATTEMPT_SUFFIX)
    try:
        if attempt.exists():  # this file's check already took a worker process down
            cameo = rt.run(cameo_repo.reject_capture(rt.graph, cameo_id, capture_id, CRASHED))
            return "rejected" if cameo else "stale"
        if challenge is None:
            cameo = rt.run(cameo_repo.reject_capture(rt.graph, cameo_id, capture_id, NO_CHALLENGE))
            return "rejected" if cameo else "stale"
        attempt.touch()
        result, report = check(path, challenge)
        _log_check(cameo_id, result, report)
        if not result.ok:
            reason = result.reason or SERVER_PROBLEM
            cameo = rt.run(cameo_repo.reject_capture(rt.graph, cameo_id, capture_id, reason))
            return "rejected" if cameo else "stale"
        if matching is None:
            matching = FaceChecks(
                FaceIndex(ring or kek), FigureIndex(), getattr(rt, "counters", None)
            )
        return _record_pass(rt, kek, cameo_id, capture_id, result, matching)
    finally:
        path.unlink(missing_ok=True)
        attempt.unlink(missing_ok=True)


def _record_pass(
    rt: RenderRuntime,
    kek: Kek,
    cameo_id: str,
    capture_id: str,
    result: LivenessResult,
    matching: FaceChecks,
) -> str:
    """A passed capture: matched (one face, one owner; public figures), then recorded."""
    owner = rt.run(cameo_repo.reference_media(rt.graph, [cameo_id])).get(cameo_id)
    if owner is None:
        return "stale"
    owner_id = owner["ownerId"]
    embedding = np.asarray(result.embedding, np.float32) if result.embedding else None
    wrapped, keys = seal_reference_frames(rt.media, kek, cameo_id, result.reference_frames)
    kept = False
    try:
        face = seal_face(kek, wrapped, cameo_id, embedding) if embedding is not None else None
        for _ in range(FACE_TRIES):
            version = rt.run(matching.faces.refresh(rt.graph))
            same, state, figure_id, note = True, "ACTIVE", None, None
            if embedding is not None:
                taken = matching.faces.nearest(embedding, other_than=owner_id)
                if taken is not None:
                    return _face_taken(rt, matching, cameo_id, capture_id, owner_id, taken)
                own = matching.faces.face_of(cameo_id)
                same = (
                    own is not None
                    and own[1] == "ACTIVE"
                    and distance(own[0], embedding) <= MATCH_DISTANCE
                )
                if not same:
                    rt.run(matching.figures.refresh(rt.graph))
                    figure = matching.figures.match(embedding, owner_id=owner_id)
                    if figure is not None:
                        state, figure_id, note = "PENDING_REVIEW", figure.figure_id, HELD_FOR_REVIEW
                        logger.warning(
                            "cameo %s capture %s looks like public figure %s (%.2f apart):"
                            " held for review",
                            cameo_id,
                            capture_id,
                            figure.figure_id,
                            figure.distance,
                        )
            outcome = rt.run(
                cameo_repo.activate_capture(
                    rt.graph,
                    cameo_id,
                    capture_id,
                    wrapped_key=wrapped,
                    kek_id=kek.kid,
                    ref_keys=keys,
                    now=_now(),
                    face=face,
                    face_version=version,
                    same_face=same,
                    state=state,
                    figure_id=figure_id,
                    note=note,
                )
            )
            if outcome is not None:
                kept = True
                break
            if not rt.run(cameo_repo.capture_awaited(rt.graph, cameo_id, capture_id)):
                return "stale"  # this capture no longer counts: its files name nothing
            # another face changed since the match: match again
        else:
            raise RuntimeError("the faces kept changing while this capture was matched")
    finally:
        if not kept:
            delete_reference_files(rt.media, keys)
    delete_reference_files(rt.media, outcome["replaced"])  # the previous capture's
    if outcome["newLikeness"]:
        _new_likeness(rt, matching, cameo_id, owner_id, outcome)
    if state == "PENDING_REVIEW":
        _audit(
            rt,
            actor_id=owner_id,
            action="cameo.capture.held",
            subject=cameo_id,
            cameo_id=cameo_id,
            details={"figureId": figure_id},
        )
        return "held"
    return "active"


def _face_taken(
    rt: RenderRuntime,
    matching: FaceChecks,
    cameo_id: str,
    capture_id: str,
    owner_id: str,
    taken: FaceEntry,
) -> str:
    """The capture shows the face of another account's cameo: rejected, its owner told that
    someone tried (not who), the attempt logged and audited."""
    cameo = rt.run(cameo_repo.reject_capture(rt.graph, cameo_id, capture_id, FACE_TAKEN))
    if cameo is None:
        return "stale"
    logger.warning(
        "cameo %s capture %s (user %s): the face already belongs to cameo %s (%.2f apart):"
        " rejected",
        cameo_id,
        capture_id,
        owner_id,
        taken.cameo_id,
        taken.distance,
    )
    _audit(
        rt,
        actor_id=owner_id,
        action="cameo.capture.face_taken",
        subject=taken.cameo_id,
        cameo_id=taken.cameo_id,
    )
    if matching.redis is None:
        logger.warning("no Redis: the owner of cameo %s was not notified", taken.cameo_id)
    else:
        from events.notifications import record_notification_sync

        record_notification_sync(
            matching.redis,
            taken.owner_id,
            "CAMEO_FACE_CLAIMED",
            {"cameoId": taken.cameo_id, "at": _now()},
        )
    return "rejected"


def _new_likeness(
    rt: RenderRuntime, matching: FaceChecks, cameo_id: str, owner_id: str, outcome: dict
) -> None:
    logger.info(
        "cameo %s re-captured with another face: a new likeness; consent epoch %s, %d"
        " unpublished uses withdrawn",
        cameo_id,
        outcome["cameo"]["consentEpoch"],
        len(outcome["clipIds"]),
    )
    if outcome["jtis"] and matching.redis is not None:
        from redis.exceptions import RedisError

        from consent.tokens import revoke_jti_sync

        until = _now() + matching.revoke_for_ms
        try:
            for jti in dict.fromkeys(outcome["jtis"]):
                revoke_jti_sync(matching.redis, jti, until)
        except (RedisError, OSError):  # the uses are REVOKED in the graph already
            logger.warning("could not revoke %d token ids", len(outcome["jtis"]), exc_info=True)
    _audit(
        rt,
        actor_id=owner_id,
        action="cameo.capture.new_likeness",
        subject=cameo_id,
        cameo_id=cameo_id,
        details={"withdrawnClips": list(outcome["clipIds"])},
    )


def _audit(rt: RenderRuntime, **entry: Any) -> None:
    """graph.audit.append for a verdict already recorded: a failure is logged, not raised."""
    try:
        rt.run(audit_repo.append(rt.graph, **entry))
    except Exception:
        logger.exception("could not append %s to the audit log", entry.get("action"))


def _reject_quietly(rt: RenderRuntime, cameo_id: str, capture_id: str, reason: str) -> None:
    try:
        rt.run(cameo_repo.reject_capture(rt.graph, cameo_id, capture_id, reason))
    except Exception as exc:  # the graph is down too: the cameo keeps waiting for a capture
        logger.warning("could not record the failed capture of cameo %s: %r", cameo_id, exc)


def register_cameo_tasks(
    app: Celery, settings: Settings, runtime: Callable[..., RenderRuntime]
) -> None:
    """Define the verification task on app; `runtime` is the worker process's runtime."""
    rings: list[KekRing] = []
    held: list[FaceChecks] = []
    upload_dir = capture_upload_dir(settings)
    check = sandboxed_check(settings)
    revoke_for_ms = max(settings.render_token_ttl_s, settings.approval_token_ttl_s) * 1000

    def kek() -> Kek:
        """The ring's current KEK at each capture: a KEK added since start-up (keys add-kek)
        wraps new captures without a restart."""
        if not rings:
            rings.append(load_kek_ring(settings))
        return rings[0].current

    def matching(rt: RenderRuntime) -> FaceChecks:
        """This process's faces, kept from one capture to the next (opened with the ring)."""
        if not held:
            kek()
            faces = FaceIndex(rings[0])
            held.append(FaceChecks(faces, FigureIndex(), rt.counters, revoke_for_ms))
        return held[0]

    @app.task(
        name=VERIFY_CAMEO_TASK,
        acks_late=True,
        reject_on_worker_lost=True,
        soft_time_limit=settings.cameo_verify_time_limit_s,
        time_limit=settings.cameo_verify_time_limit_s + 30,
    )
    def verify_cameo(
        cameo_id: str, capture_id: str, path: str, challenge: dict | None = None
    ) -> str:
        rt = runtime()
        try:
            outcome = verify_upload(
                rt,
                kek(),
                cameo_id,
                capture_id,
                Path(path),
                upload_dir,
                check=check,
                challenge=_challenge(challenge),
                matching=matching(rt),
            )
        except SoftTimeLimitExceeded:
            _reject_quietly(rt, cameo_id, capture_id, TOO_SLOW)
            return "rejected"
        except Exception:
            logger.exception("verification of cameo %s failed", cameo_id)
            _reject_quietly(rt, cameo_id, capture_id, SERVER_PROBLEM)
            return "failed"
        logger.info("cameo %s capture %s: %s", cameo_id, capture_id, outcome)
        return outcome


def _challenge(sent: object) -> CaptureChallenge | None:
    """The challenge a task carries ({"phrase", "moves"}), or None when absent or malformed."""
    from consent.challenges import MOVES
    from workers.liveness import CaptureChallenge

    if not isinstance(sent, dict):
        return None
    phrase, moves = sent.get("phrase"), sent.get("moves")
    if not isinstance(phrase, str) or not isinstance(moves, list) or not moves:
        return None
    if not all(isinstance(m, str) and m in MOVES for m in moves):
        return None
    challenge = CaptureChallenge.from_phrase(phrase, moves)
    return challenge if challenge.digits else None


def _send(
    settings: Settings,
    cameo_id: str,
    capture_id: str,
    path: Path,
    challenge: Challenge | None,
) -> None:
    from workers.celery_app import CAMEO_QUEUE, make_celery

    sent = {"phrase": challenge.phrase, "moves": list(challenge.moves)} if challenge else None
    celery_app = make_celery(settings)
    try:
        celery_app.send_task(
            VERIFY_CAMEO_TASK,
            args=[cameo_id, capture_id, str(path), sent],
            queue=CAMEO_QUEUE,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
        )
    finally:
        celery_app.close()


async def send_verification(
    settings: Settings,
    cameo_id: str,
    capture_id: str,
    path: Path,
    challenge: Challenge | None = None,
) -> None:
    """Queue a capture's verification (API side) with the challenge it must answer (the
    worker rejects a capture sent without one); raises kombu's OperationalError or OSError
    when the broker cannot take it. Captures are rare (rate limited), so each send opens and
    closes its own connection."""
    await asyncio.to_thread(_send, settings, cameo_id, capture_id, path, challenge)
