"""Keys that rotate: the cameo KEK ring and `reelgraph keys rewrap`, the consent signing keys'
states (`keys rotate` publishes a key before it signs, `keys retire`), and the sentence a
failed render shows: revoked consent, an expired token, or a server key problem.

The `keys` commands run as the real CLI in their own process. The rewrap tests run it
against an embedded engine this module starts on a data folder of its own (as an operator
would against a running server); the render tests use a real Celery worker with the gated
renderer (tests/gated_renderer.py). Every wait is on a state or a gate event, never on time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import (
    REFERENCE_FACE,
    ROOT,
    Worker,
    active_cameo,
    cameo_of,
    purge_render_queue,
    start_worker,
)
from gated_renderer import RENDERER, Gate
from litestar import Litestar
from litestar.datastructures import State
from litestar.testing import AsyncTestClient
from ulid import ULID

from consent.envelope import (
    EnvelopeError,
    Kek,
    KekRing,
    KekUnknown,
    format_kek_ring,
    kek_path,
    load_kek,
    load_kek_ring,
    new_data_key,
    new_kek,
    parse_kek_ring,
    unwrap_key,
    wrap_key,
    write_kek_file,
)
from consent.keyring import (
    HEADER,
    SigningKeyring,
    VerifyingKeyring,
    b64url_decode,
    new_signing_document,
    public_document,
    public_keys_path,
    signing_keys_path,
)
from consent.references import (
    RewrapReport,
    _rewrap_one,
    open_reference_frames,
    seal_reference_frames,
)
from consent.tokens import (
    KEY_PROBLEM,
    TokenRejected,
    mint_render_token,
    revoke_jti_sync,
    spec_hash,
    verify_render_token,
)
from consent.well_known import reelgraph_keys
from graph import cameos as cameo_repo
from graph import users as user_repo
from graph.driver import Cypher, driver_for
from graph.embedded import EmbeddedServer
from media.store import LocalMediaStore
from resolvers.ids import decode_id
from server import embedded_urls
from settings import Settings
from workers.failures import CAMEO_KEY_PROBLEM, CONSENT_KEY_PROBLEM, CONSENT_TOKEN_EXPIRED

TESTS = Path(__file__).resolve().parent
TIMEOUT_S = 120  # a slow machine imports slowly; nothing waits on a clock
FACE = REFERENCE_FACE.read_bytes()


def _env(**overrides: str) -> dict[str, str]:
    """This environment without the suite's REELGRAPH_ settings, plus the overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGRAPH_")}
    if "REELGRAPH_TRACE_STATEMENTS" in os.environ:
        env["REELGRAPH_TRACE_STATEMENTS"] = os.environ["REELGRAPH_TRACE_STATEMENTS"]
    env.update(overrides)
    return env


def keys_cli(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`reelgraph keys <args> --data-dir data_dir` in its own process, run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "cli", "keys", *args, "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def deployed(stdout: str) -> dict[str, str]:
    """The `NAME='value'` lines a `keys` command prints for keys that come from settings."""
    values = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        if len(words) == 1 and "=" in words[0] and words[0].startswith("REELGRAPH_"):
            name, _, value = words[0].partition("=")
            values[name] = value
    return values


def _settings(data_dir: Path, **update: Any) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, **update)


