"""Liveness capture end to end: challenge, upload, a real worker's verdict, encrypted
reference frames on disk; and every upload the route must refuse.

Capture videos are real files built by tests/capture_videos.py; the worker is a real Celery
process (conftest `start_worker`). Tests wait for the cameo's state, never for time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import redis.asyncio as aredis
from conftest import Account, purge_render_queue, raw, serving_on_a_port, start_worker
from litestar.testing import AsyncTestClient

from consent.challenges import Challenge, store_challenge
from consent.envelope import EnvelopeError, load_kek, unwrap_key
from consent.references import open_face, open_reference_frames
from graph import cameos as cameo_repo
from resolvers.ids import decode_id, encode_id
from server import build_app
from tests.capture_videos import make_capture, multipart_body, release_faces, spoken_challenge
from transport.uploads import STALE_UPLOAD_S
from workers.cameo_tasks import (
    ATTEMPT_SUFFIX,
    CRASHED,
    capture_upload_dir,
    send_verification,
    verify_upload,
)

START = "mutation { startCameoCapture { id uploadUrl expiresAt } }"
VIEWER_CAMEO = "{ viewer { cameo { id state rejectReason } } }"
JPEG_MAGIC = b"\xff\xd8\xff"


@pytest.fixture(scope="module", autouse=True)
def worker(settings, tmp_path_factory: pytest.TempPathFactory):
    purge_render_queue(settings)  # no task another module left queued runs here
    log = tmp_path_factory.mktemp("capture-worker") / "worker.log"
    running = start_worker(settings, log)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
async def face_free(graph):
    """Every capture here shows the same face: each test finds it free, and frees it."""
    await release_faces(graph)
    yield
    await release_faces(graph)


@pytest.fixture
async def redis(settings):
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def start(gql, account: Account) -> dict:
    return (await gql.ok(START, token=account.token))["startCameoCapture"]


async def answer(redis, challenge: dict, path: Path) -> bytes:
    """A capture video that answers the challenge: its head moves, and digits eSpeak NG's
    voice is reliably heard saying (written into the stored challenge first)."""
    moves, digits = await spoken_challenge(redis, decode_id(challenge["id"], "CameoChallenge"))
    return make_capture(path, seconds=6, moves=moves, digits=digits).read_bytes()


async def upload(
    client: Any,
    upload_url: str,
    token: str | None,
    payload: bytes,
    *,
    content_type: str = "video/mp4",
    filename: str = "capture.mp4",
) -> Any:
    body, header = multipart_body(payload, filename=filename, content_type=content_type)
    headers = {"content-type": header}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return await client.post(urlsplit(upload_url).path, content=body, headers=headers)


async def wait_cameo(graph, owner_id: str, done, within_s: float = 120) -> dict:
    """The owner's cameo once done(row) holds; within_s only bounds a stuck test."""
    deadline = time.monotonic() + within_s
    while True:
        cameo = await cameo_repo.live_cameo(graph, owner_id)
        if cameo is not None and done(cameo):
            return cameo
        assert time.monotonic() < deadline, f"cameo stuck: {cameo}"
        await asyncio.sleep(0.1)


def leftover_uploads(settings) -> list[Path]:
    folder = capture_upload_dir(settings)
    return [p for p in folder.iterdir() if p.is_file()] if folder.exists() else []


def _challenge(
    owner: Account, cameo: dict, challenge_id: str, created_at: int, expires_at: int
) -> Challenge:
    """A challenge for the owner's cameo with the times given, to write straight to Redis."""
    return Challenge(
        id=challenge_id,
        user_id=raw(owner),
        cameo_id=cameo["id"],
        phrase="1 2 3 4 5 6",
        moves=["LEFT", "RIGHT", "UP"],
        created_at=created_at,
        expires_at=expires_at,
    )


