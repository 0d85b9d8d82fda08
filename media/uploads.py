"""Receiving an uploaded video safely: streamed to disk under a size cap, checked for real.

A Litestar handler hands over its request, whose body is read as it arrives:

    @post("/cameo-captures/{id:str}", request_max_body_size=settings.capture_max_bytes + 65536)
    async def upload(request: Request, id: str) -> ...:
        try:
            path = await save_upload(
                request, dest_dir=settings.data_dir / "uploads",
                max_bytes=settings.capture_max_bytes,
            )
        except UploadRejected as rejected:  # .reason for the client, .status for HTTP
            ...

(Litestar's own multipart parsing spools every part before the handler runs; this parses the
stream itself with `multipart`'s push parser, which Litestar depends on.) The body is either
multipart/form-data with the file in the field "video", or the raw video with a video/*
Content-Type. Whatever the client declares, the saved file is kept only when its first bytes
are an MP4/QuickTime or Matroska/WebM container that PyAV opens, with a video stream whose
first frame decodes. Every failure raises UploadRejected(reason, status) and leaves no file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path

import av
from litestar import Request
from multipart import MultipartError, MultipartSegment, PushMultipartParser

from media.probe import (
    MAX_FRAME_PIXELS,
    MAX_SIDE,
    limit_decoder,
    open_container,
    sniff_format,
    stated_frame_sizes,
)

__all__ = [
    "ALLOWED_TYPES",
    "MAX_FRAME_PIXELS",
    "MAX_SIDE",
    "ContainerInfo",
    "UploadRejected",
    "check_container",
    "open_container",
    "save_upload",
    "sniff_format",
]

# declared types we take; the bytes must still prove to be one of these containers
ALLOWED_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm"})
_OTHER_PARTS_MAX = 64 * 1024  # bytes of form fields besides the video (none are needed)
_MULTIPART_OVERHEAD = 16 * 1024  # boundaries and part headers on top of the video itself
# VP8/VP9 packets whose stated sizes are read at upload: a capture has at most this many
# video frames (15 s at 120 a second, with slack); past them the worker refuses the capture
_SCAN_PACKETS = 16 * 120 + 120


class UploadRejected(Exception):
    """The upload was refused; `reason` is for the person uploading, `status` an HTTP status.

    400 malformed request, 413 too large, 415 not an accepted video. `code` is the contract's
    error code for a JSON error body.
    """

    code = "BAD_USER_INPUT"

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class ContainerInfo:
    """What the file really is. kind: "mp4", "quicktime", "webm" or "matroska" (WebM's parent
    format, which browsers and screen recorders also write)."""

    kind: str
    mime_type: str
    width: int
    height: int
    has_audio: bool


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


def _too_large(max_bytes: int) -> UploadRejected:
    return UploadRejected(
        f"The video is larger than {_megabytes(max_bytes)}; record a shorter clip "
        "(3 to 15 seconds) or at a lower resolution.",
        413,
    )


def _check_declared(declared: str | None) -> None:
    kind = (declared or "").split(";", 1)[0].strip().lower()
    if kind not in ALLOWED_TYPES:
        shown = kind or "no type"
        raise UploadRejected(
            f"The upload must be an MP4, MOV or WebM video, but it was sent as {shown}; "
            "send the video file your camera recorded.",
            415,
        )


async def save_upload(
    body: Request | AsyncIterable[bytes],
    *,
    dest_dir: Path,
    max_bytes: int,
    content_type: str | None = None,
    content_length: int | None = None,
    field: str = "video",
) -> Path:
    """Stream an uploaded video into a new file under dest_dir and return its path.

    body: a Litestar Request (its stream, Content-Type and Content-Length are read from it),
    or the body as it arrives (`request.stream()`) with content_type, the request's
    Content-Type header, and optionally content_length. The body is multipart/form-data
    (the file in `field`, its part declared video/mp4, video/quicktime or video/webm) or
    one of those video types for a raw body. Reading stops as soon as the video passes
    max_bytes (or at once when content_length says it will). The file is then checked with
    check_container and named `<random>.mp4|.mov|.webm|.mkv` after what it really is.
    Raises UploadRejected; on any failure, the client disconnecting or the task being
    cancelled included, nothing is left in dest_dir.

    The route must lift Litestar's own body limit (10 MB by default) to max_bytes plus a
    little for the form: `@post(..., request_max_body_size=max_bytes + 64 * 1024)`.
    """
    if isinstance(body, Request):
        request = body
        content_type = request.headers.get("content-type", "")
        length = request.headers.get("content-length", "")
        content_length = int(length) if length.isdigit() else None
        body = request.stream()
    if content_type is None:
        raise TypeError("content_type is required with a body stream")
    if content_length is not None and content_length > max_bytes + _MULTIPART_OVERHEAD:
        raise _too_large(max_bytes)
    media_type = content_type.split(";", 1)[0].strip().lower()
    dest_dir = Path(dest_dir)
    await asyncio.to_thread(dest_dir.mkdir, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest_dir, prefix="upload-", suffix=".part")
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            if media_type == "multipart/form-data":
                size = await _save_multipart(body, content_type, out, max_bytes, field)
            else:
                _check_declared(media_type)
                size = await _save_raw(body, out, max_bytes)
        if size == 0:
            raise UploadRejected("The uploaded video is empty; choose the file again.", 400)
        info = await asyncio.to_thread(check_container, partial)
        final = partial.with_name(partial.name.removesuffix(".part") + _SUFFIX[info.kind])
        await asyncio.to_thread(partial.rename, final)
        return final
    except BaseException:
        # synchronously: on cancellation (client gone) there is no awaiting a thread
        _discard(partial)
        raise


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


_SUFFIX = {"mp4": ".mp4", "quicktime": ".mov", "webm": ".webm", "matroska": ".mkv"}
_MIME = {
    "mp4": "video/mp4",
    "quicktime": "video/quicktime",
    "webm": "video/webm",
    "matroska": "video/x-matroska",
}
_WEBM_CODECS = {"vp8", "vp9", "av1"}


async def _write(out, chunk: bytes, written: int, max_bytes: int) -> int:
    if written + len(chunk) > max_bytes:
        raise _too_large(max_bytes)
    # a thread keeps a slow disk from stalling every other request on the event loop
    await asyncio.to_thread(out.write, chunk)
    return written + len(chunk)


async def _save_raw(body: AsyncIterable[bytes], out, max_bytes: int) -> int:
    written = 0
    async for chunk in body:
        if chunk:
            written = await _write(out, chunk, written, max_bytes)
    return written


async def _save_multipart(
    body: AsyncIterable[bytes], content_type: str, out, max_bytes: int, field: str
) -> int:
    boundary = _boundary(content_type)
    parser = PushMultipartParser(boundary, max_segment_count=8)
    # everything read, preamble and epilogue included: the parser skips bytes after the
    # closing boundary, and a client must not stream those forever either
    budget = max_bytes + _MULTIPART_OVERHEAD + _OTHER_PARTS_MAX
    received = written = other = 0
    found = False
    current: MultipartSegment | None = None
    try:
        async for chunk in body:
            received += len(chunk)
            if received > budget:
                raise _too_large(max_bytes)
            for event in parser.parse(chunk):
                if isinstance(event, MultipartSegment):
                    current = event
                    if event.name == field:
                        if found:
                            raise UploadRejected(
                                f'Send one video in the "{field}" field, not several.', 400
                            )
                        found = True
                        # refuse before writing a byte of something declared otherwise
                        _check_declared(event.content_type)
                    elif event.filename is not None:
                        raise UploadRejected(
                            f'Send the video in the form field "{field}" (it came in '
                            f'"{event.name}").',
                            400,
                        )
                elif event is None:
                    current = None
                elif current is not None and current.name == field:
                    written = await _write(out, event, written, max_bytes)
                else:
                    other += len(event)
                    if other > _OTHER_PARTS_MAX:
                        raise UploadRejected(
                            "The form carries too much besides the video; send only "
                            f'the "{field}" field.',
                            413,
                        )
        try:
            parser.close()  # raises when the closing boundary never came
        except MultipartError as exc:
            raise UploadRejected(
                "The upload ended before the video was complete; try sending it again.", 400
            ) from exc
    except MultipartError as exc:
        raise UploadRejected(
            f'The upload is not valid multipart/form-data; send the video in the "{field}" '
            "field of a form.",
            400,
        ) from exc
    if not found:
        raise UploadRejected(f'The form has no "{field}" field; send the video in it.', 400)
    return written


def _boundary(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary" and value.strip().strip('"'):
            return value.strip().strip('"')
    raise UploadRejected(
        "The upload's Content-Type has no multipart boundary; send it as a form.", 400
    )


_NOT_A_VIDEO = (
    "The file is not a playable MP4, MOV or WebM video; send the file your camera recorded, "
    "unchanged."
)


def check_container(
    path: Path, *, max_side: int = MAX_SIDE, max_pixels: int = MAX_FRAME_PIXELS
) -> ContainerInfo:
    """Prove the file is an MP4, QuickTime or WebM video whose first frame decodes.

    What is cheap to see is refused here, before any big picture is decoded: a header
    larger than max_side pixels on a side or max_pixels in all; a first frame past those
    (the decoder refuses to allocate one); and for VP8/VP9, any frame whose packet header
    states such a size, read from the packets without decoding them (a 160x120 header
    followed by 16000x16000 keyframes is refused). Other codecs' later frames are checked
    where the capture is decoded (workers.liveness, in workers.sandbox). Raises
    UploadRejected(reason, 415).
    """
    try:
        with open_container(Path(path)) as container:
            if not container.streams.video:
                raise UploadRejected(
                    "The file has no video in it; send a video recorded with your camera.", 415
                )
            video = container.streams.video[0]
            codec = video.codec_context.name
            _check_size(video.codec_context.width, video.codec_context.height, max_side, max_pixels)
            limit_decoder(video, max_pixels=max_pixels, threads=1)
            first = None
            for scanned, packet in enumerate(container.demux(video), 1):
                for width, height in stated_frame_sizes(codec, packet):
                    _check_size(width, height, max_side, max_pixels)
                if first is None and packet.size:
                    first = next(iter(packet.decode()), None)
                if first is not None and (codec not in ("vp8", "vp9") or scanned > _SCAN_PACKETS):
                    break
            if first is None:
                first = next(iter(video.decode(None)), None)  # a decoder holding frames back
            if first is None:
                raise UploadRejected(_NOT_A_VIDEO, 415)
            _check_size(first.width, first.height, max_side, max_pixels)
            kind = _kind(container, codec)
            return ContainerInfo(
                kind=kind,
                mime_type=_MIME[kind],
                width=first.width,
                height=first.height,
                has_audio=bool(container.streams.audio),
            )
    except (ValueError, OSError, av.FFmpegError) as exc:
        raise UploadRejected(_NOT_A_VIDEO, 415) from exc


def _check_size(width: int, height: int, max_side: int, max_pixels: int) -> None:
    if max(width, height) > max_side or width * height > max_pixels:
        raise UploadRejected(
            f"The video is {width}x{height} pixels; record at {max_side} pixels on the "
            "longest side or less (4K or less).",
            415,
        )


def _kind(container: av.container.InputContainer, codec: str) -> str:
    if container.format.name.startswith("matroska"):
        return "webm" if codec in _WEBM_CODECS else "matroska"
    brand = str(container.metadata.get("major_brand", "")).strip().lower()
    return "quicktime" if brand == "qt" else "mp4"
