"""Start-up problems a person can fix, each said in one sentence.

`reelgraph serve`, `run` and `worker` check their settings before anything starts
(check_settings), take their port before opening anything (listen), and name the server they
could not reach (reaching). Each problem leaves as StartupError; cli.main prints it as
`reelgraph: <sentence>` and exits with its code: CONFIG (2) for settings to fix, UNAVAILABLE
(1) for a server that cannot be reached or a port or data folder in use. explain() is the one
place other known exceptions become sentences; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from graph.driver import GraphUnavailable
from urls import FALKOR_SCHEMES, REDIS_SCHEMES, UrlError, check_redis_url, redis_url_for_falkor

if TYPE_CHECKING:
    from pydantic import ValidationError

    from settings import Settings

__all__ = [
    "CONFIG",
    "UNAVAILABLE",
    "StartupError",
    "check_settings",
    "explain",
    "invalid_settings",
    "listen",
    "quiet_retries",
    "reach_servers",
    "reaching",
]

CONFIG = 2  # settings to fix
UNAVAILABLE = 1  # a server that cannot be reached, a port or data folder in use

NEO4J_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
GRAPH_SCHEMES = (*NEO4J_SCHEMES, *FALKOR_SCHEMES, "redis", "unix")  # what open_driver opens
_GRAPH_HINT = (
    "use embedded:, bolt://user:password@host:7687, neo4j://, neo4j+s://, falkor://host:port "
    "or falkor+unix:///path/to/socket"
)
_REDIS_HINT = "use redis://host:port, rediss://host:port or unix:///path/to/socket"
_UNREACHABLE = (GraphUnavailable, RedisConnectionError, RedisTimeoutError, OSError)


class StartupError(RuntimeError):
    """A start-up problem said in one sentence; exit_code is CONFIG or UNAVAILABLE."""

    def __init__(self, sentence: str, exit_code: int = CONFIG) -> None:
        super().__init__(sentence)
        self.exit_code = exit_code


def check_settings(settings: Settings, *, api: bool, worker: bool) -> None:
    """What can be known wrong before anything starts: URLs, and the keys production needs
    (api: this process serves the API; worker: it runs, or starts, a render worker)."""
    _check_graph_url(settings.graph_url)
    if settings.redis_url:
        _check(check_redis_url, "REELGRAPH_REDIS_URL", settings.redis_url)
    elif not settings.is_embedded:
        raise StartupError(
            "REELGRAPH_REDIS_URL is required with a graph server: only the embedded graph "
            "(REELGRAPH_GRAPH_URL=embedded:) brings its own Redis"
        )
    if settings.broker_url:
        _check_broker_url(settings.broker_url)
    _check_keys(settings, api=api, worker=worker)
    _check_provenance(settings, api=api)


def _check_provenance(settings: Settings, *, api: bool) -> None:
    """Production API processes sign published clips with the operator's chain."""
    from provenance.certs import ProvenanceUnavailable, check_signing_settings

    try:
        check_signing_settings(settings, api=api)
    except ProvenanceUnavailable as exc:
        raise StartupError(str(exc)) from None


def _check(check: Callable[[str], object], variable: str, value: str) -> None:
    try:
        check(value)
    except (UrlError, ValueError) as exc:
        raise StartupError(f"in {variable}, {exc}") from None


def _check_graph_url(url: str) -> None:
    if url.startswith("embedded:"):
        return
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in GRAPH_SCHEMES:
        raise StartupError(
            f"in REELGRAPH_GRAPH_URL, {redact(url)} is not a graph URL: {_GRAPH_HINT}"
        )
    if scheme in NEO4J_SCHEMES:
        try:
            urlsplit(url).port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            raise StartupError(f"in REELGRAPH_GRAPH_URL, {redact(url)} has no valid port") from None
    elif scheme in ("falkor+unix", "unix") and not rest.startswith("/"):
        raise StartupError(
            f"in REELGRAPH_GRAPH_URL, {redact(url)} names no absolute socket path: write "
            f"{scheme}:///path/to/socket (three slashes)"
        )
    else:
        _check(redis_url_for_falkor, "REELGRAPH_GRAPH_URL", url)


def _check_broker_url(url: str) -> None:
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in (*REDIS_SCHEMES, *FALKOR_SCHEMES):
        _check(
            check_redis_url,
            "REELGRAPH_BROKER_URL",
            f"{FALKOR_SCHEMES.get(scheme, scheme)}://{rest}",
        )
        return
    from kombu.transport import resolve_transport

    try:
        if not sep:
            raise KeyError(scheme)
        resolve_transport(scheme.partition("+")[0])  # kombu's own: amqp://, sqs://, ...
    except (KeyError, ImportError):
        raise StartupError(
            f"in REELGRAPH_BROKER_URL, {redact(url)} names no Celery broker: {_REDIS_HINT}"
        ) from None


