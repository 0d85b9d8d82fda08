"""Your data: `exportMyData` (an archive of everything the user made or decided, behind a
link only they can open) and `deleteAccount` (see delete_account)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from errors import Conflict, Forbidden, NotFound, Unauthenticated
from graph import account as account_repo
from graph import audit as audit_repo
from graph.account import EXPORT_PAGE
from media.store import MediaStore, sign_media_path
from resolvers.context import Context

__all__ = [
    "EXPORT_LINK_TTL_S",
    "delete_account",
    "export_key",
    "export_my_data",
    "gone_key",
    "write_archive",
]

logger = logging.getLogger("reelgraph.account")

EXPORT_LINK_TTL_S = 3600  # how long an export's link works; a new export replaces the file
_BUILDING_S = 900  # one export at a time per user: the lock's lease while one is written
_README = """This archive holds your data on this reelgraph server:

profile.json      your account, who you follow and whom you block
clips.json        every clip you posted, in any state, with the cameos it featured and
                  their owners' decisions (approval, when)
clips/<id>.mp4    the video of each of your clips that still has one
cameos.json       your cameo(s): audience, restrictions, the grants you gave, and every
                  clip that used your likeness, with your decision on each
audit.json        the audit log's entries about your clips and your cameo

Times are epoch milliseconds.
"""


def export_key(user_id: str, export_id: str) -> str:
    return f"exports/{user_id}/{export_id}.zip"


def _latest_key(user_id: str) -> str:
    return f"reelgraph:export:{user_id}"


def _lock_key(user_id: str) -> str:
    return f"reelgraph:export-building:{user_id}"


async def _collect(ctx: Context, user_id: str) -> dict[str, Any]:
    """Everything the archive holds, read from the graph (clips a page at a time)."""
    db = ctx.services.graph
    profile = await account_repo.profile_export(db, user_id)
    clips: list[dict] = []
    after = None
    while page := await account_repo.clip_export_page(db, user_id, after):
        for row in page:
            clips.append({**row["clip"], "remixOf": row["remixOf"], "cameos": row["cameos"]})
        after = page[-1]["clip"]["id"]
    cameos = [
        {**row["cameo"], "grants": row["grants"], "uses": row["uses"]}
        for row in await account_repo.cameo_export(db, user_id)
    ]
    audit = await _audit_entries(ctx, user_id)
    return {"profile": profile, "clips": clips, "cameos": cameos, "audit": audit}


async def _audit_entries(ctx: Context, user_id: str) -> list[dict]:
    """The audit entries about the user's clips and cameo (what auditLog shows them), oldest
    first; the chained bytes included, so the user can check them against `audit verify`."""
    entries: list[dict] = []
    after = None
    while rows := await audit_repo.entries_page(
        ctx.services.graph,
        user_id=user_id,
        clip_id=None,
        cameo_id=None,
        after_seq=after,
        limit=EXPORT_PAGE,
    ):
        entries += [row["entry"] for row in rows]
        after = rows[-1]["entry"]["seq"]
    return sorted(entries, key=lambda entry: entry["seq"])


def write_archive(data: dict[str, Any], media: MediaStore, target: Path) -> int:
    """The zip at `target` (JSON deflated, videos stored as they are); its size in bytes.
    A video missing from the store is left out and said so in clips.json."""
    clips = data["clips"]
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", _README)
        archive.writestr("profile.json", _json(data["profile"]))
        for clip in clips:
            key = clip.pop("videoKey", None)
            clip["videoFile"] = None
            if not key:
                continue
            name = f"clips/{clip['id']}.mp4"
            try:
                size = media.size(key)
            except ValueError:  # not a key this store holds (written by hand)
                size = None
            if not size:
                continue
            with archive.open(zipfile.ZipInfo(name, _zip_time(clip)), "w") as out:
                for chunk in media.read(key, 0, size - 1):
                    out.write(chunk)
            clip["videoFile"] = name
        archive.writestr("clips.json", _json(clips))
        archive.writestr("cameos.json", _json(data["cameos"]))
        archive.writestr("audit.json", _json(data["audit"]))
    return target.stat().st_size


def _zip_time(clip: dict) -> tuple[int, int, int, int, int, int]:
    at = time.gmtime((clip.get("createdAt") or 0) / 1000)
    return (max(at.tm_year, 1980), at.tm_mon, at.tm_mday, at.tm_hour, at.tm_min, at.tm_sec)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


async def export_my_data(ctx: Context) -> dict[str, Any]:
    """Write the viewer's archive to the media store and answer its link (for them only).
    One at a time per user (a second while one is written is CONFLICT); each new export
    replaces the last one's file."""
    viewer_id = ctx.require_viewer()
    redis = ctx.services.redis
    token = secrets.token_hex(8)
    if not await redis.set(_lock_key(viewer_id), token, nx=True, ex=_BUILDING_S):
        raise Conflict("your last export is still being prepared; try again when it is done")
    try:
        data = await _collect(ctx, viewer_id)
        export_id = f"{int(time.time() * 1000)}-{secrets.token_hex(6)}"
        key = export_key(viewer_id, export_id)
        size = await asyncio.to_thread(_store_archive, data, ctx.services.media, key)
        previous = await redis.getset(_latest_key(viewer_id), key)
        if previous and previous != key:
            await _delete_export(ctx.services.media, previous)
    finally:
        await redis.eval(_RELEASE, 1, _lock_key(viewer_id), token)
    return {
        "url": export_url(ctx, key, viewer_id),
        "expires_at": int(time.time()) + EXPORT_LINK_TTL_S,
        "size_bytes": size,
        "clip_count": len(data["clips"]),
    }


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def _store_archive(data: dict[str, Any], media: MediaStore, key: str) -> int:
    with tempfile.TemporaryDirectory(prefix="reelgraph-export-") as folder:
        path = Path(folder) / "export.zip"
        size = write_archive(data, media, path)
        media.put(path, key)
    return size