async def test_a_good_capture_activates_the_cameo_with_encrypted_reference_frames(
    gql, app, graph, settings, services, redis, tmp_path
):
    owner = await gql.sign_up("capture")
    challenge = await start(gql, owner)
    video = await answer(redis, challenge, tmp_path / "me.mp4")
    response = await upload(app, challenge["uploadUrl"], owner.token, video)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["state"] == "PENDING_VERIFICATION"
    assert accepted["challengeId"] == challenge["id"]

    cameo = await wait_cameo(graph, raw(owner), lambda c: c["state"] != "PENDING_VERIFICATION")
    assert cameo["state"] == "ACTIVE", cameo
    shown = (await gql.ok(VIEWER_CAMEO, token=owner.token))["viewer"]["cameo"]
    assert shown == {"id": accepted["cameoId"], "state": "ACTIVE", "rejectReason": None}

    refs = (await cameo_repo.reference_media(graph, [cameo["id"]]))[cameo["id"]]
    assert refs["refKeys"] and all(
        key.startswith(f"cameos/{cameo['id']}/") and key.endswith(".ref") for key in refs["refKeys"]
    )
    kek = load_kek(settings)
    assert refs["kekId"] == kek.kid
    data_key = unwrap_key(kek, refs["wrappedKey"], cameo_id=cameo["id"])
    assert len(data_key) == 32
    for key in refs["refKeys"]:
        blob = (services.media.root / key).read_bytes()
        assert JPEG_MAGIC not in blob and b"JFIF" not in blob  # ciphertext at rest only
    frames = open_reference_frames(
        services.media, kek, cameo["id"], refs["wrappedKey"], refs["refKeys"]
    )
    assert frames and all(frame.startswith(JPEG_MAGIC) for frame in frames)
    assert not leftover_uploads(settings)  # the upload is gone once checked

    # a failed re-capture leaves the ACTIVE cameo and its likeness as they were, and says why
    still = make_capture(tmp_path / "still.mp4", kind="still").read_bytes()
    again = await start(gql, owner)
    assert (await upload(app, again["uploadUrl"], owner.token, still)).status_code == 202
    kept = await wait_cameo(graph, raw(owner), lambda c: c["lastCaptureFailure"] is not None)
    assert kept["state"] == "ACTIVE" and "still picture" in kept["lastCaptureFailure"]
    same = (await cameo_repo.reference_media(graph, [cameo["id"]]))[cameo["id"]]
    assert same["refKeys"] == refs["refKeys"] and same["wrappedKey"] == refs["wrappedKey"]
    shown = (await gql.ok(VIEWER_CAMEO, token=owner.token))["viewer"]["cameo"]
    assert shown["state"] == "ACTIVE" and "still picture" in shown["rejectReason"]

    # a passing re-capture replaces the frames and the data key, and deletes the old files
    third = await start(gql, owner)
    video = await answer(redis, third, tmp_path / "again.mp4")
    assert (await upload(app, third["uploadUrl"], owner.token, video)).status_code == 202
    fresh = await wait_cameo(graph, raw(owner), lambda c: c["verifiedAt"] > kept["verifiedAt"])
    assert fresh["state"] == "ACTIVE" and fresh["id"] == cameo["id"]
    assert fresh["lastCaptureFailure"] is None
    new = (await cameo_repo.reference_media(graph, [cameo["id"]]))[cameo["id"]]
    assert set(new["refKeys"]).isdisjoint(refs["refKeys"])
    assert new["wrappedKey"] != refs["wrappedKey"]
    assert not any((services.media.root / key).exists() for key in refs["refKeys"])
    assert all((services.media.root / key).exists() for key in new["refKeys"])

    # the face's embedding is kept too, sealed under the cameo's data key, and is shredded
    # with it when the cameo is deleted
    assert new["faceSealed"] and new["faceSealed"] != refs["faceSealed"]
    face = open_face(kek, new["wrappedKey"], cameo["id"], new["faceSealed"])
    assert face.shape == (128,) and 1.0 < float(np.linalg.norm(face)) < 2.0  # dlib: ~1.4
    with pytest.raises(EnvelopeError):  # it opens as nothing but this cameo's face
        open_face(kek, new["wrappedKey"], "another-cameo", new["faceSealed"])
    assert await cameo_repo.delete_cameo(graph, raw(owner), int(time.time() * 1000))
    gone = (await cameo_repo.reference_media(graph, [cameo["id"]]))[cameo["id"]]
    assert gone["faceSealed"] is None and gone["wrappedKey"] is None


