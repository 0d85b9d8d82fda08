"""The `reelgraph` command: serve, worker, run (both), export-schema, export-lineage, seed,
`keys` (consent signing keys and cameo KEKs: list, rotate, activate, retire, add-kek,
rewrap, retire-kek), `policy public-figure` (add, list, remove), and `admin` (grant-role,
revoke-role: staff roles)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from settings import Settings, get_settings

if TYPE_CHECKING:
    import uvicorn
    from litestar import Litestar

    from consent.envelope import Kek, KekRing
    from consent.keyring import SigningKeyring

__all__ = ["main"]

logger = logging.getLogger("reelgraph")


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the flags given."""
    updates = {
        name: getattr(args, name)
        for name in ("host", "port", "data_dir")
        if getattr(args, name, None) is not None
    }
    if "data_dir" in updates:
        updates["data_dir"] = Path(updates["data_dir"])
    try:
        settings = get_settings()
    except ValidationError as exc:
        from startup import invalid_settings

        raise invalid_settings(exc) from None
    return settings.model_copy(update=updates)


def api_app() -> Litestar:
    """One API process of `serve --workers N`: uvicorn imports this by name in each process;
    the parent passes the graph, Redis and data folder in the environment."""
    from server import build_app

    return build_app(get_settings(), serving=True)


def _uvicorn_config(settings: Settings, app: Litestar | str, workers: int) -> uvicorn.Config:
    """How uvicorn serves: one app object, or for N processes the import path of a factory."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        lifespan="on",
        timeout_graceful_shutdown=10,
        # events are small JSON frames: compressing them saves little, and each socket's
        # zlib contexts cost about 100 KiB (benchmarks/RESULTS.md, live subscriptions)
        ws_per_message_deflate=False,
        ws_max_size=settings.max_request_bytes,  # the HTTP body limit too (build_app)
        workers=workers,
        factory=workers > 1,
    )


def serve(settings: Settings, with_worker: bool, workers: int = 1) -> int:
    """Start-up in an order that leaves nothing half-started: settings checked, the port
    taken, the engine started, services opened (a problem is a StartupError), then serve."""
    from graph.embedded import EmbeddedServer
    from server import embedded_urls, resolve_media_key, resolve_secret
    from startup import check_settings, listen

    check_settings(settings, api=True, worker=with_worker)
    # uvicorn re-raises SIGTERM after its graceful shutdown; make that an exit we can clean up on
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with contextlib.ExitStack() as stack:  # unwinds in reverse: worker, engine, socket
        sock = stack.enter_context(listen(settings.host, settings.port))
        if settings.is_embedded:
            embedded = EmbeddedServer(settings.data_dir)
            embedded.start()
            stack.callback(embedded.stop)  # after the worker: it flushes everything to disk
            settings = settings.model_copy(update=embedded_urls(embedded.socket_path))
        resolve_secret(settings)  # create both before API processes race for them
        resolve_media_key(settings)

        def start_worker() -> None:
            if with_worker:
                stack.callback(_stop_worker, _start_worker(settings))
            logger.info(
                "reelgraph on http://%s:%s/graphql (%d API process%s)",
                settings.host,
                sock.getsockname()[1],
                workers,
                "es" if workers > 1 else "",
            )

        if workers == 1:
            _serve_one(settings, sock, start_worker)
        else:
            _serve_many(settings, sock, workers, start_worker)
    return 0


def _serve_one(settings: Settings, sock: socket.socket, started: Callable[[], None]) -> None:
    """One API process: its services opened here, then served on the socket by uvicorn
    (SIGINT/SIGTERM: requests drain, then the services close)."""
    import uvicorn

    from server import Services, build_app, settle_gc
    from startup import quiet_retries

    app = build_app(settings, open_services=False)
    config = _uvicorn_config(settings, app, 1)

    async def run() -> None:
        with quiet_retries():
            app.state.services = await Services.open(settings)
        try:
            settle_gc()
            started()
            await uvicorn.Server(config).serve(sockets=[sock])
        finally:
            await app.state.services.close()

    asyncio.run(run(), loop_factory=config.get_loop_factory())


def _serve_many(
    settings: Settings, sock: socket.socket, workers: int, started: Callable[[], None]
) -> None:
    """N processes accept on one socket; each opens its own connections to the one engine
    this process started (events cross between them through its Redis). The services are
    opened once here first, so a problem is said once, before any process starts."""
    from uvicorn.supervisors import Multiprocess

    from server import Services
    from startup import quiet_retries

    async def check() -> None:
        with quiet_retries():
            services = await Services.open(settings)
        await services.close()

    asyncio.run(check())
    started()
    from startup import worker_env

    # the URLs the API processes reach (update adds; the keys they sign with stay)
    os.environ.update(worker_env(settings))
    Multiprocess(_uvicorn_config(settings, "cli:api_app", workers), sockets=[sock]).run()


def _start_worker(settings: Settings) -> subprocess.Popen:
    from graph.embedded import child_argv
    from startup import worker_env

    env = worker_env(settings)  # the worker signs nothing: it gets no signing key
    argv, preexec = child_argv([sys.executable, "-m", "cli", "worker"])
    return subprocess.Popen(
        argv,
        env=env,
        start_new_session=True,  # we stop it in order, after the API
        preexec_fn=preexec,
    )


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _stop_worker(worker: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Warm shutdown: the current render finishes; if it cannot, acks_late re-queues it."""
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)  # the pool children too
        worker.wait()


