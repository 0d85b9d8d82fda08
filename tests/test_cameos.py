"""Cameos: who may use one (audience, grants, blocks), grants, restrictions, visibility,
revocation of uses, and deletion (crypto-shredding).

Everything runs on the session's embedded engine and Redis; cameos are made ACTIVE without
a worker here (conftest `active_cameo`); tests/test_cameo_capture.py runs the real worker.
Clips featuring a cameo are written as the clip flow writes them (a FEATURES edge with its
token ids), straight into the graph, so these tests need nothing of that flow.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest
import redis.asyncio as aredis
from conftest import Account, GraphQLClient, active_cameo, raw, rendered_clip

from consent.challenges import MOVES, Challenge, ChallengeRefused, consume_challenge
from consent.envelope import EnvelopeError, KeyShredded, decrypt, load_kek, reference_aad
from consent.references import open_reference_frames
from consent.tokens import is_revoked
from events.notifications import stream_key
from graph import cameos as cameo_repo
from graph import clips as clip_repo
from graph.driver import Cypher
from resolvers.ids import decode_id, encode_id

# what the clip flow writes for each cameo a clip features (graph model, issue 8)
FEATURE = Cypher(
    """
MATCH (clip:Clip {id: $clipId})
MATCH (c:Cameo {id: $cameoId})
CREATE (clip)-[:FEATURES {approval: $approval, epoch: c.consentEpoch, renderJti: $renderJti,
                          approvalJti: $approvalJti}]->(c)
RETURN clip.id AS id
"""
)
SET_CLIP_STATE = Cypher(
    """
MATCH (clip:Clip {id: $clipId})
SET clip.state = $state
RETURN clip.id AS id
"""
)
USES = Cypher(
    """
MATCH (clip:Clip)-[f:FEATURES]->(:Cameo {id: $cameoId})
RETURN clip.id AS id, clip.state AS state, clip.removedBy AS removedBy, f.approval AS approval
"""
)

CAMEO_FIELDS = "id state audience restrictions viewerCanUse rejectReason owner { id }"
USER_CAMEO = f"query($h: String!) {{ user(handle: $h) {{ cameo {{ {CAMEO_FIELDS} }} }} }}"
VIEWER_CAMEO = f"{{ viewer {{ cameo {{ {CAMEO_FIELDS} }} }} }}"
START = "mutation { startCameoCapture { id phrase moves uploadUrl expiresAt } }"
CHALLENGE = "query($id: ID!) { cameoChallenge(id: $id) { id phrase moves } }"
AUDIENCE = "mutation($a: CameoAudience!) { setCameoAudience(audience: $a) { audience } }"
RESTRICT = "mutation($r: [String!]!) { setCameoRestrictions(restrictions: $r) { restrictions } }"
GRANT = """mutation($u: ID!, $d: Int) { grantCameo(granteeId: $u, expiresInDays: $d) {
    id createdAt expiresAt revokedAt grantee { id } cameo { id } } }"""
REVOKE = "mutation($g: ID!) { revokeCameoGrant(grantId: $g) { id revokedAt } }"
DELETE = "mutation { deleteCameo { id state } }"
NODE = """query($id: ID!) { node(id: $id) { id
    ... on Cameo { state } ... on CameoGrant { revokedAt } } }"""
GRANTS = "query($id: ID!) { node(id: $id) { ... on Cameo { grants { id revokedAt } } } }"
APPEARANCES = """query($id: ID!, $first: Int, $after: String, $states: [ClipState!]) {
  node(id: $id) { ... on Cameo { appearances(first: $first, after: $after, states: $states) {
    edges { cursor node { id state author { id } } } pageInfo { hasNextPage endCursor } } } } }"""
CAN_USE = "query($id: ID!) { node(id: $id) { ... on Cameo { viewerCanUse } } }"


@pytest.fixture
async def redis(settings):
    """A client on the tests' own event loop (the app's runs in the test client's thread)."""
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


def _now() -> int:
    return int(time.time() * 1000)


async def with_cameo(gql, graph, services, prefix="owner", audience="EVERYONE"):
    owner = await gql.sign_up(prefix)
    cameo_id = await active_cameo(graph, services.media, raw(owner), audience=audience)
    return owner, cameo_id, encode_id("Cameo", cameo_id)


