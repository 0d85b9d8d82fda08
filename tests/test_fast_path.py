"""The compiled plan (schema/fast_path.py) answers exactly what graphql-core's interpreter
answers: the same data, the same errors (message, path, locations, extensions), the same
null propagation and key order.

Two ways of proving it run here: hypothesis-graphql's queries over the whole Query type
(with ids of a small graph made for the purpose, and bad ones) run through a schema with the
plan and one without, on one context; and the suite itself runs with
REELGRAPH_FAST_PATH=verify (tests/conftest.py), where every query any test sends runs both
ways and a difference fails the request, which test_verify_mode_fails_a_request_on_a_difference
shows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import Account, GraphQLClient, raw, rendered_clip
from graphql import StringValueNode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import queries

from resolvers.context import Context
from resolvers.ids import encode_id
from schema import build_schema, plan_runner
from server import Services
from settings import Settings

FAST = build_schema(fast_path="on")
SLOW = build_schema(fast_path="off")
FOLLOW = "mutation($id: ID!) { follow(userId: $id) { id } }"
BLOCK = "mutation($id: ID!) { blockUser(userId: $id) { id } }"
EQUIVALENCE = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_world: dict[str, Any] = {}


@pytest.fixture(scope="module")
async def services(settings: Settings) -> AsyncIterator[Services]:
    """Services on the tests' own event loop (the app's run on its test client's loop)."""
    opened = await Services.open(settings)
    try:
        yield opened
    finally:
        await opened.close()


async def _make_world(gql: GraphQLClient, graph: Any) -> dict[str, Any]:
    """Three users who follow each other, one blocking another; published clips with a
    remix chain, a draft, and the ids hypothesis draws from (some of them malformed)."""
    if _world:
        return _world
    a, b, c = [await gql.sign_up("fastpath") for _ in range(3)]
    for follower, followed in ((a, b), (a, c), (b, a), (c, a)):
        await gql.ok(FOLLOW, {"id": followed.id}, follower.token)
    await gql.ok(BLOCK, {"id": b.id}, c.token)
    at = 1_700_000_000_000
    root = await rendered_clip(graph, raw(a), at, prompt="a root clip", publish=True)
    child = await rendered_clip(graph, raw(b), at + 1, parent_id=root, publish=True)
    grandchild = await rendered_clip(graph, raw(c), at + 2, parent_id=child, publish=True)
    other = await rendered_clip(graph, raw(c), at + 3, moods=["calm"], publish=True)
    draft = await rendered_clip(graph, raw(a), at + 4)
    clip_ids = [encode_id("Clip", i) for i in (root, child, grandchild, other, draft)]
    _world.update(
        accounts=[a, b, c],
        ids=[*clip_ids, a.id, b.id, c.id, "not-an-id", encode_id("Clip", "0" * 26)],
        handles=[a.handle, b.handle, c.handle, "nobody_here"],
    )
    return _world


# hypothesis draws a document before the test runs: it names ids and handles by placeholders,
# which the test replaces with those of the graph it made
_IDS = [f"@id{n}@" for n in range(10)]
_STRINGS = [f"@handle{n}@" for n in range(4)] + ["", "calm"]

QUERIES = queries(
    FAST._schema,
    custom_scalars={
        "ID": st.sampled_from(_IDS).map(lambda value: StringValueNode(value=value)),
        "String": st.sampled_from(_STRINGS).map(lambda value: StringValueNode(value=value)),
    },
    allow_x00=False,
    codec=None,
)


def _placed(query: str, world: dict[str, Any]) -> str:
    for n, value in enumerate(world["ids"]):
        query = query.replace(f"@id{n}@", value)
    for n, value in enumerate(world["handles"]):
        query = query.replace(f"@handle{n}@", value)
    return query


async def _both(services: Any, query: str, token: str | None) -> tuple[dict, dict]:
    context = await Context.for_request(services, f"Bearer {token}" if token else None)
    fast = await FAST.execute(query, context_value=context)
    slow = await SLOW.execute(query, context_value=context)
    return _answer(fast), _answer(slow)


def _answer(result: Any) -> dict:
    return json.loads(
        json.dumps(
            {
                "data": result.data,
                "errors": [e.formatted for e in result.errors or ()],
            }
        )
    )


@EQUIVALENCE
@given(query=QUERIES, who=st.sampled_from([None, 0, 2]))
async def test_the_plan_answers_what_the_interpreter_answers(
    gql: GraphQLClient, graph: Any, services: Any, query: str, who: int | None
) -> None:
    world = await _make_world(gql, graph)
    token = None if who is None else world["accounts"][who].token
    query = _placed(query, world)
    fast, slow = await _both(services, query, token)
    assert fast == slow, query