def worker(settings: Settings) -> int:
    from startup import worker_settings
    from workers.capture_worker import start_capture_worker, stop_capture_worker
    from workers.celery_app import RENDER_QUEUE, make_celery
    from workers.tasks import register_tasks

    settings = worker_settings(settings)
    app = make_celery(settings)
    register_tasks(app, settings)  # workers hold no key that signs tokens or links
    # capture checks have a Celery worker of their own on the cameos queue: a long check
    # never holds a render slot, a long render never delays a check (workers.capture_worker)
    captures = start_capture_worker(settings)
    try:
        app.worker_main(
            [
                "worker",
                "--loglevel=INFO",
                f"--concurrency={settings.worker_concurrency}",
                "--pool=prefork",
                f"--queues={RENDER_QUEUE}",
                "--without-gossip",
                "--without-mingle",
                f"--hostname=render-{os.getpid()}@%h",
            ]
        )
    finally:
        stop_capture_worker(captures)
    return 0


def export_schema(path: Path) -> int:
    from schema import build_schema

    path.write_text(str(build_schema()) + "\n")
    print(f"wrote {path}")
    return 0


def _raw_clip_id(value: str) -> str:
    """A GraphQL Clip ID or the raw id the graph stores."""
    from errors import BadUserInput, NotFound
    from resolvers.ids import decode_id

    try:
        return decode_id(value, "Clip")
    except (BadUserInput, NotFound):
        return value


@contextlib.contextmanager
def _engine_for(settings: Settings) -> Iterator[tuple[Settings, bool] | None]:
    """Settings that reach the data folder's graph: a running server's engine, or the folder's
    own engine opened for this command when none runs (then True: it may hold no graph yet).
    None when the folder is in use and cannot be opened (the reason is on stderr)."""
    from graph.embedded import DataDirInUse, EmbeddedServer
    from server import embedded_urls

    embedded = None
    if settings.is_embedded:
        socket_path = EmbeddedServer.locate(settings.data_dir)
        if socket_path is None:  # no server owns the folder: open its engine for this command
            embedded = EmbeddedServer(settings.data_dir)
            try:
                embedded.start()
            except DataDirInUse as exc:
                print(f"reelgraph: {exc}", file=sys.stderr)
                yield None
                return
            socket_path = embedded.socket_path
        settings = settings.model_copy(update=embedded_urls(socket_path))
    try:
        yield settings, embedded is not None
    finally:
        if embedded is not None:
            embedded.stop()


