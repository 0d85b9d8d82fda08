"""Public figures: `reelgraph policy public-figure add/list/remove` (the real CLI, in its own
process, on the suite's data folder while the app serves it), and createClip refusing a
prompt that names a registered person unless their own cameo is featured with consent.

Every entry here is fictional and registered by this module; it removes them when done.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import (
    ROOT,
    Account,
    GraphQLClient,
    cameo_of,
    purge_render_queue,
    raw,
    rendered_clip,
    run_cli,
    start_worker,
    worker_env,
)

from graph.driver import Cypher
from resolvers.ids import encode_id

TIMEOUT_S = 120  # a slow machine imports slowly; nothing waits on a clock

NAME = "Marisol Quenby"
ALIASES = ("MQ the Great", "Tempest")

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) {
  id state cameos { approval cameo { id } } } }"""
DRAFTS = "{ drafts(first: 50) { edges { node { id state } } } }"
GRANT = "mutation($u: ID!) { grantCameo(granteeId: $u) { id } }"
CLIPS_BY_AUTHOR = Cypher(
    """
MATCH (:User {id: $authorId})-[:POSTED]->(c:Clip)
RETURN c.id AS id
"""
)


def policy_cli(settings: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """`reelgraph policy public-figure <args> --data-dir ...` on the suite's engine."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "policy",
            "public-figure",
            *args,
            "--data-dir",
            str(settings.data_dir),
        ],
        cwd=ROOT,
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def listed(settings: Any) -> dict[str, str]:
    """`list`, as {name: its whole line}."""
    lines = ok(policy_cli(settings, "list")).splitlines()
    return {line.split("\t")[1]: line for line in lines}


@dataclass
class Figure:
    star: Account  # the person's own account
    cameo: str  # their cameo (global id), audience APPROVED
    id: str


@pytest.fixture(scope="module")
async def figure(settings, gql: GraphQLClient, graph, services) -> AsyncIterator[Figure]:
    star = await gql.sign_up("quenby")
    cameo = await cameo_of(graph, services, star, audience="APPROVED")
    args = ["add", NAME, "--user", star.handle]
    for alias in ALIASES:
        args += ["--alias", alias]
    added = ok(policy_cli(settings, *args))
    figure_id = added.split()[3]
    try:
        yield Figure(star, cameo, figure_id)
    finally:
        policy_cli(settings, "remove", figure_id)


async def create(gql: GraphQLClient, token: str, prompt: str, **more: Any) -> dict[str, Any]:
    return await gql.raw(CREATE, {"input": {"prompt": prompt, **more}}, token)


async def clip_count(gql: GraphQLClient, graph, account: Account) -> int:
    """The author's clips as the graph holds them; drafts (QUEUED included) must agree."""
    rows = await graph.read(CLIPS_BY_AUTHOR, {"authorId": raw(account)})
    drafts = (await gql.ok(DRAFTS, token=account.token))["drafts"]["edges"]
    assert len(drafts) == len(rows)
    return len(rows)


def assert_refused(body: dict[str, Any]) -> None:
    assert body.get("errors"), body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "POLICY_VIOLATION", error
    assert error["extensions"]["rule"] == "public-figure", error
    assert "public figure" in error["message"]
    # the message names the kind of rule, never the person or the list
    for word in ("marisol", "quenby", "tempest", "mq"):
        assert word not in error["message"].lower(), error["message"]
    assert body.get("data") is None or body["data"].get("createClip") is None


def assert_created(body: dict[str, Any]) -> dict[str, Any]:
    assert not body.get("errors"), body["errors"]
    clip = body["data"]["createClip"]
    assert clip["state"] == "QUEUED", clip
    return clip


# --- the CLI ---------------------------------------------------------------------------------


async def test_the_cli_adds_lists_and_removes_entries(settings, gql: GraphQLClient) -> None:
    owner = await gql.sign_up("lindqvist")
    added = ok(
        policy_cli(settings, "add", "Tobias  Lindqvist-Oyelaran", "--alias", "TLO", "--user",
                   f"@{owner.handle.upper()}")
    )  # fmt: skip
    assert "added public figure" in added and "'Tobias Lindqvist-Oyelaran'" in added
    figure_id = added.split()[3]
    line = listed(settings)["Tobias Lindqvist-Oyelaran"]
    assert line.startswith(figure_id + "\t")
    assert "aliases: TLO" in line and f"cameo of: @{owner.handle}" in line

    # the same name however spelled is one entry; an unknown account is refused
    again = policy_cli(settings, "add", "tobias LINDQVIST oyelaran")
    assert again.returncode == 1 and figure_id in again.stderr, again.stderr
    nobody = policy_cli(settings, "add", "Wenceslas Ombuku", "--user", "no_such_user_zz9")
    assert nobody.returncode == 1 and "no user @no_such_user_zz9" in nobody.stderr
    # a reference photo that cannot be read is refused, and nothing is stored
    photo = policy_cli(settings, "add", "Wenceslas Ombuku", "--photo", "no-such-face.jpg")
    assert photo.returncode == 2 and "not a picture that can be read" in photo.stderr
    assert "nothing was stored" in photo.stderr and "Traceback" not in photo.stderr
    assert not {"Wenceslas Ombuku", "tobias LINDQVIST oyelaran"} & set(listed(settings))

    # remove by name (read as the matcher reads it) and by id
    removed = ok(policy_cli(settings, "remove", "TOBIAS lindqvist oyelaran"))
    assert figure_id in removed
    assert "Tobias Lindqvist-Oyelaran" not in listed(settings)
    gone = policy_cli(settings, "remove", figure_id)
    assert gone.returncode == 1 and "no public figure" in gone.stderr
    other = ok(policy_cli(settings, "add", "Wenceslas Ombuku")).split()[3]
    assert "Wenceslas Ombuku" in listed(settings)
    assert other in ok(policy_cli(settings, "remove", other))
    assert "Wenceslas Ombuku" not in listed(settings)


# --- createClip ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        "Marisol Quenby dancing on a rooftop",  # plain
        "marisol QUENBY at the beach",  # case
        "M\u0430risol Qu\u0435nby sings",  # Cyrillic a and e
        "M4r1s0l Qu3nby sings",  # leetspeak
        "m a r i s o l q u e n b y on stage",  # spaced letters
        "M-a-r-i-s-o-l Q.u.e.n.b.y waves",  # inserted punctuation
        "MarisolQuenby fan cam",  # run together
        "MQ the Great rides a horse",  # an alias
        "T3mp3st walks the red carpet",  # the other alias, in leetspeak
    ],
)
async def test_a_prompt_naming_a_public_figure_is_refused(
    gql: GraphQLClient, graph, services, figure: Figure, prompt: str
) -> None:
    author = await gql.sign_up("fanboy")
    assert_refused(await create(gql, author.token, prompt))
    # featuring somebody else's cameo (with consent) does not make it the figure's
    friend = await gql.sign_up("friend")
    friend_cameo = await cameo_of(graph, services, friend)  # audience EVERYONE
    assert_refused(await create(gql, author.token, prompt, cameoIds=[friend_cameo]))
    assert await clip_count(gql, graph, author) == 0  # nothing written, nothing queued


