"""A worker holds no key that signs: not the access-token secret, not the media link key, not
the consent signing keys. It still renders a clip featuring a cameo (consent verified with
public keys only), and the link the API makes for it plays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from conftest import ROOT, GraphQLClient, cameo_of, free_port, purge_render_queue, start_worker

from consent.keyring import public_document
from media.store import open_media_store
from startup import WORKER_WITHHELD

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
CLIP = """query($id: ID!) { clip(id: $id) { id state failureReason
  video { url sha256 } cameos { cameo { id } } } }"""


def _environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
async def test_a_worker_without_signing_keys_renders_a_cameo_clip(
    gql: GraphQLClient, graph, services, settings, app, tmp_path: Path
) -> None:
    purge_render_queue(settings)
    assert settings.secret_key and settings.media_link_key  # the API's, as in production
    owner, author = await gql.sign_up("keyless_owner"), await gql.sign_up("keyless_author")
    cameo = await cameo_of(graph, services, owner)
    # as deployed: the public half of the API's consent keys, by environment
    public = public_document(settings.consent_signing_keys)
    worker = start_worker(
        settings,
        tmp_path / "worker.log",
        withhold=WORKER_WITHHELD,
        REELGRAPH_CONSENT_PUBLIC_KEYS=public,
    )
    try:
        environment = _environment(worker.proc.pid)
        assert not set(WORKER_WITHHELD) & set(environment), "the worker got a signing key"
        created = (
            await gql.ok(
                CREATE, {"input": {"prompt": "a keyless render", "cameoIds": [cameo]}}, author.token
            )
        )["createClip"]
        clip = await gql.wait_clip(CLIP, author.token, created["id"], {"DRAFT", "FAILED"}, 180)
    finally:
        worker.stop()
    assert clip["state"] == "DRAFT", clip["failureReason"]
    assert [c["cameo"]["id"] for c in clip["cameos"]] == [cameo]
    # the API signed the link with its media key, and /media serves it
    response = await app.get(
        urlsplit(clip["video"]["url"]).path,
        params=dict(pair.split("=", 1) for pair in urlsplit(clip["video"]["url"]).query.split("&")),
    )
    assert response.status_code == 200
    assert response.content[4:8] == b"ftyp"


def test_a_workers_media_store_cannot_sign_a_link(settings) -> None:
    store = open_media_store(settings, None)
    with pytest.raises(RuntimeError, match="no media link key"):
        store.url_for("clips/01ARZ3NDEKTSV4RRFFQ69G5FAV/" + "0" * 64 + ".mp4", None)


def test_run_starts_its_worker_without_the_signing_keys(tmp_path: Path) -> None:
    """`reelgraph run` holds the keys (its API signs) and starts its worker without them."""
    keys = {variable: "k" * 48 for variable in ("REELGRAPH_SECRET_KEY", "REELGRAPH_MEDIA_LINK_KEY")}
    env = {**os.environ, **keys, "REELGRAPH_DATA_DIR": str(tmp_path / "data")}
    env.pop("REELGRAPH_CONSENT_SIGNING_KEYS", None)  # development: generated in the data folder
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        workers: list[psutil.Process] = []
        while not workers:
            assert proc.poll() is None and time.monotonic() < deadline, "no worker started"
            workers = [
                child
                for child in psutil.Process(proc.pid).children()
                if "worker" in child.cmdline()
            ]
            time.sleep(0.1)
        assert set(keys) <= set(_environment(proc.pid))  # the API process holds them
        assert not set(WORKER_WITHHELD) & set(_environment(workers[0].pid))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
