"""The /media route: a stored video, for the viewer its signed link was issued to.

Players stream from it: GET and HEAD, single byte ranges (206, 416 past the end), a strong
ETag (the file's sha256, recorded on the clip beside its key) with If-None-Match -> 304 and
If-Range, and caching only in the viewer's own browser until the link expires. Written here
because Litestar's File (2.25) answers neither 206 nor 304.

Every request, every seek included, is checked against the graph as it is now, not only the
link's signature: the viewer may still see the clip (graph.visibility, through
resolvers.clips.playable_clip), it is not removed, its consent was not withdrawn (a revoked
grant or a deleted cameo takes the video from an unpublished clip), and it still names this
file. So a link handed out before a withdrawal or a block stops working at once.

Both stores are served the same way, through this process. With S3 we stream the object
rather than redirect to a presigned URL: each request, every seek included, then passes the
signature, expiry and visibility checks, and players that remember a redirect's target
(Chrome does) never seek into an expired presigned URL; the price is the API's bandwidth.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from litestar import Request, post, route
from litestar.datastructures import State
from litestar.enums import HttpMethod
from litestar.params import FromQuery, Parameter
from litestar.response import Response
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from auth.rate_limits import RateLimits
from errors import ClientError, Unauthenticated
from media.ranges import UNSATISFIABLE, ByteRange, etag_matches, parse_range
from media.store import MediaMissing, clip_id_from_key, verify_media_signature
from media.uploads import UploadRejected, save_upload
from provenance.fingerprints import shared_index
from provenance.verify import NotAVideo, verify_file
from resolvers import clips as clip_resolvers
from resolvers.context import Context
from resolvers.ids import encode_id

__all__ = ["error_response", "media", "provenance_verify", "stream_chunks"]

_NOT_FOUND = "no such video, or the link has expired"
_MEDIA_TYPE = "video/mp4"


@route("/media/{key:path}", http_method=[HttpMethod.GET, HttpMethod.HEAD])
async def media(
    request: Request,
    state: State,
    key: Annotated[str, Parameter(description="clips/<clipId>/<64 hex digits>.mp4")],
    v: FromQuery[str] = "",  # the viewer the link was signed for, its expiry and signature
    exp: FromQuery[str] = "",
    sig: FromQuery[str] = "",
) -> ASGIResponse:
    """A stored video, for the viewer its signed link was issued to, while they may see it."""
    services = state.services
    head = request.method == HttpMethod.HEAD
    key = key.lstrip("/")
    viewer = verify_media_signature(services.media_key, key, v, exp, sig)
    clip_id = clip_id_from_key(key)
    if viewer is None or clip_id is None:
        return error_response(404, _NOT_FOUND, head)
    # the signature only says whom the link was made for: whether that viewer may still
    # play this file is decided now, from the graph (every seek included)
    ctx = Context.for_viewer(services, viewer or None)
    clip = await clip_resolvers.playable_clip(ctx, clip_id, key)
    if clip is None:
        return error_response(404, _NOT_FOUND, head)
    size = await anyio.to_thread.run_sync(services.media.size, key)
    if size is None:
        return error_response(404, _NOT_FOUND, head)

    headers = {
        "accept-ranges": "bytes",
        # a published clip serves its signed copy (graph.provenance), which has its own hash
        "etag": f'"{clip.get("signedSha256") or clip["sha256"]}"',
        # the link is one viewer's and expires: only their own browser may keep it, that long
        "cache-control": f"private, max-age={max(int(exp) - int(time.time()), 0)}",
        "content-disposition": "inline",
        "x-content-type-options": "nosniff",
    }
    if etag_matches(request.headers.get("if-none-match"), headers["etag"], weak=True):
        return ASGIResponse(status_code=304, headers=headers)

    byte_range = None
    if_range = request.headers.get("if-range")
    # Range is defined for GET only; If-Range naming another version asks for the whole file
    if not head and (if_range is None or etag_matches(if_range, headers["etag"], weak=False)):
        byte_range = parse_range(request.headers.get("range"), size)
    if byte_range is UNSATISFIABLE:
        return error_response(
            416,
            f"the requested range starts past the end of the file ({size} bytes)",
            head,
            {"content-range": f"bytes */{size}"},
        )

    span = byte_range or ByteRange(0, size - 1)
    headers["content-type"] = _MEDIA_TYPE
    headers["content-length"] = str(span.length if size else 0)
    if byte_range is not None:
        headers["content-range"] = byte_range.content_range(size)
    status = 206 if byte_range is not None else 200
    if head or size == 0:
        return ASGIResponse(status_code=status, headers=headers, is_head_response=True)

    chunks = services.media.read(key, span.start, span.end)
    try:
        # the first read happens before any header is sent, so a file gone since size() is a 404
        first = await anyio.to_thread.run_sync(next, chunks, b"")
    except MediaMissing:
        return error_response(404, _NOT_FOUND, head)
    return ASGIStreamingResponse(
        iterator=stream_chunks(first, chunks), status_code=status, headers=headers
    )


async def stream_chunks(first: bytes, chunks: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    try:
        yield first
        while chunk := await anyio.to_thread.run_sync(next, chunks, b""):
            yield chunk
    finally:
        chunks.close()  # a client that went away mid-file releases the file or the S3 body


def error_response(
    status: int, detail: str, head: bool, extra: dict[str, str] | None = None
) -> ASGIResponse:
    """An error nobody may cache: the same link may serve again once the cause is gone."""
    body = b"" if head else json.dumps({"status_code": status, "detail": detail}).encode()
    headers = {"accept-ranges": "bytes", "cache-control": "no-store", **(extra or {})}
    if head:
        headers["content-type"] = "application/json"
    return ASGIResponse(
        body=body,
        status_code=status,
        headers=headers,
        media_type="application/json",
        is_head_response=head,
    )


# the body cap is save_upload's (settings.provenance_verify_max_bytes), counted while streaming
@post("/provenance/verify", status_code=200, request_max_body_size=None)
async def provenance_verify(request: Request, state: State) -> Response[dict[str, Any]]:
    """`reelgraph verify` over HTTP, for a signed-in user: the video as the raw body
    (video/mp4, video/quicktime or video/webm) or in the multipart field "video". Answers
    provenance.verify's JSON, with clipId a Clip global id, or null when the viewer may not
    see the clip found (the rest still says how it matched). Each check counts as one
    mutation against the viewer's rate limit: it decodes and hashes the whole video."""
    services = state.services
    ctx = await Context.for_request(services, request.headers.get("authorization"))
    try:
        viewer_id = ctx.require_viewer()
        await RateLimits(services.redis, services.settings).mutations(viewer_id, 1)
    except ClientError as exc:
        return _json_error(401 if isinstance(exc, Unauthenticated) else 429, exc)
    settings = services.settings
    try:
        path = await save_upload(
            request,
            dest_dir=Path(settings.data_dir) / "uploads" / "verify",
            max_bytes=settings.provenance_verify_max_bytes,
        )
    except UploadRejected as exc:
        return _json_error(exc.status, exc)
    try:
        result = await verify_file(
            path,
            settings=settings,
            graph=services.graph,
            redis=services.redis,
            index=shared_index(),
        )
    except NotAVideo as exc:
        return _json_error(415, exc)
    finally:
        await anyio.to_thread.run_sync(path.unlink)
    raw = result.pop("clipId")
    visible = raw is not None and await clip_resolvers.visible_clip(ctx, raw) is not None
    result["clipId"] = encode_id("Clip", raw) if visible else None
    if not visible:
        result["clip"] = None  # nothing about a clip the viewer may not see
        if result["manifest"]["receipt"]:
            result["manifest"]["receipt"] = None
        if result["fingerprint"] and result["fingerprint"]["match"]:
            result["fingerprint"]["match"]["clipId"] = None
    return Response(result, headers={"cache-control": "no-store"})


def _json_error(status: int, exc: Exception) -> Response[dict[str, Any]]:
    code = getattr(exc, "code", None) or (
        "UNAUTHENTICATED"
        if status == 401
        else "RATE_LIMITED"
        if status == 429
        else "BAD_USER_INPUT"
    )
    body: dict[str, Any] = {
        "status_code": status,
        "detail": getattr(exc, "reason", None) or getattr(exc, "message", None) or str(exc),
        "code": code,
    }
    extensions = getattr(exc, "extensions", {}) or {}
    headers = {"cache-control": "no-store"}
    if "retryAfterSeconds" in extensions:
        body["retryAfterSeconds"] = extensions["retryAfterSeconds"]
        headers["retry-after"] = str(extensions["retryAfterSeconds"])
    return Response(body, status_code=status, headers=headers)