@pytest.mark.parametrize(
    "prompt",
    [
        "a tempestuous sea at dawn",  # a dictionary word that starts with an alias
        "Marisol picks quinces by the quay",  # a first name alone is nobody in particular
        "the great auk",
    ],
)
async def test_an_ordinary_prompt_passes(
    gql: GraphQLClient, graph, figure: Figure, prompt: str
) -> None:
    author = await gql.sign_up("ordinary")
    assert_created(await create(gql, author.token, prompt))
    assert await clip_count(gql, graph, author) == 1


async def test_the_figures_own_cameo_lets_their_own_clip_name_them(
    gql: GraphQLClient, graph, figure: Figure
) -> None:
    star = figure.star
    before = await clip_count(gql, graph, star)
    assert_refused(await create(gql, star.token, "Marisol Quenby takes a bow"))  # no cameo
    clip = assert_created(
        await create(gql, star.token, "Marisol Quenby takes a bow", cameoIds=[figure.cameo])
    )
    assert [c["cameo"]["id"] for c in clip["cameos"]] == [figure.cameo]
    assert clip["cameos"][0]["approval"] == "APPROVED"
    assert await clip_count(gql, graph, star) == before + 1


async def test_another_author_with_a_grant_may_name_the_figure_featuring_their_cameo(
    gql: GraphQLClient, graph, figure: Figure
) -> None:
    fan, stranger = await gql.sign_up("granted"), await gql.sign_up("stranger")
    await gql.ok(GRANT, {"u": fan.id}, figure.star.token)
    prompt = "MQ the Great and a fan share a cake"
    assert_refused(await create(gql, fan.token, prompt))
    clip = assert_created(await create(gql, fan.token, prompt, cameoIds=[figure.cameo]))
    assert clip["cameos"][0]["approval"] == "PENDING"  # the owner still approves the draft
    assert await clip_count(gql, graph, fan) == 1
    # without consent the cameo is refused first, and nothing is written either
    body = await create(gql, stranger.token, prompt, cameoIds=[figure.cameo])
    assert body["errors"][0]["extensions"]["code"] == "CONSENT_REQUIRED", body
    assert await clip_count(gql, graph, stranger) == 0


