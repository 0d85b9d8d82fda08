"""`reelgraph seed`: a synthetic graph that is consistent and serves every field.

Seeded in-process into the session's engine (small sizes), and through the real command into
a data folder, both while a `reelgraph serve` runs on it and when none does.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import GraphQLClient
from test_server_process import ROOT, server

from graph.driver import driver_for
from graph.seed import SEED_PASSWORD, SeedPlan, seed_checks, seed_graph
from resolvers.ids import encode_id

USERS, CLIPS, DEPTH = 60, 300, 50

CLIP_FIELDS = """query($id: ID!) { clip(id: $id) {
  id state prompt moods createdAt publishedAt renderProgress likeCount viewerHasLiked
  forkDepth remixCount author { handle } remixOf { id } root { id } lineage { id }
  remixes(first: 5) { edges { node { id } } }
  stats { views completions completionRate rewatches remixRate }
  video { url mimeType durationMs width height fps hasAudio sha256 } } }"""


FEED_PAGE = "{ feed(kind: FOR_YOU, first: 5) { edges { node { state video { url } } } } }"


@pytest.fixture(scope="module")
async def seeded(settings: Any, services: Any) -> SeedPlan:
    def run() -> SeedPlan:
        return seed_graph(
            lambda: driver_for(settings),
            services.media,
            users=USERS,
            clips=CLIPS,
            seed=7,
            max_depth=DEPTH,
            tmp_dir=settings.data_dir,
            show_progress=False,
            now_ms=int(time.time() * 1000),
        )

    # seed_graph runs its own event loop (as the command does): keep it off the test's
    return await asyncio.to_thread(run)


async def test_counts_are_as_requested_and_counters_match_edges(
    seeded: SeedPlan, graph: Any
) -> None:
    clip_ids = [c["id"] for c in seeded.clips]
    user_ids = [u["id"] for u in seeded.users]
    clips, users = await seed_checks(graph, clip_ids, user_ids)
    assert len(users) == USERS and len(clips) == CLIPS
    assert {c["state"] for c in clips} == {"PUBLISHED"}
    for c in clips:
        assert c["likeCount"] == c["likes"], c
        assert c["viewCount"] == c["views"], c
        assert c["completionCount"] == c["completions"], c
        # each viewer's first view is never a rewatch
        assert 0 <= c["rewatchCount"] <= c["views"] - c["viewers"], c
    assert sum(c["likes"] for c in clips) == len(seeded.likes) > 0
    assert sum(c["viewers"] for c in clips) == len(seeded.views) > 0
    follows = [u["follows"] for u in users]
    assert sum(follows) == len(seeded.follows)
    assert all(u["follows"] == u["distinctFollows"] and u["selfFollows"] == 0 for u in users)
    assert max(follows) <= USERS - 1 and sum(follows) / USERS >= 10
    # the counts stored on each User node (what feeds read) equal its edges
    for u in users:
        assert (u["followingCount"], u["followerCount"]) == (u["follows"], u["followers"]), u
    # power law: the most followed user has many times the median's followers
    followers = sorted(Counter(f["toId"] for f in seeded.follows).values())
    assert followers[-1] >= 3 * followers[len(followers) // 2]


async def test_remix_depth_reaches_the_maximum(seeded: SeedPlan, gql: GraphQLClient) -> None:
    parent = {r["id"]: r["parentId"] for r in seeded.remixes}

    def depth(clip_id: str) -> int:
        return 0 if clip_id not in parent else 1 + depth(parent[clip_id])

    deepest = max(parent, key=depth)
    assert depth(deepest) == DEPTH == seeded.max_depth
    root = deepest
    while root in parent:
        root = parent[root]
    data = await gql.ok(
        "query($id: ID!, $deep: ID!) { clip(id: $id) { forkDepth } deep: clip(id: $deep) {"
        " root { id } lineage { id } } }",
        {"id": encode_id("Clip", root), "deep": encode_id("Clip", deepest)},
    )
    assert data["clip"]["forkDepth"] == DEPTH
    assert data["deep"]["root"]["id"] == encode_id("Clip", root)
    assert len(data["deep"]["lineage"]) == DEPTH
    # many shallow trees beside the long chain
    assert len(seeded.remixes) > DEPTH + 10


async def test_every_clip_is_published_with_a_fetchable_video(
    seeded: SeedPlan, gql: GraphQLClient
) -> None:
    keys = set()
    for clip in seeded.clips:
        data = await gql.ok(CLIP_FIELDS, {"id": encode_id("Clip", clip["id"])})
        got = data["clip"]
        assert got["state"] == "PUBLISHED" and got["moods"] and got["video"]
        assert got["likeCount"] == clip["likeCount"]
        assert got["stats"]["views"] == clip["viewCount"]
        response = await gql.client.get(got["video"]["url"])
        assert response.status_code == 200
        assert len(response.content) == clip["sizeBytes"]
        keys.add(clip["videoKey"])
    assert len(keys) == CLIPS  # every clip its own key, whatever file it shares


async def test_deleting_a_seeded_clip_leaves_the_others_playable(
    seeded: SeedPlan, gql: GraphQLClient, services: Any
) -> None:
    by_sha: dict[str, list[dict]] = {}
    for clip in seeded.clips:
        by_sha.setdefault(clip["sha256"], []).append(clip)
    victim, *others = max(by_sha.values(), key=len)
    assert others
    handle = next(u["handle"] for u in seeded.users if u["id"] == victim["authorId"])
    token = (
        await gql.ok(
            "mutation($h: String!, $p: String!) { logIn(handle: $h, password: $p) {"
            " accessToken } }",
            {"h": handle, "p": SEED_PASSWORD},
        )
    )["logIn"]["accessToken"]
    await gql.ok(
        "mutation($id: ID!) { deleteClip(clipId: $id) { state } }",
        {"id": encode_id("Clip", victim["id"])},
        token,
    )
    assert services.media.size(victim["videoKey"]) is None
    for clip in others[:20]:
        data = await gql.ok(CLIP_FIELDS, {"id": encode_id("Clip", clip["id"])})
        response = await gql.client.get(data["clip"]["video"]["url"])
        assert response.status_code == 200 and len(response.content) == clip["sizeBytes"]


def _seed_command(data_dir: Path, users: int, clips: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "seed",
            "--users",
            str(users),
            "--clips",
            str(clips),
            "--max-depth",
            "5",
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        # the folder's engine, never the test session's graph the environment names
        env={k: v for k, v in os.environ.items() if not k.startswith("REELGRAPH_")}
        | {"REELGRAPH_TRACE_STATEMENTS": os.environ["REELGRAPH_TRACE_STATEMENTS"]},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _first_page(base: str) -> list[dict]:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": FEED_PAGE}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    assert not body.get("errors"), body
    return [edge["node"] for edge in body["data"]["feed"]["edges"]]


def _fetch(base: str, url: str) -> bytes:
    with urllib.request.urlopen(urllib.parse.urljoin(base, url), timeout=30) as response:
        return response.read()


def test_seed_talks_to_a_running_server_and_works_without_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with server(data_dir) as base:
        result = _seed_command(data_dir, 20, 40)
        assert result.returncode == 0, result.stderr
        assert "seeded 20 users" in result.stderr
        nodes = _first_page(base)
        assert len(nodes) == 5 and {n["state"] for n in nodes} == {"PUBLISHED"}
        assert all(_fetch(base, n["video"]["url"]) for n in nodes)
    # no server now: the command opens the folder's engine itself, and the data stays
    result = _seed_command(data_dir, 10, 10)
    assert result.returncode == 0, result.stderr
    with server(data_dir) as base:
        nodes = _first_page(base)
        assert len(nodes) == 5
        assert all(_fetch(base, n["video"]["url"]) for n in nodes)