def token_kid(token: str) -> str:
    return json.loads(b64url_decode(token[len(HEADER) :].split(".")[1]))["kid"]


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a v4.public token, read without verifying (to mint another like it)."""
    return json.loads(b64url_decode(token[len(HEADER) :].split(".")[0])[:-64])


RENDER = {
    "clip_id": "01CLIP",
    "cameo_id": "01CAMEO",
    "epoch": 1,
    "grantee_id": "01GRANTEE",
    "spec_hash": spec_hash(
        clip_id="01CLIP",
        author_id="01GRANTEE",
        prompt="a walk",
        duration_s=1,
        moods=[],
        parent_id=None,
        cameo_ids=["01CAMEO"],
    ),
}


def _render_token(ring: SigningKeyring) -> str:
    return mint_render_token(ring, owner_id="01OWNER", ttl_s=600, **RENDER)[0]


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


# --- the KEK ring -------------------------------------------------------------------------


def test_a_kek_ring_comes_from_settings_in_any_spelling(tmp_path: Path) -> None:
    new, old, legacy = (os.urandom(32) for _ in range(3))
    spellings = [
        f"new:{_b64(new)}, old:{_b64(old)}",
        json.dumps([f"new:{_b64(new)}", f"old:{_b64(old)}"]),
        json.dumps({"new": _b64(new), "old": _b64(old)}),
    ]
    for spelling in spellings:
        ring = load_kek_ring(_settings(tmp_path, cameo_keks=spelling))
        assert ring.kids == ["new", "old"] and ring.current == Kek("new", new)
        assert ring.get("old").key == old
    # the single KEK from before the ring is one more, older key; the current one can be named
    ring = load_kek_ring(
        _settings(
            tmp_path, cameo_keks=spellings[0], cameo_kek=_b64(legacy), cameo_kek_current="old"
        )
    )
    assert ring.kids[:2] == ["new", "old"] and ring.keks[2].key == legacy
    assert ring.current.kid == "old"
    assert load_kek(_settings(tmp_path, cameo_keks=spellings[0])).kid == "new"
    assert not kek_path(_settings(tmp_path)).exists()  # settings given: no file made
    for bad, says in (
        (f"new:{_b64(new)},new:{_b64(old)}", "twice"),
        (f"new:{_b64(new)},old:{_b64(new)}", "twice"),
        (f"a.b:{_b64(new)}", "KEK id"),
        (f"new:{_b64(b'short')}", "32 bytes"),
        ("[1, 2]", "JSON list"),
        ("", "no key"),
    ):
        with pytest.raises(ValueError, match=says):
            parse_kek_ring(bad)
    with pytest.raises(ValueError, match="REELGRAPH_CAMEO_KEK_CURRENT"):
        load_kek_ring(_settings(tmp_path, cameo_keks=spellings[0], cameo_kek_current="gone"))
    with pytest.raises(RuntimeError, match="REELGRAPH_CAMEO_KEKS"):
        load_kek_ring(_settings(tmp_path / "prod", environment="production"))


def test_unwrap_with_an_unknown_kek_id_is_a_clear_error(tmp_path: Path) -> None:
    old, new = new_kek(), new_kek()
    wrapped = wrap_key(KekRing([old]), new_data_key(), cameo_id="01CAMEO")
    assert wrapped.startswith(f"rgk1.{old.kid}.")  # the wrapped key names its KEK
    with pytest.raises(KekUnknown) as unknown:
        unwrap_key(KekRing([new]), wrapped, cameo_id="01CAMEO")
    assert unknown.value.kid == old.kid and isinstance(unknown.value, EnvelopeError)
    message = str(unknown.value)
    assert old.kid in message and "REELGRAPH_CAMEO_KEKS" in message and "reelgraph keys" in message
    # the ring that still holds the old KEK opens it, whichever KEK is current
    data_key = unwrap_key(KekRing([new, old]), wrapped, cameo_id="01CAMEO")
    assert len(data_key) == 32
    # a key from REELGRAPH_CAMEO_KEK (named by its tag) opens once given an id of its own
    single = load_kek(_settings(tmp_path, cameo_kek=_b64(old.key)))
    legacy = wrap_key(single, data_key, cameo_id="01CAMEO")
    named = KekRing(parse_kek_ring(f"new:{_b64(new.key)},main:{_b64(old.key)}"))
    assert unwrap_key(named, legacy, cameo_id="01CAMEO") == data_key


def test_a_development_ring_follows_its_file(tmp_path: Path) -> None:
    """A worker's ring, loaded before a KEK was added and keys rewrapped to it, opens them."""
    settings = _settings(tmp_path)
    worker_ring = load_kek_ring(settings)
    first = worker_ring.current
    path = kek_path(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    added = new_kek()
    write_kek_file(path, [added, first])  # what `reelgraph keys add-kek` writes
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    wrapped = wrap_key(load_kek_ring(settings), new_data_key(), cameo_id="c")
    assert wrapped.startswith(f"rgk1.{added.kid}.")
    assert len(unwrap_key(worker_ring, wrapped, cameo_id="c")) == 32
    assert worker_ring.current == added
    assert load_kek(settings) == added


# --- rewrap, against an engine running on a data folder of its own -----------------------


@dataclass
class Folder:
    data_dir: Path
    settings: Settings
    media: LocalMediaStore

    @contextlib.asynccontextmanager
    async def graph(self) -> AsyncIterator[tuple[Any, dict[str, str]]]:
        """A graph of its own on the folder's engine (its FalkorDB key), and the environment
        that points a `keys` command at it."""
        name = f"keys-{ULID()}"
        graph = driver_for(self.settings.model_copy(update={"graph_name": name}))
        await graph.ensure_schema()
        try:
            yield graph, {"REELGRAPH_GRAPH_NAME": name}
        finally:
            await graph.close()


@pytest.fixture(scope="module")
async def folder(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Folder]:
    data_dir = tmp_path_factory.mktemp("keys") / "data"
    server = EmbeddedServer(data_dir)
    server.start()
    settings = _settings(data_dir, **embedded_urls(server.socket_path))
    try:
        yield Folder(data_dir, settings, LocalMediaStore(data_dir / "media", "s" * 40, 60))
    finally:
        server.stop()


async def _owner(graph: Any) -> str:
    now = int(time.time() * 1000)
    user_id = str(ULID())
    handle = f"owner_{user_id[-8:].lower()}"
    created = await user_repo.create_user(
        graph, id=user_id, handle=handle, display_name="Owner", password_hash="x", now=now
    )
    assert created is not None
    return user_id


async def _wrapped_keys(graph: Any, ids: list[str]) -> dict[str, dict]:
    return await cameo_repo.reference_media(graph, ids)


async def test_rewrap_moves_every_cameo_and_the_old_kek_can_retire(folder: Folder) -> None:
    async with folder.graph() as (graph, env):
        await _rewrap_and_retire(folder, graph, env)


async def _rewrap_and_retire(folder: Folder, graph: Any, env: dict[str, str]) -> None:
    media, data_dir = folder.media, folder.data_dir
    old = load_kek(folder.settings)  # the development file's first key
    owners = [await _owner(graph) for _ in range(4)]
    cameos = [await active_cameo(graph, media, owner) for owner in owners[:3]]
    gone = await active_cameo(graph, media, owners[3])
    assert await cameo_repo.delete_cameo(graph, owners[3], int(time.time() * 1000))

    added = ok(keys_cli(data_dir, "add-kek"))
    ring = load_kek_ring(folder.settings)
    new = ring.current
    assert new != old and ring.kids == [new.kid, old.kid] and new.kid in added
    assert stat.S_IMODE(kek_path(folder.settings).stat().st_mode) == 0o600
    # a cameo made after the new KEK: already under it
    cameos.append(await active_cameo(graph, media, await _owner(graph)))

    refused = keys_cli(data_dir, "retire-kek", old.kid, **env)  # three keys still need it
    assert refused.returncode == 1 and "3 cameo key(s)" in refused.stderr, refused.stderr
    assert load_kek_ring(folder.settings).kids == [new.kid, old.kid]

    # an interrupted rewrap (here: stopped after one key) is finished by running it again
    partial = ok(keys_cli(data_dir, "rewrap", "--limit", "1", **env))
    assert "1 moved" in partial, partial
    second = ok(keys_cli(data_dir, "rewrap", **env))
    assert f"to KEK {new.kid}: 2 moved, 2 already under it" in second, second
    assert "0 could not be unwrapped" in second
    again = ok(keys_cli(data_dir, "rewrap", **env))  # idempotent
    assert "0 moved, 4 already under it" in again, again

    rows = await _wrapped_keys(graph, [*cameos, gone])
    assert rows[gone]["wrappedKey"] is None  # a shredded key never comes back
    for cameo in cameos:
        assert rows[cameo]["wrappedKey"].startswith(f"rgk1.{new.kid}.")
        assert rows[cameo]["kekId"] == new.kid

    ok(keys_cli(data_dir, "retire-kek", old.kid, **env))
    retired = load_kek_ring(folder.settings)
    assert retired.kids == [new.kid]
    for cameo in cameos:  # every cameo still opens, with the old KEK gone
        row = rows[cameo]
        frames = open_reference_frames(media, retired, cameo, row["wrappedKey"], row["refKeys"])
        assert frames == [FACE, FACE]
        with pytest.raises(KekUnknown):  # and the old KEK alone no longer opens any of them
            open_reference_frames(media, KekRing([old]), cameo, row["wrappedKey"], row["refKeys"])


async def test_rewrap_reports_a_key_it_cannot_unwrap(folder: Folder) -> None:
    """KEKs from the environment, on a graph of its own: a cameo under a KEK the ring lacks
    is named (exit 1), the others move; retire-kek prints the ring to deploy."""
    async with folder.graph() as (graph, env):
        old, new, lost = new_kek(), new_kek(), new_kek()
        good = [await active_cameo(graph, folder.media, await _owner(graph), kek=old)]
        broken = await active_cameo(graph, folder.media, await _owner(graph), kek=lost)
        env["REELGRAPH_CAMEO_KEKS"] = format_kek_ring([new, old])

        result = keys_cli(folder.data_dir, "rewrap", **env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "1 moved, 0 already under it" in result.stdout, result.stdout
        assert "1 could not be unwrapped" in result.stdout
        assert broken in result.stderr and lost.kid in result.stderr, result.stderr
        rows = await _wrapped_keys(graph, [*good, broken])
        assert rows[good[0]]["wrappedKey"].startswith(f"rgk1.{new.kid}.")
        assert rows[broken]["wrappedKey"].startswith(f"rgk1.{lost.kid}.")  # left as it was

        printed = ok(keys_cli(folder.data_dir, "retire-kek", old.kid, **env))
        values = deployed(printed)
        assert parse_kek_ring(values["REELGRAPH_CAMEO_KEKS"]) == [new]
        assert values["REELGRAPH_CAMEO_KEK_CURRENT"] == new.kid
        ring = load_kek_ring(_settings(folder.data_dir, cameo_keks=values["REELGRAPH_CAMEO_KEKS"]))
        row = rows[good[0]]
        frames = open_reference_frames(
            folder.media, ring, good[0], row["wrappedKey"], row["refKeys"]
        )
        assert frames == [FACE, FACE]


def test_add_kek_with_keks_from_the_environment_prints_the_ring_to_deploy(
    tmp_path: Path,
) -> None:
    current, older = new_kek(), new_kek()
    result = keys_cli(
        tmp_path / "data",
        "add-kek",
        REELGRAPH_CAMEO_KEKS=format_kek_ring([current]),
        REELGRAPH_CAMEO_KEK=_b64(older.key),
    )
    values = deployed(ok(result))
    assert "come from the environment" in result.stderr and "unset it" in result.stderr
    ring = parse_kek_ring(values["REELGRAPH_CAMEO_KEKS"])
    assert len(ring) == 3 and ring[1:] == [current, older]  # the new one first
    # the current KEK stays current until every process holds the new one
    assert values["REELGRAPH_CAMEO_KEK_CURRENT"] == current.kid
    assert f"REELGRAPH_CAMEO_KEK_CURRENT={ring[0].kid}" in result.stderr
    assert not kek_path(_settings(tmp_path / "data")).exists()


async def test_a_rewrap_racing_a_deletion_or_a_new_capture_never_overwrites_it(
    folder: Folder,
) -> None:
    """Each move is a compare-and-set on the wrapped key it read."""
    async with folder.graph() as (graph, _):
        await _race(graph, folder.media)


async def _race(graph: Any, media: LocalMediaStore) -> None:
    old, new = new_kek(), new_kek()
    ring = KekRing([new, old])
    deleted_owner, recaptured_owner = await _owner(graph), await _owner(graph)
    deleted = await active_cameo(graph, media, deleted_owner, kek=old)
    recaptured = await active_cameo(graph, media, recaptured_owner, kek=old)
    stale = await _wrapped_keys(graph, [deleted, recaptured])

    # deleted after the rewrap read its key: the key stays destroyed
    assert await cameo_repo.delete_cameo(graph, deleted_owner, int(time.time() * 1000))
    report = RewrapReport(kek_id=new.kid)
    await _rewrap_one(graph, ring, new, deleted, stale[deleted]["wrappedKey"], report)
    assert (report.moved, report.shredded) == (0, 1)
    assert (await _wrapped_keys(graph, [deleted]))[deleted]["wrappedKey"] is None

    # re-captured (a new data key) after the read: the new key is the one rewrapped
    capture = str(ULID())
    now = int(time.time() * 1000)
    assert await cameo_repo.accept_capture(graph, recaptured_owner, recaptured, capture, now)
    wrapped, refs = seal_reference_frames(media, old, recaptured, [FACE])
    assert await cameo_repo.activate_capture(
        graph, recaptured, capture, wrapped_key=wrapped, kek_id=old.kid, ref_keys=refs, now=now
    )
    await _rewrap_one(graph, ring, new, recaptured, stale[recaptured]["wrappedKey"], report)
    assert report.moved == 1 and not report.failed
    row = (await _wrapped_keys(graph, [recaptured]))[recaptured]
    assert row["wrappedKey"].startswith(f"rgk1.{new.kid}.") and row["refKeys"] == refs
    assert open_reference_frames(media, KekRing([new]), recaptured, row["wrappedKey"], refs) == [
        FACE
    ]


# --- consent signing keys -----------------------------------------------------------------


async def _well_known(ring: SigningKeyring) -> dict[str, Any]:
    """What GET /.well-known/reelgraph-keys serves from this API process's keyring."""
    app = Litestar(
        route_handlers=[reelgraph_keys],
        state=State({"services": SimpleNamespace(consent_keys=ring)}),
    )
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/.well-known/reelgraph-keys")
        assert response.status_code == 200
        return response.json()


def _states(data_dir: Path) -> dict[str, str]:
    return {row["kid"]: row["state"] for row in SigningKeyring.load(_settings(data_dir)).states()}


async def test_rotate_publishes_a_key_before_it_signs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = _settings(data_dir)
    api = SigningKeyring.load(settings)  # an API process, running through the rotation
    old_kid = api.current_kid
    # a worker holding the keys as they were before the rotate (a copy: it never reloads)
    before = VerifyingKeyring.from_document(json.loads(public_keys_path(settings).read_text()))

    staged = ok(keys_cli(data_dir, "rotate"))
    new_kid = next(kid for kid in _states(data_dir) if kid != old_kid)
    assert f"published {new_kid} as next" in staged
    assert _states(data_dir) == {old_kid: "current", new_kid: "next"}
    listed = ok(keys_cli(data_dir, "list"))
    assert f"{new_kid}  next" in listed and f"{old_kid}  current" in listed
    assert "secret" not in listed and "k4.secret" not in listed
    # published everywhere: the public-keys file workers read, and /.well-known
    published = json.loads(public_keys_path(settings).read_text())
    assert {key["kid"] for key in published["keys"]} == {old_kid, new_kid}
    assert {key["kid"] for key in (await _well_known(api))["keys"]} == {old_kid, new_kid}
    # ... and it does not sign yet: a token signed right after the rotate verifies with the
    # set the worker loaded before it
    token = _render_token(api)
    assert token_kid(token) == old_kid
    assert verify_render_token(before, token, **RENDER)["cameo"] == RENDER["cameo_id"]

    after_publish = VerifyingKeyring.from_document(published)  # a worker that got the new set
    activated = ok(keys_cli(data_dir, "rotate"))
    assert f"{new_kid} signs from now on" in activated
    assert _states(data_dir) == {old_kid: "previous", new_kid: "current"}
    signed = _render_token(api)
    assert token_kid(signed) == new_kid  # the API process follows the file
    assert verify_render_token(after_publish, signed, **RENDER)
    assert verify_render_token(after_publish, token, **RENDER)  # the old key still verifies
    # had it signed at once, a worker that loaded the keys before would refuse its tokens
    with pytest.raises(TokenRejected, match="unknown key") as refused:
        verify_render_token(before, signed, **RENDER)
    assert refused.value.kind == KEY_PROBLEM


def test_retire_makes_old_tokens_fail_with_a_key_problem(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = _settings(data_dir)
    api = SigningKeyring.load(settings)
    old_kid = api.current_kid
    old_token = _render_token(api)
    worker = VerifyingKeyring.load(settings)  # follows the public-keys file
    assert verify_render_token(worker, old_token, **RENDER)

    alone = keys_cli(data_dir, "retire", old_kid)  # the only key that signs: refused
    assert alone.returncode == 2 and "no key to sign with" in alone.stderr, alone.stderr
    assert verify_render_token(worker, old_token, **RENDER)

    ok(keys_cli(data_dir, "rotate"))
    ok(keys_cli(data_dir, "activate"))
    unknown = keys_cli(data_dir, "retire", "k4.pid.nosuchkey")
    assert unknown.returncode == 2 and old_kid in unknown.stderr
    retired = ok(keys_cli(data_dir, "retire", old_kid))
    assert f"retired {old_kid}" in retired
    assert _states(data_dir)[old_kid] == "retired"
    for verifier in (worker, api):
        with pytest.raises(TokenRejected, match="retired") as refused:
            verify_render_token(verifier, old_token, **RENDER)
        assert refused.value.kind == KEY_PROBLEM
    assert verify_render_token(worker, _render_token(api), **RENDER)  # the new key signs


def test_keys_from_the_environment_are_printed_to_deploy(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    document = new_signing_document()
    old_kid = SigningKeyring.load(
        _settings(data_dir, consent_signing_keys=document), publish=False
    ).current_kid

    staged = keys_cli(data_dir, "rotate", REELGRAPH_CONSENT_SIGNING_KEYS=document)
    values = deployed(ok(staged))
    assert "come from the environment" in staged.stderr and "deploy" in staged.stderr
    assert not signing_keys_path(_settings(data_dir)).exists()  # nothing written
    assert not public_keys_path(_settings(data_dir)).exists()
    printed = values["REELGRAPH_CONSENT_SIGNING_KEYS"]
    api = SigningKeyring.load(_settings(data_dir, consent_signing_keys=printed), publish=False)
    states = {row["kid"]: row["state"] for row in api.states()}
    new_kid = next(kid for kid in states if kid != old_kid)
    assert states == {old_kid: "current", new_kid: "next"}
    workers = VerifyingKeyring.from_document(json.loads(values["REELGRAPH_CONSENT_PUBLIC_KEYS"]))
    assert set(workers.kids) == {old_kid, new_kid}
    assert json.loads(values["REELGRAPH_CONSENT_PUBLIC_KEYS"]) == json.loads(
        public_document(printed)
    )
    assert token_kid(_render_token(api)) == old_kid

    # deployed; the next rotate makes the new key sign
    activated = deployed(ok(keys_cli(data_dir, "rotate", REELGRAPH_CONSENT_SIGNING_KEYS=printed)))
    api = SigningKeyring.load(
        _settings(data_dir, consent_signing_keys=activated["REELGRAPH_CONSENT_SIGNING_KEYS"]),
        publish=False,
    )
    signed = _render_token(api)
    assert token_kid(signed) == new_kid
    assert verify_render_token(workers, signed, **RENDER)  # the workers had it already


# --- why a render failed, through a real worker -------------------------------------------

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
CLIP = "query($id: ID!) { clip(id: $id) { id state failureReason video { url } } }"
AUDIENCE = "mutation($a: CameoAudience!) { setCameoAudience(audience: $a) { audience } }"
NOTIFICATIONS = """{ notifications(first: 100) { edges { node { kind
  clip { id state failureReason } } } } }"""
FEATURES_OF = Cypher(
    """
MATCH (:Clip {id: $clipId})-[f:FEATURES]->(m:Cameo)
RETURN m.id AS cameoId, f.renderToken AS token, f.renderJti AS jti
"""
)
SET_TOKEN = Cypher(
    """
MATCH (:Clip {id: $clipId})-[f:FEATURES]->(:Cameo)
SET f.renderToken = $token
RETURN f.renderJti AS jti
"""
)
SET_WRAPPED_KEY = Cypher(
    """
MATCH (c:Cameo {id: $id})
SET c.wrappedKey = $wrapped
RETURN c.id AS id
"""
)


@dataclass
class Keys:
    retired: SigningKeyring  # a key the workers' public keys list as retired
    stranger: SigningKeyring  # a key the workers never heard of


@pytest.fixture(scope="module")
def keys(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Keys, str]:
    """The suite's signing keys plus an older key, retired by `reelgraph keys retire` on the
    keys from the environment; the public keys it prints are what the worker gets."""
    extra = json.loads(new_signing_document())
    for entry in extra["keys"]:
        entry["createdAt"] = entry["activatedAt"] = 1  # older than the suite's key
    retired = SigningKeyring.load(
        _settings(Path("/nonexistent"), consent_signing_keys=json.dumps(extra)), publish=False
    )
    combined = json.dumps(
        {"keys": json.loads(settings.consent_signing_keys or "")["keys"] + extra["keys"]}
    )
    before = VerifyingKeyring.from_document(json.loads(public_document(combined)))
    old_token = _render_token(retired)
    assert verify_render_token(before, old_token, **RENDER)  # good until retired

    data_dir = tmp_path_factory.mktemp("retire") / "data"
    result = keys_cli(
        data_dir, "retire", retired.current_kid, REELGRAPH_CONSENT_SIGNING_KEYS=combined
    )
    public = deployed(ok(result))["REELGRAPH_CONSENT_PUBLIC_KEYS"]
    after = VerifyingKeyring.from_document(json.loads(public))
    with pytest.raises(TokenRejected, match="retired") as refused:
        verify_render_token(after, old_token, **RENDER)
    assert refused.value.kind == KEY_PROBLEM
    stranger = SigningKeyring.load(
        _settings(Path("/nonexistent"), consent_signing_keys=new_signing_document()),
        publish=False,
    )
    return Keys(retired, stranger), public


@pytest.fixture(scope="module")
def worker(settings, app, keys, tmp_path_factory) -> Worker:
    purge_render_queue(settings)
    log = tmp_path_factory.mktemp("key-rotation-worker") / "worker.log"
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    w = start_worker(
        settings,
        log,
        REELGRAPH_RENDERER=RENDERER,
        PYTHONPATH=pythonpath,
        REELGRAPH_CONSENT_PUBLIC_KEYS=keys[1],
        REELGRAPH_RENDER_RETRY_BACKOFF_S="0.01",  # a retried render comes back at once
    )
    yield w
    w.stop()


@pytest.fixture
def gate(settings):
    g = Gate(settings.redis_url)
    yield g
    g.close()


def _like(ring: SigningKeyring, token: str, *, issued_ms: int, ttl_s: int = 600) -> str:
    """A render token for the same use as `token`, signed by `ring` at `issued_ms`."""
    claims = token_claims(token)
    return mint_render_token(
        ring,
        clip_id=claims["clip"],
        cameo_id=claims["cameo"],
        epoch=claims["epoch"],
        owner_id=claims["owner"],
        grantee_id=claims["grantee"],
        spec_hash=claims["spec"],
        ttl_s=ttl_s,
        now_ms=issued_ms,
    )[0]


_HOUR_MS = 3_600_000

# each case: what changes while the render is held at the gate, and how the render goes on:
# "render" checks again after rendering; "raise-redis" fails it transiently, so the retry
# checks before any reference media is read (the render never reaches the gate again)
CASES = {
    "jti-revoked": "render",
    "audience-changed": "raise-redis",
    "token-expired": "raise-redis",
    "key-retired": "render",
    "key-unknown": "raise-redis",
    "kek-unknown": "raise-redis",
}
REVOCATIONS = {"jti-revoked", "audience-changed"}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_failed_render_says_why(
    case, gql, graph, services, settings, worker, gate, keys, sync_redis
) -> None:
    owner, author = await gql.sign_up("kowner"), await gql.sign_up("kauthor")
    cameo = await cameo_of(graph, services, owner)
    cameo_raw = decode_id(cameo, "Cameo")
    clip_id = (
        await gql.ok(
            CREATE,
            {"input": {"prompt": "a walk", "durationSeconds": 1, "cameoIds": [cameo]}},
            author.token,
        )
    )["createClip"]["id"]
    raw_id = decode_id(clip_id, "Clip")
    event = await asyncio.to_thread(gate.reached, raw_id)  # the tokens verified: it renders
    use = (await graph.read(FEATURES_OF, {"clipId": raw_id}))[0]
    now = int(time.time() * 1000)
    swap = None
    if case == "jti-revoked":
        revoke_jti_sync(sync_redis, use["jti"], now + _HOUR_MS)
    elif case == "audience-changed":
        await gql.ok(AUDIENCE, {"a": "ONLY_ME"}, owner.token)  # the consent epoch moves on
    elif case == "token-expired":
        swap = _like(services.consent_keys, use["token"], issued_ms=now - 2 * _HOUR_MS)
    elif case == "key-retired":
        swap = _like(keys[0].retired, use["token"], issued_ms=now)
    elif case == "key-unknown":
        swap = _like(keys[0].stranger, use["token"], issued_ms=now)
    else:  # its KEK was retired before its key was rewrapped
        row = (await cameo_repo.reference_media(graph, [cameo_raw]))[cameo_raw]
        ring = load_kek_ring(_settings(settings.data_dir))
        data_key = unwrap_key(ring, row["wrappedKey"], cameo_id=cameo_raw)
        rewrapped = wrap_key(new_kek(), data_key, cameo_id=cameo_raw)
        assert await graph.write(SET_WRAPPED_KEY, {"id": cameo_raw, "wrapped": rewrapped})
    if swap is not None:
        assert await graph.write(SET_TOKEN, {"clipId": raw_id, "token": swap})
    gate.order(raw_id, event["arrival"], CASES[case])

    failed = await gql.wait_clip(CLIP, author.token, clip_id, {"DRAFT", "FAILED"})
    reason = failed["failureReason"]
    assert failed["state"] == "FAILED" and failed["video"] is None, reason
    if case in REVOCATIONS:
        assert f"@{owner.handle} revoked consent" in reason, reason
    else:
        expected = {
            "token-expired": CONSENT_TOKEN_EXPIRED,
            "key-retired": CONSENT_KEY_PROBLEM,
            "key-unknown": CONSENT_KEY_PROBLEM,
            "kek-unknown": CAMEO_KEY_PROBLEM,
        }[case]
        assert reason == expected
        assert "revoked" not in reason and owner.handle not in reason
    if CASES[case] == "raise-redis":
        assert gate.arrivals(raw_id) == 1  # refused before the frames were read again
    # the author's RENDER_FINISHED notification leads to the same sentence
    edges = (await gql.ok(NOTIFICATIONS, token=author.token))["notifications"]["edges"]
    finished = [
        e["node"]["clip"]
        for e in edges
        if e["node"]["kind"] == "RENDER_FINISHED" and (e["node"]["clip"] or {}).get("id") == clip_id
    ]
    assert finished and finished[-1]["failureReason"] == reason


def test_the_reasons_are_told_apart() -> None:
    reasons = {CONSENT_TOKEN_EXPIRED, CONSENT_KEY_PROBLEM, CAMEO_KEY_PROBLEM}
    assert len(reasons) == 3
    assert "expired before rendering" in CONSENT_TOKEN_EXPIRED
    for reason in (CONSENT_KEY_PROBLEM, CAMEO_KEY_PROBLEM):
        assert "server key problem" in reason and "operator: see reelgraph keys" in reason
    assert "signing key is unknown or retired" in CONSENT_KEY_PROBLEM
    assert not any("revoked" in reason for reason in reasons)


def test_an_unknown_key_is_a_key_problem_and_a_forgery_is_not(tmp_path: Path) -> None:
    ring = SigningKeyring.load(_settings(tmp_path))
    other = SigningKeyring.load(_settings(tmp_path / "other"))
    with pytest.raises(TokenRejected) as refused:
        verify_render_token(ring.verifying(), _render_token(other), **RENDER)
    assert refused.value.kind == KEY_PROBLEM
    flipped = _render_token(ring)
    flipped = flipped[:20] + ("A" if flipped[20] != "A" else "B") + flipped[21:]
    with pytest.raises(TokenRejected) as bad:
        verify_render_token(ring.verifying(), flipped, **RENDER)
    assert bad.value.kind != KEY_PROBLEM


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REELGRAPH_CAMEO_KEKS": "new:c2hvcnQ="}, "REELGRAPH_CAMEO_KEKS"),
        ({"REELGRAPH_CAMEO_KEKS": f"new:{_b64(bytes(32))}", "REELGRAPH_CAMEO_KEK_CURRENT": "old"},
         "REELGRAPH_CAMEO_KEK_CURRENT"),
    ],
)  # fmt: skip
def test_a_kek_setting_that_cannot_be_used_is_named_at_start(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "worker", "--data-dir", str(tmp_path / "data")],
        cwd=ROOT,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"reelgraph: {named} cannot be used" in result.stderr, result.stderr