async def test_a_remix_of_a_clip_naming_a_figure_is_refused(
    gql: GraphQLClient, graph, figure: Figure
) -> None:
    parent_author, remixer = await gql.sign_up("oldclip"), await gql.sign_up("remixer")
    # a clip made before the entry existed (written straight to the graph)
    parent = await rendered_clip(
        graph, raw(parent_author), 1_000, prompt="Marisol Quenby juggles", publish=True
    )
    plain = await rendered_clip(graph, raw(parent_author), 1_001, prompt="a juggler", publish=True)
    body = await create(gql, remixer.token, "now in the rain", remixOf=encode_id("Clip", parent))
    assert_refused(body)
    assert "remixed" in body["errors"][0]["message"]
    assert await clip_count(gql, graph, remixer) == 0
    assert_created(
        await create(gql, remixer.token, "now in the rain", remixOf=encode_id("Clip", plain))
    )
    assert await clip_count(gql, graph, remixer) == 1


async def test_removing_an_entry_lets_the_prompt_pass(settings, gql: GraphQLClient, graph) -> None:
    author = await gql.sign_up("later")
    prompt = "Ottoline Brackwater paints a lighthouse"
    assert_created(await create(gql, author.token, prompt))  # nobody registered yet
    figure_id = ok(policy_cli(settings, "add", "Ottoline Brackwater")).split()[3]
    try:
        # the app compiled the registry before: the CLI's change reaches it all the same
        body = await create(gql, author.token, prompt)
        assert body.get("errors") and body["errors"][0]["extensions"]["rule"] == "public-figure"
    finally:
        ok(policy_cli(settings, "remove", "ottoline brackwater"))
    assert figure_id not in listed(settings).get("Ottoline Brackwater", "")
    assert_created(await create(gql, author.token, prompt))
    assert await clip_count(gql, graph, author) == 2


# --- reference photos: captures that look like a registered person are held for review -----

FACES = ROOT / "tests" / "data" / "faces"
REVIEW = """mutation($id: ID!, $approve: Boolean!) {
  reviewCameo(cameoId: $id, approve: $approve) { id state rejectReason } }"""
VIEWER_CAMEO = "{ viewer { cameo { id state rejectReason viewerCanUse } } }"


async def faces_by_figure(graph) -> dict[str, int]:
    """{figure id: how many reference faces it holds}, as capture workers read them."""
    from graph.figure_faces import figure_faces_since

    _stamp, figures = await figure_faces_since(graph, None)
    return {f["id"]: len(f["faces"]) for f in figures or []}


async def test_a_reference_photo_must_show_one_face(settings, graph, tmp_path) -> None:
    from PIL import Image

    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (300, 300), (90, 120, 150)).save(blank)
    pair = tmp_path / "pair.jpg"
    with Image.open(FACES / "astronaut_face.jpg") as one:  # the public-domain astronaut, twice
        both = Image.new("RGB", (one.width * 2, one.height))
        both.paste(one, (0, 0))
        both.paste(one, (one.width, 0))
        both.save(pair)
    for photo, words in ((blank, "no face found"), (pair, "2 faces found")):
        refused = policy_cli(settings, "add", "Pell Vantreece", "--photo", str(photo))
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr
        assert "nothing was stored" in refused.stderr
        assert "Pell Vantreece" not in listed(settings)

    added = ok(
        policy_cli(
            settings,
            "add",
            "Pell Vantreece",
            "--photo",
            str(FACES / "obama.jpg"),
            "--photo",
            str(FACES / "obama2.jpg"),
        )
    )
    figure_id = added.split()[3]
    assert "with 2 reference photo(s)" in added
    assert (await faces_by_figure(graph))[figure_id] == 2
    ok(policy_cli(settings, "remove", figure_id))
    assert figure_id not in await faces_by_figure(graph)  # the faces went with the entry


@pytest.fixture(scope="module")
def capture_worker(settings, tmp_path_factory: pytest.TempPathFactory):
    purge_render_queue(settings)
    log = tmp_path_factory.mktemp("figure-worker") / "worker.log"
    running = start_worker(settings, log)
    yield running
    running.stop()


@pytest.fixture
async def redis(settings):
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def capture_astronaut(gql, app, graph, redis, owner: Account, path) -> dict:
    from test_cameo_capture import answer, start, upload, wait_cameo

    challenge = await start(gql, owner)
    video = await answer(redis, challenge, path)
    response = await upload(app, challenge["uploadUrl"], owner.token, video)
    assert response.status_code == 202, response.text
    return await wait_cameo(
        graph, raw(owner), lambda c: c["state"] != "PENDING_VERIFICATION", within_s=300
    )