@pytest.mark.parametrize(
    ("kind", "seconds", "words"),
    [
        ("still", 4, "still picture"),
        ("no_face", 4, "face"),
        ("no_audio", 4, "no sound"),
        ("good", 16, "longer than 15 seconds"),
    ],
)
async def test_a_capture_that_fails_a_check_is_rejected_with_a_reason(
    gql, app, graph, settings, redis, tmp_path, kind, seconds, words
):
    owner = await gql.sign_up(kind)
    challenge = await start(gql, owner)
    video = make_capture(tmp_path / f"{kind}.mp4", kind=kind, seconds=seconds).read_bytes()
    response = await upload(app, challenge["uploadUrl"], owner.token, video)
    assert response.status_code == 202, response.text
    cameo = await wait_cameo(graph, raw(owner), lambda c: c["state"] != "PENDING_VERIFICATION")
    assert cameo["state"] == "REJECTED"
    shown = (await gql.ok(VIEWER_CAMEO, token=owner.token))["viewer"]["cameo"]
    assert shown["state"] == "REJECTED" and words in shown["rejectReason"]
    refs = (await cameo_repo.reference_media(graph, [cameo["id"]]))[cameo["id"]]
    assert refs["wrappedKey"] is None and refs["refKeys"] == []
    assert not leftover_uploads(settings)
    # another try starts over from PENDING_VERIFICATION
    retry = await start(gql, owner)
    good = await answer(redis, retry, tmp_path / "good.mp4")
    assert (await upload(app, retry["uploadUrl"], owner.token, good)).status_code == 202
    # the rejection was the earlier capture's: the one being checked has none (yet)
    shown = (await gql.ok(VIEWER_CAMEO, token=owner.token))["viewer"]["cameo"]
    assert shown["rejectReason"] is None and shown["state"] != "REJECTED"
    passed = await wait_cameo(graph, raw(owner), lambda c: c["state"] == "ACTIVE")
    assert passed["id"] == cameo["id"] and passed["lastCaptureFailure"] is None


