"""Reports and moderation (issue 15, item 3), end to end through the app, the real CLI (to
make moderators) and the embedded graph: report -> queue -> take-down (the clip REMOVED
everywhere, its author and featured owners told) -> appeal (back in the queue) -> restore;
dismissals; and each refusal.

Clips featuring a cameo are written as the clip flow writes them (FEATURES edges planned by
consent.plan_cameo_uses, the render claimed and finished through the repository, a file
stored under the clip's key), then published and approved through the API.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from conftest import Account, GraphQLClient, active_cameo, raw, rendered_clip, run_cli
from ulid import ULID

from consent import plan_cameo_uses
from graph import cameos as cameo_repo
from graph import clips as clip_repo
from media.store import clip_video_key
from resolvers.ids import encode_id
from workers.celery_app import make_celery
from workers.reaper import Reaper

REPORT = """mutation($id: ID!, $reason: ReportReason!, $note: String) {
  reportClip(clipId: $id, reason: $reason, note: $note) {
    id reason kind note resolved outcome createdAt reporter { id } clip { id state } } }"""
QUEUE = """query($reason: ReportReason, $first: Int, $after: String) {
  moderationQueue(reason: $reason, first: $first, after: $after) {
    edges { cursor node { id kind reason note resolved reporter { id } clip { id state } } }
    pageInfo { hasNextPage endCursor } } }"""
RESOLVE = """mutation($id: ID!, $action: ModerationAction!, $note: String) {
  resolveReport(reportId: $id, action: $action, note: $note) {
    id resolved outcome resolvedAt resolutionNote clip { id state } } }"""
RESTORE = "mutation($id: ID!) { restoreClip(clipId: $id) { id state video { url } } }"
APPEAL = (
    "mutation($id: ID!, $note: String) { appealTakeDown(clipId: $id, note: $note) { id state } }"
)
CLIP = "query($id: ID!) { clip(id: $id) { id state video { url } } }"
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state } }"
APPROVE = "mutation($id: ID!) { approveAppearance(clipId: $id) { id state } }"
REMOVE_APPEARANCE = "mutation($id: ID!) { removeAppearance(clipId: $id) { id state } }"
DELETE = "mutation($id: ID!) { deleteClip(clipId: $id) { id state } }"
FOLLOW = "mutation($id: ID!) { follow(userId: $id) { id } }"
FEED = "{ feed(kind: FOLLOWING, first: 50) { edges { node { id } } } }"
USER_CLIPS = """query($h: String!) { user(handle: $h) {
  clips(first: 50) { edges { node { id } } } } }"""
NOTIFICATIONS = """{ notifications(first: 100) {
  edges { node { kind clip { id state } actor { id } } } } }"""


def gid(raw_id: str) -> str:
    return encode_id("Clip", raw_id)


def _now() -> int:
    return int(time.time() * 1000)


def moderator(settings, account: Account) -> None:
    done = run_cli(settings, "admin", "grant-role", account.handle, "moderator")
    assert done.returncode == 0, done.stderr


async def featured_clip(
    gql: GraphQLClient, graph, services, author: Account, owner: Account, tmp: Path
) -> str:
    """A PUBLISHED clip of the author's featuring the owner's (new) cameo, its video stored
    under its own key; its raw id."""
    cameo = await active_cameo(graph, services.media, raw(owner))
    now = _now()
    params: dict[str, Any] = {
        "authorId": raw(author),
        "id": str(ULID()),
        "prompt": "two people on a pier",
        "moods": [],
        "durationS": 1,
        "seed": 1,
        "now": now,
        "parentId": None,
    }
    checked = await cameo_repo.usable_cameos(graph, raw(author), [cameo], now)
    params["cameos"] = plan_cameo_uses(
        services.consent_keys, checked, requested=[cameo], clip=params, ttl_s=600, now=now
    )
    assert await clip_repo.create_clip(graph, params)
    clip_id = params["id"]
    assert await clip_repo.claim_render(graph, clip_id, "test", now, now + 60_000)
    key = clip_video_key(clip_id, secrets.token_hex(32))
    source = tmp / f"{clip_id}.mp4"
    source.write_bytes(b"\x00\x00\x00\x18ftypmp42" + secrets.token_bytes(200))
    services.media.put(source, key)
    video = {
        "key": key,
        "sha256": "0" * 64,
        "durationMs": 1000,
        "width": 64,
        "height": 64,
        "fps": 8.0,
        "hasAudio": False,
        "sizeBytes": source.stat().st_size,
        "mimeType": "video/mp4",
    }
    assert await clip_repo.finish_render(graph, clip_id, "test", 1, video, now)
    await gql.ok(PUBLISH, {"id": gid(clip_id)}, author.token)
    approved = await gql.ok(APPROVE, {"id": gid(clip_id)}, owner.token)
    assert approved["approveAppearance"]["state"] == "PUBLISHED"
    return clip_id


def _sweep(settings) -> list[str]:
    """One media sweep, as a worker's reaper runs it, with no grace period."""
    celery_app = make_celery(settings)
    reaper = Reaper(settings.model_copy(update={"media_orphan_grace_s": 0}), celery_app)
    try:
        return reaper.delete_orphans()
    finally:
        reaper.close()
        celery_app.close()


