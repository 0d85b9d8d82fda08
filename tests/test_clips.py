"""createClip's checks, drafts and visibility, publish/delete transitions, and a broker outage.

No worker runs in this module, so clips stay QUEUED here (their tasks wait in the broker
until the module ends, and are then dropped: no later module's worker should meet them).
"""

from __future__ import annotations

import pytest
from conftest import GraphQLClient, purge_render_queue
from litestar.testing import AsyncTestClient

from resolvers.ids import encode_id
from server import build_app

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) {
  id state prompt moods renderProgress video { url } author { handle } } }"""
DRAFTS = "{ drafts { edges { node { id state } } } }"
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state publishedAt } }"
DELETE = "mutation($id: ID!) { deleteClip(clipId: $id) { id state video { url } } }"
CLIP = "query($id: ID!) { clip(id: $id) { id state } node(id: $id) { id } }"


@pytest.fixture(scope="module", autouse=True)
def _drop_queued_tasks(settings):
    yield
    purge_render_queue(settings)


async def _draft_count(gql: GraphQLClient, token: str) -> int:
    return len((await gql.ok(DRAFTS, token=token))["drafts"]["edges"])


async def test_create_clip_queues_it(gql: GraphQLClient) -> None:
    ann = await gql.sign_up("creator")
    clip = (await gql.ok(CREATE, {"input": {"prompt": "  a dog playing soccer  "}}, ann.token))[
        "createClip"
    ]
    assert clip["state"] == "QUEUED"
    assert clip["prompt"] == "a dog playing soccer"
    assert clip["moods"] == ["animals", "sports"]  # inferred when not given
    assert clip["renderProgress"] == 0.0 and clip["video"] is None
    assert clip["author"]["handle"] == ann.handle
    drafts = (await gql.ok(DRAFTS, token=ann.token))["drafts"]["edges"]
    assert [d["node"]["id"] for d in drafts] == [clip["id"]]


@pytest.mark.parametrize(
    ("change", "code", "fragment"),
    [
        ({"prompt": ""}, "BAD_USER_INPUT", "empty"),
        ({"prompt": "   \n "}, "BAD_USER_INPUT", "empty"),
        ({"prompt": "x" * 1001}, "BAD_USER_INPUT", "1000"),
        ({"prompt": "null\x00byte"}, "BAD_USER_INPUT", "control"),
        ({"durationSeconds": 0}, "BAD_USER_INPUT", "durationSeconds"),
        ({"durationSeconds": 21}, "BAD_USER_INPUT", "durationSeconds"),
        ({"moods": ["funny", "grumpy"]}, "BAD_USER_INPUT", "unknown mood"),
        ({"moods": ["funny", "art", "food", "music"]}, "BAD_USER_INPUT", "at most"),
        ({"cameoIds": [encode_id("Cameo", str(i)) for i in range(3)]}, "BAD_USER_INPUT", "2"),
        ({"cameoIds": [encode_id("Cameo", "01CAMEO")]}, "CONSENT_REQUIRED", "consent"),
        ({"cameoIds": ["%%%"]}, "BAD_USER_INPUT", "ID"),
        ({"remixOf": "not an id"}, "BAD_USER_INPUT", "ID"),
        ({"remixOf": encode_id("Clip", "01NOSUCHCLIP")}, "NOT_FOUND", "remix"),
        ({"remixOf": encode_id("User", "01NOTACLIP")}, "NOT_FOUND", "Clip"),
    ],
)
async def test_create_clip_rejects_bad_input_and_writes_nothing(
    gql: GraphQLClient, change: dict, code: str, fragment: str
) -> None:
    ann = await gql.sign_up("bad_input")
    got_code, message = await gql.error(CREATE, {"input": {"prompt": "ok", **change}}, ann.token)
    assert got_code == code
    assert fragment in message
    assert await _draft_count(gql, ann.token) == 0


async def test_create_clip_needs_a_viewer(gql: GraphQLClient) -> None:
    code, _ = await gql.error(CREATE, {"input": {"prompt": "anonymous"}})
    assert code == "UNAUTHENTICATED"


async def test_remix_of_an_unpublished_clip_is_not_found(gql: GraphQLClient) -> None:
    ann = await gql.sign_up("remixer")
    parent = (await gql.ok(CREATE, {"input": {"prompt": "parent"}}, ann.token))["createClip"]
    code, _ = await gql.error(
        CREATE, {"input": {"prompt": "child", "remixOf": parent["id"]}}, ann.token
    )
    assert code == "NOT_FOUND"
    assert await _draft_count(gql, ann.token) == 1


async def test_drafts_are_invisible_to_everyone_else(gql: GraphQLClient) -> None:
    ann, bob = await gql.sign_up("author"), await gql.sign_up("snoop")
    clip = (await gql.ok(CREATE, {"input": {"prompt": "secret draft"}}, ann.token))["createClip"]
    mine = await gql.ok(CLIP, {"id": clip["id"]}, ann.token)
    assert mine["clip"]["state"] == "QUEUED" and mine["node"]["id"] == clip["id"]
    for token in (bob.token, None):
        theirs = await gql.ok(CLIP, {"id": clip["id"]}, token)
        assert theirs == {"clip": None, "node": None}
    assert await _draft_count(gql, bob.token) == 0
    for mutation in (PUBLISH, DELETE):
        code, _ = await gql.error(mutation, {"id": clip["id"]}, bob.token)
        assert code == "NOT_FOUND"
    assert (await gql.ok(CLIP, {"id": clip["id"]}, ann.token))["clip"]["state"] == "QUEUED"


async def test_only_a_draft_can_be_published(gql: GraphQLClient) -> None:
    ann = await gql.sign_up("hasty")
    clip = (await gql.ok(CREATE, {"input": {"prompt": "not rendered yet"}}, ann.token))[
        "createClip"
    ]
    code, message = await gql.error(PUBLISH, {"id": clip["id"]}, ann.token)
    assert code == "CONFLICT" and "QUEUED" in message
    code, _ = await gql.error(PUBLISH, {"id": clip["id"]})
    assert code == "UNAUTHENTICATED"
    code, _ = await gql.error(PUBLISH, {"id": encode_id("Clip", "01NOSUCH")}, ann.token)
    assert code == "NOT_FOUND"


async def test_delete_moves_any_state_to_removed(gql: GraphQLClient) -> None:
    ann = await gql.sign_up("deleter")
    clip = (await gql.ok(CREATE, {"input": {"prompt": "regret"}}, ann.token))["createClip"]
    removed = (await gql.ok(DELETE, {"id": clip["id"]}, ann.token))["deleteClip"]
    assert removed["state"] == "REMOVED" and removed["video"] is None
    again = (await gql.ok(DELETE, {"id": clip["id"]}, ann.token))["deleteClip"]
    assert again["state"] == "REMOVED"
    code, _ = await gql.error(PUBLISH, {"id": clip["id"]}, ann.token)
    assert code == "CONFLICT"
    # removed clips leave the drafts list
    assert await _draft_count(gql, ann.token) == 0


async def test_a_broker_outage_fails_clearly_and_leaves_no_clip(settings) -> None:
    broken = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    async with AsyncTestClient(app=build_app(broken)) as client:
        gql = GraphQLClient(client)
        ann = await gql.sign_up("outage")
        code, message = await gql.error(CREATE, {"input": {"prompt": "lost?"}}, ann.token)
        assert code == "INTERNAL"
        assert "render queue is unavailable" in message
        assert await _draft_count(gql, ann.token) == 0
