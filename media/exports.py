"""The /exports route: a user's data archive (resolvers/account.py), for that user only.

The link is signed as /media links are (key, viewer, expiry, media link key); this route
serves only export keys, and only when the viewer the link names is the user the key names,
so a /media link can never open an archive nor an export link a video.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from litestar import Request, route
from litestar.datastructures import State
from litestar.enums import HttpMethod
from litestar.params import FromQuery, Parameter
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from media.http import error_response, stream_chunks
from media.store import EXPORT_KEY, MediaMissing, verify_media_signature

__all__ = ["exports"]

_NOT_FOUND = "no such export, or the link has expired"


@route("/exports/{path:path}", http_method=[HttpMethod.GET, HttpMethod.HEAD])
async def exports(
    request: Request,
    state: State,
    path: Annotated[str, Parameter(description="<userId>/<exportId>.zip")],
    v: FromQuery[str] = "",
    exp: FromQuery[str] = "",
    sig: FromQuery[str] = "",
) -> ASGIResponse:
    """The archive, as an attachment, for the user it holds the data of."""
    services = state.services
    head = request.method == HttpMethod.HEAD
    key = "exports/" + path.lstrip("/")
    match = EXPORT_KEY.fullmatch(key)
    viewer = verify_media_signature(services.media_key, key, v, exp, sig)
    if match is None or not viewer or viewer != match.group(1):
        return error_response(404, _NOT_FOUND, head)
    size = await anyio.to_thread.run_sync(services.media.size, key)
    if size is None:
        return error_response(404, _NOT_FOUND, head)
    headers = {
        "content-type": "application/zip",
        "content-length": str(size),
        "content-disposition": 'attachment; filename="reelgraph-export.zip"',
        "cache-control": "private, no-store",
        "x-content-type-options": "nosniff",
    }
    if head or size == 0:
        return ASGIResponse(status_code=200, headers=headers, is_head_response=True)
    chunks = services.media.read(key, 0, size - 1)
    try:
        first = await anyio.to_thread.run_sync(next, chunks, b"")
    except MediaMissing:
        return error_response(404, _NOT_FOUND, head)
    return ASGIStreamingResponse(
        iterator=stream_chunks(first, chunks), status_code=200, headers=headers
    )