DOCUMENTS = [
    # a feed page as clients ask for it, with fragments and aliases and __typename
    """query($k: FeedKind!) { feed(kind: $k, first: 5) { edges { cursor node { __typename
    ...C also: id author { handle followerCount viewerFollows } } } pageInfo { hasNextPage } } }
    fragment C on Clip { id prompt likeCount moods state createdAt video { url width } }""",
    # a non-null field's error nulls the nearest nullable parent (feed needs a viewer)
    "{ viewer { id } feed(kind: FOLLOWING) { edges { node { id } } } }",
    # an error inside a list item: a negative page size deep in the document
    """query($id: ID!) { clip(id: $id) { id lineage { id remixes(first: -1) { edges {
    node { id } } } } } }""",
    # errors in two places, nullable parents, one malformed id
    """query($id: ID!) { a: clip(id: "not-an-id") { id } b: clip(id: $id) { id root { id }
    remixCount forkDepth author { handle } } c: user(handle: "nobody_here") { id } }""",
    # lineage and the tree viewer's fields
    """query($id: ID!) { remixTree(clipId: $id, maxNodes: 10) { size maxDepth truncated
    nodes { depth parentId clip { id prompt } } flat { ids parentIndexes depths } } }""",
]


@pytest.mark.parametrize("index", range(len(DOCUMENTS)))
@pytest.mark.parametrize("who", [None, 0, 2])
async def test_hand_written_documents_answer_the_same_both_ways(
    gql: GraphQLClient, graph: Any, services: Any, index: int, who: int | None
) -> None:
    world = await _make_world(gql, graph)
    token = None if who is None else world["accounts"][who].token
    query = DOCUMENTS[index]
    variables = {"k": "FOLLOWING" if who is not None else "FOR_YOU", "id": world["ids"][0]}
    context = await Context.for_request(services, f"Bearer {token}" if token else None)
    fast = _answer(await FAST.execute(query, variable_values=variables, context_value=context))
    slow = _answer(await SLOW.execute(query, variable_values=variables, context_value=context))
    assert fast == slow
    if index == 1 and who is None:  # the propagation the document is there for
        assert fast["data"] is None and fast["errors"][0]["path"] == ["feed"]


async def test_a_plan_is_compiled_once_and_used(
    gql: GraphQLClient, graph: Any, services: Any
) -> None:
    world = await _make_world(gql, graph)
    schema = build_schema(fast_path="on")
    plans = schema.execution_context_class.plans
    query = "query($id: ID!) { clip(id: $id) { id prompt author { handle } } }"
    context = await Context.for_request(services, None)
    for _ in range(3):
        result = await schema.execute(
            query, variable_values={"id": world["ids"][0]}, context_value=context
        )
        assert result.errors is None and result.data["clip"]["prompt"] == "a root clip"
    compiled = [plan for _operation, plan in plans.values()]
    assert len(compiled) == 1 and compiled[0] is not None
    # documents the plan does not cover are answered by the interpreter (no plan cached)
    skipped = "query($s: Boolean!) { viewer @include(if: $s) { id } }"
    result = await schema.execute(skipped, variable_values={"s": True}, context_value=context)
    assert result.errors is None
    assert [plan for _operation, plan in plans.values()][-1] is None


async def test_verify_mode_fails_a_request_on_a_difference(
    gql: GraphQLClient,
    graph: Any,
    services: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The suite's guard can fail: a plan that answers differently is caught."""
    world = await _make_world(gql, graph)
    schema = build_schema(fast_path="verify", mask_errors=False)
    original = plan_runner.PlanRun._value

    def wrong(self: Any, *args: Any) -> Any:
        value = original(self, *args)
        return value + "!" if isinstance(value, str) else value

    monkeypatch.setattr(plan_runner.PlanRun, "_value", wrong)
    context = await Context.for_request(services, None)
    with caplog.at_level(logging.ERROR, logger="reelgraph.errors"):
        result = await schema.execute(
            "query($id: ID!) { clip(id: $id) { id prompt } }",
            variable_values={"id": world["ids"][0]},
            context_value=context,
        )
    assert result.data is None
    assert result.errors[0].extensions["code"] == "INTERNAL"
    assert "answered differently" in result.errors[0].message
    assert any("fast path mismatch" in r.getMessage() for r in caplog.records)


async def test_the_app_answers_through_the_plan(gql: GraphQLClient, graph: Any) -> None:
    """Through the app (which runs with verify in the suite), a page answers as before."""
    account: Account = (await _make_world(gql, graph))["accounts"][0]
    data = await gql.ok(
        "{ viewer { handle following(first: 5) { edges { node { handle } } } } }",
        token=account.token,
    )
    assert data["viewer"]["handle"] == account.handle
    assert len(data["viewer"]["following"]["edges"]) == 2
