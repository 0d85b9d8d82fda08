"""Consent in the clip flow, with a real Celery worker: render tokens, the worker's checks,
per-draft approvals, and the adversarial paths (a grant revoked mid-render, an approval
replayed onto another clip, a video changed after approval, a blocked user, a deleted cameo).

The worker runs the gated renderer (tests/gated_renderer.py, a real PreviewRenderer behind
a gate): each test lets a render through when it wants it to, so a revocation can land while
the render is held. Every wait is on a state or a gate event, never on time.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import REFERENCE_FACE, GraphQLClient, Worker, cameo_of, purge_render_queue, raw
from conftest import start_worker as start_celery_worker
from gated_renderer import RENDERER, Gate
from PIL import Image, ImageOps

from events.notifications import stream_key
from graph import cameos as cameo_repo
from graph.driver import Cypher
from resolvers.ids import decode_id, encode_id

TESTS = Path(__file__).resolve().parent

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
CLIP = """query($id: ID!) { clip(id: $id) { id state failureReason publishedAt
  video { url sha256 } cameos { approval decidedAt cameo { id owner { id } } } } }"""
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state } }"
APPROVE = "mutation($id: ID!) { approveAppearance(clipId: $id) { id state } }"
REJECT = "mutation($id: ID!) { rejectAppearance(clipId: $id) { id state } }"
INBOX = """query($first: Int, $after: String) { cameoInbox(first: $first, after: $after) {
  edges { cursor node { id state } } pageInfo { hasNextPage endCursor } } }"""
GRANT = "mutation($u: ID!) { grantCameo(granteeId: $u) { id } }"
REVOKE = "mutation($g: ID!) { revokeCameoGrant(grantId: $g) { id revokedAt } }"
BLOCK = "mutation($u: ID!) { blockUser(userId: $u) { id } }"
DELETE_CAMEO = "mutation { deleteCameo { id state } }"
RESTRICT = "mutation($r: [String!]!) { setCameoRestrictions(restrictions: $r) { restrictions } }"
DRAFTS = "{ drafts(first: 50) { edges { node { id state } } } }"

# what an attacker with write access to the database could do to an appearance
FEATURES_OF = Cypher(
    """
MATCH (c:Clip {id: $clipId})-[f:FEATURES]->(m:Cameo)
RETURN m.id AS cameoId, f.approval AS approval, f.renderToken AS renderToken,
       f.renderJti AS renderJti, f.approvalToken AS approvalToken,
       f.approvalJti AS approvalJti, f.approvedSha256 AS approvedSha256, f.epoch AS epoch,
       c.sha256 AS sha256
"""
)
FORGE_APPROVAL = Cypher(
    """
MATCH (c:Clip {id: $clipId})-[f:FEATURES]->(:Cameo {id: $cameoId})
SET f.approval = 'APPROVED', f.approvalToken = $token, f.approvalJti = $jti,
    f.approvedSha256 = c.sha256, f.decidedAt = 1
RETURN c.id AS id
"""
)
SWAP_VIDEO = Cypher(
    """
MATCH (c:Clip {id: $clipId})-[f:FEATURES]->(:Cameo)
SET c.sha256 = $sha256, f.approvedSha256 = $sha256
RETURN c.id AS id
"""
)
CLIPS_BY_AUTHOR = Cypher(
    """
MATCH (:User {id: $authorId})-[:POSTED]->(c:Clip)
RETURN c.id AS id
"""
)


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_tasks(settings) -> None:
    purge_render_queue(settings)


@pytest.fixture(scope="module")
def worker(settings, app, tmp_path_factory) -> Worker:
    """One gated worker for the module (the app has published the consent public keys)."""
    log = tmp_path_factory.mktemp("consent-worker") / "worker.log"
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    w = start_celery_worker(settings, log, REELGRAPH_RENDERER=RENDERER, PYTHONPATH=pythonpath)
    yield w
    w.stop()


@pytest.fixture
def gate(settings):
    g = Gate(settings.redis_url)
    yield g
    g.close()


async def create(gql: GraphQLClient, token: str, prompt: str, **fields) -> str:
    fields.setdefault("durationSeconds", 1)
    return (await gql.ok(CREATE, {"input": {"prompt": prompt, **fields}}, token))["createClip"][
        "id"
    ]


async def let_render(gate: Gate, clip_id: str) -> None:
    """Wait for the clip's render to reach the gate, then let it render."""
    raw_id = decode_id(clip_id, "Clip")
    event = await asyncio.to_thread(gate.reached, raw_id)
    gate.order(raw_id, event["arrival"], "render")