async def status(gql: GraphQLClient, url: str) -> int:
    return (await gql.client.get(url)).status_code


async def queue_ids(gql: GraphQLClient, mod: Account, reason: str | None = None) -> list[str]:
    ids, after = [], None
    while True:
        variables = {"reason": reason, "first": 100, "after": after}
        page = (await gql.ok(QUEUE, variables, mod.token))["moderationQueue"]
        ids += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return ids
        after = page["pageInfo"]["endCursor"]


async def removed_notices(gql: GraphQLClient, account: Account, clip_id: str) -> list[dict]:
    edges = (await gql.ok(NOTIFICATIONS, token=account.token))["notifications"]["edges"]
    return [
        e["node"]
        for e in edges
        if e["node"]["kind"] == "CLIP_REMOVED"
        and e["node"]["clip"]
        and e["node"]["clip"]["id"] == gid(clip_id)
    ]


async def test_report_take_down_appeal_restore(
    gql: GraphQLClient, graph, services, settings, tmp_path
) -> None:
    author, owner, reporter, second, fan, mod = [
        await gql.sign_up(name) for name in ("author", "owner", "reporter", "second", "fan", "mod")
    ]
    moderator(settings, mod)
    await gql.ok(FOLLOW, {"id": author.id}, fan.token)
    clip = await featured_clip(gql, graph, services, author, owner, tmp_path)
    url = (await gql.ok(CLIP, {"id": gid(clip)}, fan.token))["clip"]["video"]["url"]
    assert await status(gql, url) == 200
    assert gid(clip) in {
        e["node"]["id"] for e in (await gql.ok(FEED, token=fan.token))["feed"]["edges"]
    }

    # report: the reporter's own view of it names no reporter
    filed = (
        await gql.ok(
            REPORT, {"id": gid(clip), "reason": "HARASSMENT", "note": " mean "}, reporter.token
        )
    )["reportClip"]
    assert filed["resolved"] is False and filed["outcome"] is None and filed["kind"] == "REPORT"
    assert filed["note"] == "mean" and filed["reporter"] is None
    assert filed["clip"] == {"id": gid(clip), "state": "PUBLISHED"}
    code, _ = await gql.error(REPORT, {"id": gid(clip), "reason": "SPAM"}, reporter.token)
    assert code == "CONFLICT"  # one open report per reporter and clip
    other = (await gql.ok(REPORT, {"id": gid(clip), "reason": "SPAM"}, second.token))["reportClip"]

    # the queue: moderators only, oldest first, by reason
    code, _ = await gql.error(QUEUE, {}, reporter.token)
    assert code == "FORBIDDEN"
    queued = await queue_ids(gql, mod)
    assert queued.index(filed["id"]) < queued.index(other["id"])
    assert filed["id"] in await queue_ids(gql, mod, "HARASSMENT")
    assert filed["id"] not in await queue_ids(gql, mod, "SPAM")
    first = (await gql.ok(QUEUE, {"first": 1}, mod.token))["moderationQueue"]
    assert len(first["edges"]) == 1 and first["pageInfo"]["hasNextPage"]
    nxt = await gql.ok(QUEUE, {"first": 1, "after": first["pageInfo"]["endCursor"]}, mod.token)
    assert nxt["moderationQueue"]["edges"][0]["node"]["id"] != first["edges"][0]["node"]["id"]
    seen = await gql.ok(QUEUE, {"reason": "HARASSMENT", "first": 100}, mod.token)
    node = next(
        e["node"] for e in seen["moderationQueue"]["edges"] if e["node"]["id"] == filed["id"]
    )
    assert node["reporter"] == {"id": reporter.id}

    # take-down: only moderators
    code, _ = await gql.error(RESOLVE, {"id": filed["id"], "action": "TAKE_DOWN"}, author.token)
    assert code == "FORBIDDEN"
    done = (
        await gql.ok(
            RESOLVE,
            {"id": filed["id"], "action": "TAKE_DOWN", "note": "targets a person"},
            mod.token,
        )
    )["resolveReport"]
    assert done["resolved"] is True and done["outcome"] == "TAKEN_DOWN"
    assert done["resolutionNote"] == "targets a person" and done["clip"]["state"] == "REMOVED"
    code, _ = await gql.error(RESOLVE, {"id": filed["id"], "action": "DISMISS"}, mod.token)
    assert code == "CONFLICT"
    code, _ = await gql.error(RESOLVE, {"id": other["id"], "action": "DISMISS"}, mod.token)
    assert code == "CONFLICT"  # the take-down resolved the clip's other open report too
    queued = await queue_ids(gql, mod)
    assert filed["id"] not in queued and other["id"] not in queued

    # gone for everyone else: clip(id), the feed, the author's clips, its file
    for viewer in (fan, reporter, second):
        assert (await gql.ok(CLIP, {"id": gid(clip)}, viewer.token))["clip"] is None
    assert (await gql.ok(CLIP, {"id": gid(clip)}))["clip"] is None
    assert gid(clip) not in {
        e["node"]["id"] for e in (await gql.ok(FEED, token=fan.token))["feed"]["edges"]
    }
    listed = (await gql.ok(USER_CLIPS, {"h": author.handle}, fan.token))["user"]["clips"]["edges"]
    assert gid(clip) not in {e["node"]["id"] for e in listed}
    assert await status(gql, url) == 404
    mine = (await gql.ok(CLIP, {"id": gid(clip)}, author.token))["clip"]
    assert mine["state"] == "REMOVED" and mine["video"] is None
    # ...but kept, for a restore: the media sweep leaves its file
    key = urlsplit(url).path.removeprefix("/media/")
    assert key not in await asyncio.to_thread(_sweep, settings)
    assert (settings.media_dir / key).exists()

    # the author and the featured owner are told, by nobody in particular
    for account in (author, owner):
        notices = await removed_notices(gql, account, clip)
        assert len(notices) == 1 and notices[0]["actor"] is None, notices
    assert await removed_notices(gql, fan, clip) == []

    # appeal: the author only, once; back in the queue
    code, _ = await gql.error(APPEAL, {"id": gid(clip)}, fan.token)
    assert code == "NOT_FOUND"
    code, _ = await gql.error(APPEAL, {"id": gid(clip)}, owner.token)
    assert code == "FORBIDDEN"  # the featured owner sees it, but it is not theirs
    appealed = await gql.ok(APPEAL, {"id": gid(clip), "note": "it is satire"}, author.token)
    assert appealed["appealTakeDown"]["state"] == "REMOVED"
    code, _ = await gql.error(APPEAL, {"id": gid(clip)}, author.token)
    assert code == "CONFLICT"
    items = (await gql.ok(QUEUE, {"first": 100}, mod.token))["moderationQueue"]["edges"]
    appeal = next(e["node"] for e in items if e["node"]["clip"]["id"] == gid(clip))
    assert appeal["kind"] == "APPEAL" and appeal["reason"] == "HARASSMENT"
    assert appeal["note"] == "it is satire" and appeal["reporter"] == {"id": author.id}

    # restore: moderators only; the clip is back where it was, the appeal resolved
    code, _ = await gql.error(RESTORE, {"id": gid(clip)}, author.token)
    assert code == "FORBIDDEN"
    restored = (await gql.ok(RESTORE, {"id": gid(clip)}, mod.token))["restoreClip"]
    assert restored["state"] == "PUBLISHED"
    assert appeal["id"] not in await queue_ids(gql, mod)
    seen = (await gql.ok(CLIP, {"id": gid(clip)}, fan.token))["clip"]
    assert seen["state"] == "PUBLISHED" and await status(gql, seen["video"]["url"]) == 200
    assert gid(clip) in {
        e["node"]["id"] for e in (await gql.ok(FEED, token=fan.token))["feed"]["edges"]
    }
    code, _ = await gql.error(RESTORE, {"id": gid(clip)}, mod.token)
    assert code == "CONFLICT"  # not taken down (any more)
    code, _ = await gql.error(APPEAL, {"id": gid(clip)}, author.token)
    assert code == "CONFLICT"

    # a new report after the old one was resolved is allowed, and can be dismissed
    again = (await gql.ok(REPORT, {"id": gid(clip), "reason": "OTHER"}, reporter.token))[
        "reportClip"
    ]
    dismissed = (await gql.ok(RESOLVE, {"id": again["id"], "action": "DISMISS"}, mod.token))[
        "resolveReport"
    ]
    assert dismissed["resolved"] is True and dismissed["outcome"] == "DISMISSED"
    assert dismissed["clip"]["state"] == "PUBLISHED"
    assert (await gql.ok(CLIP, {"id": gid(clip)}, fan.token))["clip"]["state"] == "PUBLISHED"


