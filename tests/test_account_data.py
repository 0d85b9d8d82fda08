"""Your data: `exportMyData` (an archive behind a link only its owner can open) and
`deleteAccount` (sessions and sockets closed, the cameo erased, every clip of the account and
every clip featuring its cameo taken down, the user node left with nothing personal).

Clips render through a real Celery worker (the preview renderer); archives are real zip
files fetched over HTTP from the real app.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
import zipfile
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import websockets
from conftest import (
    GraphQLClient,
    cameo_of,
    purge_render_queue,
    raw,
    rendered_clip,
    run_cli,
    start_worker,
)
from test_sockets import connected, serving, subscribe

from graph.driver import Cypher
from resolvers.ids import encode_id

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
CLIP = """query($id: ID!) { clip(id: $id) { id state failureReason video { sha256 } } }"""
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state } }"
APPROVE = "mutation($id: ID!) { approveAppearance(clipId: $id) { id state } }"
GRANT = "mutation($u: ID!) { grantCameo(granteeId: $u) { id } }"
FOLLOW = "mutation($u: ID!) { follow(userId: $u) { id followerCount } }"
EXPORT = "mutation { exportMyData { url expiresAt sizeBytes clipCount } }"
DELETE = """mutation($p: String!) { deleteAccount(password: $p) {
  deletedAt clipsTakenDown cameoErased } }"""
VIEWER = "{ viewer { handle } }"
USER = "query($h: String!) { user(handle: $h) { id followerCount followingCount } }"
LOG_IN = "mutation($h: String!, $p: String!) { logIn(handle: $h, password: $p) { accessToken } }"
REFRESH = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }"
NOTIFICATIONS = "subscription { notifications { kind } }"
REPORT = """mutation($c: ID!, $n: String) { reportClip(clipId: $c, reason: SPAM, note: $n) {
  id } }"""
NOTES_FILED_BY = Cypher(
    """
MATCH (:User {id: $id})-[:FILED]->(r:Report)
RETURN r.note AS note
"""
)
USER_NODE = Cypher(
    """