async def draft(gql: GraphQLClient, gate: Gate, token: str, prompt: str, **fields) -> dict:
    clip_id = await create(gql, token, prompt, **fields)
    await let_render(gate, clip_id)
    clip = await gql.wait_clip(CLIP, token, clip_id, {"DRAFT", "FAILED"})
    assert clip["state"] == "DRAFT", clip["failureReason"]
    return clip


def notifications(sync_redis, account) -> list[dict]:
    entries = sync_redis.xrange(stream_key(raw(account)))
    return [{"kind": f["kind"], **json.loads(f["payload"])} for _, f in entries]


def kinds_about(sync_redis, account, clip_id: str) -> list[str]:
    """The consent notifications (APPEARANCE_*, CLIP_REMOVED) the account got about a clip."""
    raw_id = decode_id(clip_id, "Clip")
    return [
        n["kind"]
        for n in notifications(sync_redis, account)
        if n["clipId"] == raw_id and n["kind"] != "RENDER_FINISHED"
    ]


async def features(graph, clip_id: str) -> list[dict]:
    return await graph.read(FEATURES_OF, {"clipId": decode_id(clip_id, "Clip")})


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


async def test_two_cameos_render_with_tokens_and_publish_after_both_approve(
    gql, graph, services, worker, gate, sync_redis, tmp_path
) -> None:
    ann, bob, carl = [await gql.sign_up(name) for name in ("ann", "bob", "carl")]
    ann_cameo = await cameo_of(graph, services, ann)
    bob_cameo = await cameo_of(graph, services, bob)

    clip = await draft(gql, gate, carl.token, "two friends at the beach",
                       cameoIds=[ann_cameo, bob_cameo, ann_cameo])  # fmt: skip
    # one render token per cameo, stored on its FEATURES edge; both await their owners
    edges = await features(graph, clip["id"])
    assert len(edges) == 2 and all(e["renderToken"].startswith("v4.public.") for e in edges)
    assert len({e["renderJti"] for e in edges}) == 2
    assert sorted(a["approval"] for a in clip["cameos"]) == ["PENDING", "PENDING"]
    assert {a["cameo"]["id"] for a in clip["cameos"]} == {ann_cameo, bob_cameo}

    # the preview shows each cameo's decrypted reference frame as a thumbnail
    video = tmp_path / "clip.mp4"
    video.write_bytes((await gql.client.get(clip["video"]["url"])).content)
    frame = first_frame(video).astype(int)
    with Image.open(REFERENCE_FACE) as face:
        thumb = np.asarray(ImageOps.fit(face.convert("RGB"), (96, 96)), dtype=int)
    height, width = frame.shape[:2]
    y0, right = (height - 8 - 8 - 96) & ~1, width - 24
    for k in range(2):
        x0 = (right - 96 - k * 104) & ~1
        shown = frame[y0 + 4 : y0 + 92, x0 + 4 : x0 + 92]
        assert np.abs(shown - thumb[4:92, 4:92]).mean() < 25, f"thumbnail {k} is not the face"

    # owners of the cameos see the draft; a stranger does not
    for owner in (ann, bob):
        assert (await gql.ok(CLIP, {"id": clip["id"]}, owner.token))["clip"]["state"] == "DRAFT"
    stranger = await gql.sign_up("stranger")
    assert (await gql.ok(CLIP, {"id": clip["id"]}, stranger.token))["clip"] is None

    published = (await gql.ok(PUBLISH, {"id": clip["id"]}, carl.token))["publishClip"]
    assert published["state"] == "AWAITING_APPROVAL"
    for owner in (ann, bob):
        assert kinds_about(sync_redis, owner, clip["id"]) == ["APPEARANCE_REQUESTED"]
        inbox = (await gql.ok(INBOX, {"first": 10}, owner.token))["cameoInbox"]["edges"]
        assert [e["node"]["id"] for e in inbox] == [clip["id"]]

    first = (await gql.ok(APPROVE, {"id": clip["id"]}, ann.token))["approveAppearance"]
    assert first["state"] == "AWAITING_APPROVAL"
    code, _ = await gql.error(APPROVE, {"id": clip["id"]}, ann.token)
    assert code == "CONFLICT"  # a second approval
    assert (await gql.ok(INBOX, {}, ann.token))["cameoInbox"]["edges"] == []
    second = (await gql.ok(APPROVE, {"id": clip["id"]}, bob.token))["approveAppearance"]
    assert second["state"] == "PUBLISHED"  # the last approval publishes, in one statement
    assert kinds_about(sync_redis, carl, clip["id"]) == ["APPEARANCE_DECIDED"] * 2
    final = (await gql.ok(CLIP, {"id": clip["id"]}, stranger.token))["clip"]
    assert final["state"] == "PUBLISHED"
    assert [a["approval"] for a in final["cameos"]] == ["APPROVED", "APPROVED"]
    for edge in await features(graph, clip["id"]):
        assert edge["approvedSha256"] == clip["video"]["sha256"]
        assert edge["approvalToken"].startswith("v4.public.")


