"""One face, one owner: a capture of a face another account's cameo holds is refused, its
owner told and the attempt audited; an owner's re-capture with another face is a new likeness.

Captures go through the real capture worker (conftest `start_worker`). The capture videos can
animate one person only (the astronaut photo, tests/capture_videos.py); the photos of real
public figures may not be edited or animated (tests/data/faces/README.md). So a second
person's face reaches a cameo the way a passed capture would store it, through the repository:
the embedding of an unedited still (obama.jpg, workers.faces.photo_embedding), sealed under
the cameo's key (consent.references.seal_face) by ACTIVATE_CAPTURE. Against it, the
astronaut's capture is "someone else"; against a cameo holding the astronaut's capture, it is
"the same face".
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, Account, purge_render_queue, raw, start_worker
from test_cameo_capture import answer, start, upload, wait_cameo
from ulid import ULID

from consent.envelope import load_kek
from consent.references import seal_face, seal_reference_frames
from graph import audit as audit_repo
from graph import cameos as cameo_repo
from graph import clips as clip_repo
from graph.driver import Cypher
from tests.capture_videos import release_faces
from workers.cameo_tasks import FACE_TAKEN
from workers.face_index import FaceIndex
from workers.faces import photo_embedding

FACES = ROOT / "tests" / "data" / "faces"
NOTIFICATIONS = "{ notifications(first: 50) { edges { node { kind actor { id } clip { id } } } } }"
VIEWER_CAMEO = "{ viewer { cameo { id state rejectReason } } }"


@pytest.fixture(scope="module", autouse=True)
def worker(settings, tmp_path_factory: pytest.TempPathFactory):
    purge_render_queue(settings)
    log = tmp_path_factory.mktemp("face-worker") / "worker.log"
    running = start_worker(settings, log)
    running.log = log  # type: ignore[attr-defined]
    yield running
    running.stop()


@pytest.fixture(autouse=True)
async def face_free(graph):
    """Each test finds the astronaut's face unowned, and leaves it so."""
    await release_faces(graph)
    yield
    await release_faces(graph)


@pytest.fixture
async def redis(settings):
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


def _now() -> int:
    return int(time.time() * 1000)


async def still_cameo(graph, services, settings, owner: Account, photo: Path) -> str:
    """An ACTIVE cameo (EVERYONE may use it) whose face is the embedding of an unedited
    still, stored as a passed capture stores it. Returns its raw id."""
    kek = load_kek(settings)
    now = _now()
    cameo = await cameo_repo.ensure_cameo(graph, raw(owner), str(ULID()), now)
    capture_id = str(ULID())
    assert await cameo_repo.accept_capture(graph, raw(owner), cameo["id"], capture_id, now)
    frame = await asyncio.to_thread(photo.read_bytes)
    wrapped, keys = seal_reference_frames(services.media, kek, cameo["id"], [frame])
    face = seal_face(kek, wrapped, cameo["id"], photo_embedding(photo))
    assert await cameo_repo.activate_capture(
        graph,
        cameo["id"],
        capture_id,
        wrapped_key=wrapped,
        kek_id=kek.kid,
        ref_keys=keys,
        now=now,
        face=face,
    )
    assert await cameo_repo.set_audience(graph, raw(owner), "EVERYONE")
    return cameo["id"]


async def capture(gql, app, graph, redis, owner: Account, path: Path, done) -> dict:
    """The owner uploads a capture of the astronaut answering a new challenge; the cameo
    once done(row) holds."""
    challenge = await start(gql, owner)
    video = await answer(redis, challenge, path)
    response = await upload(app, challenge["uploadUrl"], owner.token, video)
    assert response.status_code == 202, response.text
    return await wait_cameo(graph, raw(owner), done, within_s=300)