def export_url(ctx: Context, key: str, viewer_id: str) -> str:
    """The export's link: signed as /media links are (key, viewer, expiry), served by the
    /exports route, which serves export keys only and only to the viewer named in the key."""
    path = sign_media_path(ctx.services.media_key, key, viewer_id, EXPORT_LINK_TTL_S)
    path = "/" + path.removeprefix("/media/")  # the key starts with exports/
    connection = ctx.request or ctx.websocket
    if connection is not None:
        return str(connection.base_url).rstrip("/") + path
    return path


async def _delete_export(media: MediaStore, key: str) -> None:
    try:
        await asyncio.to_thread(media.delete, key)
    except Exception:  # an old archive left behind is the owner's own data, behind a link
        logger.exception("could not delete the previous export %s", key)


async def forget_exports(ctx: Context, user_id: str) -> None:
    """Delete the user's latest export (account deletion)."""
    try:
        latest = await ctx.services.redis.getdel(_latest_key(user_id))
    except RedisError:
        logger.exception("could not read the latest export of %s", user_id)
        return
    if latest:
        await _delete_export(ctx.services.media, latest)


# --- deleting an account


def gone_key(user_id: str) -> str:
    """Set while (and after) an account is deleted: its sessions are refused at once
    (resolvers.context.Context.check_session), sockets included."""
    return f"reelgraph:user-gone:{user_id}"


async def delete_account(ctx: Context, password: str) -> dict[str, Any]:
    """Delete the viewer's account, the password confirming it (FORBIDDEN when wrong):
    their sessions end at once, their cameo is erased by destroying its key (every use of
    it taken down), every clip they posted is taken down, their last export is deleted,
    the audit log forgets who they were (its chain intact), and the user node keeps nothing
    personal (graph.account.tombstone). Each step is safe to run again: a deletion cut
    short is finished by calling it again, until the last step (the password goes with
    it) has run."""
    from auth.passwords import verify_password
    from graph import users as user_repo

    viewer_id = ctx.require_viewer()
    db = ctx.services.graph
    user = await ctx.loaders.user_by_id.load(viewer_id)
    credentials = await user_repo.credentials_by_handle(db, user["handle"]) if user else None
    stored = credentials["passwordHash"] if credentials else None
    if len(password) > 1024 or not await verify_password(stored, password):
        raise Forbidden("the password is wrong; the account was not deleted")
    now = int(time.time() * 1000)
    await ctx.services.redis.set(gone_key(viewer_id), now, ex=ctx.settings.refresh_token_ttl_s)
    cameo_erased = await _erase_cameo(ctx)
    taken_down = await _take_down_clips(ctx, viewer_id)
    await forget_exports(ctx, viewer_id)
    await audit_repo.forget_user(db, viewer_id)
    await account_repo.tombstone(db, viewer_id, now)
    ctx.loaders.user_by_id.clear(viewer_id)
    logger.info("deleted account %s (%d clips taken down)", viewer_id, taken_down)
    return {"deleted_at": now, "clips_taken_down": taken_down, "cameo_erased": cameo_erased}


async def _erase_cameo(ctx: Context) -> bool:
    from resolvers import cameos as cameo_resolvers

    try:
        await cameo_resolvers.delete_cameo(ctx)
    except NotFound:  # none, or deleted before
        return False
    return True


async def _take_down_clips(ctx: Context, user_id: str) -> int:
    """Every clip the user posted that is not removed yet, removed as deleteClip removes
    one (its render withdrawn, its file deleted, the audit log told)."""
    from resolvers import clips as clip_resolvers
    from resolvers.ids import encode_id

    live: list[str] = []
    after = None
    while page := await account_repo.clip_export_page(ctx.services.graph, user_id, after):
        live += [row["clip"]["id"] for row in page if row["clip"]["state"] != "REMOVED"]
        after = page[-1]["clip"]["id"]
    for clip_id in live:
        await clip_resolvers.delete_clip(ctx, encode_id("Clip", clip_id))
    return len(live)


async def refuse_if_deleted(ctx: Context, user_id: str) -> None:
    """UNAUTHENTICATED for a deleted account: a refresh token it held mints nothing."""
    if await ctx.services.redis.exists(gone_key(user_id)):
        raise Unauthenticated("this account was deleted")