async def test_uploads_are_refused_with_clear_reasons(gql, app, graph, settings, redis, tmp_path):
    owner, stranger = await gql.sign_up("refused"), await gql.sign_up("stranger")
    challenge = await start(gql, owner)
    url = challenge["uploadUrl"]
    video = await answer(redis, challenge, tmp_path / "me.mp4")

    async def refused(response: Any, status: int, code: str, words: str) -> None:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["code"] == code and words in body["detail"], body

    await refused(await upload(app, url, None, video), 401, "UNAUTHENTICATED", "sign in")
    await refused(await upload(app, url, stranger.token, video), 403, "FORBIDDEN", "someone else")
    unknown = url.rsplit("/", 1)[0] + "/NoSuchChallenge"
    await refused(await upload(app, unknown, owner.token, video), 404, "NOT_FOUND", "start")
    not_video = make_capture(tmp_path / "fake.mp4", kind="not_video").read_bytes()
    response = await upload(app, url, owner.token, not_video)
    assert response.status_code == 415 and response.json()["code"] == "BAD_USER_INPUT"
    response = await upload(app, url, owner.token, video, content_type="image/png")
    assert response.status_code == 415

    # an upload past the size cap is cut off while it streams
    small = settings.model_copy(update={"capture_max_bytes": len(video) // 2})
    async with AsyncTestClient(app=build_app(small)) as capped:
        response = await upload(capped, url, owner.token, video)
    assert response.status_code == 413 and "larger than" in response.json()["detail"]

    # none of that used the challenge up, nor left a file behind
    assert not leftover_uploads(settings)
    cameo = await cameo_repo.live_cameo(graph, raw(owner))
    assert cameo["state"] == "PENDING_VERIFICATION"
    response = await upload(app, url, owner.token, video)
    assert response.status_code == 202, response.text
    # a used challenge stays used
    await refused(await upload(app, url, owner.token, video), 409, "CONFLICT", "already used")
    await wait_cameo(graph, raw(owner), lambda c: c["state"] == "ACTIVE")

    # an expired challenge is refused: one written already past its expiry, as a late upload
    # would find it (the expiry is the time the challenge names, not Redis's)
    now = int(time.time() * 1000)
    expired = _challenge(owner, cameo, "ExpiredChallenge" + str(now), now - 301_000, now - 1_000)
    await store_challenge(redis, expired)
    late = url.rsplit("/", 1)[0] + "/" + expired.id
    await refused(await upload(app, late, owner.token, video), 410, "CONFLICT", "expired")
    query = "query($id: ID!) { cameoChallenge(id: $id) { id } }"
    gone = await gql.ok(query, {"id": encode_id("CameoChallenge", expired.id)}, owner.token)
    assert gone["cameoChallenge"] is None
    assert not leftover_uploads(settings)


async def test_an_upload_for_a_cameo_deleted_meanwhile_is_refused(gql, app, graph, tmp_path):
    owner = await gql.sign_up("gone")
    challenge = await start(gql, owner)
    await gql.ok("mutation { deleteCameo { state } }", token=owner.token)
    video = make_capture(tmp_path / "me.mp4").read_bytes()
    response = await upload(app, challenge["uploadUrl"], owner.token, video)
    assert response.status_code == 409 and response.json()["code"] == "CONFLICT"
    assert "deleted" in response.json()["detail"]
    assert await cameo_repo.live_cameo(graph, raw(owner)) is None  # nothing came back to life


async def test_an_upload_sweeps_uploads_no_task_will_check(gql, app, settings, tmp_path):
    folder = capture_upload_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    lost, recent = folder / "lost.mp4", folder / "recent.mp4"
    lost.write_bytes(b"left behind by a process that died")
    recent.write_bytes(b"still being checked")
    old = time.time() - STALE_UPLOAD_S - 60
    os.utime(lost, (old, old))
    owner = await gql.sign_up("sweeper")
    challenge = await start(gql, owner)
    response = await upload(app, challenge["uploadUrl"], owner.token, b"not a video at all")
    assert response.status_code == 415
    assert not lost.exists() and recent.exists()
    recent.unlink()


class Upload:
    """A raw HTTP upload whose body is sent only as far as the test says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def begin(cls, port: int, path: str, token: str, declared: int, first: bytes) -> Upload:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: video/mp4\r\nContent-Length: {declared}\r\n\r\n"
        )
        writer.write(head.encode() + first)
        await writer.drain()
        return cls(reader, writer)

    async def response(self) -> tuple[int, dict]:
        """The answer, however little of the body was sent."""
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        return status, json.loads(body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


MP4_START = b"\0\0\0\x18ftypmp42" + bytes(4096)  # what a video's first bytes look like


async def test_a_body_is_not_read_for_a_challenge_that_cannot_be_used(gql, app, settings, redis):
    """Refusals come before the body: a made-up or used challenge costs the server no
    upload, and while one upload of a challenge streams, a second one is turned away."""
    owner = await gql.sign_up("claimer")
    challenge = await start(gql, owner)
    path = urlsplit(challenge["uploadUrl"]).path
    big = 100 * 1024 * 1024  # declared, never sent: an answer proves the body was not awaited
    async with serving_on_a_port(settings) as port:
        unknown = await Upload.begin(port, "/cameo-captures/NoSuchChallenge", owner.token, big, b"")
        assert (await unknown.response())[0] == 404
        await unknown.close()

        first = await Upload.begin(port, path, owner.token, big, MP4_START)
        second = await Upload.begin(port, path, owner.token, big, MP4_START)
        status, body = await second.response()
        assert status == 409 and "already being uploaded" in body["detail"], body
        await second.close()
        await first.close()  # the client gives up: its claim ends with it

        # the server ends a dropped upload's claim (a state to wait for, not a time)
        claim = "reelgraph:cameo-challenge-uploading:" + path.rsplit("/", 1)[1]
        deadline = time.monotonic() + 30
        while await redis.exists(claim):
            assert time.monotonic() < deadline, "the dropped upload kept its claim"
            await asyncio.sleep(0.02)

    # none of that used the challenge: a whole upload goes through
    response = await upload(app, challenge["uploadUrl"], owner.token, b"not a video at all")
    assert response.status_code == 415, response.text  # refused for what it is, not unused
    response = await upload(app, challenge["uploadUrl"], owner.token, b"still not a video")
    assert response.status_code == 415, response.text  # a refusal lets the owner try again
    assert not leftover_uploads(settings)


async def test_a_slow_body_is_cut_off_when_its_challenge_expires(gql, graph, settings, redis):
    owner = await gql.sign_up("slowpoke")
    await start(gql, owner)  # creates the cameo
    cameo = await cameo_repo.live_cameo(graph, raw(owner))
    now = int(time.time() * 1000)
    brief = _challenge(owner, cameo, "BriefChallenge" + str(now), now, now + 1_500)
    await store_challenge(redis, brief)
    async with serving_on_a_port(settings) as port:
        upload_ = await Upload.begin(
            port, f"/cameo-captures/{brief.id}", owner.token, 50 * 1024 * 1024, MP4_START
        )
        status, body = await upload_.response()  # the rest of the body never comes
        await upload_.close()
    assert status == 410 and body["code"] == "CONFLICT" and "expired" in body["detail"], body
    assert not leftover_uploads(settings)


async def test_an_upload_whose_check_took_a_worker_down_is_rejected_not_rechecked(
    gql, graph, settings, tmp_path
):
    """A redelivered check finds the marker its crashed run left and rejects the capture."""
    owner = await gql.sign_up("poison")
    await start(gql, owner)
    cameo = await cameo_repo.live_cameo(graph, raw(owner))
    capture_id = "CrashedCapture" + str(int(time.time() * 1000))
    assert await cameo_repo.accept_capture(graph, raw(owner), cameo["id"], capture_id, 1)
    folder = capture_upload_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{capture_id}.mp4"
    path.write_bytes(make_capture(tmp_path / "me.mp4").read_bytes())  # it would pass
    marker = folder / (path.name + ATTEMPT_SUFFIX)
    marker.touch()  # what a check killed mid-way leaves behind
    await send_verification(settings, cameo["id"], capture_id, path)
    rejected = await wait_cameo(graph, raw(owner), lambda c: c["state"] != "PENDING_VERIFICATION")
    assert rejected["state"] == "REJECTED" and rejected["rejectReason"] == CRASHED
    assert not path.exists() and not marker.exists()


def test_a_task_naming_a_file_outside_the_uploads_never_touches_it(settings, tmp_path):
    precious = tmp_path / "precious.mp4"
    precious.write_bytes(b"not ours to delete")
    escape = capture_upload_dir(settings) / ".." / ".." / precious.name
    for path in (precious, escape):
        with pytest.raises(ValueError, match="not a capture upload"):
            verify_upload(None, None, "cameo", "capture", path, capture_upload_dir(settings))
    assert precious.read_bytes() == b"not ours to delete"
