"""Cameos: who may use one (audience, grants, blocks), grants, restrictions, deletion.

Everything runs on the session's embedded engine and Redis; captures are made without a
worker here (conftest `active_cameo`); tests/test_cameo_capture.py runs the real worker.
"""

from __future__ import annotations

import time

from conftest import active_cameo

from consent.envelope import load_kek
from consent.references import open_reference_frames
from graph import cameos as cameo_repo
from resolvers.ids import decode_id


def _now() -> int:
    return int(time.time() * 1000)


async def test_active_cameo_helper_stores_encrypted_frames(gql, graph, services, settings):
    owner = await gql.sign_up("owner")
    owner_id = decode_id(owner.id, "User")
    cameo_id = await active_cameo(graph, services.media, owner_id)
    refs = (await cameo_repo.reference_media(graph, [cameo_id]))[cameo_id]
    assert refs["state"] == "ACTIVE" and refs["ownerId"] == owner_id and len(refs["refKeys"]) == 2
    frames = open_reference_frames(
        services.media, load_kek(settings), cameo_id, refs["wrappedKey"], refs["refKeys"]
    )
    assert all(frame.startswith(b"\xff\xd8") for frame in frames)  # JPEG
    rows = await cameo_repo.usable_cameos(graph, owner_id, [cameo_id, "01UNKNOWN"], _now())
    assert [(r["id"], r["usable"], r["state"]) for r in rows] == [(cameo_id, True, "ACTIVE")]
    assert await cameo_repo.cameo_usable(graph, cameo_id, owner_id, rows[0]["epoch"], _now())
    assert not await cameo_repo.cameo_usable(
        graph, cameo_id, owner_id, rows[0]["epoch"] + 1, _now()
    )
