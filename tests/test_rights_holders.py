"""Rights holders' works: an admin marks an account as a rights holder; it registers works,
characters and marks, licenses them to named users or to everyone, and withdraws them; and
createClip refuses a prompt (or a remixed clip's prompt) that uses an entry its author may
not use. Through the real app and the suite's graph.

Every entry here is fictional and registered by this module; it withdraws them when done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import Account, GraphQLClient, raw, rendered_clip, run_cli

from graph.driver import Cypher
from resolvers.ids import encode_id

CHARACTER = {
    "kind": "CHARACTER",
    "name": "Zephyrine Quall",
    "aliases": ["Zeph", "Captain Quall", "zeph"],  # the repeat is kept once
    "terms": "Fan art welcome; no commercial use.\nCredit Quallworks.",
}
WORK = {"kind": "WORK", "name": "The Gloaming Chronicles", "aliases": ["Gloamverse"]}
MARK = {"kind": "MARK", "name": "Quorblex"}
NAMES = ("zephyrine", "quall", "zeph", "gloaming", "chronicles", "gloamverse", "quorblex")

WORK_FIELDS = "id kind name aliases terms licensedToEveryone createdAt holder { handle }"
SET_HOLDER = """mutation($u: ID!, $on: Boolean!) { setRightsHolder(userId: $u, enabled: $on) {
  user { id handle } rightsHolder withdrawnWorks } }"""
REGISTER = f"""mutation($input: RegisterProtectedWorkInput!) {{
  registerProtectedWork(input: $input) {{ {WORK_FIELDS} }} }}"""
WITHDRAW = f"mutation($id: ID!) {{ withdrawProtectedWork(id: $id) {{ {WORK_FIELDS} }} }}"
LICENSE = f"""mutation($w: ID!, $u: ID, $all: Boolean) {{
  licenseProtectedWork(workId: $w, userId: $u, everyone: $all) {{ {WORK_FIELDS} }} }}"""
REVOKE = f"""mutation($w: ID!, $u: ID, $all: Boolean) {{
  revokeProtectedWorkLicense(workId: $w, userId: $u, everyone: $all) {{ {WORK_FIELDS} }} }}"""
MINE = """query($first: Int, $after: String) { myProtectedWorks(first: $first, after: $after) {
  edges { cursor node { id name } } pageInfo { hasNextPage endCursor } } }"""
LICENSED = """{ licensedProtectedWorks(first: 100) { edges { node {
  id name terms licensedToEveryone holder { handle } } } } }"""
LICENSEES = """{ myProtectedWorks(first: 100) { edges { node { id
  licensees(first: 10) { edges { node { handle } } } } } } }"""
LICENSEES_AS_LICENSEE = """{ licensedProtectedWorks(first: 100) { edges { node {
  licensees { edges { node { handle } } } } } } }"""
CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
CLIPS_BY_AUTHOR = Cypher(
    """
