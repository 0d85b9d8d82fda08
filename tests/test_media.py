"""/media serves players: byte ranges, HEAD, ETag and If-None-Match, private caching, the
visibility check at fetch time, and ffmpeg (PyAV) seeking through a signed link over HTTP
against a real `reelgraph serve` process. Also the local store's keys() and delete()."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import av
import httpx
import pytest
from conftest import (
    ROOT,
    Account,
    GraphQLClient,
    api_env,
    free_port,
    purge_render_queue,
    start_worker,
)

from media.ranges import ByteRange, parse_range
from media.store import LocalMediaStore, clip_video_key, sign_media_path
from resolvers.ids import decode_id

CREATE = "mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"
CLIP = """query($id: ID!) { clip(id: $id) { id state failureReason
  video { url sha256 } } }"""
DELETE = "mutation($id: ID!) { deleteClip(clipId: $id) { id state } }"


async def wait_state(
    gql: GraphQLClient, token: str, clip_id: str, states: set[str], within_s: float = 90
) -> dict:
    return await gql.wait_clip(CLIP, token, clip_id, states, within_s)


@dataclass
class Draft:
    author: Account
    clip_id: str
    url: str  # the author's signed link, as the API handed it out
    key: str
    data: bytes  # the stored file
    sha256: str

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'


@pytest.fixture(scope="module")
def worker(settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    purge_render_queue(settings)  # never wait behind tasks other modules left queued
    w = start_worker(settings, tmp_path_factory.mktemp("media-worker") / "worker.log")
    yield
    w.stop()


async def render_draft(gql: GraphQLClient, settings, prompt: str) -> Draft:
    author = await gql.sign_up("media")
    created = (await gql.ok(CREATE, {"input": {"prompt": prompt}}, author.token))["createClip"]
    clip = await wait_state(gql, author.token, created["id"], {"DRAFT", "FAILED"})
    assert clip["state"] == "DRAFT", clip["failureReason"]
    url = clip["video"]["url"]
    key = urlsplit(url).path.removeprefix("/media/")
    data = (settings.media_dir / key).read_bytes()
    return Draft(author, created["id"], url, key, data, clip["video"]["sha256"])


@pytest.fixture(scope="module")
async def draft(gql: GraphQLClient, settings, worker) -> Draft:
    return await render_draft(gql, settings, "a lighthouse in a storm")


def assert_private_until_expiry(response: httpx.Response, url: str) -> None:
    expires = int(parse_qs(urlsplit(url).query)["exp"][0])
    match = re.fullmatch(r"private, max-age=(\d+)", response.headers["cache-control"])
    assert match, response.headers["cache-control"]  # never public: the link is one viewer's
    # the server counted from its own clock a moment ago: at least what is left now,
    # never more than a link's whole life
    assert max(expires - int(time.time()), 0) <= int(match.group(1)) <= 3600


async def test_a_whole_file_answer_says_ranges_are_accepted(gql: GraphQLClient, draft) -> None:
    response = await gql.client.get(draft.url)
    assert response.status_code == 200 and response.content == draft.data
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["content-length"] == str(len(draft.data))
    assert response.headers["etag"] == draft.etag
    assert "content-range" not in response.headers
    assert_private_until_expiry(response, draft.url)


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, None),  # open-ended
        ("bytes=-50", -50, None),  # suffix: the last 50 bytes
        ("bytes=10-10", 10, 10),
        ("bytes=200-999999999", 200, None),  # an end past the file is clamped
        ("bytes=-999999999", 0, None),  # a suffix longer than the file is the whole file
        ("BYTES = 5-9", 5, 9),  # the unit is case-insensitive
    ],
)
async def test_a_single_range_gets_206_with_its_bytes(
    gql: GraphQLClient, draft, header: str, start: int, end: int | None
) -> None:
    size = len(draft.data)
    response = await gql.client.get(draft.url, headers={"Range": header})
    assert response.status_code == 206, response.text
    first = start % size if start < 0 else start
    last = size - 1 if end is None else end
    assert response.content == draft.data[first : last + 1]
    assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == draft.etag
    assert response.headers["content-type"] == "video/mp4"
    assert_private_until_expiry(response, draft.url)


@pytest.mark.parametrize("header", ["bytes={size}-", "bytes={size}-{size}", "bytes=-0"])
async def test_a_range_past_the_end_gets_416(gql: GraphQLClient, draft, header: str) -> None:
    size = len(draft.data)
    response = await gql.client.get(draft.url, headers={"Range": header.format(size=size)})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == "no-store"
    assert "past the end" in response.json()["detail"]


@pytest.mark.parametrize(
    "header",
    [
        "bytes=9-2",  # last before first: invalid, so ignored
        "bytes=abc",
        "bytes=",
        "bytes=-",
        "bytes 0-10",
        "items=0-10",  # a unit we do not serve
        "bytes=0-1,5-6",  # several ranges: answered with the whole file (our choice)
        "bytes=0-" + "9" * 5000,  # more digits than int() may read cheaply: malformed
    ],
)
async def test_a_malformed_or_multi_range_is_ignored(
    gql: GraphQLClient, draft, header: str
) -> None:
    response = await gql.client.get(draft.url, headers={"Range": header})
    assert response.status_code == 200 and response.content == draft.data
    assert "content-range" not in response.headers


def test_only_ascii_digits_make_a_range() -> None:
    assert parse_range("bytes=\u0663-\u0665", 100) is None  # Arabic-Indic digits
    assert parse_range("bytes=3-5", 100) == ByteRange(3, 5)


async def test_head_answers_the_same_headers_without_a_body(gql: GraphQLClient, draft) -> None:
    get = await gql.client.get(draft.url)
    head = await gql.client.head(draft.url)
    assert head.status_code == 200 and head.content == b""
    for name in ("accept-ranges", "content-type", "content-length", "etag", "cache-control"):
        assert head.headers[name] == get.headers[name], name
    # Range is defined for GET only (RFC 9110 14.2): HEAD describes the whole file
    ranged = await gql.client.head(draft.url, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 200 and ranged.headers["content-length"] == str(len(draft.data))
    missing = await gql.client.head(draft.url.replace("sig=", "sig=0"))
    assert missing.status_code == 404 and missing.content == b""
    assert missing.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_matching_if_none_match_gets_304(gql: GraphQLClient, draft, method: str) -> None:
    for tag in (draft.etag, f"W/{draft.etag}", f'"other", {draft.etag}', "*"):
        response = await gql.client.request(method, draft.url, headers={"If-None-Match": tag})
        assert response.status_code == 304, tag
        assert response.content == b""
        assert response.headers["etag"] == draft.etag
        assert response.headers["accept-ranges"] == "bytes"
        assert_private_until_expiry(response, draft.url)
    # If-None-Match wins over Range (RFC 9110 13.2.2)
    conditional = {"If-None-Match": draft.etag, "Range": "bytes=0-1"}
    both = await gql.client.get(draft.url, headers=conditional)
    assert both.status_code == 304
    other = await gql.client.request(method, draft.url, headers={"If-None-Match": '"other"'})
    assert other.status_code == 200


async def test_if_range_serves_the_range_only_for_this_file(gql: GraphQLClient, draft) -> None:
    same = await gql.client.get(draft.url, headers={"Range": "bytes=0-9", "If-Range": draft.etag})
    assert same.status_code == 206 and same.content == draft.data[:10]
    for other in ('"another-version"', f"W/{draft.etag}", "Sat, 28 Nov 2026 12:00:00 GMT"):
        headers = {"Range": "bytes=0-9", "If-Range": other}
        response = await gql.client.get(draft.url, headers=headers)
        assert response.status_code == 200 and response.content == draft.data, other


async def test_a_bad_or_expired_link_is_a_404_nobody_caches(
    gql: GraphQLClient, draft, settings
) -> None:
    viewer = decode_id(draft.author.id, "User")
    expired = sign_media_path(settings.media_link_key, draft.key, viewer, ttl_s=-5)
    valid = sign_media_path(settings.media_link_key, draft.key, viewer, ttl_s=60)
    assert (await gql.client.get(valid)).status_code == 200  # signed the same way
    for url in (
        expired,
        draft.url.replace("sig=", "sig=0"),
        draft.url.replace(draft.key, clip_video_key("0" * 26, "a" * 64)),
    ):
        response = await gql.client.get(url, headers={"Range": "bytes=0-9"})
        assert response.status_code == 404
        assert response.headers["cache-control"] == "no-store"
        assert response.json()["detail"] == "no such video, or the link has expired"


async def test_a_link_stops_serving_when_the_clip_is_removed(
    gql: GraphQLClient, settings, worker
) -> None:
    removed = await render_draft(gql, settings, "gone soon")
    assert (await gql.client.get(removed.url, headers={"Range": "bytes=0-9"})).status_code == 206
    await gql.ok(DELETE, {"id": removed.clip_id}, removed.author.token)
    # the link is still signed and unexpired: the check made at fetch time refuses it
    for method in ("GET", "HEAD"):
        response = await gql.client.request(method, removed.url, headers={"Range": "bytes=0-9"})
        assert response.status_code == 404, method
        assert response.headers["cache-control"] == "no-store"


def test_the_local_store_lists_and_deletes_its_keys(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media", "s" * 32, 60)
    assert list(store.keys()) == []
    source = tmp_path / "v.mp4"
    source.write_bytes(b"0123456789")
    keys = {clip_video_key("CLIPA", "a" * 64), clip_video_key("CLIPB", "b" * 64)}
    for key in keys:
        store.put(source, key)
    # a put still copying (its .part file) and stray files are not keys
    (tmp_path / "media" / "clips" / "CLIPA" / "tmpx.part").write_bytes(b"half")
    (tmp_path / "media" / "clips" / "CLIPA" / "notes.txt").write_bytes(b"")
    assert set(store.keys()) == keys
    assert store.size(clip_video_key("CLIPA", "a" * 64)) == 10
    assert b"".join(store.read(clip_video_key("CLIPA", "a" * 64), 2, 4)) == b"234"
    store.delete(clip_video_key("CLIPA", "a" * 64))
    store.delete(clip_video_key("CLIPA", "a" * 64))  # deleting twice is harmless
    assert set(store.keys()) == {clip_video_key("CLIPB", "b" * 64)}
    assert store.size(clip_video_key("CLIPA", "a" * 64)) is None


# ffmpeg over real HTTP: a real server process on a TCP port, the session's graph and Redis


@pytest.fixture(scope="module")
def served(settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A `reelgraph serve` on a free port against the session's graph, Redis and media."""
    log = tmp_path_factory.mktemp("media-server") / "server.log"
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=api_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server did not start:\n{log.read_text()}"
            time.sleep(0.1)
        yield base, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_ffmpeg_plays_and_seeks_a_signed_link_over_http(served, draft) -> None:
    base, log = served
    # the link as this server hands it out, with its own address in it
    body = httpx.post(
        f"{base}/graphql",
        json={"query": CLIP, "variables": {"id": draft.clip_id}},
        headers={"Authorization": f"Bearer {draft.author.token}"},
    ).json()
    url = body["data"]["clip"]["video"]["url"]
    assert url.startswith(f"{base}/media/")

    with av.open(url, timeout=30) as container:
        video = container.streams.video[0]
        frames = [frame.time for frame in container.decode(video)]
        assert frames[-1] > 4.5  # read to the end: the whole 5 s clip
        before_seek = log.read_text().count(" 206 ")
        # back to 1.5 s: the bytes are behind what ffmpeg holds, so it asks for them by range
        container.seek(int(1.5 / video.time_base), stream=video)
        frame = next(container.decode(video))
        # the keyframe at or before 1.5 s (one a second), not the start of the file
        assert 0.5 <= frame.time <= 1.5, frame.time
    requests = log.read_text()
    assert requests.count(" 206 ") > before_seek, requests[-3000:]
