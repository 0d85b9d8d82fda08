"""Shared fixtures: one embedded FalkorDB/Redis server per session, the app on it, users.

Nothing is mocked: the app talks to the real embedded engine, Celery workers are real
processes, videos are real files. REELGRAPH_GRAPH_URL switches the suite to a live Neo4j.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

# before anything imports the driver: every process of the suite records what it ran
TRACE_DIR = Path(tempfile.mkdtemp(prefix="reelgraph-trace-"))
os.environ["REELGRAPH_TRACE_STATEMENTS"] = str(TRACE_DIR)
# every query the suite sends runs through the compiled plan and the interpreter, compared
# (schema/fast_path.py); a difference fails the request
os.environ.setdefault("REELGRAPH_FAST_PATH", "verify")

from consent.keyring import new_signing_document  # noqa: E402
from graph.embedded import EmbeddedServer  # noqa: E402
from server import build_app, embedded_urls  # noqa: E402
from settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LIVE_GRAPH_URL = os.environ.get("REELGRAPH_GRAPH_URL", "embedded:")
_handles = itertools.count()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def embedded(data_dir: Path) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(data_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def settings(embedded: EmbeddedServer, data_dir: Path) -> Settings:
    urls = embedded_urls(embedded.socket_path)
    if not LIVE_GRAPH_URL.startswith("embedded:"):
        urls["graph_url"] = LIVE_GRAPH_URL  # Redis stays embedded; the graph is live Neo4j
    # the in-process test client has no IP address: every suite request shares the unknown
    # address's allowance, so the per-address limits are raised out of the way here;
    # tests/test_rate_limits.py tests them with its own settings
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        secret_key="test-secret-" + "x" * 32,
        media_link_key="test-media-links-" + "y" * 32,  # apart from the token secret
        consent_signing_keys=new_signing_document(),  # as production must be configured
        login_limit_per_address=1_000_000,
        signup_limit_per_address=1_000_000,
        # one user queues more than 3 renders in some tests; tests/test_quotas.py and
        # tests/test_fair_rendering.py test the cap with their own settings
        max_active_renders_per_user=1_000,
        **urls,
    )


def worker_env(settings: Settings, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REELGRAPH_GRAPH_URL=settings.graph_url,
        REELGRAPH_REDIS_URL=settings.redis_url or "",
        REELGRAPH_DATA_DIR=str(settings.data_dir),
        REELGRAPH_SECRET_KEY=settings.secret_key or "",
        REELGRAPH_GRAPH_NAME=settings.graph_name,
    )
    env.update(overrides)
    return env


def api_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """worker_env plus what only API processes hold: the suite's consent signing keys and
    media link key. A `reelgraph serve` on the suite's folder without them would make and
    publish keys of its own, and every later worker would refuse the suite's tokens."""
    return worker_env(
        settings,
        REELGRAPH_CONSENT_SIGNING_KEYS=settings.consent_signing_keys or "",
        REELGRAPH_MEDIA_LINK_KEY=settings.media_link_key or "",
        **overrides,
    )


@dataclass
class Worker:
    proc: subprocess.Popen

    def kill(self) -> None:
        """SIGKILL the worker and its pool children: a crash, not a shutdown."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def run_cli(settings: Settings, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    """The real `reelgraph` command (`python -m cli ARGS --data-dir ...`) in its own process,
    on the suite's data folder while the app serves it. The timeout only ends a hung run."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args, "--data-dir", str(settings.data_dir)],
        cwd=ROOT,
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def start_worker(
    settings: Settings, log: Path, *, withhold: tuple[str, ...] = (), **env: str
) -> Worker:
    """`reelgraph worker` on the suite's engine; `withhold` names variables it must not get."""
    environment = worker_env(settings, **env)
    for variable in withhold:
        environment.pop(variable, None)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker"],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while b"ready." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return Worker(proc)


def purge_render_queue(settings: Settings) -> int:
    """Drop the render tasks waiting in the broker: a module that starts workers calls this
    first, so its workers never work through tasks other modules left queued."""
    from workers.celery_app import make_celery

    celery_app = make_celery(settings)
    try:
        return celery_app.control.purge()
    finally:
        celery_app.close()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = build_app(settings)
    async with AsyncTestClient(app=application) as client:
        yield client


@pytest.fixture(scope="session")
def services(app: Any) -> Any:
    return app.app.state.services


@pytest.fixture(scope="session")
async def graph(settings: Settings) -> AsyncIterator[Any]:
    """A driver on the tests' own event loop (the app's runs in the test client's thread)."""
    from graph.driver import driver_for

    driver = driver_for(settings)
    yield driver
    await driver.close()


@dataclass
class Account:
    id: str
    handle: str
    token: str
    refresh_token: str
    password: str = "correct horse battery"


