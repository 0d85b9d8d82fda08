"""The `reelgraph` command: serve, worker, run (both), export-schema, export-lineage, seed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from settings import Settings, get_settings

if TYPE_CHECKING:
    import uvicorn
    from litestar import Litestar

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


def _settings_env(settings: Settings) -> dict[str, str]:
    """The environment a child worker needs to reach the same graph, broker and media."""
    env = dict(os.environ)
    env.update(
        {
            "REELGRAPH_GRAPH_URL": settings.graph_url,
            "REELGRAPH_REDIS_URL": settings.redis_url or "",
            "REELGRAPH_DATA_DIR": str(settings.data_dir.resolve()),
        }
    )
    if settings.broker_url:
        env["REELGRAPH_BROKER_URL"] = settings.broker_url
    return env


def api_app() -> Litestar:
    """One API process of `serve --workers N`: uvicorn imports this by name in each process;
    the parent passes the graph, Redis and data folder in the environment."""
    from server import build_app

    return build_app(get_settings())


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
        workers=workers,
        factory=workers > 1,
    )


def serve(settings: Settings, with_worker: bool, workers: int = 1) -> int:
    """Start-up in an order that leaves nothing half-started: settings checked, the port
    taken, the engine started, services opened (a problem is a StartupError), then serve."""
    from graph.embedded import EmbeddedServer
    from server import embedded_urls, resolve_secret
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
        resolve_secret(settings)  # create it before a worker might race for it

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

    from server import Services, build_app
    from startup import quiet_retries

    app = build_app(settings, open_services=False)
    config = _uvicorn_config(settings, app, 1)

    async def run() -> None:
        with quiet_retries():
            app.state.services = await Services.open(settings)
        try:
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
    os.environ.update(_settings_env(settings))
    Multiprocess(_uvicorn_config(settings, "cli:api_app", workers), sockets=[sock]).run()


def _start_worker(settings: Settings) -> subprocess.Popen:
    from graph.embedded import die_with_parent

    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker"],
        env=_settings_env(settings),
        start_new_session=True,  # we stop it in order, after the API
        preexec_fn=die_with_parent,
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
    from graph.embedded import EmbeddedServer
    from server import embedded_urls, resolve_secret
    from startup import UNAVAILABLE, StartupError, check_settings, quiet_retries, reach_servers
    from workers.celery_app import make_celery
    from workers.tasks import register_tasks

    check_settings(settings, api=False, worker=True)
    if settings.is_embedded:
        socket_path = EmbeddedServer.locate(settings.data_dir)
        if socket_path is None:
            raise StartupError(
                f"no server owns {settings.data_dir.resolve()}; start `reelgraph serve`"
                " first, or point the worker at a graph and Redis by URL",
                UNAVAILABLE,
            )
        settings = settings.model_copy(update=embedded_urls(socket_path))
    with quiet_retries():
        asyncio.run(reach_servers(settings))
    app = make_celery(settings)
    register_tasks(app, settings, resolve_secret(settings))
    app.worker_main(
        [
            "worker",
            "--loglevel=INFO",
            f"--concurrency={settings.worker_concurrency}",
            "--pool=prefork",
            "--queues=render,cameos",  # renders, and cameo verifications beside them (celery_app)
            "--without-gossip",
            "--without-mingle",
            f"--hostname=render-{os.getpid()}@%h",
        ]
    )
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
    from server import resolve_secret

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
        media = open_media_store(engine_settings, resolve_secret(engine_settings))
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
            "--workers", type=int, default=1, help="API processes on the one port (default 1)"
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
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "export-schema":
        return export_schema(args.path)
    settings = _settings(args)
    if args.command == "export-lineage":
        return export_lineage(settings, _raw_clip_id(args.clip_id), args.format, args.out)
    if args.command == "seed":
        return seed(settings, args.users, args.clips, args.seed, args.max_depth)
    if args.command == "worker":
        return worker(settings)
    if args.workers < 1:
        print("reelgraph: --workers must be at least 1", file=sys.stderr)
        return 2
    return serve(
        settings, with_worker=args.command == "run" and settings.with_worker, workers=args.workers
    )


def main(argv: list[str] | None = None) -> int:
    """Run a command; a start-up problem (startup.explain) is one line on stderr and an exit
    code, never a traceback. Any other exception is a bug and keeps its traceback."""
    from startup import explain

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except Exception as exc:
        problem = explain(exc)
        if problem is None:
            raise
        print(f"reelgraph: {problem}", file=sys.stderr)
        return problem.exit_code


if __name__ == "__main__":
    sys.exit(main())