async def test_without_consent_nothing_is_written_or_queued(gql, graph, services, worker) -> None:
    owner, stranger = await gql.sign_up("private"), await gql.sign_up("nosy")
    private = await cameo_of(graph, services, owner, audience="ONLY_ME")
    unknown = encode_id("Cameo", "01JUNKNOWNCAMEO00000000000")
    for cameo_ids in ([private], [unknown]):
        code, message = await gql.error(
            CREATE, {"input": {"prompt": "hi", "cameoIds": cameo_ids}}, stranger.token
        )
        assert code == "CONSENT_REQUIRED", message
        assert "consent" in message
    code, _ = await gql.error(
        CREATE, {"input": {"prompt": "hi", "cameoIds": [private, unknown, private]}}, owner.token
    )
    assert code == "CONSENT_REQUIRED"  # the owner may use theirs, not an unknown one
    assert await graph.read(CLIPS_BY_AUTHOR, {"authorId": raw(stranger)}) == []
    assert (await gql.ok(DRAFTS, token=stranger.token))["drafts"]["edges"] == []


async def test_an_owners_restriction_refuses_the_prompt(gql, graph, services, worker, gate) -> None:
    owner, user = await gql.sign_up("strict"), await gql.sign_up("author")
    cameo = await cameo_of(graph, services, owner)
    await gql.ok(RESTRICT, {"r": ["no violence", "No clowns or spiders"]}, owner.token)
    for prompt, rule in (
        ("An epic SWORD fight at dawn", "no violence"),
        ("a room full of spiders", "No clowns or spiders"),
    ):
        code, message = await gql.error(
            CREATE, {"input": {"prompt": prompt, "cameoIds": [cameo]}}, user.token
        )
        assert code == "POLICY_VIOLATION"
        assert rule in message and "sword" not in message.lower()
    assert await graph.read(CLIPS_BY_AUTHOR, {"authorId": raw(user)}) == []
    # the owner's own rules do not bind the owner
    own = await draft(gql, gate, owner.token, "a sword fight", cameoIds=[cameo])
    assert own["cameos"][0]["approval"] == "APPROVED"


async def test_a_grant_revoked_mid_render_fails_the_render(
    gql, graph, services, worker, gate, sync_redis
) -> None:
    owner, grantee = await gql.sign_up("granter"), await gql.sign_up("grantee")
    cameo = await cameo_of(graph, services, owner, audience="APPROVED")
    grant = (await gql.ok(GRANT, {"u": grantee.id}, owner.token))["grantCameo"]["id"]
    clip_id = await create(gql, grantee.token, "dancing in the rain", cameoIds=[cameo])
    raw_id = decode_id(clip_id, "Clip")
    event = await asyncio.to_thread(gate.reached, raw_id)  # rendering, the tokens verified
    await gql.ok(REVOKE, {"g": grant}, owner.token)
    edge = (await features(graph, clip_id))[0]
    assert edge["approval"] == "REVOKED"
    assert sync_redis.exists(f"consent:revoked:{edge['renderJti']}")
    gate.order(raw_id, event["arrival"], "render")
    failed = await gql.wait_clip(CLIP, grantee.token, clip_id, {"DRAFT", "FAILED"})
    assert failed["state"] == "FAILED" and failed["video"] is None
    assert "revoked consent" in failed["failureReason"], failed["failureReason"]
    assert owner.handle in failed["failureReason"]
    assert "token" not in failed["failureReason"].lower()
    # and a new clip needs a new grant
    code, _ = await gql.error(
        CREATE, {"input": {"prompt": "x", "cameoIds": [cameo]}}, grantee.token
    )
    assert code == "CONSENT_REQUIRED"