async def test_the_same_face_from_a_second_account_is_refused_and_its_owner_told(
    gql, app, graph, settings, redis, worker, tmp_path
):
    first, second = await gql.sign_up("faceowner"), await gql.sign_up("faceclaimer")
    mine = await capture(
        gql,
        app,
        graph,
        redis,
        first,
        tmp_path / "a.mp4",
        lambda c: c["state"] != "PENDING_VERIFICATION",
    )
    assert mine["state"] == "ACTIVE", mine

    theirs = await capture(
        gql,
        app,
        graph,
        redis,
        second,
        tmp_path / "b.mp4",
        lambda c: c["state"] != "PENDING_VERIFICATION",
    )
    assert theirs["state"] == "REJECTED" and theirs["rejectReason"] == FACE_TAKEN
    shown = (await gql.ok(VIEWER_CAMEO, token=second.token))["viewer"]["cameo"]
    assert shown["state"] == "REJECTED"
    assert "this face already belongs to a cameo" in shown["rejectReason"].lower()
    refs = (await cameo_repo.reference_media(graph, [theirs["id"]]))[theirs["id"]]
    assert refs["wrappedKey"] is None and refs["faceSealed"] is None and refs["refKeys"] == []

    # the owner learns that someone tried, not who; the claimer hears nothing of the owner
    edges = (await gql.ok(NOTIFICATIONS, token=first.token))["notifications"]["edges"]
    claimed = [e["node"] for e in edges if e["node"]["kind"] == "CAMEO_FACE_CLAIMED"]
    assert claimed == [{"kind": "CAMEO_FACE_CLAIMED", "actor": None, "clip": None}]
    edges = (await gql.ok(NOTIFICATIONS, token=second.token))["notifications"]["edges"]
    assert not [e for e in edges if e["node"]["kind"] == "CAMEO_FACE_CLAIMED"]

    # the attempt is in the audit log, by the account that tried, about the owner's cameo
    rows = await audit_repo.entries_page(
        graph, user_id=None, clip_id=None, cameo_id=mine["id"], after_seq=None, limit=20
    )
    taken = [r for r in rows if r["entry"]["action"] == "cameo.capture.face_taken"]
    assert len(taken) == 1 and taken[0]["actorId"] == raw(second)
    assert taken[0]["entry"]["cameoId"] == mine["id"]
    # and logged by the worker
    log = await asyncio.to_thread(worker.log.read_text, errors="replace")
    assert f"the face already belongs to cameo {mine['id']}" in log

    # the owner's cameo is untouched
    kept = await cameo_repo.live_cameo(graph, raw(first))
    assert kept["state"] == "ACTIVE" and kept["consentEpoch"] == mine["consentEpoch"]

    # once the owner deletes their cameo, the face is free again
    await gql.ok("mutation { deleteCameo { state } }", token=first.token)
    freed = await capture(
        gql,
        app,
        graph,
        redis,
        second,
        tmp_path / "c.mp4",
        lambda c: c["state"] != "PENDING_VERIFICATION",
    )
    assert freed["state"] == "ACTIVE", freed


async def test_another_persons_face_is_accepted_and_a_same_face_recapture_keeps_consent(
    gql, app, graph, settings, services, redis, tmp_path
):
    other, owner = await gql.sign_up("stillface"), await gql.sign_up("newface")
    await still_cameo(graph, services, settings, other, FACES / "obama.jpg")
    cameo = await capture(
        gql,
        app,
        graph,
        redis,
        owner,
        tmp_path / "a.mp4",
        lambda c: c["state"] != "PENDING_VERIFICATION",
    )
    assert cameo["state"] == "ACTIVE", cameo
    assert await cameo_repo.set_audience(graph, raw(owner), "EVERYONE")
    epoch = (await cameo_repo.live_cameo(graph, raw(owner)))["consentEpoch"]
    author = await gql.sign_up("sameuser")
    clip_id = await featuring_draft(graph, raw(author), cameo["id"], epoch)

    again = await capture(
        gql,
        app,
        graph,
        redis,
        owner,
        tmp_path / "b.mp4",
        lambda c: c["verifiedAt"] > cameo["verifiedAt"] or c["lastCaptureFailure"],
    )
    assert again["state"] == "ACTIVE" and again["lastCaptureFailure"] is None, again
    assert again["consentEpoch"] == epoch  # the same likeness: consent holds
    use = await clip_use(graph, clip_id)
    assert use["approval"] != "REVOKED" and use["withdrawnAt"] is None


async def test_a_recapture_with_another_face_is_a_new_likeness(
    gql, app, graph, settings, services, redis, tmp_path
):
    owner, author = await gql.sign_up("changedface"), await gql.sign_up("usesit")
    cameo_id = await still_cameo(graph, services, settings, owner, FACES / "obama.jpg")
    before = await cameo_repo.live_cameo(graph, raw(owner))
    clip_id = await featuring_draft(graph, raw(author), cameo_id, before["consentEpoch"])

    after = await capture(
        gql,
        app,
        graph,
        redis,
        owner,
        tmp_path / "a.mp4",
        lambda c: c["verifiedAt"] > before["verifiedAt"] or c["lastCaptureFailure"],
    )
    assert after["state"] == "ACTIVE" and after["lastCaptureFailure"] is None, after
    assert after["consentEpoch"] == before["consentEpoch"] + 1
    use = await clip_use(graph, clip_id)
    assert use["approval"] == "REVOKED" and use["withdrawnAt"] is not None
    assert use["videoKey"] is None
    rows = await audit_repo.entries_page(
        graph, user_id=None, clip_id=None, cameo_id=cameo_id, after_seq=None, limit=20
    )
    likeness = [r for r in rows if r["entry"]["action"] == "cameo.capture.new_likeness"]
    assert len(likeness) == 1 and likeness[0]["actorId"] == raw(owner)


