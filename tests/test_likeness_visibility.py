"""Who may see and play a clip featuring someone's likeness (issue 14, items 4 and 5).

- Withdrawal: revoking a grant or deleting a cameo makes every unpublished render of others
  featuring it unplayable at once (Clip.video null, every /media link refused, old or
  fresh), and the media sweep deletes its file. Rendered by a real Celery worker.
- Blocks by featured owners: a viewer with a block (either way) between them and anyone
  featured in a clip sees neither it nor the remixes below it, in `node`, `clip`, the
  feeds, User.clips, lineage, likes, /media and feedUpdates; a co-featured owner sees a draft
  only while no block stands between them and the other featured owners.
- The rule is written once in Cypher and once in Python (graph/visibility.py): both are
  run here over the same small graph and must agree on every case.

Clips for the block tests are written as the clip flow writes them (their FEATURES edges
planned by consent.plan_cameo_uses, the render claimed and finished through the
repository, a file stored under the clip's key), then published and approved through the
API.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import (
    Account,
    GraphQLClient,
    Worker,
    active_cameo,
    purge_render_queue,
    raw,
    rendered_clip,
    start_worker,
)
from ulid import ULID

from consent import plan_cameo_uses
from graph import cameos as cameo_repo
from graph import clips as clip_repo
from graph import notifications as audience_repo
from graph import users as user_repo
from graph.driver import Cypher, driver_for
from graph.visibility import (
    NO_BLOCKS,
    clip_visible,
    shown_to,
    viewer_blocks,
    viewer_blocks_clauses,
)
from media.store import clip_video_key, sign_media_path
from resolvers.ids import decode_id, encode_id
from workers.celery_app import make_celery
from workers.reaper import Reaper

CREATE = "mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"
CLIP = """query($id: ID!) { clip(id: $id) { id state failureReason video { url }
  cameos { approval cameo { id } } } }"""
NODE = "query($id: ID!) { node(id: $id) { id ... on Clip { state video { url } } } }"
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state } }"
APPROVE = "mutation($id: ID!) { approveAppearance(clipId: $id) { id state } }"
GRANT = "mutation($u: ID!) { grantCameo(granteeId: $u) { id } }"
REVOKE = "mutation($g: ID!) { revokeCameoGrant(grantId: $g) { id revokedAt } }"
DELETE_CAMEO = "mutation { deleteCameo { id state } }"
BLOCK = "mutation($id: ID!) { blockUser(userId: $id) { id } }"
FOLLOW = "mutation($id: ID!) { follow(userId: $id) { id } }"
LIKE = "mutation($id: ID!) { likeClip(clipId: $id) { id } }"
INBOX = "{ cameoInbox(first: 50) { edges { node { id } } } }"
FEED = """query($kind: FeedKind!, $after: String) { feed(kind: $kind, first: 50, after: $after) {
  edges { node { id } } pageInfo { hasNextPage endCursor } } }"""
USER_CLIPS = """query($h: String!) { user(handle: $h) {
  clips(first: 50) { edges { node { id } } } } }"""
LINEAGE = """query($id: ID!) { clip(id: $id) { id root { id } lineage { id } remixCount
  forkDepth remixes(first: 10) { edges { node { id } } } } }"""
TREE = """query($id: ID!) { remixTree(clipId: $id) { nodes { clip { id } } size } }"""


def gid(raw_id: str) -> str:
    return encode_id("Clip", raw_id)


def _now() -> int:
    return int(time.time() * 1000)


async def status(gql: GraphQLClient, url: str) -> int:
    return (await gql.client.get(url)).status_code


# --- 1. withdrawal: a real worker renders the drafts


@pytest.fixture(scope="module")
def worker(settings, app, tmp_path_factory) -> Worker:
    purge_render_queue(settings)  # never render tasks other modules left queued
    w = start_worker(settings, tmp_path_factory.mktemp("likeness-worker") / "worker.log")
    yield w
    w.stop()


def _sweep(settings) -> list[str]:
    """One media sweep, as a worker's reaper runs it, with no grace period."""
    celery_app = make_celery(settings)
    reaper = Reaper(settings.model_copy(update={"media_orphan_grace_s": 0}), celery_app)
    try:
        return reaper.delete_orphans()
    finally:
        reaper.close()
        celery_app.close()