def _check_keys(settings: Settings, *, api: bool, worker: bool) -> None:
    from consent.envelope import load_kek_ring, parse_kek, parse_kek_ring
    from consent.keyring import KeyringError, VerifyingKeyring, public_document
    from server import MIN_SECRET_LENGTH

    production = settings.environment == "production"
    # workers hold neither: they store files and verify consent, but sign nothing
    if api and production and not settings.secret_key:
        raise StartupError(
            "REELGRAPH_SECRET_KEY is required in production: set the same long random value "
            "on every API replica (openssl rand -base64 48)"
        )
    if api and production and not settings.media_link_key:
        raise StartupError(
            "REELGRAPH_MEDIA_LINK_KEY is required in production: every API replica signs "
            "/media links with the same key, apart from REELGRAPH_SECRET_KEY "
            "(openssl rand -base64 48)"
        )
    for variable, value in (
        ("REELGRAPH_SECRET_KEY", settings.secret_key),
        ("REELGRAPH_MEDIA_LINK_KEY", settings.media_link_key),
    ):
        if value and len(value) < MIN_SECRET_LENGTH:
            raise StartupError(f"{variable} must be at least {MIN_SECRET_LENGTH} characters")
    if api and production and not settings.consent_signing_keys:
        raise StartupError(
            "REELGRAPH_CONSENT_SIGNING_KEYS is required in production: every API replica signs "
            "consent tokens with the same keys (the README's Consent tokens says how to make them)"
        )
    if worker and production and not (settings.cameo_kek or settings.cameo_keks):
        raise StartupError(
            "REELGRAPH_CAMEO_KEK (or a ring, REELGRAPH_CAMEO_KEKS) is required in production: "
            "render workers unwrap cameo reference media with it (base64 of 32 random bytes: "
            "openssl rand -base64 32)"
        )
    checks = (
        ("REELGRAPH_CONSENT_SIGNING_KEYS", settings.consent_signing_keys, public_document),
        (
            "REELGRAPH_CONSENT_PUBLIC_KEYS",
            settings.consent_public_keys,
            lambda text: VerifyingKeyring.from_document(json.loads(text)),
        ),
        ("REELGRAPH_CAMEO_KEKS", settings.cameo_keks, parse_kek_ring),
        ("REELGRAPH_CAMEO_KEK", settings.cameo_kek, parse_kek),
        (
            # the current id must name a key of the ring (checked once the ring is set)
            "REELGRAPH_CAMEO_KEK_CURRENT",
            settings.cameo_kek_current if settings.cameo_keks or settings.cameo_kek else None,
            lambda _text: load_kek_ring(settings),
        ),
    )
    for variable, value, parse in checks:
        if value:
            try:
                parse(value)
            except (KeyringError, ValueError) as exc:
                raise StartupError(f"{variable} cannot be used: {_one_line(exc)}") from None


def listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound before anything else starts (uvicorn binds only
    after the app's start-up: a port in use would be found with everything open)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        raise _bind_problem(host, port, exc) from None
    sock.set_inheritable(True)  # uvicorn's worker processes accept on it too
    return sock


def _bind_problem(host: str, port: int, exc: Exception) -> StartupError:
    code = getattr(exc, "errno", None)
    if isinstance(exc, OverflowError):
        return StartupError(f"port {port} is not a port number: pass --port 0..65535")
    if code == errno.EADDRINUSE:
        return StartupError(
            f"port {port} on {host} is in use: stop what holds it or pass --port", UNAVAILABLE
        )
    if code == errno.EACCES:
        return StartupError(f"port {port} on {host} needs privileges: pass --port above 1023")
    if code == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return StartupError(
            f"{host} is not an address of this machine: pass --host, e.g. 127.0.0.1"
        )
    return StartupError(f"cannot listen on port {port} of {host}: {_reason(exc)}", UNAVAILABLE)


# what a worker never gets: keys that sign access tokens, media links and consent tokens (a
# worker verifies consent with public keys only)
WORKER_WITHHELD = (
    "REELGRAPH_SECRET_KEY",
    "REELGRAPH_MEDIA_LINK_KEY",
    "REELGRAPH_CONSENT_SIGNING_KEYS",
)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment a child worker process gets: this one's, pointed at the same graph,
    broker and data folder, without the signing keys (WORKER_WITHHELD)."""
    env = {k: v for k, v in os.environ.items() if k not in WORKER_WITHHELD}
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


def worker_settings(settings: Settings) -> Settings:
    """What a worker runs with: its settings checked, pointed at the embedded server that owns
    the data folder when no URLs are given, and the graph, Redis and broker reached. A
    StartupError names what is wrong."""
    from graph.embedded import EmbeddedServer
    from server import embedded_urls

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
    return settings


def run_command(command: Callable[[], int]) -> int:
    """A command's exit code: a known start-up problem is printed as one `reelgraph: ...`
    line with its code, never a traceback; any other exception is a bug and keeps its
    traceback."""
    try:
        return command()
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except Exception as exc:
        problem = explain(exc)
        if problem is None:
            raise
        print(f"reelgraph: {problem}", file=sys.stderr)
        return problem.exit_code


@contextlib.contextmanager
def reaching(variable: str, url: str) -> Iterator[None]:
    """Inside, failing to reach the server `url` names leaves as a StartupError naming it."""
    try:
        yield
    except StartupError:
        raise
    except _UNREACHABLE as exc:
        raise _unreachable(variable, url, exc) from exc
    except ResponseError as exc:
        if "unknown command" not in str(exc).lower():
            raise
        raise StartupError(
            f"the server at {address(url)} ({variable}) is a Redis without FalkorDB: point "
            "REELGRAPH_GRAPH_URL at a FalkorDB server"
        ) from exc


async def reach_servers(settings: Settings) -> None:
    """Ping the graph, Redis and (a Redis) broker once, each bounded by its timeouts: a
    worker says which one it cannot reach instead of starting and failing every task."""
    import redis.asyncio as aredis

    from graph.driver import driver_for

    with reaching("REELGRAPH_GRAPH_URL", settings.graph_url):
        graph = driver_for(settings)
        try:
            await graph.ping()
        finally:
            await graph.close()
    servers = [("REELGRAPH_REDIS_URL", settings.redis_url)]
    if settings.broker_url and settings.broker_url.partition("://")[0].lower() in REDIS_SCHEMES:
        servers.append(("REELGRAPH_BROKER_URL", settings.broker_url))
    for variable, url in servers:
        if not url:
            continue
        client = aredis.Redis.from_url(
            url,
            socket_connect_timeout=settings.graph_connection_timeout_s,
            socket_timeout=settings.redis_pool_timeout_s,
        )
        with reaching(variable, url):
            try:
                async with asyncio.timeout(settings.redis_pool_timeout_s):
                    await client.ping()
            finally:
                await client.aclose()


def _unreachable(variable: str, url: str, exc: BaseException) -> StartupError:
    server = f"the {_engine(variable, url)} server at {address(url)}"
    causes = list(_chain(exc))
    from neo4j.exceptions import AuthError, ClientError, Forbidden

    if any(isinstance(c, AuthError | Forbidden | AuthenticationError) for c in causes):
        return StartupError(f"{server} refused the user and password in {variable}")
    if any(isinstance(c, ClientError) and "DatabaseNotFound" in (c.code or "") for c in causes):
        return StartupError(f"{server} has no such database: check REELGRAPH_NEO4J_DATABASE")
    return StartupError(f"cannot reach {server} ({variable}): {_reason(exc)}", UNAVAILABLE)


def _engine(variable: str, url: str) -> str:
    scheme = url.partition("://")[0].lower()
    if scheme in NEO4J_SCHEMES:
        return "Neo4j"
    return "FalkorDB" if variable == "REELGRAPH_GRAPH_URL" else "Redis"


def address(url: str) -> str:
    """Where a URL points (host:port, or a socket path), never its password."""
    parts = urlsplit(url)
    if parts.scheme.endswith("unix") or parts.scheme.endswith("socket"):
        return unquote(parts.path)
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    with contextlib.suppress(ValueError):
        if parts.port:
            return f"{host}:{parts.port}"
    return host


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _reason(exc: BaseException) -> str:
    """Why, in a few words: the operating system's reason when there is one."""
    for cause in _chain(exc):
        if isinstance(cause, TimeoutError | RedisTimeoutError | socket.timeout):
            return "no answer in time"
        if isinstance(cause, OSError) and cause.errno:
            text = os.strerror(cause.errno) if cause.errno > 0 else (cause.strerror or "")
            if text and not text.startswith("Unknown error"):
                return text[0].lower() + text[1:]
            if cause.strerror:
                return cause.strerror[0].lower() + cause.strerror[1:]
    return _one_line(exc)


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact(url: str) -> str:
    """The URL for a message: quoted, with any password hidden."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{host}{slash}{path}"
    return repr(url)


@contextlib.contextmanager
def quiet_retries() -> Iterator[None]:
    """While start-up waits on a graph, the driver's retry warnings stay quiet: the outcome is
    said once, as a StartupError or by serving."""
    logger = logging.getLogger("neo4j")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def explain(exc: BaseException) -> StartupError | None:
    """The StartupError an exception stands for (an exception group: when every exception in
    it has one, the first), or None: an unexpected exception, a bug."""
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found = [explain(inner) for inner in exc.exceptions]
        return found[0] if found and all(found) else None
    from consent.keyring import KeyringError
    from graph.embedded import DataDirInUse

    if isinstance(exc, DataDirInUse):
        return StartupError(str(exc), UNAVAILABLE)
    if isinstance(exc, UrlError):
        return StartupError(str(exc))
    if isinstance(exc, KeyringError):
        return StartupError(f"the consent keys cannot be used: {_one_line(exc)}")
    return None


def invalid_settings(exc: ValidationError) -> StartupError:
    """The sentence for settings the environment (or .env) spells wrong."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return StartupError(f"REELGRAPH_{field.upper()} is not valid: {first['msg']}{more}")
