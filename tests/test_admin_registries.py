"""The public-figure registry kept over GraphQL by admins: addPublicFigure, removePublicFigure
and publicFigures, end to end through the real app (a prompt refused after the add, passing
after the remove), agreeing with `reelgraph policy public-figure` (the real CLI, in its own
process, on the data folder the app serves).

Every entry here is fictional and registered by this module; it removes them when done.
"""

from __future__ import annotations

from typing import Any

from conftest import Account, GraphQLClient, run_cli

from resolvers.ids import decode_id, encode_id

FIELDS = "id name aliases createdAt user { handle }"
ADD = f"""mutation($name: String!, $aliases: [String!], $user: ID) {{
  addPublicFigure(name: $name, aliases: $aliases, userId: $user) {{ {FIELDS} }} }}"""
REMOVE = f"mutation($id: ID!) {{ removePublicFigure(id: $id) {{ {FIELDS} }} }}"
LIST = """query($first: Int, $after: String) { publicFigures(first: $first, after: $after) {
  edges { cursor node { id name aliases user { handle } } }
  pageInfo { hasNextPage endCursor } } }"""
CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""


async def make_admin(settings, gql: GraphQLClient, prefix: str = "admin") -> Account:
    admin = await gql.sign_up(prefix)
    done = run_cli(settings, "admin", "grant-role", admin.handle, "admin")
    assert done.returncode == 0, done.stdout + done.stderr
    return admin


def cli_list(settings) -> dict[str, str]:
    """`reelgraph policy public-figure list`, as {name: its whole line}."""
    done = run_cli(settings, "policy", "public-figure", "list")
    assert done.returncode == 0, done.stdout + done.stderr
    return {line.split("\t")[1]: line for line in done.stdout.splitlines()}


async def listed(gql: GraphQLClient, admin: Account) -> dict[str, dict[str, Any]]:
    """Every entry the API lists, page after page, by name."""
    found: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        data = (await gql.ok(LIST, {"first": 100, "after": after}, admin.token))["publicFigures"]
        found.update({edge["node"]["name"]: edge["node"] for edge in data["edges"]})
        if not data["pageInfo"]["hasNextPage"]:
            return found
        after = data["pageInfo"]["endCursor"]


def prompt_rule(body: dict[str, Any]) -> str | None:
    """The rule a createClip answer was refused under; None when the clip was created."""
    if not body.get("errors"):
        assert body["data"]["createClip"]["state"] == "QUEUED"
        return None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "POLICY_VIOLATION", error
    return error["extensions"]["rule"]


def listed_line(lines: dict[str, str], figure: dict[str, Any]) -> bool:
    """Whether the CLI's list shows the entry under its id, with its alias."""
    line = lines.get(figure["name"], "")
    return line.startswith(decode_id(figure["id"], "PublicFigure") + "\t") and "Iggy W" in line


async def test_an_admin_adds_and_removes_a_public_figure_end_to_end(
    settings, gql: GraphQLClient
) -> None:
    admin, star, author = (
        await make_admin(settings, gql),
        await gql.sign_up("star"),
        await gql.sign_up("author"),
    )
    prompt = "I\u0261natia W0lloughby reads the news"  # a look-alike g, a zero for an o
    alias_prompt = "iggy w dances"
    create = {"input": {"prompt": prompt}}
    assert prompt_rule(await gql.raw(CREATE, create, author.token)) is None  # nobody yet

    added = await gql.ok(
        ADD,
        {"name": "  Ignatia   Wolloughby ", "aliases": ["Iggy  W", "!!", "Iggy W"],
         "user": star.id},
        admin.token,
    )  # fmt: skip
    figure = added["addPublicFigure"]
    # read as the CLI reads it: spaces made one, aliases without letters and repeats dropped
    assert figure["name"] == "Ignatia Wolloughby"
    assert figure["aliases"] == ["Iggy W"]
    assert figure["user"] == {"handle": star.handle}
    try:
        # the app compiled the registry before: the admin's add reaches it at once
        assert prompt_rule(await gql.raw(CREATE, create, author.token)) == "public-figure"
        body = await gql.raw(CREATE, {"input": {"prompt": alias_prompt}}, author.token)
        assert prompt_rule(body) == "public-figure"
        # the API and the CLI see one registry
        assert listed_line(cli_list(settings), figure) and "Ignatia Wolloughby" in await listed(
            gql, admin
        )
        # the same name however spelled is one entry
        code, message = await gql.error(ADD, {"name": "IGNATIA wolloughby"}, admin.token)
        assert code == "CONFLICT" and "registered already" in message
    finally:
        removed = await gql.ok(REMOVE, {"id": figure["id"]}, admin.token)
    assert removed["removePublicFigure"]["name"] == "Ignatia Wolloughby"
    assert prompt_rule(await gql.raw(CREATE, create, author.token)) is None
    assert "Ignatia Wolloughby" not in cli_list(settings)
    assert "Ignatia Wolloughby" not in await listed(gql, admin)
    code, _ = await gql.error(REMOVE, {"id": figure["id"]}, admin.token)
    assert code == "NOT_FOUND"