MATCH (:User {id: $authorId})-[:POSTED]->(c:Clip)
RETURN c.id AS id
"""
)


@dataclass
class Holder:
    admin: Account
    account: Account
    works: dict[str, dict[str, Any]]  # name -> the entry as registered


async def make_admin(settings, gql: GraphQLClient) -> Account:
    admin = await gql.sign_up("admin")
    done = run_cli(settings, "admin", "grant-role", admin.handle, "admin")
    assert done.returncode == 0, done.stdout + done.stderr
    return admin


async def mark(gql: GraphQLClient, admin: Account, user: Account, on: bool = True) -> dict:
    return (await gql.ok(SET_HOLDER, {"u": user.id, "on": on}, admin.token))["setRightsHolder"]


async def register(gql: GraphQLClient, holder: Account, entry: dict) -> dict:
    return (await gql.ok(REGISTER, {"input": entry}, holder.token))["registerProtectedWork"]


async def mine(gql: GraphQLClient, account: Account) -> list[str]:
    data = await gql.ok(MINE, {"first": 100}, account.token)
    return [edge["node"]["name"] for edge in data["myProtectedWorks"]["edges"]]


@pytest.fixture(scope="module")
async def holder(settings, gql: GraphQLClient) -> AsyncIterator[Holder]:
    admin = await make_admin(settings, gql)
    studio = await gql.sign_up("studio")
    marked = await mark(gql, admin, studio)
    assert marked == {
        "user": {"id": studio.id, "handle": studio.handle},
        "rightsHolder": True,
        "withdrawnWorks": 0,
    }
    works = {entry["name"]: await register(gql, studio, entry) for entry in (CHARACTER, WORK, MARK)}
    try:
        yield Holder(admin, studio, works)
    finally:
        await gql.raw(SET_HOLDER, {"u": studio.id, "on": False}, admin.token)


async def create(gql: GraphQLClient, token: str, prompt: str, **more: Any) -> dict[str, Any]:
    return await gql.raw(CREATE, {"input": {"prompt": prompt, **more}}, token)


async def clip_count(graph, account: Account) -> int:
    return len(await graph.read(CLIPS_BY_AUTHOR, {"authorId": raw(account)}))


def assert_refused(body: dict[str, Any], *, remixed: bool = False) -> None:
    assert body.get("errors"), body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "POLICY_VIOLATION", error
    assert error["extensions"]["rule"] == "rights-holder", error
    assert "protected work" in error["message"]
    assert ("remixed" in error["message"]) == remixed, error["message"]
    # the kind of rule only: never the entry, its holder or the list
    for word in NAMES:
        assert word not in error["message"].lower(), error["message"]
    assert body.get("data") is None or body["data"].get("createClip") is None


def assert_created(body: dict[str, Any]) -> None:
    assert not body.get("errors"), body["errors"]
    assert body["data"]["createClip"]["state"] == "QUEUED"


# --- registering -----------------------------------------------------------------------------


async def test_the_holder_registers_and_lists_its_entries(
    gql: GraphQLClient, holder: Holder
) -> None:
    character = holder.works["Zephyrine Quall"]
    assert character["kind"] == "CHARACTER"
    assert character["aliases"] == ["Zeph", "Captain Quall"]
    assert character["terms"] == CHARACTER["terms"]
    assert character["licensedToEveryone"] is False
    assert character["holder"] == {"handle": holder.account.handle}
    assert holder.works["Quorblex"]["aliases"] == [] and holder.works["Quorblex"]["terms"] == ""

    # newest first, a page at a time
    first = (await gql.ok(MINE, {"first": 2}, holder.account.token))["myProtectedWorks"]
    assert [e["node"]["name"] for e in first["edges"]] == ["Quorblex", "The Gloaming Chronicles"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await gql.ok(MINE, {"first": 2, "after": first["pageInfo"]["endCursor"]},
                        holder.account.token)  # fmt: skip
    assert [e["node"]["name"] for e in rest["myProtectedWorks"]["edges"]] == ["Zephyrine Quall"]
    assert rest["myProtectedWorks"]["pageInfo"]["hasNextPage"] is False
    # an account that holds nothing lists nothing
    assert await mine(gql, holder.admin) == []


@pytest.mark.parametrize(
    "prompt",
    [
        "Zephyrine Quall fights a dragon",  # the name
        "zephyrine QUALL at the beach",  # case
        "Z\u00e9phyrine Qu\u00e4ll sails away",  # accents
        "Z3phyr1n3 Qu4ll sings",  # leetspeak
        "z e p h y r i n e quall on stage",  # spaced letters
        "Zephyrine-Quall waves",  # punctuation between
        "ZEPH rides a bicycle",  # an alias
        "captain  quall saves the day",  # the other alias, spaced
        "a poster of the gl0aming chr0nicles",  # a work, leetspeak
        "Gloamverse fan art",  # its alias
        "a can of QUORBLEX soda",  # a mark
        "a can of Qu\u043erblex soda",  # a Cyrillic o in it
    ],
)
async def test_a_prompt_using_an_entry_is_refused(
    gql: GraphQLClient, graph, holder: Holder, prompt: str
) -> None:
    author = await gql.sign_up("fan")
    assert_refused(await create(gql, author.token, prompt))
    assert await clip_count(graph, author) == 0  # nothing written, nothing queued


@pytest.mark.parametrize(
    "prompt",
    [
        "a gentle zephyr at dusk",  # a dictionary word that starts with an alias
        "the gloaming over the hills",  # one word of a work's name
        "a quail in the tall grass",
        "a captain on the bridge of a ship",
        "chronicles of a small town",
    ],
)
async def test_an_ordinary_prompt_passes(
    gql: GraphQLClient, graph, holder: Holder, prompt: str
) -> None:
    author = await gql.sign_up("ordinary")
    assert_created(await create(gql, author.token, prompt))
    assert await clip_count(graph, author) == 1


async def test_the_holders_own_prompt_passes(gql: GraphQLClient, graph, holder: Holder) -> None:
    before = await clip_count(graph, holder.account)
    assert_created(await create(gql, holder.account.token, "Zephyrine Quall drinks Quorblex"))
    assert await clip_count(graph, holder.account) == before + 1


# --- licences --------------------------------------------------------------------------------


async def test_a_licence_to_a_named_user_lets_their_prompt_pass_until_revoked(
    gql: GraphQLClient, graph, holder: Holder
) -> None:
    licensee, other = await gql.sign_up("licensee"), await gql.sign_up("unlicensed")
    work_id = holder.works["Zephyrine Quall"]["id"]
    prompt = "Zeph and a robot share a sandwich"
    assert_refused(await create(gql, licensee.token, prompt))

    granted = await gql.ok(LICENSE, {"w": work_id, "u": licensee.id}, holder.account.token)
    assert granted["licenseProtectedWork"]["id"] == work_id
    again = await gql.ok(LICENSE, {"w": work_id, "u": licensee.id}, holder.account.token)
    assert again["licenseProtectedWork"]["licensedToEveryone"] is False  # no change
    assert_created(await create(gql, licensee.token, prompt))
    assert_refused(await create(gql, other.token, prompt))  # a licence is personal
    # other entries stay protected for the licensee
    assert_refused(await create(gql, licensee.token, "Zeph drinks Quorblex"))

    # the licensee sees the entry and its terms; the holder sees who holds licences
    seen = (await gql.ok(LICENSED, token=licensee.token))["licensedProtectedWorks"]["edges"]
    assert [e["node"]["name"] for e in seen] == ["Zephyrine Quall"]
    assert seen[0]["node"]["terms"] == CHARACTER["terms"]
    assert seen[0]["node"]["holder"] == {"handle": holder.account.handle}
    code, _ = await gql.error(LICENSEES_AS_LICENSEE, token=licensee.token)
    assert code == "FORBIDDEN"
    listed = (await gql.ok(LICENSEES, token=holder.account.token))["myProtectedWorks"]["edges"]
    by_id = {e["node"]["id"]: e["node"]["licensees"]["edges"] for e in listed}
    assert [e["node"]["handle"] for e in by_id[work_id]] == [licensee.handle]

    await gql.ok(REVOKE, {"w": work_id, "u": licensee.id}, holder.account.token)
    assert_refused(await create(gql, licensee.token, prompt))
    assert (await gql.ok(LICENSED, token=licensee.token))["licensedProtectedWorks"]["edges"] == []
    # revoking what is not there changes nothing
    await gql.ok(REVOKE, {"w": work_id, "u": licensee.id}, holder.account.token)
    assert await clip_count(graph, licensee) == 1


async def test_a_licence_to_everyone_lets_every_prompt_pass_until_revoked(
    gql: GraphQLClient, graph, holder: Holder
) -> None:
    author = await gql.sign_up("anyone")
    work_id = holder.works["Quorblex"]["id"]
    prompt = "a Quorblex billboard in the rain"
    assert_refused(await create(gql, author.token, prompt))
    opened = await gql.ok(LICENSE, {"w": work_id, "all": True}, holder.account.token)
    assert opened["licenseProtectedWork"]["licensedToEveryone"] is True
    try:
        assert_created(await create(gql, author.token, prompt))
        seen = (await gql.ok(LICENSED, token=author.token))["licensedProtectedWorks"]["edges"]
        assert [e["node"]["name"] for e in seen] == ["Quorblex"]
        assert seen[0]["node"]["licensedToEveryone"] is True
    finally:
        closed = await gql.ok(REVOKE, {"w": work_id, "all": True}, holder.account.token)
    assert closed["revokeProtectedWorkLicense"]["licensedToEveryone"] is False
    assert_refused(await create(gql, author.token, prompt))
    assert await clip_count(graph, author) == 1


# --- withdrawal, remixes ---------------------------------------------------------------------


async def test_a_withdrawn_entry_lets_the_prompt_pass(
    gql: GraphQLClient, graph, holder: Holder
) -> None:
    author = await gql.sign_up("later")
    prompt = "Brontolux Varenne paints a lighthouse"
    assert_created(await create(gql, author.token, prompt))  # nothing registered yet
    entry = await register(gql, holder.account, {"kind": "CHARACTER", "name": "Brontolux Varenne"})
    # the app compiled the registry before: the new entry reaches it all the same
    body = await create(gql, author.token, prompt)
    assert body["errors"][0]["extensions"]["rule"] == "rights-holder", body
    gone = await gql.ok(WITHDRAW, {"id": entry["id"]}, holder.account.token)
    assert gone["withdrawProtectedWork"]["name"] == "Brontolux Varenne"
    assert "Brontolux Varenne" not in await mine(gql, holder.account)
    assert_created(await create(gql, author.token, prompt))
    assert await clip_count(graph, author) == 2
    code, _ = await gql.error(WITHDRAW, {"id": entry["id"]}, holder.account.token)
    assert code == "NOT_FOUND"


async def test_a_remix_of_a_clip_using_an_entry_is_refused(
    gql: GraphQLClient, graph, holder: Holder
) -> None:
    parent_author, remixer = await gql.sign_up("oldclip"), await gql.sign_up("remixer")
    # a clip made before the entry existed (written straight to the graph)
    parent = await rendered_clip(
        graph, raw(parent_author), 2_000, prompt="Gloamverse: the final battle", publish=True
    )
    plain = await rendered_clip(graph, raw(parent_author), 2_001, prompt="a battle", publish=True)
    parent_id = encode_id("Clip", parent)
    assert_refused(await create(gql, remixer.token, "now in the snow", remixOf=parent_id),
                   remixed=True)  # fmt: skip
    assert await clip_count(graph, remixer) == 0
    assert_created(
        await create(gql, remixer.token, "now in the snow", remixOf=encode_id("Clip", plain))
    )
    # the holder, and a user it licensed, may remix it
    assert_created(await create(gql, holder.account.token, "now at night", remixOf=parent_id))
    work_id = holder.works["The Gloaming Chronicles"]["id"]
    await gql.ok(LICENSE, {"w": work_id, "u": remixer.id}, holder.account.token)
    assert_created(await create(gql, remixer.token, "now in the snow", remixOf=parent_id))
    await gql.ok(REVOKE, {"w": work_id, "u": remixer.id}, holder.account.token)
    assert await clip_count(graph, remixer) == 2


# --- who may, and bad input --------------------------------------------------------------------


async def test_only_admins_mark_and_only_holders_register(
    settings, gql: GraphQLClient, holder: Holder
) -> None:
    user, mod = await gql.sign_up("plain"), await gql.sign_up("mod")
    assert run_cli(settings, "admin", "grant-role", mod.handle, "moderator").returncode == 0
    for token in (user.token, mod.token, holder.account.token):
        code, _ = await gql.error(SET_HOLDER, {"u": user.id, "on": True}, token)
        assert code == "FORBIDDEN"
    code, _ = await gql.error(SET_HOLDER, {"u": user.id, "on": True})
    assert code == "UNAUTHENTICATED"
    code, _ = await gql.error(SET_HOLDER, {"u": encode_id("User", "nobody"), "on": True},
                              holder.admin.token)  # fmt: skip
    assert code == "NOT_FOUND"

    # a user who is no rights holder registers, licenses and withdraws nothing
    work_id = holder.works["Quorblex"]["id"]
    code, message = await gql.error(REGISTER, {"input": {"kind": "MARK", "name": "Snorvak"}},
                                    user.token)  # fmt: skip
    assert code == "FORBIDDEN" and "rights holder" in message
    for query, variables in (
        (WITHDRAW, {"id": work_id}),
        (LICENSE, {"w": work_id, "u": user.id}),
        (REVOKE, {"w": work_id, "all": True}),
    ):
        code, _ = await gql.error(query, variables, user.token)
        assert code == "FORBIDDEN"
    code, _ = await gql.error(REGISTER, {"input": {"kind": "MARK", "name": "Snorvak"}})
    assert code == "UNAUTHENTICATED"
    code, _ = await gql.error(MINE)
    assert code == "UNAUTHENTICATED"

    # another holder may not touch these entries: they are not theirs
    rival = await gql.sign_up("rival")
    await mark(gql, holder.admin, rival)
    try:
        for query, variables in (
            (WITHDRAW, {"id": work_id}),
            (LICENSE, {"w": work_id, "u": user.id}),
            (LICENSE, {"w": work_id, "all": True}),
            (REVOKE, {"w": work_id, "u": user.id}),
        ):
            code, _ = await gql.error(query, variables, rival.token)
            assert code == "NOT_FOUND"
        assert "Quorblex" in await mine(gql, holder.account)
    finally:
        await mark(gql, holder.admin, rival, on=False)


@pytest.mark.parametrize(
    ("entry", "code", "words"),
    [
        ({"name": ""}, "BAD_USER_INPUT", "empty"),
        ({"name": "   "}, "BAD_USER_INPUT", "empty"),
        ({"name": "1234 5678"}, "BAD_USER_INPUT", "no letters"),
        ({"name": "!!!"}, "BAD_USER_INPUT", "no letters"),
        ({"name": "Q"}, "BAD_USER_INPUT", "at least 2"),
        ({"name": "Vexo" * 30}, "BAD_USER_INPUT", "longer than"),
        ({"name": "Snor\u0000vak"}, "BAD_USER_INPUT", "control"),
        ({"name": "Snorvak", "aliases": [f"Snorvak {i}" for i in range(21)]}, "BAD_USER_INPUT",
         "at most 20"),
        ({"name": "Snorvak", "aliases": [" "]}, "BAD_USER_INPUT", "empty"),
        ({"name": "Snorvak", "aliases": ["42"]}, "BAD_USER_INPUT", "no letters"),
        ({"name": "Snorvak", "terms": "x" * 4001}, "BAD_USER_INPUT", "longer than"),
        # a name or alias that reads as any entry's, however spelled
        ({"name": "ZEPHYRINE quall"}, "CONFLICT", "registered already"),
        ({"name": "Snorvak", "aliases": ["Zephyrine-Quall"]}, "CONFLICT", "registered already"),
        ({"name": "Gloam Verse"}, "CONFLICT", "registered already"),
    ],
)  # fmt: skip
async def test_bad_entries_are_refused_and_nothing_is_written(
    gql: GraphQLClient, holder: Holder, entry: dict, code: str, words: str
) -> None:
    rival = await gql.sign_up("rival")
    await mark(gql, holder.admin, rival)
    try:
        got, message = await gql.error(REGISTER, {"input": {"kind": "MARK", **entry}}, rival.token)
        assert got == code and words in message, message
        assert await mine(gql, rival) == []
        for name in ("Zephyrine Quall", "Quorblex"):  # the holder's own entries stay theirs
            assert name in await mine(gql, holder.account)
        # the holder itself may not register a second entry with one of its names either
        if code == "CONFLICT":
            got, _ = await gql.error(
                REGISTER, {"input": {"kind": "MARK", **entry}}, holder.account.token
            )
            assert got == "CONFLICT"
    finally:
        await mark(gql, holder.admin, rival, on=False)


async def test_bad_licences_are_refused(gql: GraphQLClient, holder: Holder) -> None:
    user = await gql.sign_up("someone")
    work_id = holder.works["Quorblex"]["id"]
    token = holder.account.token
    for variables in ({"w": work_id}, {"w": work_id, "u": user.id, "all": True},
                      {"w": work_id, "all": False}):  # fmt: skip
        code, message = await gql.error(LICENSE, variables, token)
        assert code == "BAD_USER_INPUT" and "either" in message
        code, _ = await gql.error(REVOKE, variables, token)
        assert code == "BAD_USER_INPUT"
    code, message = await gql.error(LICENSE, {"w": work_id, "u": holder.account.id}, token)
    assert code == "BAD_USER_INPUT" and "you hold" in message
    code, _ = await gql.error(LICENSE, {"w": work_id, "u": encode_id("User", "nobody")}, token)
    assert code == "NOT_FOUND"
    code, _ = await gql.error(LICENSE, {"w": "not-an-id", "u": user.id}, token)
    assert code == "BAD_USER_INPUT"
    code, _ = await gql.error(LICENSE, {"w": encode_id("Clip", "x1"), "u": user.id}, token)
    assert code == "NOT_FOUND"
    assert (await gql.ok(LICENSED, token=user.token))["licensedProtectedWorks"]["edges"] == []


async def test_unmarking_a_holder_withdraws_its_entries(
    gql: GraphQLClient, graph, holder: Holder
) -> None:
    label, author = await gql.sign_up("label"), await gql.sign_up("author")
    await mark(gql, holder.admin, label)
    await register(gql, label, {"kind": "WORK", "name": "Trellisport Saga", "aliases": ["TPS"]})
    entry = await register(gql, label, {"kind": "MARK", "name": "Ombrecast"})
    await gql.ok(LICENSE, {"w": entry["id"], "u": author.id}, label.token)
    prompt = "the Trellisport Saga, live on stage"
    assert_refused(await create(gql, author.token, prompt))
    again = await mark(gql, holder.admin, label)  # marking twice changes nothing
    assert again["withdrawnWorks"] == 0 and again["rightsHolder"] is True

    unmarked = await mark(gql, holder.admin, label, on=False)
    assert unmarked["rightsHolder"] is False and unmarked["withdrawnWorks"] == 2
    assert await mine(gql, label) == []
    assert_created(await create(gql, author.token, prompt))
    assert (await gql.ok(LICENSED, token=author.token))["licensedProtectedWorks"]["edges"] == []
    code, _ = await gql.error(REGISTER, {"input": {"kind": "MARK", "name": "Ombrecast"}},
                              label.token)  # fmt: skip
    assert code == "FORBIDDEN"
    # the names are free again: another holder may register them
    taken = await register(gql, holder.account, {"kind": "MARK", "name": "Ombrecast"})
    await gql.ok(WITHDRAW, {"id": taken["id"]}, holder.account.token)
    assert await clip_count(graph, author) == 1
