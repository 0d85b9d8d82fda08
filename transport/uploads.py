"""`POST /cameo-captures/{challengeId}`: the capture video of a liveness challenge.

The owner of the challenge (Bearer token) uploads a multipart body with the file in the
field "video" (or the raw video). In order, nothing written before its checks pass:
1. the token, then a claim on the challenge without using it (unknown, used, expired,
   someone else's, or another upload on it still streaming: refused before a byte of the
   body is read, so neither a made-up id nor parallel uploads make the server read and store
   bodies for nothing);
2. the body streamed to a file under the data folder, under `capture_max_bytes`, and the
   container proven (media.uploads: never trusted by name or declared type); the body must
   have arrived before the challenge expires (a slow body holds nothing longer than that);
3. the challenge used, atomically (consent.challenges: a second upload racing on it loses);
4. the cameo told this capture is the one whose verdict counts, then the check queued.
202 with JSON `{cameoId, state, challengeId}`; errors are JSON `{status_code, detail, code}`
with a contract code. A failed step deletes the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from pathlib import Path
from typing import Any

from kombu.exceptions import OperationalError
from litestar import Request, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Response

from consent.challenges import (
    Challenge,
    ChallengeRefused,
    claim_upload,
    consume_challenge,
    release_upload,
)
from errors import Unauthenticated
from graph import cameos as cameo_repo
from media.uploads import UploadRejected, save_upload
from resolvers.context import Context
from resolvers.ids import encode_id
from workers.cameo_tasks import capture_upload_dir, send_verification

__all__ = ["STALE_UPLOAD_S", "cameo_capture_upload", "sweep_stale_uploads"]

logger = logging.getLogger(__name__)

_CHALLENGE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
# an upload still here after a day was never checked (its task is lost): far longer than a
# verification waits in the queue
STALE_UPLOAD_S = 24 * 3600
_CODES = {400: "BAD_USER_INPUT", 401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND"}


def _error(status: int, detail: str, code: str | None = None) -> Response[dict[str, Any]]:
    code = code or _CODES.get(status, "CONFLICT" if status in (409, 410) else "BAD_USER_INPUT")
    if status >= 500:
        code = "INTERNAL"
    return Response(
        {"status_code": status, "detail": detail, "code": code},
        status_code=status,
        headers={"cache-control": "no-store"},
    )


def _now() -> int:
    return int(time.time() * 1000)


def sweep_stale_uploads(upload_dir: Path, older_than_s: float = STALE_UPLOAD_S) -> int:
    """Delete uploads nobody will check any more (a process died between saving one and
    its verification deleting it); captures are rare, so each upload sweeps. Returns how
    many files went."""
    cutoff = time.time() - older_than_s
    swept = 0
    for path in upload_dir.iterdir() if upload_dir.is_dir() else ():
        with contextlib.suppress(OSError):  # a concurrent sweep or check took it first
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                swept += 1
    return swept


# the body cap is save_upload's (settings.capture_max_bytes), counted while streaming
@post("/cameo-captures/{challenge_id:str}", status_code=202, request_max_body_size=None)
async def cameo_capture_upload(
    request: Request, state: State, challenge_id: FromPath[str]
) -> Response[dict[str, Any]]:
    """Accept a capture video for the viewer's challenge and queue its verification."""
    services = state.services
    ctx = await Context.for_request(services, request.headers.get("authorization"))
    try:
        viewer_id = ctx.require_viewer()
    except Unauthenticated as exc:
        return _error(401, exc.message)
    if not _CHALLENGE_ID.fullmatch(challenge_id):
        return _error(404, "no such capture challenge; start a new capture")
    try:
        challenge, claim = await claim_upload(services.redis, challenge_id, viewer_id, now=_now())
    except ChallengeRefused as exc:
        return _error(exc.status, exc.reason)
    try:
        return await _receive(services, viewer_id, challenge, request)
    finally:
        # the upload ended (a refusal lets the owner try again with the same challenge)
        with contextlib.suppress(Exception):
            await release_upload(services.redis, challenge_id, claim)


async def _receive(
    services: Any, viewer_id: str, challenge: Challenge, request: Request
) -> Response[dict[str, Any]]:
    """The claimed upload's body saved, the challenge used and the verification queued."""
    settings = services.settings
    upload_dir = capture_upload_dir(settings)
    await asyncio.to_thread(sweep_stale_uploads, upload_dir)
    try:
        # after its expiry the challenge cannot be used: a body still arriving is not awaited
        async with asyncio.timeout(max(0.0, (challenge.expires_at - _now()) / 1000)):
            path = await save_upload(
                request, dest_dir=upload_dir, max_bytes=settings.capture_max_bytes
            )
    except UploadRejected as exc:
        return _error(exc.status, exc.reason, exc.code)
    except TimeoutError:
        return _error(
            410,
            "the capture challenge expired before the video finished uploading; start a new"
            " capture and upload the video before its challenge expires",
        )

    queued = False
    try:
        try:
            challenge = await consume_challenge(services.redis, challenge.id, viewer_id, now=_now())
        except ChallengeRefused as exc:
            return _error(exc.status, exc.reason)
        cameo = await cameo_repo.accept_capture(
            services.graph, viewer_id, challenge.cameo_id, challenge.id, _now()
        )
        if cameo is None:
            return _error(409, "this cameo was deleted; start a new capture", "CONFLICT")
        try:
            await send_verification(settings, cameo["id"], challenge.id, path, challenge)
        except (OperationalError, OSError) as exc:
            logger.warning("capture queue unavailable for cameo %s: %s", cameo["id"], exc)
            await cameo_repo.reject_capture(
                services.graph,
                cameo["id"],
                challenge.id,
                "The capture could not be queued for checking; start a new capture and upload"
                " it again.",
            )
            return _error(503, "the capture queue is unavailable; try again shortly")
        queued = True
        return Response(
            {
                "cameoId": encode_id("Cameo", cameo["id"]),
                "state": cameo["state"],
                "challengeId": encode_id("CameoChallenge", challenge.id),
            },
            status_code=202,
            headers={"cache-control": "no-store"},
        )
    finally:
        if not queued:  # the worker deletes it once it has checked it
            with contextlib.suppress(OSError):
                await asyncio.to_thread(Path(path).unlink, missing_ok=True)