async def test_an_approval_replayed_on_another_clip_does_not_publish(
    gql, graph, services, worker, gate
) -> None:
    owner, author = await gql.sign_up("victim"), await gql.sign_up("replayer")
    cameo = await cameo_of(graph, services, owner)
    approved = await draft(gql, gate, author.token, "clip one", cameoIds=[cameo])
    other = await draft(gql, gate, author.token, "clip two, never approved", cameoIds=[cameo])
    await gql.ok(APPROVE, {"id": approved["id"]}, owner.token)
    stolen = (await features(graph, approved["id"]))[0]
    await graph.write(
        FORGE_APPROVAL,
        {
            "clipId": decode_id(other["id"], "Clip"),
            "cameoId": decode_id(cameo, "Cameo"),
            "token": stolen["approvalToken"],
            "jti": stolen["approvalJti"],
        },
    )
    published = (await gql.ok(PUBLISH, {"id": other["id"]}, author.token))["publishClip"]
    assert published["state"] == "AWAITING_APPROVAL"  # asked again, not published
    assert (await features(graph, other["id"]))[0]["approval"] == "PENDING"
    # an edge marked APPROVED with no token at all fares no better
    await graph.write(
        FORGE_APPROVAL,
        {"clipId": decode_id(other["id"], "Clip"), "cameoId": decode_id(cameo, "Cameo"),
         "token": None, "jti": None},
    )  # fmt: skip
    code, _ = await gql.error(PUBLISH, {"id": other["id"]}, author.token)
    assert code == "CONFLICT"  # it awaits approval; only the owner's approval can publish it
    assert (await gql.ok(CLIP, {"id": other["id"]}, author.token))["clip"]["state"] != "PUBLISHED"
    # the genuine approval still publishes its own clip
    done = (await gql.ok(PUBLISH, {"id": approved["id"]}, author.token))["publishClip"]
    assert done["state"] == "PUBLISHED"


async def test_a_video_changed_after_approval_does_not_publish(
    gql, graph, services, worker, gate
) -> None:
    owner, author = await gql.sign_up("approver"), await gql.sign_up("swapper")
    cameo = await cameo_of(graph, services, owner)
    clip = await draft(gql, gate, author.token, "a calm lake", cameoIds=[cameo])
    await gql.ok(APPROVE, {"id": clip["id"]}, owner.token)
    await graph.write(SWAP_VIDEO, {"clipId": decode_id(clip["id"], "Clip"), "sha256": "f" * 64})
    published = (await gql.ok(PUBLISH, {"id": clip["id"]}, author.token))["publishClip"]
    assert published["state"] == "AWAITING_APPROVAL"
    edge = (await features(graph, clip["id"]))[0]
    assert edge["approval"] == "PENDING" and edge["approvalToken"] is None
    # the owner approves the video as it is now; that approval binds the new sha256
    approved = (await gql.ok(APPROVE, {"id": clip["id"]}, owner.token))["approveAppearance"]
    assert approved["state"] == "PUBLISHED"
    assert (await features(graph, clip["id"]))[0]["approvedSha256"] == "f" * 64


async def test_a_rejection_returns_the_clip_to_draft_for_the_author_to_see(
    gql, graph, services, worker, gate, sync_redis
) -> None:
    owner, author = await gql.sign_up("refuser"), await gql.sign_up("hopeful")
    cameo = await cameo_of(graph, services, owner)
    clip = await draft(gql, gate, author.token, "a picnic", cameoIds=[cameo])
    await gql.ok(PUBLISH, {"id": clip["id"]}, author.token)
    rejected = (await gql.ok(REJECT, {"id": clip["id"]}, owner.token))["rejectAppearance"]
    assert rejected["state"] == "DRAFT"
    seen = (await gql.ok(CLIP, {"id": clip["id"]}, author.token))["clip"]
    assert seen["cameos"][0]["approval"] == "REJECTED" and seen["cameos"][0]["decidedAt"]
    assert kinds_about(sync_redis, author, clip["id"]) == ["APPEARANCE_DECIDED"]
    code, message = await gql.error(PUBLISH, {"id": clip["id"]}, author.token)
    assert code == "CONSENT_REQUIRED" and "rejected" in message
    # the author cannot decide for the owner
    code, _ = await gql.error(APPROVE, {"id": clip["id"]}, author.token)
    assert code in ("FORBIDDEN", "NOT_FOUND")


