"""`reelgraph verify FILE [--json]`: is this video one of this server's clips?

Works on a running server's data folder (or a stopped one's), as `seed` and `admin` do: the
trust anchors come from the settings (provenance.certs), the fingerprints from its Redis,
the clip's record from its graph. Exit status 0 only for an intact clip signed by this
server; 1 when the file is not that (the output says whether a fingerprint found the clip
anyway: a re-encoded, scaled or stripped copy); 2 when the file cannot be read as a video
or the data folder cannot be opened. See provenance.verify for what is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from settings import Settings

__all__ = ["add_parser", "verify"]


def add_parser(sub: Any) -> None:
    """The `verify` command, under the main parser's subcommands."""
    cmd = sub.add_parser(
        "verify",
        help="check a video: signed by this server and intact, or found by its fingerprint",
    )
    cmd.add_argument("file", metavar="FILE", type=Path)
    cmd.add_argument("--json", action="store_true", help="print the verdict as JSON")
    cmd.add_argument("--data-dir", dest="data_dir")


def verify(settings: Settings, args: argparse.Namespace) -> int:
    from cli import _engine_for

    path: Path = args.file
    if not path.is_file():
        print(f"reelgraph: no such file {path}", file=sys.stderr)
        return 2
    with _engine_for(settings) as engine:
        if engine is None:
            return 2
        try:
            result = asyncio.run(_verify(settings, *engine, path))
        except _Unreadable as exc:
            print(f"reelgraph: {path}: {exc}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(result, indent=1, sort_keys=True))
    else:
        print(_summary(path, result))
    return 0 if result["verified"] else 1


class _Unreadable(Exception):
    pass


async def _verify(settings: Settings, engine: Settings, opened: bool, path: Path) -> dict:
    import redis.asyncio as aredis

    from graph.driver import driver_for
    from provenance.fingerprints import FingerprintIndex
    from provenance.verify import NotAVideo, verify_file
    from resolvers.ids import encode_id

    graph = driver_for(engine)
    client = aredis.Redis.from_url(engine.redis_url or "", decode_responses=True)
    try:
        if opened:
            await graph.ensure_schema()
        try:
            result = await verify_file(
                path, settings=settings, graph=graph, redis=client, index=FingerprintIndex()
            )
        except NotAVideo as exc:
            raise _Unreadable(str(exc)) from exc
    finally:
        await client.aclose()
        await graph.close()
    raw = result["clipId"]
    return {**result, "clipId": encode_id("Clip", raw) if raw else None, "rawClipId": raw}


def _summary(path: Path, result: dict) -> str:
    clip = result.get("clip") or {}
    state = f" ({clip['state']})" if clip.get("state") else ""
    if result["verified"]:
        approved = {
            True: "; it is the render its cameo owners approved",
            False: "; BUT its receipt does not match the clip's record",
        }.get(clip.get("approvedRender"), "")
        return f"{path}: signed by this server, intact: clip {result['rawClipId']}{state}{approved}"
    manifest = result["manifest"]
    if result["signed"]:
        why = "signed by this server but changed since (" + ", ".join(manifest["failures"]) + ")"
    elif manifest["present"]:
        why = "carries a C2PA manifest that is not this server's"
    else:
        why = "carries no C2PA manifest"
    if result["matchedBy"] == "fingerprint":
        match = result["fingerprint"]["match"]
        return (
            f"{path}: not verified: {why}; its frames match clip {result['rawClipId']}{state} "
            f"({match['matchedFrames']} of {match['queryFrames']} frames)"
        )
    return f"{path}: not verified: {why}; no clip of this server matches its frames"
