"""media/uploads: streamed, size-capped, type- and container-checked video uploads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar, Request, post
from litestar.response import Response
from litestar.testing import AsyncTestClient

from media.uploads import UploadRejected, check_container, save_upload
from tests.capture_videos import make_capture, multipart_body

CHUNK = 16 * 1024


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("upload-sources")
    return {
        "mp4": make_capture(folder / "good.mp4"),
        "mov": make_capture(folder / "good.mov"),
        "webm": make_capture(folder / "good.webm"),
        "audio": make_capture(folder / "audio.mp4", kind="audio_only"),
        "text": make_capture(folder / "text.mp4", kind="not_video"),
    }


class Body:
    """A request body arriving in chunks; counts what the reader pulled."""

    def __init__(self, data: bytes, *, chunk: int = CHUNK, fail_after: int | None = None):
        self.data, self.chunk, self.fail_after = data, chunk, fail_after
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            if self.fail_after is not None and self.pulled >= self.fail_after:
                raise ConnectionResetError("client went away")
            self.pulled += 1
            yield self.data[start : start + self.chunk]

    @property
    def chunks(self) -> int:
        return -(-len(self.data) // self.chunk)


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def _save(body: Body, content_type: str, dest: Path, *, max_bytes: int = 10 << 20, **kw):
    return await save_upload(
        body, content_type=content_type, dest_dir=dest, max_bytes=max_bytes, **kw
    )


async def _rejected(dest: Path, status: int, body: Body, content_type: str, **kw) -> str:
    with pytest.raises(UploadRejected) as caught:
        await _save(body, content_type, dest, **kw)
    assert caught.value.status == status, caught.value.reason
    assert caught.value.reason.endswith(".")
    assert _left(dest) == []  # nothing half-written stays behind
    return caught.value.reason


# ---------- accepted ----------


@pytest.mark.parametrize(
    ("source", "declared", "suffix"),
    [
        ("mp4", "video/mp4", ".mp4"),
        ("mov", "video/quicktime", ".mov"),
        ("webm", "video/webm", ".webm"),
    ],
)
async def test_a_multipart_video_is_saved_whole(
    tmp_path: Path, videos: dict[str, Path], source: str, declared: str, suffix: str
) -> None:
    payload = videos[source].read_bytes()
    body, content_type = multipart_body(payload, content_type=declared)
    path = await _save(Body(body), content_type, tmp_path / "up")
    assert path.parent == tmp_path / "up" and path.suffix == suffix
    assert path.read_bytes() == payload
    assert _left(tmp_path / "up") == [path.name]


async def test_a_raw_video_body_is_saved(tmp_path: Path, videos: dict[str, Path]) -> None:
    payload = videos["webm"].read_bytes()
    path = await _save(Body(payload), "video/webm", tmp_path)
    assert path.suffix == ".webm" and path.read_bytes() == payload


async def test_the_name_follows_the_bytes_not_the_declaration(
    tmp_path: Path, videos: dict[str, Path]
) -> None:
    # declared MP4 (and named .mp4), really WebM: kept, under what it really is
    body, content_type = multipart_body(videos["webm"].read_bytes(), filename="me.mp4")
    path = await _save(Body(body), content_type, tmp_path)
    assert path.suffix == ".webm"
    assert check_container(path).kind == "webm"


async def test_other_small_form_fields_are_ignored(tmp_path: Path, videos: dict[str, Path]) -> None:
    boundary = "b0undary"
    payload = videos["mp4"].read_bytes()
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="a.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    path = await _save(Body(body), f'multipart/form-data; boundary="{boundary}"', tmp_path)
    assert path.read_bytes() == payload


# ---------- refused ----------


async def test_over_the_cap_stops_reading_and_leaves_nothing(
    tmp_path: Path, videos: dict[str, Path]
) -> None:
    body, content_type = multipart_body(videos["mp4"].read_bytes())
    stream = Body(body)
    reason = await _rejected(tmp_path, 413, stream, content_type, max_bytes=4 * CHUNK)
    assert "larger than" in reason
    # it stopped as soon as the cap was passed, not at the end of the body
    assert stream.pulled <= 6 < stream.chunks


async def test_a_declared_length_over_the_cap_is_refused_unread(
    tmp_path: Path, videos: dict[str, Path]
) -> None:
    body, content_type = multipart_body(videos["mp4"].read_bytes())
    stream = Body(body)
    await _rejected(
        tmp_path, 413, stream, content_type, max_bytes=4 * CHUNK, content_length=len(body)
    )
    assert stream.pulled == 0


@pytest.mark.parametrize("declared", ["image/png", "application/octet-stream", "text/plain"])
async def test_a_part_declared_as_no_video_is_refused_before_writing(
    tmp_path: Path, videos: dict[str, Path], declared: str
) -> None:
    body, content_type = multipart_body(videos["mp4"].read_bytes(), content_type=declared)
    stream = Body(body)
    reason = await _rejected(tmp_path, 415, stream, content_type)
    assert declared in reason
    assert stream.pulled == 1  # the part's headers were enough


async def test_a_raw_body_of_another_type_is_refused(
    tmp_path: Path, videos: dict[str, Path]
) -> None:
    await _rejected(tmp_path, 415, Body(videos["mp4"].read_bytes()), "application/json")


@pytest.mark.parametrize("source", ["text", "audio"])
async def test_bytes_that_are_no_video_are_refused_whatever_was_declared(
    tmp_path: Path, videos: dict[str, Path], source: str
) -> None:
    body, content_type = multipart_body(videos[source].read_bytes())
    await _rejected(tmp_path, 415, Body(body), content_type)


async def test_a_playlist_named_mp4_is_refused(tmp_path: Path, videos: dict[str, Path]) -> None:
    playlist = f"#EXTM3U\n#EXTINF:4.0,\n{videos['mp4']}\n#EXT-X-ENDLIST\n".encode()
    body, content_type = multipart_body(playlist)
    await _rejected(tmp_path, 415, Body(body), content_type)


async def test_an_empty_video_part(tmp_path: Path) -> None:
    body, content_type = multipart_body(b"")
    assert "empty" in await _rejected(tmp_path, 400, Body(body), content_type)


async def test_a_form_without_the_video_field(tmp_path: Path, videos: dict[str, Path]) -> None:
    body, content_type = multipart_body(videos["mp4"].read_bytes(), field="file")
    assert '"video"' in await _rejected(tmp_path, 400, Body(body), content_type)


async def test_two_videos_in_one_form(tmp_path: Path, videos: dict[str, Path]) -> None:
    one, content_type = multipart_body(videos["mp4"].read_bytes(), boundary="xx")
    part = one[: one.rindex(b"--xx--")]  # boundary, headers, the video, CRLF
    body = part + part + b"--xx--\r\n"  # the same part twice, then the end
    await _rejected(tmp_path, 400, Body(body), content_type)


async def test_a_form_cut_off_midway(tmp_path: Path, videos: dict[str, Path]) -> None:
    body, content_type = multipart_body(videos["mp4"].read_bytes())
    reason = await _rejected(tmp_path, 400, Body(body[: len(body) // 2]), content_type)
    assert "ended before" in reason


async def test_multipart_without_a_boundary(tmp_path: Path) -> None:
    await _rejected(tmp_path, 400, Body(b"--x\r\n"), "multipart/form-data")


async def test_garbage_instead_of_multipart(tmp_path: Path) -> None:
    await _rejected(tmp_path, 400, Body(b"\x00" * 100_000), "multipart/form-data; boundary=zz")


async def test_a_client_that_disconnects_leaves_nothing(
    tmp_path: Path, videos: dict[str, Path]
) -> None:
    body, content_type = multipart_body(videos["mp4"].read_bytes())
    with pytest.raises(ConnectionResetError):
        await _save(Body(body, fail_after=3), content_type, tmp_path)
    assert _left(tmp_path) == []


async def test_a_cancelled_upload_leaves_nothing(tmp_path: Path, videos: dict[str, Path]) -> None:
    body, content_type = multipart_body(videos["mp4"].read_bytes())
    started, never = asyncio.Event(), asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield body[:CHUNK]
        started.set()
        await never.wait()  # the client stops sending; the server gives up on it
        yield body[CHUNK:]

    task = asyncio.create_task(
        save_upload(stalls(), content_type=content_type, dest_dir=tmp_path, max_bytes=10 << 20)
    )
    await started.wait()
    assert len(_left(tmp_path)) == 1  # the partial file exists while it streams
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _left(tmp_path) == []


# ---------- check_container ----------


def test_check_container_reads_what_the_file_is(videos: dict[str, Path]) -> None:
    mp4 = check_container(videos["mp4"])
    assert (mp4.kind, mp4.mime_type, mp4.width, mp4.height, mp4.has_audio) == (
        "mp4",
        "video/mp4",
        360,
        480,
        True,
    )
    assert check_container(videos["mov"]).kind == "quicktime"
    assert check_container(videos["webm"]).mime_type == "video/webm"
    for bad in ("text", "audio"):
        with pytest.raises(UploadRejected) as caught:
            check_container(videos[bad])
        assert caught.value.status == 415


# ---------- inside a Litestar handler ----------


async def test_save_upload_fits_a_litestar_handler(tmp_path: Path, videos: dict[str, Path]) -> None:
    dest = tmp_path / "uploads"
    cap = 1 << 20

    # Litestar's own body limit (10 MB by default) must be lifted to the cap plus form overhead
    @post("/upload", request_max_body_size=cap + 64 * 1024)
    async def upload(request: Request) -> Response:
        try:
            path = await save_upload(request, dest_dir=dest, max_bytes=cap)
        except UploadRejected as rejected:
            return Response({"error": rejected.reason}, status_code=rejected.status)
        return Response({"name": path.name, "size": path.stat().st_size}, status_code=201)

    @post("/upload-stream", request_max_body_size=cap + 64 * 1024)
    async def upload_stream(request: Request) -> Response:
        # the stream form, for a caller that reads headers itself
        path = await save_upload(
            request.stream(),
            content_type=request.headers["content-type"],
            dest_dir=dest,
            max_bytes=cap,
        )
        return Response({"name": path.name}, status_code=201)

    payload = videos["mp4"].read_bytes()
    async with AsyncTestClient(Litestar([upload, upload_stream])) as client:
        ok = await client.post("/upload", files={"video": ("me.mp4", payload, "video/mp4")})
        assert ok.status_code == 201, ok.text
        assert ok.json()["size"] == len(payload)
        assert _left(dest) == [ok.json()["name"]]

        fake = await client.post("/upload", files={"video": ("me.mp4", b"x" * 5000, "video/mp4")})
        assert fake.status_code == 415
        assert "not a playable" in fake.json()["error"]

        big = await client.post(
            "/upload", files={"video": ("me.mp4", b"\0" * (cap + 1), "video/mp4")}
        )
        assert big.status_code == 413
        assert "larger than 1 MB" in big.json()["error"]
        assert _left(dest) == [ok.json()["name"]]

        raw = await client.post(
            "/upload-stream", content=payload, headers={"content-type": "video/mp4"}
        )
        assert raw.status_code == 201, raw.text
    assert sorted(_left(dest)) == sorted([ok.json()["name"], raw.json()["name"]])


async def test_endless_bytes_after_the_form_are_not_read_forever(
    tmp_path: Path, videos: dict[str, Path]
) -> None:
    body, content_type = multipart_body(videos["mp4"].read_bytes())
    cap = len(videos["mp4"].read_bytes()) + 1024
    stream = Body(body + b"\0" * (2 * cap))  # an epilogue the parser would skip
    await _rejected(tmp_path, 413, stream, content_type, max_bytes=cap)
    assert stream.pulled < stream.chunks


async def test_a_huge_text_field_is_refused(tmp_path: Path) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\n'.encode()
        + b"a" * 200_000
        + f"\r\n--{boundary}--\r\n".encode()
    )
    reason = await _rejected(tmp_path, 413, Body(body), f"multipart/form-data; boundary={boundary}")
    assert "besides the video" in reason


def test_check_container_refuses_absurd_pictures_unread(tmp_path: Path) -> None:
    wide = make_capture(tmp_path / "wide.mp4", seconds=1, size=(4200, 128))
    with pytest.raises(UploadRejected) as caught:
        check_container(wide)
    assert caught.value.status == 415 and "4200x128" in caught.value.reason
    assert check_container(wide, max_side=8192).width == 4200