async def test_a_blocked_user_cannot_use_the_cameo(gql, graph, services, worker) -> None:
    owner, user = await gql.sign_up("blocker"), await gql.sign_up("blocked")
    cameo = await cameo_of(graph, services, owner)  # EVERYONE, but blocks always win
    await gql.ok(BLOCK, {"u": user.id}, owner.token)
    code, _ = await gql.error(CREATE, {"input": {"prompt": "hey", "cameoIds": [cameo]}}, user.token)
    assert code == "CONSENT_REQUIRED"
    # a block the other way round refuses it too
    other = await gql.sign_up("rude")
    await gql.ok(BLOCK, {"u": owner.id}, other.token)
    code, _ = await gql.error(
        CREATE, {"input": {"prompt": "hey", "cameoIds": [cameo]}}, other.token
    )
    assert code == "CONSENT_REQUIRED"


async def test_a_deleted_cameo_ends_renders_and_drafts(gql, graph, services, worker, gate) -> None:
    owner, author = await gql.sign_up("leaver"), await gql.sign_up("fan")
    cameo = await cameo_of(graph, services, owner)
    ready = await draft(gql, gate, author.token, "a finished draft", cameoIds=[cameo])
    held = await create(gql, author.token, "a render in flight", cameoIds=[cameo])
    raw_held = decode_id(held, "Clip")
    event = await asyncio.to_thread(gate.reached, raw_held)
    await gql.ok(DELETE_CAMEO, token=owner.token)
    gate.order(raw_held, event["arrival"], "render")
    failed = await gql.wait_clip(CLIP, author.token, held, {"DRAFT", "FAILED"})
    assert failed["state"] == "FAILED" and "revoked consent" in failed["failureReason"]
    # the draft keeps its REVOKED appearance: it can be neither published nor approved
    seen = (await gql.ok(CLIP, {"id": ready["id"]}, author.token))["clip"]
    assert seen["cameos"][0]["approval"] == "REVOKED"
    code, _ = await gql.error(PUBLISH, {"id": ready["id"]}, author.token)
    assert code == "CONSENT_REQUIRED"
    code, _ = await gql.error(APPROVE, {"id": ready["id"]}, owner.token)
    assert code == "CONFLICT"
    code, _ = await gql.error(CREATE, {"input": {"prompt": "x", "cameoIds": [cameo]}}, author.token)
    assert code == "CONSENT_REQUIRED"
    # crypto-shredded: its reference media cannot be opened any more
    media = await cameo_repo.reference_media(graph, [decode_id(cameo, "Cameo")])
    assert media[decode_id(cameo, "Cameo")]["wrappedKey"] is None


async def test_the_authors_own_cameo_needs_no_approval(gql, graph, services, worker, gate) -> None:
    me = await gql.sign_up("selfie")
    cameo = await cameo_of(graph, services, me, audience="ONLY_ME")
    clip = await draft(gql, gate, me.token, "me on the moon", cameoIds=[cameo])
    assert clip["cameos"][0]["approval"] == "APPROVED"
    published = (await gql.ok(PUBLISH, {"id": clip["id"]}, me.token))["publishClip"]
    assert published["state"] == "PUBLISHED"