async def _draft(gql: GraphQLClient, author: Account, prompt: str, cameo: str) -> dict:
    variables = {"input": {"prompt": prompt, "cameoIds": [cameo], "durationSeconds": 1}}
    created = (await gql.ok(CREATE, variables, author.token))["createClip"]
    clip = await gql.wait_clip(CLIP, author.token, created["id"], {"DRAFT", "FAILED"})
    assert clip["state"] == "DRAFT", clip["failureReason"]
    return clip


async def _assert_withdrawn(
    gql: GraphQLClient, settings, clip: dict, author: Account, owner: Account
) -> None:
    """Nobody plays the draft any more: no video for anyone, every link refused, the file
    deleted by the next media sweep."""
    url = clip["video"]["url"]
    key = urlsplit(url).path.removeprefix("/media/")
    for viewer in (author, owner):
        seen = (await gql.ok(CLIP, {"id": clip["id"]}, viewer.token))["clip"]
        assert seen["state"] == "DRAFT" and seen["video"] is None, seen
        node = (await gql.ok(NODE, {"id": clip["id"]}, viewer.token))["node"]
        assert node["video"] is None
    assert await status(gql, url) == 404  # the link the author already held
    for viewer in (author, owner):  # and a link signed just now, for either of them
        fresh = sign_media_path(settings.media_link_key, key, raw(viewer), 600)
        assert await status(gql, fresh) == 404
    assert (settings.media_dir / key).exists()
    assert key in await asyncio.to_thread(_sweep, settings)
    assert not (settings.media_dir / key).exists()


async def test_revoking_a_grant_makes_the_grantees_drafts_unplayable(
    gql: GraphQLClient, graph, services, settings, worker
) -> None:
    owner, grantee = await gql.sign_up("owner"), await gql.sign_up("grantee")
    cameo = encode_id(
        "Cameo", await active_cameo(graph, services.media, raw(owner), audience="APPROVED")
    )
    grant = (await gql.ok(GRANT, {"u": grantee.id}, owner.token))["grantCameo"]["id"]
    clip = await _draft(gql, grantee, "the owner on a boat", cameo)
    owners_url = (await gql.ok(CLIP, {"id": clip["id"]}, owner.token))["clip"]["video"]["url"]
    assert await status(gql, clip["video"]["url"]) == 200  # it plays, for both, until...
    assert await status(gql, owners_url) == 200

    await gql.ok(REVOKE, {"g": grant}, owner.token)
    seen = (await gql.ok(CLIP, {"id": clip["id"]}, grantee.token))["clip"]
    assert seen["cameos"][0]["approval"] == "REVOKED"
    assert await status(gql, owners_url) == 404
    await _assert_withdrawn(gql, settings, clip, grantee, owner)


async def test_deleting_a_cameo_makes_others_drafts_unplayable(
    gql: GraphQLClient, graph, services, settings, worker
) -> None:
    owner, author = await gql.sign_up("leaver"), await gql.sign_up("fan")
    cameo = encode_id("Cameo", await active_cameo(graph, services.media, raw(owner)))
    clip = await _draft(gql, author, "the leaver dancing", cameo)
    assert await status(gql, clip["video"]["url"]) == 200

    await gql.ok(DELETE_CAMEO, token=owner.token)
    await _assert_withdrawn(gql, settings, clip, author, owner)


# --- 2 and 3. blocks by featured owners (no worker: the clips are written as the flow does)