async def test_refusals_change_nothing(gql: GraphQLClient, graph, settings) -> None:
    author, reporter, mod = [await gql.sign_up(n) for n in ("author", "reporter", "mod")]
    moderator(settings, mod)
    clip = await rendered_clip(graph, raw(author), _now(), publish=True)
    draft = await rendered_clip(graph, raw(author), _now())
    variables = {"id": gid(clip), "reason": "SPAM"}

    code, _ = await gql.error(REPORT, variables)
    assert code == "UNAUTHENTICATED"
    code, _ = await gql.error(REPORT, {**variables, "note": "x" * 1001}, reporter.token)
    assert code == "BAD_USER_INPUT"
    code, _ = await gql.error(REPORT, {**variables, "note": "a\x00b"}, reporter.token)
    assert code == "BAD_USER_INPUT"
    code, _ = await gql.error(REPORT, {**variables, "id": "not-an-id!"}, reporter.token)
    assert code == "BAD_USER_INPUT"
    code, _ = await gql.error(
        REPORT, {**variables, "id": encode_id("User", raw(author))}, reporter.token
    )
    assert code == "NOT_FOUND"
    code, _ = await gql.error(REPORT, {**variables, "id": gid(str(ULID()))}, reporter.token)
    assert code == "NOT_FOUND"
    code, _ = await gql.error(REPORT, {**variables, "id": gid(draft)}, reporter.token)
    assert code == "NOT_FOUND"  # a draft the reporter may not see
    code, _ = await gql.error(REPORT, {**variables, "reason": "BORING"}, reporter.token)
    assert code in ("BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED")
    code, _ = await gql.error(REPORT, variables, author.token)
    assert code == "BAD_USER_INPUT"  # their own
    report = (await gql.ok(REPORT, {**variables, "note": "x" * 1000}, reporter.token))["reportClip"]

    code, _ = await gql.error(RESOLVE, {"id": report["id"], "action": "DISMISS"})
    assert code == "UNAUTHENTICATED"
    code, _ = await gql.error(
        RESOLVE, {"id": encode_id("Report", str(ULID())), "action": "DISMISS"}, mod.token
    )
    assert code == "NOT_FOUND"
    code, _ = await gql.error(RESOLVE, {"id": gid(clip), "action": "DISMISS"}, mod.token)
    assert code == "NOT_FOUND"  # a Clip id
    code, _ = await gql.error(
        RESOLVE, {"id": report["id"], "action": "DISMISS", "note": "y" * 1001}, mod.token
    )
    assert code == "BAD_USER_INPUT"
    assert report["id"] in await queue_ids(gql, mod)  # still open
    code, _ = await gql.error(QUEUE, {"first": -1}, mod.token)
    assert code == "BAD_USER_INPUT"
    code, _ = await gql.error(QUEUE, {"after": "garbage"}, mod.token)
    assert code == "BAD_USER_INPUT"

    code, _ = await gql.error(RESTORE, {"id": gid(clip)}, mod.token)
    assert code == "CONFLICT"  # never taken down
    code, _ = await gql.error(RESTORE, {"id": gid(str(ULID()))}, mod.token)
    assert code == "NOT_FOUND"
    code, _ = await gql.error(APPEAL, {"id": gid(clip)}, author.token)
    assert code == "CONFLICT"  # nothing to appeal
    code, _ = await gql.error(APPEAL, {"id": gid(clip), "note": "z" * 1001}, author.token)
    assert code == "BAD_USER_INPUT"
    # a clip its author deleted was not taken down by moderation: no restore
    await gql.ok(DELETE, {"id": gid(clip)}, author.token)
    code, _ = await gql.error(RESTORE, {"id": gid(clip)}, mod.token)
    assert code == "CONFLICT"
    taken = await gql.ok(RESOLVE, {"id": report["id"], "action": "TAKE_DOWN"}, mod.token)
    assert taken["resolveReport"]["outcome"] == "TAKEN_DOWN"  # it was removed already
    code, _ = await gql.error(RESTORE, {"id": gid(clip)}, mod.token)
    assert code == "CONFLICT"


