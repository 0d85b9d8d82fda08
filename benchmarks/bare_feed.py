"""A bare Litestar route beside the GraphQL endpoint, for the feeds benchmark only (issue 7).

`POST /bare/feed` with the same JSON body as the benchmark's GraphQL page and the same
Authorization header answers the same JSON
(`{"data": {"feed": {"edges": [{"node": {id prompt likeCount author {handle followerCount}
video {url}}}]}}}`) through the same statements the GraphQL page runs: the feed resolver
(FOLLOWING's page, or FOR_YOU's ranking and page), then the same DataLoaders for the authors
and their follower counts, and the same signed media URLs. What it leaves out is GraphQL:
parsing and validating the document (cached), graphql-core's execution of each field, and
Strawberry's per-field wrappers. So `GraphQL page / bare route` is the share of the floor
that GraphQL keeps.

It is not one of the product's routes: it runs in its own process on the data folder a
running `reelgraph serve` owns (through that server's engine socket):

    python benchmarks/bare_feed.py --data-dir D --port P
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from litestar import Litestar, Request, post  # noqa: E402
from litestar.datastructures import State  # noqa: E402

from errors import ClientError  # noqa: E402
from graph.embedded import EmbeddedServer  # noqa: E402
from resolvers import feeds as feed_resolvers  # noqa: E402
from resolvers.context import Context  # noqa: E402
from resolvers.ids import encode_id  # noqa: E402
from server import Services, embedded_urls  # noqa: E402
from settings import get_settings  # noqa: E402

__all__ = ["build_bare_app"]


async def _page(ctx: Context, kind: str, first: int) -> dict[str, Any]:
    if kind == "FOLLOWING":
        page = await feed_resolvers.following_feed(ctx, None, first, None)
    else:
        page = await feed_resolvers.for_you_feed(ctx, None, first, None)
    clips = [clip for _cursor, clip in page.items]
    authors = await ctx.loaders.user_by_id.load_many([c["authorId"] for c in clips])
    counts = await ctx.loaders.follow_counts_by_user.load_many([c["authorId"] for c in clips])
    edges = []
    for clip, author, (followers, _following) in zip(clips, authors, counts, strict=True):
        video = None
        if clip.get("videoKey") and clip["state"] != "REMOVED":
            video = {"url": ctx.media_url(clip["videoKey"])}
        node = {
            "id": encode_id("Clip", clip["id"]),
            "prompt": clip["prompt"],
            "likeCount": int(clip.get("likeCount") or 0),
            "author": {"handle": author["handle"], "followerCount": followers},
            "video": video,
        }
        edges.append({"node": node})
    return {"data": {"feed": {"edges": edges}}}


@post("/bare/feed", status_code=200)
async def bare_feed(request: Request, state: State, data: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's page without GraphQL; the body's variables name the kind."""
    ctx = await Context.for_request(state.services, request.headers.get("authorization"))
    ctx.request = request  # media URLs are absolute, as GraphQL makes them
    variables = data.get("variables") or {}
    try:
        return await _page(ctx, variables.get("k", "FOR_YOU"), 20)
    except ClientError as exc:
        return {"errors": [{"message": str(exc)}], "data": None}


def build_bare_app(data_dir: Path) -> Litestar:
    """The bare route on the engine of the server that owns data_dir."""
    socket_path = EmbeddedServer.locate(data_dir)
    if socket_path is None:
        raise SystemExit(f"no running server owns {data_dir}")
    settings = get_settings().model_copy(
        update={"data_dir": data_dir, **embedded_urls(socket_path)}
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        services = await Services.open(settings)
        app.state.services = services
        try:
            yield
        finally:
            await services.close()

    return Litestar(route_handlers=[bare_feed], lifespan=[lifespan], debug=False)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = build_bare_app(args.data_dir)
    # as `reelgraph serve` runs its API (access log included), so only GraphQL differs
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="info")
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
