"""Builds the Litestar app from settings and wires the parts: graph, Redis, queue, media."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import redis.asyncio as aredis
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.response import Response

from auth.tokens import TokenService
from consent.keyring import SigningKeyring
from consent.well_known import reelgraph_keys
from events.bus import close_hub
from graph.driver import GraphDriver, GraphUnavailable, driver_for
from graph.embedded import EmbeddedServer
from graph.schema_setup import backfill as backfill_graph
from media.exports import exports
from media.http import media, provenance_verify
from media.store import MediaStore, open_media_store
from schema import build_schema
from settings import Settings, get_settings
from startup import StartupError, reaching
from transport.graphql import graphql_controller
from transport.uploads import cameo_capture_upload
from urls import unix_socket_url
from workers.celery_app import make_celery
from workers.queue import RenderQueue

__all__ = [
    "GC_THRESHOLDS",
    "Services",
    "build_app",
    "resolve_media_key",
    "resolve_secret",
    "settle_gc",
]

logger = logging.getLogger("reelgraph")


MIN_SECRET_LENGTH = 32

# the collector's thresholds in a serving process (gc.set_threshold; Python's are 700, 10, 10),
# measured with benchmarks/gc_fanout.py (3,000 sockets, 10 fan-out rounds, one API process):
# with Python's, even after gc.freeze(), a round allocates enough to cascade into a full
# collection every round or so (12 in the run, up to 586 ms each, p99 744 ms); a young
# generation of 10,000 makes rounds collect 15 times less often (p99 161-191 ms), and a third
# threshold of 100 keeps the full collections, which walk every socket, out of the rounds
GC_THRESHOLDS = (10_000, 10, 100)


def settle_gc() -> None:
    """Once per API process, after start-up (imports, the schema, the services) and before
    it serves: what is alive then lives as long as the process, so gc.freeze() takes it out
    of every later collection's scan, and the thresholds (GC_THRESHOLDS) make collections
    rarer. A process holding thousands of long-lived sockets otherwise walks them all in each
    full collection, stalling every request and fan-out round of that moment."""
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def resolve_secret(settings: Settings) -> str:
    """The access-token signing secret: from settings, or generated once and kept under the
    data folder. API processes only: workers never load it."""
    return _resolve_key(settings, settings.secret_key, "secret.key", "REELGRAPH_SECRET_KEY")


def resolve_media_key(settings: Settings) -> str:
    """The key that signs /media links (media/store.py), apart from the access-token secret:
    from settings, or generated once and kept under the data folder. API processes only."""
    return _resolve_key(
        settings, settings.media_link_key, "media-link.key", "REELGRAPH_MEDIA_LINK_KEY"
    )


def _resolve_key(settings: Settings, given: str | None, filename: str, variable: str) -> str:
    if given:
        secret = given
    elif settings.environment == "production":
        raise RuntimeError(f"set {variable} in production (every replica needs the same)")
    else:
        path = settings.data_dir / filename
        if not path.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            # written whole beside it, then linked into place: never an empty or partial key
            fd, tmp = tempfile.mkstemp(dir=settings.data_dir, prefix=".secret-")
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another process won the race
                os.link(tmp, path)
            os.unlink(tmp)
        secret = path.read_text().strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise RuntimeError(f"{variable} must be at least {MIN_SECRET_LENGTH} characters")
    return secret


def embedded_urls(socket_path: Path) -> dict[str, str]:
    """Settings that point at an embedded server's socket (graph and Redis are one server)."""
    return {
        "graph_url": unix_socket_url(socket_path, scheme="falkor+unix"),
        "redis_url": unix_socket_url(socket_path),
    }