class GraphQLClient:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def raw(
        self, query: str, variables: dict | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code in (200, 400), response.text
        return response.json()

    async def ok(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        body = await self.raw(query, variables, token)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    async def error(
        self, query: str, variables: dict | None = None, token: str | None = None
    ) -> tuple[str, str]:
        """(code, message) of the single error the operation must fail with."""
        body = await self.raw(query, variables, token)
        assert body.get("errors"), body
        error = body["errors"][0]
        return error["extensions"]["code"], error["message"]

    async def wait_clip(
        self, query: str, token: str, clip_id: str, states: set[str], within_s: float = 90
    ) -> dict:
        """The clip (as `query` selects it) once its state is one of `states`; within_s only
        bounds a stuck test, it is no measure of speed."""
        deadline = time.monotonic() + within_s
        while True:
            clip = (await self.ok(query, {"id": clip_id}, token))["clip"]
            if clip["state"] in states:
                return clip
            assert time.monotonic() < deadline, f"clip stuck in {clip['state']}"
            await asyncio.sleep(0.05)

    async def sign_up(self, prefix: str = "user", display_name: str = "Test User") -> Account:
        handle = f"{prefix[:12]}_{secrets.token_hex(3)}_{next(_handles)}"
        data = await self.ok(
            """mutation($input: SignUpInput!) { signUp(input: $input) {
                accessToken refreshToken user { id handle } } }""",
            {
                "input": {
                    "handle": handle,
                    "displayName": display_name,
                    "password": Account.password,
                }
            },
        )
        payload = data["signUp"]
        return Account(
            id=payload["user"]["id"],
            handle=payload["user"]["handle"],
            token=payload["accessToken"],
            refresh_token=payload["refreshToken"],
        )


@pytest.fixture(scope="session")
def gql(app: Any) -> GraphQLClient:
    return GraphQLClient(app)


class LogRecords(logging.Handler):
    """Every record a logger it is added to emits (tests add it to the app's own loggers:
    the app reconfigures the root one)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serving_on_a_port(settings: Settings) -> AsyncIterator[int]:
    """The app on a real uvicorn server in this event loop; yields its port. For tests that
    need a real socket: the test client reads a request body whole before the app sees it."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not (server.started or task.done()):
        assert time.monotonic() < deadline, "the server did not start"
        await asyncio.sleep(0.02)
    if task.done():
        task.result()
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def rendered_clip(
    graph: Any,
    author_id: str,
    at: int,
    *,
    parent_id: str | None = None,
    moods: list[str] | None = None,
    prompt: str = "a test clip",
    publish: bool = False,
) -> str:
    """A clip rendered (and, when asked, published) at a fixed time through the repository:
    no worker, no file. Takes and returns raw ids."""
    from ulid import ULID

    from graph import clips as clip_repo

    clip_id = str(ULID())
    params = {
        "authorId": author_id,
        "id": clip_id,
        "prompt": prompt,
        "moods": moods or [],
        "durationS": 1,
        "seed": 1,
        "now": at,
        "parentId": parent_id,
    }
    assert await clip_repo.create_clip(graph, params)
    assert await clip_repo.claim_render(graph, clip_id, "test-owner", at, at + 60_000)
    video = {
        "key": f"clips/{clip_id}.mp4",
        "sha256": "0" * 64,
        "durationMs": 1000,
        "width": 64,
        "height": 64,
        "fps": 8.0,
        "hasAudio": False,
        "sizeBytes": 1,
        "mimeType": "video/mp4",
    }
    assert await clip_repo.finish_render(graph, clip_id, "test-owner", 1, video, at)
    if publish:
        assert await clip_repo.publish(graph, author_id, clip_id, at)
    return clip_id


REFERENCE_FACE = ROOT / "tests" / "data" / "faces" / "astronaut_face.jpg"


async def active_cameo(
    graph: Any, media: Any, owner_raw_id: str, *, audience: str = "EVERYONE", kek: Any = None
) -> str:
    """An ACTIVE cameo of the owner (raw id) with encrypted reference frames in the media
    store, made through the repository as a passed capture would, without a worker. The KEK
    defaults to the one under the media store's data folder (what the app and workers load
    from the test settings). Returns the cameo's raw id."""
    from ulid import ULID

    from consent.envelope import load_kek
    from consent.references import seal_reference_frames
    from graph import cameos as cameo_repo

    if kek is None:
        kek = load_kek(Settings(_env_file=None, data_dir=media.root.parent))
    now = int(time.time() * 1000)
    cameo = await cameo_repo.ensure_cameo(graph, owner_raw_id, str(ULID()), now)
    assert cameo is not None, "no such owner"
    capture_id = str(ULID())
    assert await cameo_repo.accept_capture(graph, owner_raw_id, cameo["id"], capture_id, now)
    frame = REFERENCE_FACE.read_bytes()
    wrapped, keys = seal_reference_frames(media, kek, cameo["id"], [frame, frame])
    activated = await cameo_repo.activate_capture(
        graph,
        cameo["id"],
        capture_id,
        wrapped_key=wrapped,
        kek_id=kek.kid,
        ref_keys=keys,
        now=now,
    )
    assert activated is not None
    assert await cameo_repo.set_audience(graph, owner_raw_id, audience)
    return cameo["id"]


def raw(account: Account) -> str:
    """The account's raw User id (its global id decoded)."""
    from resolvers.ids import decode_id

    return decode_id(account.id, "User")


async def cameo_of(graph: Any, services: Any, account: Account, audience: str = "EVERYONE") -> str:
    """The global id of a new ACTIVE cameo of the account (see active_cameo)."""
    from resolvers.ids import encode_id

    cameo_id = await active_cameo(graph, services.media, raw(account), audience=audience)
    return encode_id("Cameo", cameo_id)


@pytest.fixture
def sync_redis(settings: Settings) -> Iterator[Any]:
    """A blocking client of the suite's Redis, replies decoded."""
    import redis

    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    client.close()