async def test_an_owners_or_authors_removal_outlasts_a_take_down(
    gql: GraphQLClient, graph, services, settings, tmp_path
) -> None:
    author, owner, reporter, mod = [
        await gql.sign_up(n) for n in ("author", "owner", "reporter", "mod")
    ]
    moderator(settings, mod)
    featuring = await featured_clip(gql, graph, services, author, owner, tmp_path)
    plain = await rendered_clip(graph, raw(author), _now(), publish=True)
    for clip in (featuring, plain):
        report = await gql.ok(REPORT, {"id": gid(clip), "reason": "VIOLENCE"}, reporter.token)
        await gql.ok(RESOLVE, {"id": report["reportClip"]["id"], "action": "TAKE_DOWN"}, mod.token)

    # the featured owner removes their appearance, the author deletes the other: both stand
    removed = await gql.ok(REMOVE_APPEARANCE, {"id": gid(featuring)}, owner.token)
    assert removed["removeAppearance"]["state"] == "REMOVED"
    deleted = await gql.ok(DELETE, {"id": gid(plain)}, author.token)
    assert deleted["deleteClip"]["state"] == "REMOVED"
    for clip in (featuring, plain):
        code, message = await gql.error(RESTORE, {"id": gid(clip)}, mod.token)
        assert code == "CONFLICT", message
        code, _ = await gql.error(APPEAL, {"id": gid(clip)}, author.token)
        assert code == "CONFLICT"


async def test_a_restore_needs_consent_that_still_stands(
    gql: GraphQLClient, graph, services, settings, tmp_path
) -> None:
    author, owner, reporter, mod = [
        await gql.sign_up(n) for n in ("author", "owner", "reporter", "mod")
    ]
    moderator(settings, mod)
    clip = await featured_clip(gql, graph, services, author, owner, tmp_path)
    report = await gql.ok(REPORT, {"id": gid(clip), "reason": "SEXUAL"}, reporter.token)
    await gql.ok(RESOLVE, {"id": report["reportClip"]["id"], "action": "TAKE_DOWN"}, mod.token)
    await gql.ok("mutation { deleteCameo { id } }", token=owner.token)
    code, message = await gql.error(RESTORE, {"id": gid(clip)}, mod.token)
    assert code == "CONFLICT" and "consent" in message