@dataclass
class Services:
    """Everything a request may touch; built once per process."""

    settings: Settings
    graph: GraphDriver
    redis: aredis.Redis
    tokens: TokenService
    media: MediaStore
    render_queue: RenderQueue
    secret: str  # signs access tokens
    media_key: str  # signs /media links
    embedded: EmbeddedServer | None = None

    @cached_property
    def consent_keys(self) -> SigningKeyring:
        """Signs render and approval tokens (consent/keyring.py); workers never load it."""
        return SigningKeyring.load(self.settings)

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        embedded = None
        if settings.is_embedded:
            embedded = EmbeddedServer(settings.data_dir)
            embedded.start()
            settings = settings.model_copy(update=embedded_urls(embedded.socket_path))
        async with contextlib.AsyncExitStack() as cleanup:
            if embedded is not None:
                cleanup.callback(embedded.stop)
            if not settings.redis_url:
                raise StartupError("REELGRAPH_REDIS_URL is required with a non-embedded graph")
            secret = resolve_secret(settings)
            media_key = resolve_media_key(settings)
            # a graph or Redis that cannot be reached is named (a StartupError), after the
            # drivers' own bounded retries
            with reaching("REELGRAPH_GRAPH_URL", settings.graph_url):
                graph = driver_for(settings)
                cleanup.push_async_callback(graph.close)
                await graph.ensure_schema()
                await backfill_graph(graph)  # data written by older versions
            # a burst (hundreds of sockets opening at once) waits for a free connection
            # instead of failing with "Too many connections"
            pool = aredis.BlockingConnectionPool.from_url(
                settings.redis_url,
                decode_responses=True,
                max_connections=settings.redis_max_connections,
                timeout=settings.redis_pool_timeout_s,
            )
            redis = aredis.Redis(connection_pool=pool)
            cleanup.push_async_callback(redis.aclose)
            with reaching("REELGRAPH_REDIS_URL", settings.redis_url):
                async with asyncio.timeout(settings.redis_pool_timeout_s):
                    await redis.ping()
            services = cls(
                settings=settings,
                graph=graph,
                redis=redis,
                tokens=TokenService(
                    redis, secret, settings.access_token_ttl_s, settings.refresh_token_ttl_s
                ),
                media=open_media_store(settings, media_key),
                render_queue=RenderQueue(make_celery(settings)),
                secret=secret,
                media_key=media_key,
                embedded=embedded,
            )
            services.consent_keys  # noqa: B018 - loads (or creates) the keys and publishes
            # the public ones for workers before any render is queued
            cleanup.pop_all()  # opened: close() owns them now
        return services

    async def close(self) -> None:
        try:
            await close_hub(self.redis)  # live subscriptions' pub/sub connection
            await self.graph.close()
            await self.redis.aclose()
            self.render_queue.close()
        finally:
            if self.embedded is not None:
                self.embedded.stop()


@get("/health")
async def health(state: State) -> Response[dict[str, Any]]:
    services: Services = state.services
    checks = {}
    for name, probe in (("graph", services.graph.ping), ("redis", services.redis.ping)):
        try:
            await probe()
            checks[name] = "ok"
        except (GraphUnavailable, OSError, aredis.RedisError) as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return Response(
        {"status": "ok" if healthy else "unavailable", **checks},
        status_code=200 if healthy else 503,
    )


def build_app(
    settings: Settings | None = None, *, open_services: bool = True, serving: bool = False
) -> Litestar:
    """The app: it opens its services at start-up and closes them at shutdown. With
    open_services=False the caller does both, setting `app.state.services` before serving
    (the CLI: a problem is said before uvicorn starts, and nothing is left half-open). With
    serving (an API process of `reelgraph serve`), its start-up ends with settle_gc()."""
    settings = settings or get_settings()
    production = settings.environment == "production"
    schema = build_schema(
        mask_errors=production,
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_fields=settings.max_fields,
        max_same_name_fields=settings.max_same_name_fields,
        document_cache_size=settings.document_cache_size,
        introspection=settings.introspection or ("signed-in" if production else "on"),
        fast_path=settings.fast_path,
    )
    GraphQLController = graphql_controller(schema, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        services = await Services.open(settings)
        app.state.services = services
        if serving:
            settle_gc()
        try:
            yield
        finally:
            await services.close()

    return Litestar(
        route_handlers=[
            GraphQLController,
            health,
            media,
            exports,
            reelgraph_keys,
            cameo_capture_upload,
            provenance_verify,
        ],
        lifespan=[lifespan] if open_services else [],
        request_max_body_size=settings.max_request_bytes,  # the websocket frame limit too
        debug=False,
    )