async def can_use(gql: GraphQLClient, account: Account | None, cameo_gid: str) -> bool:
    token = account.token if account else None
    node = (await gql.ok(CAN_USE, {"id": cameo_gid}, token))["node"]
    return bool(node and node["viewerCanUse"])


async def test_active_cameo_helper_stores_encrypted_frames(gql, graph, services, settings):
    owner = await gql.sign_up("owner")
    cameo_id = await active_cameo(graph, services.media, raw(owner))
    refs = (await cameo_repo.reference_media(graph, [cameo_id]))[cameo_id]
    assert refs["state"] == "ACTIVE" and refs["ownerId"] == raw(owner) and len(refs["refKeys"]) == 2
    frames = open_reference_frames(
        services.media, load_kek(settings), cameo_id, refs["wrappedKey"], refs["refKeys"]
    )
    assert all(frame.startswith(b"\xff\xd8") for frame in frames)  # JPEG
    rows = await cameo_repo.usable_cameos(graph, raw(owner), [cameo_id, "01UNKNOWN"], _now())
    assert [(r["id"], r["usable"], r["state"]) for r in rows] == [(cameo_id, True, "ACTIVE")]
    epoch = rows[0]["epoch"]
    assert await cameo_repo.cameo_usable(graph, cameo_id, raw(owner), epoch, _now())
    assert not await cameo_repo.cameo_usable(graph, cameo_id, raw(owner), epoch + 1, _now())


async def test_start_capture_issues_a_one_time_challenge_for_the_viewer_only(gql):
    code, _ = await gql.error(START)
    assert code == "UNAUTHENTICATED"
    owner, stranger = await gql.sign_up("owner"), await gql.sign_up("stranger")
    challenge = (await gql.ok(START, token=owner.token))["startCameoCapture"]
    digits = challenge["phrase"].split()
    assert len(digits) == 6 and all(d.isdigit() and len(d) == 1 for d in digits)
    assert 3 <= len(challenge["moves"]) <= 4 and set(challenge["moves"]) <= set(MOVES)
    assert all(a != b for a, b in zip(challenge["moves"], challenge["moves"][1:], strict=False))
    raw_id = decode_id(challenge["id"], "CameoChallenge")
    assert challenge["uploadUrl"].startswith("http")
    assert challenge["uploadUrl"].endswith(f"/cameo-captures/{raw_id}")
    mine = (await gql.ok(CHALLENGE, {"id": challenge["id"]}, owner.token))["cameoChallenge"]
    assert mine == {k: challenge[k] for k in ("id", "phrase", "moves")}
    assert (await gql.ok(CHALLENGE, {"id": challenge["id"]}, stranger.token))[
        "cameoChallenge"
    ] is None
    assert (await gql.ok(CHALLENGE, {"id": challenge["id"]}))["cameoChallenge"] is None

    # the first capture makes a PENDING_VERIFICATION cameo only its owner sees; another
    # capture reuses it
    cameo = (await gql.ok(VIEWER_CAMEO, token=owner.token))["viewer"]["cameo"]
    assert cameo["state"] == "PENDING_VERIFICATION" and cameo["audience"] == "ONLY_ME"
    assert cameo["viewerCanUse"] is False and cameo["rejectReason"] is None
    again = (await gql.ok(START, token=owner.token))["startCameoCapture"]
    assert again["id"] != challenge["id"]
    assert (await gql.ok(VIEWER_CAMEO, token=owner.token))["viewer"]["cameo"]["id"] == cameo["id"]
    seen = await gql.ok(USER_CAMEO, {"h": owner.handle}, stranger.token)
    assert seen["user"]["cameo"] is None


async def test_captures_are_rate_limited_per_user(gql, settings):
    owner = await gql.sign_up("busy")
    for _ in range(settings.cameo_capture_limit_per_user):
        await gql.ok(START, token=owner.token)
    body = await gql.raw(START, token=owner.token)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfterSeconds"] > 0
    other = await gql.sign_up("calm")
    await gql.ok(START, token=other.token)  # one user's captures never limit another's


async def test_owner_settings_need_a_cameo(gql):
    nobody = await gql.sign_up("nocameo")
    for query, variables in (
        (AUDIENCE, {"a": "EVERYONE"}),
        (RESTRICT, {"r": ["no ads"]}),
        (DELETE, None),
        (GRANT, {"u": (await gql.sign_up("x")).id}),
    ):
        code, message = await gql.error(query, variables, nobody.token)
        assert code == "NOT_FOUND" and "start a capture" in message