MATCH (u:User {id: $id})
RETURN u {.*} AS user
"""
)


@pytest.fixture(scope="module")
def worker(settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    purge_render_queue(settings)
    w = start_worker(settings, tmp_path_factory.mktemp("account-worker") / "worker.log")
    yield
    w.stop()


async def _draft(gql: GraphQLClient, token: str, prompt: str, cameo: str | None = None) -> str:
    body = {"prompt": prompt, **({"cameoIds": [cameo]} if cameo else {})}
    created = (await gql.ok(CREATE, {"input": body}, token))["createClip"]
    clip = await gql.wait_clip(CLIP, token, created["id"], {"DRAFT", "FAILED"})
    assert clip["state"] == "DRAFT", clip["failureReason"]
    return created["id"]


async def _fetch(gql: GraphQLClient, url: str) -> tuple[int, bytes]:
    response = await gql.client.get(url)
    return response.status_code, response.content


def _relinked(url: str, **query: str) -> str:
    parts = urlsplit(url)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()} | query
    return f"{parts.path}?{urlencode(params)}"


async def test_an_export_holds_clips_files_cameo_uses_and_decisions_for_its_owner_only(
    gql: GraphQLClient, graph, services, worker
) -> None:
    author, owner = await gql.sign_up("author"), await gql.sign_up("owner")
    cameo = await cameo_of(graph, services, owner, audience="APPROVED")
    await gql.ok(GRANT, {"u": author.id}, owner.token)
    clip_id = await _draft(gql, author.token, "a kite over dunes", cameo)
    await gql.ok(APPROVE, {"id": clip_id}, owner.token)
    plain_id = await _draft(gql, author.token, "rain on a tin roof")

    done = (await gql.ok(EXPORT, token=author.token))["exportMyData"]
    assert done["clipCount"] == 2
    status, body = await _fetch(gql, done["url"])
    assert status == 200 and len(body) == done["sizeBytes"]
    archive = zipfile.ZipFile(io.BytesIO(body))
    clips = {c["prompt"]: c for c in json.loads(archive.read("clips.json"))}
    featured = clips["a kite over dunes"]
    assert featured["state"] == "DRAFT"
    assert [c["approval"] for c in featured["cameos"]] == ["APPROVED"]
    for clip in clips.values():  # each video, byte for byte the rendered file
        shown = (await gql.ok(CLIP, {"id": encode_id("Clip", clip["id"])}, author.token))["clip"]
        data = archive.read(clip["videoFile"])
        assert hashlib.sha256(data).hexdigest() == shown["video"]["sha256"]
    assert {encode_id("Clip", c["id"]) for c in clips.values()} == {clip_id, plain_id}
    profile = json.loads(archive.read("profile.json"))
    assert profile["profile"]["handle"] == author.handle
    everything = b"".join(archive.read(name) for name in archive.namelist())
    for secret in (b"passwordHash", b"renderToken", b"approvalToken", b"wrappedKey"):
        assert secret not in everything

    # the cameo owner's archive: the grant given and the use, with their decision
    mine = (await gql.ok(EXPORT, token=owner.token))["exportMyData"]
    status, body = await _fetch(gql, mine["url"])
    owners = zipfile.ZipFile(io.BytesIO(body))
    cameos = json.loads(owners.read("cameos.json"))
    actions = [entry["action"] for entry in json.loads(owners.read("audit.json"))]
    assert actions == ["cameo.grant", "appearance.approve"], actions
    assert [g["grantee"] for g in cameos[0]["grants"]] == [author.handle]
    assert [(u["author"], u["approval"]) for u in cameos[0]["uses"]] == [
        (author.handle, "APPROVED")
    ]

    # the link is the author's alone: another viewer named in it, or /media, finds nothing
    assert (await _fetch(gql, _relinked(done["url"], v=raw(owner))))[0] == 404
    assert (await _fetch(gql, done["url"].replace("/exports/", "/media/exports/")))[0] == 404
    # the author's signature on the owner's archive opens nothing either
    swapped = urlsplit(mine["url"]).path + "?" + urlsplit(done["url"]).query
    assert (await _fetch(gql, swapped))[0] == 404
    # a new export replaces the last: its link stops working
    again = (await gql.ok(EXPORT, token=author.token))["exportMyData"]
    assert (await _fetch(gql, done["url"]))[0] == 404
    assert (await _fetch(gql, again["url"]))[0] == 200
    code, _ = await gql.error(EXPORT)
    assert code == "UNAUTHENTICATED"


async def test_deleting_an_account_takes_everything_down_and_keeps_nothing_personal(
    gql: GraphQLClient, graph, services, settings, worker
) -> None:
    leaving, friend, other = (
        await gql.sign_up("leaving"),
        await gql.sign_up("friend"),
        await gql.sign_up("other"),
    )
    cameo = await cameo_of(graph, services, leaving, audience="EVERYONE")
    own = await _draft(gql, leaving.token, "my own clip")
    assert (await gql.ok(PUBLISH, {"id": own}, leaving.token))["publishClip"]["state"] == (
        "PUBLISHED"
    )
    featuring = await _draft(gql, friend.token, "friends at the beach", cameo)
    await gql.ok(APPROVE, {"id": featuring}, leaving.token)
    assert (await gql.ok(PUBLISH, {"id": featuring}, friend.token))["publishClip"][
        "state"
    ] == "PUBLISHED"
    await gql.ok(FOLLOW, {"u": friend.id}, leaving.token)
    await gql.ok(FOLLOW, {"u": leaving.id}, other.token)
    before = (await gql.ok(USER, {"h": friend.handle}, other.token))["user"]
    reported = await rendered_clip(graph, raw(other), int(time.time() * 1000), publish=True)
    await gql.ok(REPORT, {"c": encode_id("Clip", reported), "n": "my words"}, leaving.token)

    # a wrong password deletes nothing
    code, message = await gql.error(DELETE, {"p": "not my password"}, leaving.token)
    assert code == "FORBIDDEN" and "password" in message
    assert (await gql.ok(VIEWER, token=leaving.token))["viewer"]["handle"] == leaving.handle

    async with serving(settings, socket_lease_s=1) as running:
        async with connected(running, leaving.token) as ws:
            await subscribe(ws, NOTIFICATIONS)
            done = (await gql.ok(DELETE, {"p": leaving.password}, leaving.token))["deleteAccount"]
            # the open socket is closed (its session check runs on each lease renewal)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 60)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    assert done["cameoErased"] is True and done["clipsTakenDown"] == 1

    # sessions end: the access token, the password
    code, message = await gql.error(VIEWER, token=leaving.token)
    assert code == "UNAUTHENTICATED" and "deleted" in message
    code, _ = await gql.error(LOG_IN, {"h": leaving.handle, "p": leaving.password})
    assert code == "UNAUTHENTICATED"
    code, _ = await gql.error(REFRESH, {"t": leaving.refresh_token})
    assert code == "UNAUTHENTICATED"
    # their clip and the clip featuring their cameo are gone for everyone
    for clip_id in (own, featuring):
        assert (await gql.ok(CLIP, {"id": clip_id}, other.token))["clip"] is None
    assert (await gql.ok(CLIP, {"id": featuring}, friend.token))["clip"]["state"] == "REMOVED"
    # the follows are gone, with the counts they moved
    after = (await gql.ok(USER, {"h": friend.handle}, other.token))["user"]
    assert after["followerCount"] == before["followerCount"] - 1
    assert (await gql.ok(USER, {"h": leaving.handle}, other.token))["user"] is None
    # the node keeps its id for history, and nothing personal
    node = (await graph.read(USER_NODE, {"id": raw(leaving)}))[0]["user"]
    assert node.get("passwordHash") is None and node["handle"] != leaving.handle
    assert node["displayName"] == "Deleted account" and node["deletedAt"] == _ms(done)
    assert [r["note"] for r in await graph.read(NOTES_FILED_BY, {"id": raw(leaving)})] == [None]
    # the audit log forgot who they were, and still verifies
    verified = run_cli(settings, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # the handle is free again
    await gql.ok(
        """mutation($i: SignUpInput!) { signUp(input: $i) { user { handle } } }""",
        {"i": {"handle": leaving.handle, "displayName": "New", "password": "another passw0rd"}},
    )


def _ms(done: dict) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(done["deletedAt"]).timestamp() * 1000)