async def test_an_entry_added_by_the_cli_is_listed_and_removed_over_graphql(
    settings, gql: GraphQLClient
) -> None:
    admin, author = await make_admin(settings, gql), await gql.sign_up("author")
    done = run_cli(settings, "policy", "public-figure", "add", "Peregrine Osterhaut")
    assert done.returncode == 0, done.stderr
    create = {"input": {"prompt": "peregrine osterhaut on a horse"}}
    assert prompt_rule(await gql.raw(CREATE, create, author.token)) == "public-figure"
    entry = (await listed(gql, admin))["Peregrine Osterhaut"]
    assert entry["aliases"] == [] and entry["user"] is None
    await gql.ok(REMOVE, {"id": entry["id"]}, admin.token)
    assert "Peregrine Osterhaut" not in cli_list(settings)
    assert prompt_rule(await gql.raw(CREATE, create, author.token)) is None


async def test_public_figures_pages_oldest_first(settings, gql: GraphQLClient) -> None:
    admin = await make_admin(settings, gql)
    names = ["Aurelio Fenwhistle", "Bettany Crowthorne", "Cassius Dunmarrow"]
    ids = [(await gql.ok(ADD, {"name": name}, admin.token))["addPublicFigure"]["id"]
           for name in names]  # fmt: skip
    try:
        seen: list[str] = []
        after = None
        while True:
            page = (await gql.ok(LIST, {"first": 1, "after": after}, admin.token))["publicFigures"]
            assert len(page["edges"]) <= 1
            seen += [edge["node"]["name"] for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert [name for name in seen if name in names] == names
        code, _ = await gql.error(LIST, {"first": -1}, admin.token)
        assert code == "BAD_USER_INPUT"
        code, _ = await gql.error(LIST, {"after": "garbage!"}, admin.token)
        assert code == "BAD_USER_INPUT"
    finally:
        for figure_id in ids:
            await gql.ok(REMOVE, {"id": figure_id}, admin.token)


async def test_only_admins_keep_the_registry(settings, gql: GraphQLClient) -> None:
    admin, user, mod = await make_admin(settings, gql), await gql.sign_up(), await gql.sign_up()
    assert run_cli(settings, "admin", "grant-role", mod.handle, "moderator").returncode == 0
    figure = (await gql.ok(ADD, {"name": "Octavian Threlkeld"}, admin.token))["addPublicFigure"]
    try:
        for token in (user.token, mod.token, None):
            expected = "UNAUTHENTICATED" if token is None else "FORBIDDEN"
            for query, variables in (
                (ADD, {"name": "Wilhelmina Sprockett"}),
                (REMOVE, {"id": figure["id"]}),
                (LIST, {}),
            ):
                code, _ = await gql.error(query, variables, token)
                assert code == expected, (query, code)
        assert "Wilhelmina Sprockett" not in await listed(gql, admin)
        assert "Octavian Threlkeld" in await listed(gql, admin)
    finally:
        await gql.ok(REMOVE, {"id": figure["id"]}, admin.token)


async def test_bad_input_is_refused_and_nothing_is_written(settings, gql: GraphQLClient) -> None:
    admin = await make_admin(settings, gql)
    before = await listed(gql, admin)
    for variables, code, words in (
        ({"name": "   "}, "BAD_USER_INPUT", "no letters"),
        ({"name": "!!! ???"}, "BAD_USER_INPUT", "no letters"),
        ({"name": "Rosalind " * 20}, "BAD_USER_INPUT", "longer than"),
        ({"name": "Rosa\u0007lind Quarrie"}, "BAD_USER_INPUT", "control"),
        ({"name": "Rosalind Quarrie", "aliases": [f"RQ{i}" for i in range(21)]},
         "BAD_USER_INPUT", "at most 20"),
        ({"name": "Rosalind Quarrie", "aliases": ["R" * 101]}, "BAD_USER_INPUT", "longer than"),
        ({"name": "Rosalind Quarrie", "user": encode_id("User", "nobody")}, "NOT_FOUND",
         "no such user"),
        ({"name": "Rosalind Quarrie", "user": "%%%"}, "BAD_USER_INPUT", "malformed"),
    ):  # fmt: skip
        got, message = await gql.error(ADD, variables, admin.token)
        assert got == code and words in message, (variables, got, message)
    assert await listed(gql, admin) == before
    code, _ = await gql.error(REMOVE, {"id": encode_id("PublicFigure", "nobody")}, admin.token)
    assert code == "NOT_FOUND"
    code, _ = await gql.error(REMOVE, {"id": encode_id("Clip", "x1")}, admin.token)
    assert code == "NOT_FOUND"
    code, _ = await gql.error(REMOVE, {"id": "%%%"}, admin.token)
    assert code == "BAD_USER_INPUT"