async def test_audience_rules_and_blocks_decide_who_may_use_a_cameo(gql, graph, services):
    owner, cameo_id, gid = await with_cameo(gql, graph, services, audience="ONLY_ME")
    stranger, friend, fan, granted = [await gql.sign_up(p) for p in ("s", "f", "fan", "g")]
    assert await can_use(gql, owner, gid)
    assert not await can_use(gql, stranger, gid)
    assert not await can_use(gql, None, gid)  # nobody signed in uses anything

    epoch = (await cameo_repo.cameos_by_ids(graph, [cameo_id]))[cameo_id]["consentEpoch"]
    await gql.ok(AUDIENCE, {"a": "EVERYONE"}, owner.token)
    after = (await cameo_repo.cameos_by_ids(graph, [cameo_id]))[cameo_id]["consentEpoch"]
    assert after == epoch + 1  # a new audience invalidates every token of the old one
    await gql.ok(AUDIENCE, {"a": "EVERYONE"}, owner.token)
    same = (await cameo_repo.cameos_by_ids(graph, [cameo_id]))[cameo_id]["consentEpoch"]
    assert same == after  # no change, no bump
    assert await can_use(gql, stranger, gid)

    # MUTUALS: following each other, or a grant; a one-way follow is not enough
    await gql.ok(AUDIENCE, {"a": "MUTUALS"}, owner.token)
    follow = "mutation($u: ID!) { follow(userId: $u) { id } }"
    await gql.ok(follow, {"u": owner.id}, friend.token)
    await gql.ok(follow, {"u": friend.id}, owner.token)
    await gql.ok(follow, {"u": owner.id}, fan.token)
    assert await can_use(gql, friend, gid)
    assert not await can_use(gql, fan, gid)
    assert not await can_use(gql, stranger, gid)
    await gql.ok(GRANT, {"u": granted.id}, owner.token)
    assert await can_use(gql, granted, gid)

    # APPROVED: grants only, mutual follows count for nothing
    await gql.ok(AUDIENCE, {"a": "APPROVED"}, owner.token)
    assert await can_use(gql, granted, gid)
    assert not await can_use(gql, friend, gid)

    # blocks win over every audience and grant, either way round
    await gql.ok(AUDIENCE, {"a": "EVERYONE"}, owner.token)
    block = "mutation($u: ID!) { blockUser(userId: $u) { id } }"
    await gql.ok(block, {"u": owner.id}, granted.token)  # the grantee blocks the owner
    await gql.ok(block, {"u": stranger.id}, owner.token)  # the owner blocks a stranger
    assert not await can_use(gql, granted, gid)
    assert not await can_use(gql, stranger, gid)
    rows = await cameo_repo.usable_cameos(graph, raw(granted), [cameo_id], _now())
    assert rows[0]["usable"] is False
    # and neither sees the cameo on the owner's profile any more
    for viewer in (granted, stranger):
        seen = await gql.ok(USER_CAMEO, {"h": owner.handle}, viewer.token)
        assert seen["user"]["cameo"] is None
    assert (await gql.ok(USER_CAMEO, {"h": owner.handle}, friend.token))["user"]["cameo"]["id"]


async def test_an_expired_grant_gives_nothing(gql, graph, services):
    owner, cameo_id, gid = await with_cameo(gql, graph, services, audience="APPROVED")
    grantee = await gql.sign_up("late")
    past = _now() - 1000
    grant = await cameo_repo.create_grant(
        graph,
        owner_id=raw(owner),
        grantee_id=raw(grantee),
        grant_id="01EXPIRED" + cameo_id[-8:],
        now=past - 1000,
        expires_at=past,
    )
    assert grant is not None and grant["expiresAt"] == past
    assert not await can_use(gql, grantee, gid)
    assert not await cameo_repo.cameo_usable(graph, cameo_id, raw(grantee), 2, _now())
    # a grant made now is a new one, and it counts until it expires
    fresh = (await gql.ok(GRANT, {"u": grantee.id, "d": 1}, owner.token))["grantCameo"]
    assert decode_id(fresh["id"], "CameoGrant") != grant["id"]
    assert fresh["expiresAt"] is not None
    assert await can_use(gql, grantee, gid)


