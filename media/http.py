"""The /media route: a stored video, for the viewer its signed link was issued to."""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.response import File

from media.store import clip_id_from_key, verify_media_signature
from resolvers import clips as clip_resolvers
from resolvers.context import Context

__all__ = ["media"]


@get("/media/{key:path}")
async def media(
    state: State,
    key: Annotated[str, Parameter(description="clips/<clipId>/<sha256>.mp4")],
    v: Annotated[str, Parameter(query="v", default="")],
    exp: Annotated[str, Parameter(query="exp", default="")],
    sig: Annotated[str, Parameter(query="sig", default="")],
) -> File:
    """A stored video, for the viewer its signed link was issued to, while they may see it."""
    services = state.services
    key = key.lstrip("/")
    viewer = verify_media_signature(services.secret, key, v, exp, sig)
    clip_id = clip_id_from_key(key)
    if viewer is None or clip_id is None:
        raise NotFoundException("no such video, or the link has expired")
    ctx = Context.for_viewer(services, viewer or None)
    clip = await clip_resolvers.visible_clip(ctx, clip_id)
    path = services.media.local_path(key)
    if clip is None or clip.get("videoKey") != key or clip["state"] == "REMOVED" or path is None:
        raise NotFoundException("no such video, or the link has expired")
    return File(path=path, media_type="video/mp4", content_disposition_type="inline")