def export_lineage(settings: Settings, clip_id: str, fmt: str, out: Path | None) -> int:
    """Write the remix tree below a published clip (as a signed-out viewer sees it), from a
    running server's engine on the data folder, or from the folder itself when none runs."""
    import asyncio
    import json

    from graph.driver import driver_for
    from resolvers.lineage import public_tree, tree_graphml, tree_node_link

    async def read(settings: Settings, opened: bool):
        db = driver_for(settings)
        try:
            if opened:  # a folder no server ran on yet may hold no graph at all
                await db.ensure_schema()
            return await public_tree(db, clip_id)
        finally:
            await db.close()

    with _engine_for(settings) as engine:
        if engine is None:
            return 1
        found = asyncio.run(read(*engine))
    if found is None:
        print(f"reelgraph: no published clip {clip_id!r}", file=sys.stderr)
        return 1
    tree, rows = found
    if fmt == "graphml":
        data = tree_graphml(tree, rows)
    else:
        data = (json.dumps(tree_node_link(tree, rows), indent=1) + "\n").encode()
    if out is None:
        sys.stdout.buffer.write(data)
    else:
        out.write_bytes(data)
        print(f"wrote {out} ({tree.size} clips, depth {tree.max_depth})", file=sys.stderr)
    return 0


def seed(settings: Settings, users: int, clips: int, seed_value: int, max_depth: int) -> int:
    """Seed a synthetic graph into the data folder's engine (a running server's, or its own)."""
    from graph.driver import driver_for
    from graph.seed import seed_graph
    from media.store import open_media_store

    if users < 1 or clips < 0 or not 0 <= max_depth <= 50:
        print(
            "reelgraph: seed needs --users >= 1, --clips >= 0, --max-depth 0..50",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    with _engine_for(settings) as engine, tempfile.TemporaryDirectory() as tmp:
        if engine is None:
            return 1
        engine_settings, _opened = engine
        media = open_media_store(engine_settings, None)  # stores files, makes no links
        plan = seed_graph(
            lambda: driver_for(engine_settings),
            media,
            users=users,
            clips=clips,
            seed=seed_value,
            max_depth=max_depth,
            tmp_dir=Path(tmp),
            now_ms=int(time.time() * 1000),
        )
    print(
        f"seeded {len(plan.users)} users, {len(plan.follows)} follows, {len(plan.clips)} clips"
        f" ({len(plan.remixes)} remixes, depth up to {plan.max_depth}), {len(plan.likes)} likes,"
        f" {len(plan.views)} viewers in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


# --- keys: consent signing keys and cameo KEKs -------------------------------------------


def _iso_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _deploy(assignments: dict[str, str], what: str) -> None:
    """Keys that come from the environment are not changed here: print the new values (on
    stdout, one `NAME='value'` line each) for the operator to deploy, and say so."""
    print(
        f"reelgraph: {what} come from the environment, so nothing was changed here; deploy "
        "these values (stdout), then run the command again if it has a next step",
        file=sys.stderr,
    )
    for name, value in assignments.items():
        print(f"{name}={shlex.quote(value)}")


def _signing_ring(settings: Settings) -> tuple[SigningKeyring, bool]:
    """The API's signing keyring for an operator's command, and whether it comes from the
    environment (then a copy: nothing is written)."""
    from consent.keyring import SigningKeyring

    from_env = bool(settings.consent_signing_keys)
    return SigningKeyring.load(settings, publish=not from_env), from_env


def _deploy_signing(ring: SigningKeyring) -> None:
    _deploy(
        {
            "REELGRAPH_CONSENT_SIGNING_KEYS": ring.signing_document(),  # API processes
            "REELGRAPH_CONSENT_PUBLIC_KEYS": json.dumps(ring.verifying().document()),  # workers
        },
        "the consent signing keys (REELGRAPH_CONSENT_SIGNING_KEYS)",
    )
    print(
        "reelgraph: REELGRAPH_CONSENT_SIGNING_KEYS goes to every API process (secret), "
        "REELGRAPH_CONSENT_PUBLIC_KEYS to every worker; deploy the workers' first",
        file=sys.stderr,
    )


def keys_list(settings: Settings) -> int:
    """The signing keys with their states, and the KEK ring's ids (nothing secret)."""
    from consent.envelope import kek_path, load_kek_ring
    from consent.keyring import signing_keys_path

    if settings.consent_signing_keys or signing_keys_path(settings).exists():
        ring, from_env = _signing_ring(settings)
        source = "REELGRAPH_CONSENT_SIGNING_KEYS" if from_env else signing_keys_path(settings)
        print(f"consent signing keys ({source}):")
        for row in ring.states():
            print(
                f"  {row['kid']}  {row['state']:<8}  created {_iso_ms(row['createdAt'])}"
                f"  activated {_iso_ms(row['activatedAt'])}  retires {_iso_ms(row['retiresAt'])}"
            )
    else:
        print("consent signing keys: none yet (an API process creates them when it starts)")
    if not (settings.cameo_keks or settings.cameo_kek or kek_path(settings).exists()):
        print("cameo KEKs: none yet (a worker creates one when it seals its first cameo)")
        return 0
    kek_ring = load_kek_ring(settings)
    print("cameo KEKs (newest first):")
    for kek in kek_ring.keks:
        print(f"  {kek.kid}  {'current' if kek == kek_ring.current else 'older'}")
    return 0


def keys_rotate(settings: Settings) -> int:
    """Step one publishes a new key as next (it verifies, it does not sign); step two (the
    next run) makes it the signer. A new key is thus everywhere before its first token."""
    from consent.well_known import KEYS_MAX_AGE_S

    ring, from_env = _signing_ring(settings)
    staged = ring.next_kid()
    if staged is None:
        kid = ring.stage()
        print(f"published {kid} as next: it verifies from now on and does not sign yet")
        print(
            "reelgraph: once every verifier has it (workers' public keys, "
            f"/.well-known/reelgraph-keys, cached up to {KEYS_MAX_AGE_S} s), run "
            "`reelgraph keys rotate` again (or `keys activate`) to make it sign",
            file=sys.stderr,
        )
    else:
        _activate(ring, staged)
    if from_env:
        _deploy_signing(ring)
    return 0


def _activate(ring: SigningKeyring, kid: str | None) -> None:
    from consent.well_known import KEYS_MAX_AGE_S

    rows = {row["kid"]: row for row in ring.states()}
    previous = [k for k, row in rows.items() if row["state"] == "current"]
    kid = ring.activate(kid)
    age_s = (time.time() * 1000 - rows[kid]["createdAt"]) / 1000
    print(f"{kid} signs from now on")
    for old in previous:
        retires = next(r["retiresAt"] for r in ring.states() if r["kid"] == old)
        print(f"{old} keeps verifying until {_iso_ms(retires)}, then retires")
    if age_s < KEYS_MAX_AGE_S:
        print(
            f"reelgraph: note: {kid} was published only {age_s:.0f} s ago; a verifier "
            f"caching /.well-known/reelgraph-keys (up to {KEYS_MAX_AGE_S} s) fetches it when "
            "it meets its first token",
            file=sys.stderr,
        )


def keys_activate(settings: Settings, kid: str | None) -> int:
    ring, from_env = _signing_ring(settings)
    _activate(ring, kid)
    if from_env:
        _deploy_signing(ring)
    return 0


def keys_retire(settings: Settings, kid: str, force: bool) -> int:
    """Stop a key verifying now: tokens it signed are refused (a key problem) from now on."""
    ring, from_env = _signing_ring(settings)
    try:
        ring.retire(kid, force=force)
    except KeyError:
        known = ", ".join(row["kid"] for row in ring.states())
        print(f"reelgraph: no signing key {kid} (the keys: {known})", file=sys.stderr)
        return 2
    print(f"retired {kid}: tokens it signed are refused from now on")
    if from_env:
        _deploy_signing(ring)
    return 0


def _kek_source(settings: Settings) -> tuple[KekRing, Path | None]:
    """The KEK ring and the development file it lives in (None: from the environment)."""
    from consent.envelope import kek_path, load_kek_ring

    ring = load_kek_ring(settings)
    from_env = bool(settings.cameo_keks or settings.cameo_kek)
    return ring, None if from_env else kek_path(settings)


def _deploy_keks(keks: list[Kek], current: Kek, settings: Settings) -> None:
    from consent.envelope import format_kek_ring

    _deploy(
        {
            "REELGRAPH_CAMEO_KEKS": format_kek_ring(keks),
            "REELGRAPH_CAMEO_KEK_CURRENT": current.kid,
        },
        "the cameo KEKs (REELGRAPH_CAMEO_KEKS / REELGRAPH_CAMEO_KEK)",
    )
    if settings.cameo_kek:
        print(
            "reelgraph: REELGRAPH_CAMEO_KEK is in REELGRAPH_CAMEO_KEKS above: unset it",
            file=sys.stderr,
        )


def keys_add_kek(settings: Settings) -> int:
    """A new KEK. The development file puts it first (current at once: every process reads
    the file); from the environment, the ring to deploy keeps the current KEK current until
    every process holds the new one."""
    from consent.envelope import new_kek, write_kek_file

    ring, path = _kek_source(settings)
    fresh = new_kek()
    keks = [fresh, *ring.keks]
    if path is None:
        _deploy_keks(keks, ring.current, settings)
        print(
            f"reelgraph: then set REELGRAPH_CAMEO_KEK_CURRENT={fresh.kid} everywhere, run "
            f"`reelgraph keys rewrap`, and `reelgraph keys retire-kek {ring.current.kid}`",
            file=sys.stderr,
        )
        return 0
    write_kek_file(path, keks)
    print(f"added KEK {fresh.kid}: new cameo keys are wrapped under it")
    print(
        "reelgraph: restart workers (they wrap new captures under the KEK they started with), "
        f"then run `reelgraph keys rewrap` and `reelgraph keys retire-kek {ring.current.kid}`",
        file=sys.stderr,
    )
    return 0


def keys_rewrap(settings: Settings, limit: int | None) -> int:
    """Move every cameo's wrapped data key to the current KEK, from a running server's
    engine on the data folder (or the folder's own when none runs); idempotent."""
    from consent.references import rewrap_cameo_keys
    from graph.driver import driver_for

    ring, _ = _kek_source(settings)

    async def run(engine_settings: Settings, opened: bool) -> Any:
        db = driver_for(engine_settings)
        try:
            if opened:
                await db.ensure_schema()
            return await rewrap_cameo_keys(db, ring, limit=limit)
        finally:
            await db.close()

    with _engine_for(settings) as engine:
        if engine is None:
            return 1
        report = asyncio.run(run(*engine))
    print(
        f"rewrapped cameo keys to KEK {report.kek_id}: {report.moved} moved, "
        f"{report.already} already under it, {report.shredded} deleted meanwhile, "
        f"{len(report.failed)} could not be unwrapped"
    )
    for cameo_id, why in report.failed.items():
        print(f"reelgraph: cameo {cameo_id} was not rewrapped: {why}", file=sys.stderr)
    if report.stopped_early:
        print(f"reelgraph: stopped after {limit} (--limit): run it again to go on", file=sys.stderr)
    return 1 if report.failed else 0


def keys_retire_kek(settings: Settings, kid: str) -> int:
    """Drop a KEK from the ring, once no cameo's key is wrapped under it any more."""
    from consent.envelope import KekUnknown, write_kek_file
    from consent.references import kek_ids_in_use
    from graph.driver import driver_for

    ring, path = _kek_source(settings)
    try:
        target = ring.get(kid)
    except KekUnknown:
        print(f"reelgraph: the KEK ring holds no {kid} (it holds {', '.join(ring.kids)})",
              file=sys.stderr)  # fmt: skip
        return 2
    if target.key == ring.current.key:
        print(
            f"reelgraph: {kid} is the current KEK: add another (`reelgraph keys add-kek`) "
            "and rewrap first",
            file=sys.stderr,
        )
        return 2

    async def count(engine_settings: Settings, opened: bool) -> dict[str, int]:
        db = driver_for(engine_settings)
        try:
            if opened:
                await db.ensure_schema()
            return await kek_ids_in_use(db)
        finally:
            await db.close()

    with _engine_for(settings) as engine:
        if engine is None:
            return 1
        in_use = asyncio.run(count(*engine))
    under = sum(n for k, n in in_use.items() if ring.holds(k) and ring.get(k).key == target.key)
    if under:
        print(
            f"reelgraph: {under} cameo key(s) are still wrapped under KEK {kid}: run "
            "`reelgraph keys rewrap` first (retiring it now would make them unreadable)",
            file=sys.stderr,
        )
        return 1
    keks = [kek for kek in ring.keks if kek.key != target.key]
    if path is None:
        _deploy_keks(keks, ring.current, settings)
        return 0
    write_kek_file(path, keks)
    print(f"retired KEK {kid}: no cameo key was wrapped under it")
    return 0


def keys(settings: Settings, args: argparse.Namespace) -> int:
    """`reelgraph keys ...`: a key or setting that cannot be used is one line, exit 2."""
    from consent.keyring import KeyringError

    try:
        if args.keys_command == "list":
            return keys_list(settings)
        if args.keys_command == "rotate":
            return keys_rotate(settings)
        if args.keys_command == "activate":
            return keys_activate(settings, args.kid)
        if args.keys_command == "retire":
            return keys_retire(settings, args.kid, args.force)
        if args.keys_command == "add-kek":
            return keys_add_kek(settings)
        if args.keys_command == "rewrap":
            return keys_rewrap(settings, args.limit)
        return keys_retire_kek(settings, args.kid)
    except (KeyringError, ValueError, RuntimeError) as exc:
        print(f"reelgraph: {exc}", file=sys.stderr)
        return 2


# --- policy: the public-figure registry -----------------------------------------------------


def _on_graph(settings: Settings, work: Callable[[Any], Any]) -> tuple[bool, Any]:
    """(True, what `work(db)` answers) on the data folder's graph (a running server's engine,
    or the folder's own); (False, None) when the folder cannot be opened."""
    from graph.driver import driver_for

    async def run(engine_settings: Settings, opened: bool) -> Any:
        db = driver_for(engine_settings)
        try:
            if opened:
                await db.ensure_schema()
            return await work(db)
        finally:
            await db.close()

    with _engine_for(settings) as engine:
        if engine is None:
            return False, None
        return True, asyncio.run(run(*engine))


def _figure_line(figure: dict[str, Any], handles: dict[str, str]) -> str:
    aliases = ", ".join(figure["aliases"]) or "-"
    user = figure.get("userId")
    linked = f"@{handles[user]}" if user in handles else (f"user {user} (gone)" if user else "-")
    return (
        f"{figure['id']}\t{figure['name']}\taliases: {aliases}\tcameo of: {linked}"
        f"\tadded {_iso_ms(figure['createdAt'])}"
    )


def policy_figure_add(
    settings: Settings,
    name: str,
    aliases: list[str],
    handle: str | None,
    photos: list[str] | None = None,
) -> int:
    """Register a public figure (name, aliases, the person's own account if any, and the face
    of each reference photo: graph.figure_faces). A photo without exactly one face is refused
    before anything is stored."""
    from ulid import ULID

    from consent.policy import figure_key, normalize_figure
    from graph import audit as audit_repo
    from graph import figure_faces as figure_face_repo
    from graph import public_figures as figure_repo
    from graph import users as user_repo

    name, aliases = normalize_figure(name, aliases)
    if not figure_key(name):
        print("reelgraph: the name has no letters or digits", file=sys.stderr)
        return 2
    wanted = handle.strip().lstrip("@").lower() if handle else None
    faces = []
    if photos:
        from workers.faces import PhotoError, photo_embedding

        for photo in photos:
            try:
                faces.append(photo_embedding(Path(photo)))
            except PhotoError as exc:
                print(f"reelgraph: {exc}; nothing was stored", file=sys.stderr)
                return 2

    async def add(db: Any) -> tuple[str, Any]:
        user_id = None
        if wanted is not None:
            user = (await user_repo.users_by_handles(db, [wanted])).get(wanted)
            if user is None:
                return "no-user", None
            user_id = user["id"]
        figure, created = await figure_repo.add_figure(
            db,
            id=str(ULID()),
            name=name,
            key=figure_key(name),
            aliases=aliases,
            user_id=user_id,
            now=int(time.time() * 1000),
        )
        if created and faces:
            try:
                await figure_face_repo.set_figure_faces(db, figure["id"], faces)
            except BaseException:  # no entry without the faces it was given
                await figure_repo.remove_figure(db, figure["id"])
                raise
        if created:
            await audit_repo.append(
                db,
                actor_id=None,
                action="registry.public_figure.add",
                subject=figure["id"],
                details={"photos": len(faces)} if faces else None,
            )
        return ("added" if created else "exists"), figure

    opened, answer = _on_graph(settings, add)
    if not opened:
        return 1
    outcome, figure = answer
    if outcome == "no-user":
        print(f"reelgraph: no user @{wanted}", file=sys.stderr)
        return 1
    if outcome == "exists":
        print(
            f"reelgraph: {figure['name']!r} is registered already (id {figure['id']}); "
            "remove it first to change it",
            file=sys.stderr,
        )
        return 1
    photos_note = f" with {len(faces)} reference photo(s)" if faces else ""
    print(f"added public figure {figure['id']} {figure['name']!r}{photos_note}")
    return 0


def policy_figure_list(settings: Settings) -> int:
    """Every registered public figure, oldest first: id, name, aliases, linked account."""
    from graph import public_figures as figure_repo
    from graph import users as user_repo

    async def read(db: Any) -> tuple[list[dict], dict[str, str]]:
        _version, figures = await figure_repo.figures_since(db, None)
        figures = figures or []
        ids = [f["userId"] for f in figures if f.get("userId")]
        users = await user_repo.users_by_ids(db, ids) if ids else {}
        return figures, {user_id: user["handle"] for user_id, user in users.items()}

    opened, answer = _on_graph(settings, read)
    if not opened:
        return 1
    figures, handles = answer
    for figure in figures:
        print(_figure_line(figure, handles))
    print(f"{len(figures)} public figure(s)", file=sys.stderr)
    return 0


def policy_figure_remove(settings: Settings, name_or_id: str) -> int:
    """Remove the entry with this id, or whose name reads as this one (case, accents...)."""
    from consent.policy import figure_key
    from graph import audit as audit_repo
    from graph import public_figures as figure_repo

    key = figure_key(name_or_id)

    async def remove(db: Any) -> list[dict]:
        _version, figures = await figure_repo.figures_since(db, None)
        chosen = [f for f in figures or [] if f["id"] == name_or_id or figure_key(f["name"]) == key]
        removed = []
        for figure in chosen:
            gone = await figure_repo.remove_figure(db, figure["id"])
            if gone is not None:
                removed.append(gone)
                await audit_repo.append(
                    db, actor_id=None, action="registry.public_figure.remove", subject=gone["id"]
                )
        return removed

    opened, removed = _on_graph(settings, remove)
    if not opened:
        return 1
    if not removed:
        print(f"reelgraph: no public figure {name_or_id!r}", file=sys.stderr)
        return 1
    for figure in removed:
        print(f"removed public figure {figure['id']} {figure['name']!r}")
    return 0


def policy(settings: Settings, args: argparse.Namespace) -> int:
    """`reelgraph policy public-figure ...`."""
    if args.figure_command == "add":
        return policy_figure_add(settings, args.name, args.alias or [], args.user, args.photo)
    if args.figure_command == "list":
        return policy_figure_list(settings)
    return policy_figure_remove(settings, args.name_or_id)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reelgraph", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "start the API server"),
        ("run", "start the API server and a render worker beside it"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--host")
        cmd.add_argument("--port", type=int)
        cmd.add_argument("--data-dir", dest="data_dir")
        cmd.add_argument(
            "--workers",
            type=int,
            help="API processes on the one port (default: REELGRAPH_API_PROCESSES, which is"
            " one per core up to 4)",
        )
    wk = sub.add_parser("worker", help="start a Celery render worker")
    wk.add_argument("--data-dir", dest="data_dir")
    ex = sub.add_parser("export-schema", help="write the GraphQL schema (SDL)")
    ex.add_argument("path", nargs="?", default="schema.graphql", type=Path)
    el = sub.add_parser("export-lineage", help="write a clip's remix tree (GraphML or JSON)")
    el.add_argument("clip_id", help="the clip's id (raw or a GraphQL Clip ID)")
    el.add_argument("--format", choices=("graphml", "json"), default="graphml")
    el.add_argument("--data-dir", dest="data_dir")
    el.add_argument("--out", type=Path, help="a file to write (default: standard output)")
    sd = sub.add_parser("seed", help="build a synthetic graph (demos, benchmarks)")
    sd.add_argument("--users", type=int, required=True)
    sd.add_argument("--clips", type=int, required=True)
    sd.add_argument("--seed", type=int, default=0, help="the graph's shape is a function of it")
    sd.add_argument("--max-depth", type=int, default=50, help="longest remix chain (0..50)")
    sd.add_argument("--data-dir", dest="data_dir")
    ks = sub.add_parser("keys", help="consent signing keys and cameo KEKs: rotate, rewrap")
    kinds = ks.add_subparsers(dest="keys_command", required=True)
    for name, text in (
        ("list", "the signing keys with their states, and the KEK ids"),
        ("rotate", "publish a new signing key as next; run again to make it sign"),
        ("activate", "make the next signing key sign now"),
        ("retire", "stop a signing key verifying now (its tokens are refused)"),
        ("add-kek", "add a new cameo KEK (development file; or print the ring to deploy)"),
        ("rewrap", "move every cameo's wrapped data key to the current KEK"),
        ("retire-kek", "drop a KEK no cameo key is wrapped under any more"),
    ):
        cmd = kinds.add_parser(name, help=text)
        cmd.add_argument("--data-dir", dest="data_dir")
        if name in ("activate", "retire", "retire-kek"):
            cmd.add_argument("kid", nargs="?" if name == "activate" else None)
        if name == "retire":
            cmd.add_argument("--force", action="store_true", help="even the last signing key")
        if name == "rewrap":
            cmd.add_argument("--limit", type=int, help="stop after this many keys moved")
    from admin_cli import add_parsers as add_admin_parsers

    add_admin_parsers(sub)
    from documents_cli import add_parsers as add_documents_parsers

    add_documents_parsers(sub)
    from verify_cli import add_parser as add_verify_parser

    add_verify_parser(sub)
    pol = sub.add_parser("policy", help="content policy: the public-figure registry")
    rules = pol.add_subparsers(dest="policy_command", required=True)
    figures = rules.add_parser(
        "public-figure", help="people a prompt may not name unless their own cameo is featured"
    )
    actions = figures.add_subparsers(dest="figure_command", required=True)
    add = actions.add_parser("add", help="register a person by name (and aliases)")
    add.add_argument("name")
    add.add_argument("--alias", action="append", help="another name they go by (repeat for more)")
    add.add_argument("--user", help="the handle of their own account (their cameo)")
    add.add_argument(
        "--photo",
        action="append",
        help="a reference photo of them alone (repeat for more): captures of that face are"
        " held for review",
    )
    listed = actions.add_parser("list", help="the registered people")
    remove = actions.add_parser("remove", help="unregister a person")
    remove.add_argument("name_or_id", metavar="NAME_OR_ID")
    for cmd in (add, listed, remove):
        cmd.add_argument("--data-dir", dest="data_dir")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "export-schema":
        return export_schema(args.path)
    settings = _settings(args)
    if args.command == "export-lineage":
        return export_lineage(settings, _raw_clip_id(args.clip_id), args.format, args.out)
    if args.command == "seed":
        return seed(settings, args.users, args.clips, args.seed, args.max_depth)
    if args.command == "keys":
        return keys(settings, args)
    if args.command == "policy":
        return policy(settings, args)
    if args.command == "admin":
        from admin_cli import admin

        return admin(settings, args)
    if args.command == "audit":
        from admin_cli import audit

        return audit(settings, args)
    if args.command == "documents":
        from documents_cli import documents

        return documents(settings, args)
    if args.command == "verify":
        from verify_cli import verify

        return verify(settings, args)
    if args.command == "worker":
        return worker(settings)
    workers = settings.api_processes if args.workers is None else args.workers
    if workers < 1:
        print("reelgraph: --workers must be at least 1", file=sys.stderr)
        return 2
    return serve(
        settings, with_worker=args.command == "run" and settings.with_worker, workers=workers
    )


def main(argv: list[str] | None = None) -> int:
    """Run a command; a start-up problem (startup.explain) is one line on stderr and an exit
    code, never a traceback. Any other exception is a bug and keeps its traceback."""
    from startup import run_command

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = _parser().parse_args(argv)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