async def test_grant_rules(gql, graph, services):
    owner, _, gid = await with_cameo(gql, graph, services, audience="APPROVED")
    grantee, stranger, blocker, blocked = [await gql.sign_up(p) for p in "gsbk"]

    code, _ = await gql.error(GRANT, {"u": owner.id}, owner.token)
    assert code == "BAD_USER_INPUT"
    for days in (0, 366, -1):
        code, message = await gql.error(GRANT, {"u": grantee.id, "d": days}, owner.token)
        assert code == "BAD_USER_INPUT" and "1-365" in message
    code, _ = await gql.error(GRANT, {"u": encode_id("User", "01NOSUCHUSER")}, owner.token)
    assert code == "NOT_FOUND"
    block = "mutation($u: ID!) { blockUser(userId: $u) { id } }"
    await gql.ok(block, {"u": owner.id}, blocker.token)
    await gql.ok(block, {"u": blocked.id}, owner.token)
    code, message = await gql.error(GRANT, {"u": blocker.id}, owner.token)
    assert code == "FORBIDDEN" and "blocked you" in message
    code, message = await gql.error(GRANT, {"u": blocked.id}, owner.token)
    assert code == "FORBIDDEN" and "unblock" in message

    grant = (await gql.ok(GRANT, {"u": grantee.id, "d": 30}, owner.token))["grantCameo"]
    assert grant["grantee"]["id"] == grantee.id and grant["cameo"]["id"] == gid
    assert grant["revokedAt"] is None and grant["expiresAt"] > grant["createdAt"]
    again = (await gql.ok(GRANT, {"u": grantee.id}, owner.token))["grantCameo"]
    assert again["id"] == grant["id"]  # re-granting an active grant returns it

    # grants: the owner's to see; a grant node: its owner's and its grantee's
    listed = (await gql.ok(GRANTS, {"id": gid}, owner.token))["node"]["grants"]
    assert [g["id"] for g in listed] == [grant["id"]]
    body = await gql.raw(GRANTS, {"id": gid}, grantee.token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    for viewer in (owner, grantee):
        node = (await gql.ok(NODE, {"id": grant["id"]}, viewer.token))["node"]
        assert node["id"] == grant["id"]
    assert (await gql.ok(NODE, {"id": grant["id"]}, stranger.token))["node"] is None

    # only the owner revokes; the grantee is told so, a stranger learns nothing
    code, _ = await gql.error(REVOKE, {"g": grant["id"]}, grantee.token)
    assert code == "FORBIDDEN"
    code, _ = await gql.error(REVOKE, {"g": grant["id"]}, stranger.token)
    assert code == "NOT_FOUND"
    assert await can_use(gql, grantee, gid)
    revoked = (await gql.ok(REVOKE, {"g": grant["id"]}, owner.token))["revokeCameoGrant"]
    assert revoked["revokedAt"] is not None
    assert not await can_use(gql, grantee, gid)
    twice = (await gql.ok(REVOKE, {"g": grant["id"]}, owner.token))["revokeCameoGrant"]
    assert twice["revokedAt"] == revoked["revokedAt"]  # the first revocation's time stays
    listed = (await gql.ok(GRANTS, {"id": gid}, owner.token))["node"]["grants"]
    assert listed[0]["revokedAt"] == revoked["revokedAt"]

    # a block made after a grant wins over it: granting again is refused, not "already granted"
    late = await gql.sign_up("late")
    late_grant = (await gql.ok(GRANT, {"u": late.id}, owner.token))["grantCameo"]
    assert (await gql.ok(NODE, {"id": late_grant["id"]}, late.token))["node"]
    await gql.ok(block, {"u": owner.id}, late.token)
    code, message = await gql.error(GRANT, {"u": late.id}, owner.token)
    assert code == "FORBIDDEN" and "blocked you" in message
    assert not await can_use(gql, late, gid)
    # nor does the grant show the blocked pair the cameo any more (its owner still sees it)
    assert (await gql.ok(NODE, {"id": late_grant["id"]}, late.token))["node"] is None
    assert (await gql.ok(NODE, {"id": late_grant["id"]}, owner.token))["node"]


async def feature(graph, clip_id: str, cameo_id: str, approval: str = "PENDING") -> dict:
    jtis = {"renderJti": f"r-{clip_id}", "approvalJti": f"a-{clip_id}"}
    params = {"clipId": clip_id, "cameoId": cameo_id, "approval": approval, **jtis}
    assert await graph.write(FEATURE, params)
    return jtis


async def clip_in_state(graph, author: Account, cameo_id: str, state: str) -> tuple[str, dict]:
    clip_id = await rendered_clip(graph, raw(author), _now(), publish=state == "PUBLISHED")
    if state not in ("DRAFT", "PUBLISHED"):
        assert await graph.write(SET_CLIP_STATE, {"clipId": clip_id, "state": state})
    return clip_id, await feature(graph, clip_id, cameo_id)


async def uses(graph, cameo_id: str) -> dict[str, tuple]:
    rows = await graph.read(USES, {"cameoId": cameo_id})
    return {row["id"]: (row["state"], row["approval"], row["removedBy"]) for row in rows}


async def test_revoking_a_grant_revokes_the_grantees_unpublished_uses(gql, graph, services, redis):
    owner, cameo_id, _ = await with_cameo(gql, graph, services, audience="APPROVED")
    grantee, other = await gql.sign_up("grantee"), await gql.sign_up("other")
    grant = (await gql.ok(GRANT, {"u": grantee.id}, owner.token))["grantCameo"]
    clips = {}
    for state in ("QUEUED", "RENDERING", "DRAFT", "AWAITING_APPROVAL", "PUBLISHED", "FAILED"):
        clips[state] = await clip_in_state(graph, grantee, cameo_id, state)
    others_clip, _ = await clip_in_state(graph, other, cameo_id, "DRAFT")

    await gql.ok(REVOKE, {"g": grant["id"]}, owner.token)
    after = await uses(graph, cameo_id)
    for state in ("QUEUED", "RENDERING", "DRAFT"):
        assert after[clips[state][0]] == (state, "REVOKED", None)
    # waiting for approval goes back to DRAFT: it can never be approved now
    assert after[clips["AWAITING_APPROVAL"][0]] == ("DRAFT", "REVOKED", None)
    # published and failed clips are no unpublished use; another author's use is not this grant's
    assert after[clips["PUBLISHED"][0]] == ("PUBLISHED", "PENDING", None)
    assert after[clips["FAILED"][0]] == ("FAILED", "PENDING", None)
    assert after[others_clip] == ("DRAFT", "PENDING", None)
    for state in ("QUEUED", "RENDERING", "DRAFT", "AWAITING_APPROVAL"):
        jtis = clips[state][1]
        assert await is_revoked(redis, jtis["renderJti"])
        assert await is_revoked(redis, jtis["approvalJti"])
    assert not await is_revoked(redis, clips["PUBLISHED"][1]["renderJti"])


async def test_restrictions_are_bounded_and_normalised(gql, graph, services):
    owner, _, _ = await with_cameo(gql, graph, services)
    rules = ["  no   political content ", "No political content", "", "no\u0301 ads", "no ads"]
    saved = (await gql.ok(RESTRICT, {"r": rules}, owner.token))["setCameoRestrictions"]
    assert saved["restrictions"] == ["no political content", "n\u00f3 ads", "no ads"]
    seen = (await gql.ok(USER_CAMEO, {"h": owner.handle}))["user"]["cameo"]
    assert seen["restrictions"] == saved["restrictions"]
    for bad, words in (
        ([f"rule {i}" for i in range(11)], "at most 10"),
        (["x" * 101], "100 characters"),
        (["no\x00thing"], "control characters"),
    ):
        code, message = await gql.error(RESTRICT, {"r": bad}, owner.token)
        assert code == "BAD_USER_INPUT" and words in message
    kept = (await gql.ok(USER_CAMEO, {"h": owner.handle}))["user"]["cameo"]["restrictions"]
    assert kept == saved["restrictions"]  # a refused change writes nothing
    cleared = (await gql.ok(RESTRICT, {"r": []}, owner.token))["setCameoRestrictions"]
    assert cleared["restrictions"] == []


async def test_appearances_are_the_owners_every_clip_featuring_the_cameo(gql, graph, services):
    owner, cameo_id, gid = await with_cameo(gql, graph, services)
    author = await gql.sign_up("author")
    draft, _ = await clip_in_state(graph, author, cameo_id, "DRAFT")
    published, _ = await clip_in_state(graph, author, cameo_id, "PUBLISHED")
    own, _ = await clip_in_state(graph, owner, cameo_id, "QUEUED")
    unrelated = await rendered_clip(graph, raw(author), _now())

    body = await gql.raw(APPEARANCES, {"id": gid}, author.token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    seen, after = [], None
    while True:
        variables = {"id": gid, "first": 2, "after": after}
        page = (await gql.ok(APPEARANCES, variables, owner.token))["node"]["appearances"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    expected = [encode_id("Clip", c) for c in (own, published, draft)]  # newest first
    assert seen == expected and encode_id("Clip", unrelated) not in seen
    variables = {"id": gid, "states": ["DRAFT"]}
    page = (await gql.ok(APPEARANCES, variables, owner.token))["node"]["appearances"]
    assert [edge["node"]["id"] for edge in page["edges"]] == [encode_id("Clip", draft)]
    assert page["edges"][0]["node"]["author"]["id"] == author.id


async def test_cameo_nodes_show_what_the_viewer_may_see(gql, graph, services):
    owner = await gql.sign_up("pending")
    await gql.ok(START, token=owner.token)
    pending = (await gql.ok(VIEWER_CAMEO, token=owner.token))["viewer"]["cameo"]
    stranger = await gql.sign_up("stranger")
    assert (await gql.ok(NODE, {"id": pending["id"]}, owner.token))["node"]["state"] == (
        "PENDING_VERIFICATION"
    )
    assert (await gql.ok(NODE, {"id": pending["id"]}, stranger.token))["node"] is None
    active_owner, _, gid = await with_cameo(gql, graph, services)
    node = (await gql.ok(NODE, {"id": gid}))["node"]
    assert node == {"id": gid, "state": "ACTIVE"}  # anyone may know an ACTIVE cameo
    data = await gql.ok(
        f'{{ node(id: "{gid}") {{ ... on Cameo {{ rejectReason owner {{ id }} }} }} }}'
    )
    assert data["node"] == {"rejectReason": None, "owner": {"id": active_owner.id}}


async def test_delete_cameo_shreds_the_key_and_ends_every_use(
    gql, graph, services, settings, redis
):
    owner, cameo_id, gid = await with_cameo(gql, graph, services, audience="APPROVED")
    grantee, other = await gql.sign_up("grantee"), await gql.sign_up("other")
    grant = (await gql.ok(GRANT, {"u": grantee.id}, owner.token))["grantCameo"]
    queued, queued_jtis = await clip_in_state(graph, grantee, cameo_id, "QUEUED")
    waiting, _ = await clip_in_state(graph, grantee, cameo_id, "AWAITING_APPROVAL")
    published, published_jtis = await clip_in_state(graph, other, cameo_id, "PUBLISHED")
    owners_own, _ = await clip_in_state(graph, owner, cameo_id, "DRAFT")

    # a backup of the encrypted reference files, taken before the deletion
    refs = (await cameo_repo.reference_media(graph, [cameo_id]))[cameo_id]
    media_root: Path = services.media.root
    backup = Path(settings.data_dir) / f"backup-{cameo_id}"
    backup.mkdir()
    for key in refs["refKeys"]:
        shutil.copy(media_root / key, backup / Path(key).name)
    copies = [backup / Path(key).name for key in refs["refKeys"]]
    kek = load_kek(settings)
    frames = open_reference_frames(
        services.media, kek, cameo_id, refs["wrappedKey"], refs["refKeys"]
    )
    assert len(frames) == 2  # readable while the cameo lives

    deleted = (await gql.ok(DELETE, token=owner.token))["deleteCameo"]
    assert deleted == {"id": gid, "state": "DELETED"}

    after = (await cameo_repo.reference_media(graph, [cameo_id]))[cameo_id]
    assert after["wrappedKey"] is None and after["kekId"] is None and after["refKeys"] == []
    assert after["epoch"] > refs["epoch"]
    assert not any((media_root / key).exists() for key in refs["refKeys"])
    # the backup is noise: the only way to its data key was the wrapped key, now gone
    with pytest.raises(KeyShredded):
        open_reference_frames(services.media, kek, cameo_id, after["wrappedKey"], [])
    for copy in copies:
        blob = copy.read_bytes()
        assert b"JFIF" not in blob and b"\xff\xd8\xff" not in blob
        with pytest.raises(EnvelopeError):  # nor does any other key open it, the KEK included
            decrypt(kek.key, blob, aad=reference_aad(cameo_id))
    shutil.rmtree(backup)

    result = await uses(graph, cameo_id)
    assert result[queued] == ("QUEUED", "REVOKED", None)
    assert result[waiting] == ("DRAFT", "REVOKED", None)
    assert result[published] == ("REMOVED", "REVOKED", "cameo-owner")
    assert result[owners_own] == ("DRAFT", "PENDING", None)  # the owner's own draft is theirs
    for jti in (queued_jtis["renderJti"], published_jtis["approvalJti"]):
        assert await is_revoked(redis, jti)
    grant_row = await cameo_repo.grants_by_ids(graph, [decode_id(grant["id"], "CameoGrant")])
    assert all(g["revokedAt"] for g in grant_row.values())
    assert not await can_use(gql, grantee, gid) and not await can_use(gql, owner, gid)
    entries = await redis.xrange(stream_key(raw(other)))
    removed = [json.loads(e[1]["payload"]) for e in entries if e[1]["kind"] == "CLIP_REMOVED"]
    assert any(p["clipId"] == published and p["actorId"] == raw(owner) for p in removed)
    published_row = (await clip_repo.clips_by_ids(graph, [published]))[published]
    assert published_row["state"] == "REMOVED"

    # the owner still sees it, DELETED; others do not; a new capture makes a new cameo
    assert (await gql.ok(NODE, {"id": gid}, owner.token))["node"]["state"] == "DELETED"
    assert (await gql.ok(NODE, {"id": gid}, grantee.token))["node"] is None
    assert (await gql.ok(USER_CAMEO, {"h": owner.handle}, owner.token))["user"]["cameo"] is None
    code, _ = await gql.error(DELETE, token=owner.token)
    assert code == "NOT_FOUND"
    await gql.ok(START, token=owner.token)
    fresh = (await gql.ok(VIEWER_CAMEO, token=owner.token))["viewer"]["cameo"]
    assert fresh["id"] != gid and fresh["state"] == "PENDING_VERIFICATION"


async def test_a_challenge_is_used_once_even_by_racing_uploads(gql, graph, redis):
    owner = await gql.sign_up("racer")
    challenge = (await gql.ok(START, token=owner.token))["startCameoCapture"]
    raw_id = decode_id(challenge["id"], "CameoChallenge")
    results = await asyncio.gather(
        *(consume_challenge(redis, raw_id, raw(owner), now=_now()) for _ in range(5)),
        return_exceptions=True,
    )
    used = [r for r in results if isinstance(r, Challenge)]
    refused = [r for r in results if isinstance(r, ChallengeRefused)]
    assert len(used) == 1 and len(refused) == 4
    assert {r.status for r in refused} == {409} and all("already used" in r.reason for r in refused)


async def test_only_the_latest_accepted_capture_records_a_verdict(gql, graph):
    owner = await gql.sign_up("twice")
    now = _now()
    cameo = await cameo_repo.ensure_cameo(graph, raw(owner), "01TWICE" + str(now)[-10:], now)
    assert await cameo_repo.accept_capture(graph, raw(owner), cameo["id"], "first", now)
    assert await cameo_repo.accept_capture(graph, raw(owner), cameo["id"], "second", now)
    stale = await cameo_repo.activate_capture(
        graph, cameo["id"], "first", wrapped_key="k", kek_id="x", ref_keys=[], now=now
    )
    assert stale is None  # the first capture's worker deletes its own files then
    assert await cameo_repo.reject_capture(graph, cameo["id"], "first", "too late") is None
    assert (await cameo_repo.live_cameo(graph, raw(owner)))["state"] == "PENDING_VERIFICATION"
    rejected = await cameo_repo.reject_capture(graph, cameo["id"], "second", "No face.")
    assert rejected["state"] == "REJECTED" and rejected["rejectReason"] == "No face."
    # a verdict is recorded once: the capture no longer counts after it
    again = await cameo_repo.activate_capture(
        graph, cameo["id"], "second", wrapped_key="k", kek_id="x", ref_keys=[], now=now
    )
    assert again is None