async def audited(graph, cameo_id: str, action: str) -> list[dict]:
    from graph import audit as audit_repo

    rows = await audit_repo.entries_page(
        graph, user_id=None, clip_id=None, cameo_id=cameo_id, after_seq=None, limit=20
    )
    return [row for row in rows if row["entry"]["action"] == action]


async def test_a_capture_of_a_registered_face_is_held_until_an_admin_decides(
    settings, gql: GraphQLClient, app, graph, services, redis, capture_worker, tmp_path
) -> None:
    from consent.envelope import load_kek
    from graph import cameos as cameo_repo
    from tests.capture_videos import release_faces

    await release_faces(graph)
    admin = await gql.sign_up("reviewer")
    assert run_cli(settings, "admin", "grant-role", admin.handle, "admin").returncode == 0
    # the test's own fictional figure, whose reference photo is the face captures animate
    astra = ok(
        policy_cli(settings, "add", "Astra Fenwick", "--photo", str(FACES / "astronaut_face.jpg"))
    ).split()[3]
    obama_like = None
    try:
        owner = await gql.sign_up("lookalike")
        held = await capture_astronaut(gql, app, graph, redis, owner, tmp_path / "a.mp4")
        assert held["state"] == "PENDING_REVIEW", held
        shown = (await gql.ok(VIEWER_CAMEO, token=owner.token))["viewer"]["cameo"]
        assert shown["state"] == "PENDING_REVIEW" and "review" in shown["rejectReason"]
        assert shown["viewerCanUse"] is False
        assert await audited(graph, held["id"], "cameo.capture.held")

        # only an admin decides
        cameo_gid = shown["id"]
        body = await gql.raw(REVIEW, {"id": cameo_gid, "approve": True}, owner.token)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
        approved = (await gql.ok(REVIEW, {"id": cameo_gid, "approve": True}, admin.token))[
            "reviewCameo"
        ]
        assert approved["state"] == "ACTIVE"
        assert (await cameo_repo.live_cameo(graph, raw(owner)))["state"] == "ACTIVE"
        assert len(await audited(graph, held["id"], "cameo.review.approve")) == 1
        again = await gql.raw(REVIEW, {"id": cameo_gid, "approve": False}, admin.token)
        assert again["errors"][0]["extensions"]["code"] == "CONFLICT", again

        # rejected: REJECTED, and the likeness it held is shredded
        await release_faces(graph)
        other = await gql.sign_up("lookalike2")
        held = await capture_astronaut(gql, app, graph, redis, other, tmp_path / "b.mp4")
        assert held["state"] == "PENDING_REVIEW", held
        refs = (await cameo_repo.reference_media(graph, [held["id"]]))[held["id"]]
        assert refs["faceSealed"] and refs["refKeys"]
        gid = (await gql.ok(VIEWER_CAMEO, token=other.token))["viewer"]["cameo"]["id"]
        rejected = (await gql.ok(REVIEW, {"id": gid, "approve": False}, admin.token))["reviewCameo"]
        assert rejected["state"] == "REJECTED"
        shown = (await gql.ok(VIEWER_CAMEO, token=other.token))["viewer"]["cameo"]
        assert shown["state"] == "REJECTED" and "public figure" in shown["rejectReason"]
        gone = (await cameo_repo.reference_media(graph, [held["id"]]))[held["id"]]
        assert gone["faceSealed"] is None and gone["wrappedKey"] is None and not gone["refKeys"]
        assert not any((services.media.root / key).exists() for key in refs["refKeys"])
        assert len(await audited(graph, held["id"], "cameo.review.reject")) == 1
        assert load_kek(settings)  # the suite's KEK still opens what is left

        # a figure whose photo is someone else does not hold the astronaut's capture
        ok(policy_cli(settings, "remove", astra))
        astra = None
        obama_like = ok(
            policy_cli(settings, "add", "Corwin Ashdale", "--photo", str(FACES / "obama.jpg"))
        ).split()[3]
        third = await gql.sign_up("notalike")
        passed = await capture_astronaut(gql, app, graph, redis, third, tmp_path / "c.mp4")
        assert passed["state"] == "ACTIVE", passed
    finally:
        for figure_id in (astra, obama_like):
            if figure_id:
                policy_cli(settings, "remove", figure_id)
        await release_faces(graph)


async def test_review_refuses_what_it_cannot_decide(gql: GraphQLClient, settings) -> None:
    admin = await gql.sign_up("reviewer2")
    assert run_cli(settings, "admin", "grant-role", admin.handle, "admin").returncode == 0
    missing = encode_id("Cameo", "NoSuchCameo")
    body = await gql.raw(REVIEW, {"id": missing, "approve": True}, admin.token)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", body
    body = await gql.raw(REVIEW, {"id": missing, "approve": True}, None)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