async def test_inbox_pages_by_keyset(gql, graph, services) -> None:
    """No worker needed: clips rendered through the repository, then featured directly."""
    owner = await gql.sign_up("popular")
    cameo = decode_id(await cameo_of(graph, services, owner), "Cameo")
    authors = [await gql.sign_up(f"asker{i}") for i in range(3)]
    ids = []
    for i, author in enumerate(authors):
        ids.append(await _awaiting_clip(graph, raw(author), cameo, at=10_000 + i))
    seen, after = [], None
    while True:
        page = (await gql.ok(INBOX, {"first": 2, "after": after}, owner.token))["cameoInbox"]
        seen += [decode_id(e["node"]["id"], "Clip") for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ids[::-1]


FEATURE_PENDING = Cypher(
    """
MATCH (c:Clip {id: $clipId})
MATCH (m:Cameo {id: $cameoId})
CREATE (c)-[:FEATURES {approval: 'PENDING', epoch: m.consentEpoch}]->(m)
SET c.state = 'AWAITING_APPROVAL', c.updatedAt = $at
RETURN c.id AS id
"""
)


async def _awaiting_clip(graph, author_id: str, cameo_id: str, at: int) -> str:
    from conftest import rendered_clip

    clip_id = await rendered_clip(graph, author_id, at)
    await graph.write(FEATURE_PENDING, {"clipId": clip_id, "cameoId": cameo_id, "at": at})
    return clip_id


def test_the_diffusers_renderer_conditions_on_the_reference_frame(tmp_path) -> None:
    """The image-to-video path runs on a tiny random-weight LTX built from configs."""
    pytest.importorskip("diffusers")
    from media.probe import probe_video
    from workers.renderers.base import CameoReference, RenderSpec
    from workers.renderers.diffusion import DiffusersRenderer
    from workers.renderers.tiny_ltx import build_tiny_ltx_pipeline

    model = build_tiny_ltx_pipeline(tmp_path / "tiny-ltx")
    renderer = DiffusersRenderer(
        str(model), resolution=(64, 96), num_inference_steps=2, device="cpu", tmp_dir=tmp_path
    )
    import torch

    # as on a GPU: diffusers' from_pipe would cast the shared weights to float32 unless told
    renderer.dtype = torch.bfloat16
    face = io.BytesIO(REFERENCE_FACE.read_bytes()).getvalue()
    spec = RenderSpec(
        clip_id="conditioned",
        prompt="a portrait",
        duration_s=1,
        cameos=(CameoReference("ann", (face,)),),
    )
    path = renderer.render(spec, lambda _: None)
    assert renderer._image_pipe is not None  # the image-conditioned pipeline ran
    assert renderer._image_pipe.transformer.dtype == torch.bfloat16
    assert renderer.load().vae.dtype == torch.bfloat16  # shared with text-to-video, unchanged
    assert probe_video(path).width == 96


# --- the owners' rules, as consent.policy reads them


@pytest.mark.parametrize(
    ("prompt", "rules", "broken"),
    [
        ("A senator giving a speech", ["no political content"], "no political content"),
        ("vote for me!", ["No Politics"], "No Politics"),
        ("an epic BRAWL", ["no violence"], "no violence"),
        ("a v\u200biolent storm", ["no violence"], "no violence"),  # a zero-width space
        ("\uff2b\uff29\uff33\uff33 in the rain", ["no romance"], "no romance"),  # fullwidth letters
        ("a pint of beer", ["no alcohol"], "no alcohol"),
        ("two cats dancing", ["no cats"], "no cats"),
        ("a cat's dream", ["no cats"], "no cats"),
        ("a scary clown", ["no clowns or spiders"], "no clowns or spiders"),
        ("horror movies at night", ["no horror movies"], "no horror movies"),
        ("crème brûlée", ["no creme brulee"], "no creme brulee"),
        ("concatenate strings", ["no cats"], None),  # whole words only
        ("horror films", ["no horror movies"], None),  # a phrase, in order
        ("a quiet walk", ["no violence", "no alcohol", "no romance"], None),
        ("anything", ["no", "   "], None),  # a rule with no words blocks nothing
    ],
)
def test_restrictions_match_whole_normalised_words(prompt, rules, broken) -> None:
    from consent.policy import check_prompt

    assert check_prompt(prompt, rules) == broken


def test_a_policy_violation_names_the_rule_only() -> None:
    from consent.policy import enforce_restrictions
    from errors import PolicyViolation

    with pytest.raises(PolicyViolation) as refused:
        enforce_restrictions("a bloody sword fight", ["no dogs", "no violence"])
    assert refused.value.extensions == {"code": "POLICY_VIOLATION", "rule": "no violence"}
    assert "sword" not in refused.value.message and "dogs" not in refused.value.message