# --- the matching index and its compare-and-set, without a worker


async def test_activation_refuses_a_match_made_before_a_face_changed(
    gql, graph, settings, services
):
    """Two workers matching one face at once: the second activation finds the count moved
    and writes nothing, and the capture is still awaited, so its worker matches again."""
    kek = load_kek(settings)
    index = FaceIndex(kek)
    seen = await index.refresh(graph)
    owner, racer = await gql.sign_up("racewinner"), await gql.sign_up("raceloser")
    await still_cameo(graph, services, settings, owner, FACES / "obama2.jpg")

    now = _now()
    cameo = await cameo_repo.ensure_cameo(graph, raw(racer), str(ULID()), now)
    capture_id = str(ULID())
    assert await cameo_repo.accept_capture(graph, raw(racer), cameo["id"], capture_id, now)
    wrapped, keys = seal_reference_frames(services.media, kek, cameo["id"], [b"frame"])
    embedding = photo_embedding(FACES / "obama.jpg")
    face = seal_face(kek, wrapped, cameo["id"], embedding)
    args = {"wrapped_key": wrapped, "kek_id": kek.kid, "ref_keys": keys, "now": now, "face": face}
    assert index.nearest(embedding, other_than=raw(racer)) is None  # as matched before
    stale = await cameo_repo.activate_capture(
        graph, cameo["id"], capture_id, face_version=seen, **args
    )
    assert stale is None
    assert await cameo_repo.capture_awaited(graph, cameo["id"], capture_id)
    assert (await cameo_repo.live_cameo(graph, raw(racer)))["state"] == "PENDING_VERIFICATION"

    # matched again on the faces as they are now: the face is taken (obama2 is obama)
    now_seen = await index.refresh(graph)
    assert now_seen > seen
    taken = index.nearest(embedding, other_than=raw(racer))
    assert taken is not None and taken.owner_id == raw(owner) and taken.distance < 0.6
    # the same faces, read whole, say the same as the incremental refresh did
    whole = FaceIndex(kek)
    assert await whole.refresh(graph) == now_seen and len(whole) == len(index)

    # a capture still awaited activates with the current count
    done = await cameo_repo.activate_capture(
        graph, cameo["id"], capture_id, face_version=now_seen, **args
    )
    assert done is not None and done["cameo"]["state"] == "ACTIVE"
    assert await cameo_repo.capture_awaited(graph, cameo["id"], capture_id) is False

    # a deleted cameo's face leaves the index at its next refresh
    assert await cameo_repo.delete_cameo(graph, raw(owner), _now())
    await index.refresh(graph)
    left = index.nearest(embedding, other_than=raw(racer))
    assert left is None or left.owner_id != raw(owner)
    mine = index.face_of(cameo["id"])
    assert mine is not None and mine[1] == "ACTIVE"
    assert float(np.linalg.norm(mine[0] - embedding)) < 1e-5


# --- helpers


async def featuring_draft(graph, author_id: str, cameo_id: str, epoch: int) -> str:
    """An unpublished (QUEUED) clip of author_id featuring the cameo, as createClip writes it."""
    clip_id = str(ULID())
    params = {
        "authorId": author_id,
        "id": clip_id,
        "prompt": "a walk in the park",
        "moods": [],
        "durationS": 1,
        "seed": 1,
        "now": _now(),
        "parentId": None,
        "cameos": [
            {
                "cameoId": cameo_id,
                "epoch": epoch,
                "approval": "PENDING",
                "decidedAt": None,
                "token": "render-token",
                "jti": "jti-" + clip_id,
            }
        ],
    }
    assert await clip_repo.create_clip(graph, params), "the cameo was not usable"
    return clip_id


async def clip_use(graph, clip_id: str) -> dict:
    rows = await graph.read(CLIP_USE, {"id": clip_id})
    return rows[0]


CLIP_USE = Cypher(
    """
MATCH (c:Clip {id: $id})-[f:FEATURES]->(:Cameo)
RETURN f.approval AS approval, c.withdrawnAt AS withdrawnAt, c.videoKey AS videoKey,
       c.state AS state
"""
)