async def _clip(
    graph,
    services,
    author: Account,
    cameos: Sequence[str] = (),  # raw cameo ids; a remix names its parent's too
    *,
    parent: str | None = None,
    tmp: Path,
) -> str:
    """A DRAFT of the author's featuring the cameos, its video stored under its own key;
    its raw id."""
    now = _now()
    params: dict[str, Any] = {
        "authorId": raw(author),
        "id": str(ULID()),
        "prompt": "a clip with people in it",
        "moods": [],
        "durationS": 1,
        "seed": 1,
        "now": now,
        "parentId": parent,
    }
    if cameos:
        checked = await cameo_repo.usable_cameos(graph, raw(author), list(cameos), now)
        params["cameos"] = plan_cameo_uses(
            services.consent_keys, checked, requested=list(cameos), clip=params, ttl_s=600, now=now
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
    return clip_id


async def _publish(gql: GraphQLClient, author: Account, clip_id: str, *owners: Account) -> None:
    """Published through the API: the author asks, each featured owner approves."""
    state = (await gql.ok(PUBLISH, {"id": gid(clip_id)}, author.token))["publishClip"]["state"]
    for owner in owners:
        state = (await gql.ok(APPROVE, {"id": gid(clip_id)}, owner.token))["approveAppearance"][
            "state"
        ]
    assert state == "PUBLISHED"


async def _feed(gql: GraphQLClient, kind: str, viewer: Account) -> set[str]:
    shown, after = set(), None
    while True:
        page = (await gql.ok(FEED, {"kind": kind, "after": after}, viewer.token))["feed"]
        shown |= {decode_id(edge["node"]["id"], "Clip") for edge in page["edges"]}
        if not page["pageInfo"]["hasNextPage"] or len(shown) > 300:
            return shown
        after = page["pageInfo"]["endCursor"]


async def test_a_featured_owners_block_hides_a_clip_and_its_remixes_everywhere(
    gql: GraphQLClient, graph, services, tmp_path
) -> None:
    alice, bob, dan, eve, sam = [
        await gql.sign_up(name) for name in ("alice", "bob", "dan", "eve", "sam")
    ]
    cameo = await active_cameo(graph, services.media, raw(alice))  # EVERYONE may use it
    for followed in (bob, dan):
        await gql.ok(FOLLOW, {"id": followed.id}, eve.token)
    root = await rendered_clip(graph, raw(dan), _now(), publish=True)
    featuring = await _clip(graph, services, bob, [cameo], parent=root, tmp=tmp_path)
    await _publish(gql, bob, featuring, alice)
    deeper = await _clip(graph, services, dan, [cameo], parent=featuring, tmp=tmp_path)
    await _publish(gql, dan, deeper, alice)
    plain = await _clip(graph, services, bob, tmp=tmp_path)  # bob's, featuring nobody
    await _publish(gql, bob, plain)
    # eve's link to the clip, made while she may still see it
    url = (await gql.ok(CLIP, {"id": gid(featuring)}, eve.token))["clip"]["video"]["url"]
    assert await status(gql, url) == 200

    await gql.ok(BLOCK, {"id": eve.id}, alice.token)  # alice blocks eve; bob did nothing

    for clip_id in (featuring, deeper):
        assert (await gql.ok(NODE, {"id": gid(clip_id)}, eve.token))["node"] is None
        # nor is anything of it served, CameoAppearance.cameo included
        assert (await gql.ok(CLIP, {"id": gid(clip_id)}, eve.token))["clip"] is None
        code, _ = await gql.error(LIKE, {"id": gid(clip_id)}, eve.token)
        assert code == "NOT_FOUND"
    assert await status(gql, url) == 404
    key = urlsplit(url).path.removeprefix("/media/")
    fresh = sign_media_path(services.settings.media_link_key, key, raw(eve), 600)
    assert await status(gql, fresh) == 404
    for kind in ("FOR_YOU", "FOLLOWING"):
        shown = await _feed(gql, kind, eve)
        assert plain in shown and root in shown, kind  # the same authors' other clips
        assert not shown & {featuring, deeper}, kind
    listed = (await gql.ok(USER_CLIPS, {"h": bob.handle}, eve.token))["user"]["clips"]["edges"]
    assert [decode_id(edge["node"]["id"], "Clip") for edge in listed] == [plain]
    # lineage: the hidden clip cuts the tree, the remix below it goes with it
    top = (await gql.ok(LINEAGE, {"id": gid(root)}, eve.token))["clip"]
    assert top["remixCount"] == 0 and top["forkDepth"] == 0 and top["remixes"]["edges"] == []
    tree = (await gql.ok(TREE, {"id": gid(root)}, eve.token))["remixTree"]
    assert [node["clip"]["id"] for node in tree["nodes"]] == [gid(root)] and tree["size"] == 1
    code, _ = await gql.error(TREE, {"id": gid(featuring)}, eve.token)
    assert code == "NOT_FOUND"
    # feedUpdates: the statement every process delivers through leaves eve out
    clip_row, allowed = await audience_repo.feed_audience(
        graph, deeper, [raw(eve), raw(sam), raw(bob)], False
    )
    assert clip_row is not None and allowed == {raw(sam), raw(bob)}

    # everyone else still sees all of it
    top = (await gql.ok(LINEAGE, {"id": gid(root)}, sam.token))["clip"]
    assert top["remixCount"] == 2 and top["forkDepth"] == 2
    assert (await gql.ok(NODE, {"id": gid(featuring)}, sam.token))["node"]["state"] == "PUBLISHED"
    # a block the other way round hides it as well
    await gql.ok(BLOCK, {"id": alice.id}, sam.token)
    assert (await gql.ok(NODE, {"id": gid(featuring)}, sam.token))["node"] is None
    assert featuring not in await _feed(gql, "FOR_YOU", sam)


async def test_a_co_featured_draft_is_hidden_across_a_block_between_its_owners(
    gql: GraphQLClient, graph, services, tmp_path
) -> None:
    alice, carol, bob, sam = [await gql.sign_up(name) for name in ("alice", "carol", "bob", "sam")]
    cameos = [await active_cameo(graph, services.media, raw(owner)) for owner in (alice, carol)]
    clip_id = await _clip(graph, services, bob, cameos, tmp=tmp_path)
    await gql.ok(PUBLISH, {"id": gid(clip_id)}, bob.token)  # awaiting both owners
    urls = {}
    for owner in (alice, carol):  # each sees it, in her inbox too, and may play it
        seen = (await gql.ok(CLIP, {"id": gid(clip_id)}, owner.token))["clip"]
        assert seen["state"] == "AWAITING_APPROVAL"
        urls[owner.handle] = seen["video"]["url"]
        assert await status(gql, urls[owner.handle]) == 200
        inbox = (await gql.ok(INBOX, {}, owner.token))["cameoInbox"]["edges"]
        assert gid(clip_id) in [edge["node"]["id"] for edge in inbox]

    await gql.ok(BLOCK, {"id": carol.id}, alice.token)

    for owner in (alice, carol):  # a block stands between the two featured owners
        assert (await gql.ok(NODE, {"id": gid(clip_id)}, owner.token))["node"] is None
        assert (await gql.ok(CLIP, {"id": gid(clip_id)}, owner.token))["clip"] is None
        assert await status(gql, urls[owner.handle]) == 404
        inbox = (await gql.ok(INBOX, {}, owner.token))["cameoInbox"]["edges"]
        assert gid(clip_id) not in [edge["node"]["id"] for edge in inbox]
        code, message = await gql.error(APPROVE, {"id": gid(clip_id)}, owner.token)
        assert code == "FORBIDDEN" and "featured" in message, message
    # the author still sees their draft; a stranger never saw it
    assert (await gql.ok(CLIP, {"id": gid(clip_id)}, bob.token))["clip"]["video"]["url"]
    assert (await gql.ok(NODE, {"id": gid(clip_id)}, sam.token))["node"] is None


# --- the rule is one rule: its Cypher and its Python agree on every case

SHOWN = Cypher(
    """
MATCH (a:User)-[:POSTED]->(c:Clip {id: $clipId})
"""
    + viewer_blocks_clauses("$viewerId", ["a", "c"])
    + """RETURN coalesce("""
    + shown_to("$viewerId", "c", "a")
    + """, false) AS inStatement,
       coalesce("""
    + shown_to("$viewerId", "c", "a", "$blockers", "$hidden")
    + """, false) AS fromParameters
"""
)
SET_STATE = Cypher(
    """
MATCH (c:Clip {id: $clipId})
SET c.state = $state
RETURN c.id AS id
"""
)
CLEAR_BLOCKS = Cypher(
    """
UNWIND $ids AS id
MATCH (:User {id: id})-[k:BLOCKS]->(:User)
DELETE k
RETURN count(*) AS n
"""
)
ADD_BLOCK = Cypher(
    """
MATCH (a:User {id: $a})
MATCH (b:User {id: $b})
CREATE (a)-[:BLOCKS {at: 1}]->(b)
RETURN a.id AS id
"""
)


async def test_the_cypher_and_the_python_rule_agree(
    gql: GraphQLClient, graph, services, settings, tmp_path
) -> None:
    """Author A, owners O1 and O2 (and A's own cameo), viewer V: every single block and a
    few pairs, every viewer (signed out included), a draft and a published clip, a clip
    featuring two others and one featuring the author's own cameo beside O1's."""
    db = driver_for(settings.model_copy(update={"graph_name": f"vis_{secrets.token_hex(4)}"}))
    try:
        people = {}
        for name in ("A", "O1", "O2", "V"):
            people[name] = str(ULID())
            assert await user_repo.create_user(
                db, id=people[name], handle=f"{name}_{secrets.token_hex(3)}",
                display_name=name, password_hash="x", now=1,
            )  # fmt: skip
        accounts = {
            name: Account(encode_id("User", uid), name, "", "") for name, uid in people.items()
        }
        cameos = {
            name: await active_cameo(db, services.media, uid)
            for name, uid in people.items()
            if name != "V"
        }
        clips = {
            "two others": await _clip(
                db, services, accounts["A"], [cameos["O1"], cameos["O2"]], tmp=tmp_path
            ),
            "own and one": await _clip(
                db, services, accounts["A"], [cameos["A"], cameos["O1"]], tmp=tmp_path
            ),
        }
        featured = {"two others": ["O1", "O2"], "own and one": ["A", "O1"]}
        pairs = [(x, y) for x, y in itertools.permutations(people, 2)]
        configurations = [[], *([pair] for pair in pairs), [("O1", "V"), ("O2", "A")]]
        configurations += [[("V", "A"), ("O1", "O2")], [("A", "V"), ("V", "O2")]]
        checked = 0
        for blocks in configurations:
            await db.write(CLEAR_BLOCKS, {"ids": list(people.values())})
            for x, y in blocks:
                await db.write(ADD_BLOCK, {"a": people[x], "b": people[y]})
            for state in ("DRAFT", "PUBLISHED"):
                for name, clip_id in clips.items():
                    await db.write(SET_STATE, {"clipId": clip_id, "state": state})
                    row = {"authorId": people["A"], "state": state}
                    owners = [people[o] for o in featured[name]]
                    for viewer in (None, *people.values()):
                        known = NO_BLOCKS if viewer is None else await viewer_blocks(db, viewer)
                        params = {"clipId": clip_id, "viewerId": viewer, **known.params()}
                        got = (await db.read(SHOWN, params))[0]
                        want = clip_visible(viewer, row, owners, known)
                        case = (blocks, state, name, viewer)
                        assert got["inStatement"] is want, case
                        assert got["fromParameters"] is want, case
                        checked += 1
        assert checked == len(configurations) * 2 * 2 * 5
    finally:
        await db.close()


# --- data written before: the start-up backfill brings it under the same rules

OLD_STYLE_USE = Cypher(
    """
MATCH (c:Clip {id: $clipId})
MATCH (m:Cameo {id: $cameoId})
CREATE (c)-[:FEATURES {approval: $approval, epoch: m.consentEpoch, decidedAt: 5}]->(m)
REMOVE c.featuredOwnerIds
RETURN c.id AS id
"""
)


async def test_the_start_up_backfill_brings_older_clips_under_the_rules(
    gql: GraphQLClient, graph, services, tmp_path
) -> None:
    """A clip whose FEATURES edge was written before featuredOwnerIds existed gets it (and
    with it the featured owner's blocks), and a draft revoked before withdrawal took the
    video away loses its video now."""
    from graph.schema_setup import backfill

    owner, author, viewer = [await gql.sign_up(n) for n in ("owner", "author", "viewer")]
    cameo = await active_cameo(graph, services.media, raw(owner))
    published = await _clip(graph, services, author, tmp=tmp_path)
    await _publish(gql, author, published)
    revoked = await _clip(graph, services, author, tmp=tmp_path)
    for clip_id, approval in ((published, "APPROVED"), (revoked, "REVOKED")):
        params = {"clipId": clip_id, "cameoId": cameo, "approval": approval}
        assert await graph.write(OLD_STYLE_USE, params)
    await gql.ok(BLOCK, {"id": viewer.id}, owner.token)
    url = (await gql.ok(CLIP, {"id": gid(revoked)}, author.token))["clip"]["video"]["url"]
    assert await status(gql, url) == 200  # what older data looked like

    assert await backfill(graph) >= 2
    assert await backfill(graph) == 0  # once

    listed = (await gql.ok(USER_CLIPS, {"h": author.handle}, viewer.token))["user"]["clips"]
    assert gid(published) not in [edge["node"]["id"] for edge in listed["edges"]]
    seen = (await gql.ok(CLIP, {"id": gid(revoked)}, author.token))["clip"]
    assert seen["state"] == "DRAFT" and seen["video"] is None
    assert await status(gql, url) == 404
