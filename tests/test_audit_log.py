"""The tamper-evident audit log (issue 15, item 4), through the app, the real CLI
(`reelgraph audit verify`, `admin grant-role`, `policy public-figure`) and the embedded graph:

- every consent and moderation decision is appended (grants, revocations, approvals,
  rejections, removals, cameo deletion, clip deletion, take-downs, dismissals, appeals,
  restores, role changes, registry edits);
- the chain verifies; an entry edited or deleted in the graph (raw Cypher) is found by
  `audit verify`, naming it, and verifies again once put back;
- no personal data in the chained bytes: users as pseudonyms, free text by salted hash;
  forget_user erases a user's mapping and texts and the chain still verifies;
- appends racing from two connections never fork the chain;
- moderators read everything (with the actor); a user reads the entries about their own
  clips and cameo only, without actors.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from conftest import Account, GraphQLClient, active_cameo, raw, rendered_clip, run_cli
from ulid import ULID

from consent import plan_cameo_uses
from graph import audit as audit_repo
from graph import cameos as cameo_repo
from graph import clips as clip_repo
from graph.driver import Cypher, driver_for
from resolvers.ids import encode_id

LOG = """query($first: Int, $after: String, $clip: ID, $cameo: ID) {
  auditLog(first: $first, after: $after, clipId: $clip, cameoId: $cameo) {
    edges { node { id seq at action reason reasonErased clipId cameoId hash prevHash
                   actor { id } } }
    pageInfo { hasNextPage endCursor } } }"""
GRANT = "mutation($u: ID!) { grantCameo(granteeId: $u) { id } }"
REVOKE = "mutation($g: ID!) { revokeCameoGrant(grantId: $g) { id } }"
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state } }"
APPROVE = "mutation($id: ID!) { approveAppearance(clipId: $id) { id state } }"
REJECT = "mutation($id: ID!) { rejectAppearance(clipId: $id) { id state } }"
REMOVE_APPEARANCE = "mutation($id: ID!) { removeAppearance(clipId: $id) { id state } }"
DELETE_CAMEO = "mutation { deleteCameo { id } }"
DELETE = "mutation($id: ID!) { deleteClip(clipId: $id) { id } }"
REPORT = """mutation($id: ID!, $reason: ReportReason!) {
  reportClip(clipId: $id, reason: $reason) { id } }"""
RESOLVE = """mutation($id: ID!, $action: ModerationAction!, $note: String) {
  resolveReport(reportId: $id, action: $action, note: $note) { id } }"""
APPEAL = "mutation($id: ID!, $note: String) { appealTakeDown(clipId: $id, note: $note) { id } }"
RESTORE = "mutation($id: ID!) { restoreClip(clipId: $id) { id } }"

ENTRY_BY_SEQ = Cypher("MATCH (e:AuditEntry {seq: $seq}) RETURN e {.*} AS entry")
EDIT_ENTRY = Cypher("MATCH (e:AuditEntry {seq: $seq}) SET e += $props RETURN e.id AS id")
DELETE_ENTRY = Cypher("MATCH (e:AuditEntry {seq: $seq}) DELETE e RETURN $seq AS seq")
PUT_BACK = Cypher("CREATE (e:AuditEntry) SET e = $entry RETURN e.id AS id")


def gid(raw_id: str) -> str:
    return encode_id("Clip", raw_id)


def _now() -> int:
    return int(time.time() * 1000)


def cli(settings, *args: str) -> tuple[int, str]:
    done = run_cli(settings, *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


def moderator(settings, account: Account) -> None:
    code, out = cli(settings, "admin", "grant-role", account.handle, "moderator")
    assert code == 0, out


async def entries(gql: GraphQLClient, token: str, **args: Any) -> list[dict]:
    """Every entry the viewer may read (narrowed by clip/cameo), newest first."""
    found, after = [], None
    while True:
        variables = {"first": 100, "after": after, **args}
        page = (await gql.ok(LOG, variables, token))["auditLog"]
        found += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


async def awaiting_clip(graph, services, author: Account, cameo: str, gql, token) -> str:
    """A rendered clip of the author's featuring the cameo (raw id), asked to publish."""
    now = _now()
    params: dict[str, Any] = {
        "authorId": raw(author),
        "id": str(ULID()),
        "prompt": "someone on a bicycle",
        "moods": [],
        "durationS": 1,
        "seed": 1,
        "now": now,
        "parentId": None,
    }
    checked = await cameo_repo.usable_cameos(graph, raw(author), [cameo], now)
    params["cameos"] = plan_cameo_uses(
        services.consent_keys, checked, requested=[cameo], clip=params, ttl_s=600, now=now
    )
    assert await clip_repo.create_clip(graph, params)
    assert await clip_repo.claim_render(graph, params["id"], "test", now, now + 60_000)
    video = {
        "key": f"clips/{params['id']}.mp4",
        "sha256": "0" * 64,
        "durationMs": 1000,
        "width": 64,
        "height": 64,
        "fps": 8.0,
        "hasAudio": False,
        "sizeBytes": 1,
        "mimeType": "video/mp4",
    }
    assert await clip_repo.finish_render(graph, params["id"], "test", 1, video, now)
    state = (await gql.ok(PUBLISH, {"id": gid(params["id"])}, token))["publishClip"]["state"]
    assert state == "AWAITING_APPROVAL"
    return params["id"]


def verify(settings) -> tuple[int, str]:
    return cli(settings, "audit", "verify")


async def test_decisions_are_chained_and_read_by_whom_they_concern(
    gql: GraphQLClient, graph, services, settings
) -> None:
    owner, author, grantee, reporter, mod, stranger = [
        await gql.sign_up(n) for n in ("owner", "author", "grantee", "reporter", "mod", "x")
    ]
    moderator(settings, mod)
    cameo = await active_cameo(graph, services.media, raw(owner), audience="APPROVED")
    cameo_gid = encode_id("Cameo", cameo)

    # consent decisions
    grant = (await gql.ok(GRANT, {"u": grantee.id}, owner.token))["grantCameo"]["id"]
    await gql.ok(GRANT, {"u": grantee.id}, owner.token)  # the same grant: no new decision
    await gql.ok(REVOKE, {"g": grant}, owner.token)
    await gql.ok(GRANT, {"u": author.id}, owner.token)
    approved = await awaiting_clip(graph, services, author, cameo, gql, author.token)
    await gql.ok(APPROVE, {"id": gid(approved)}, owner.token)
    rejected = await awaiting_clip(graph, services, author, cameo, gql, author.token)
    await gql.ok(REJECT, {"id": gid(rejected)}, owner.token)
    await gql.ok(REMOVE_APPEARANCE, {"id": gid(approved)}, owner.token)

    # moderation decisions on a clip of the author's
    clip = await rendered_clip(graph, raw(author), _now(), publish=True)
    report = await gql.ok(REPORT, {"id": gid(clip), "reason": "SPAM"}, reporter.token)
    await gql.ok(
        RESOLVE,
        {"id": report["reportClip"]["id"], "action": "TAKE_DOWN", "note": "bulk posting"},
        mod.token,
    )
    await gql.ok(APPEAL, {"id": gid(clip), "note": "I posted it once"}, author.token)
    await gql.ok(RESTORE, {"id": gid(clip)}, mod.token)
    again = await gql.ok(REPORT, {"id": gid(clip), "reason": "OTHER"}, reporter.token)
    await gql.ok(RESOLVE, {"id": again["reportClip"]["id"], "action": "DISMISS"}, mod.token)
    await gql.ok(DELETE, {"id": gid(clip)}, author.token)
    await gql.ok(DELETE_CAMEO, token=owner.token)

    # a moderator reads them all, by clip and by cameo, with who acted
    about_cameo = await entries(gql, mod.token, cameo=cameo_gid)
    assert [(e["action"], e["actor"]["id"]) for e in reversed(about_cameo)] == [
        ("cameo.grant", owner.id),
        ("cameo.revoke_grant", owner.id),
        ("cameo.grant", owner.id),
        ("appearance.approve", owner.id),
        ("appearance.reject", owner.id),
        ("appearance.remove", owner.id),
        ("cameo.delete", owner.id),
    ]
    about_clip = await entries(gql, mod.token, clip=gid(clip))
    assert [(e["action"], e["actor"]["id"], e["reason"]) for e in reversed(about_clip)] == [
        ("report.take_down", mod.id, "bulk posting"),
        ("clip.appeal", author.id, "I posted it once"),
        ("clip.restore", mod.id, None),
        ("report.dismiss", mod.id, None),
        ("clip.delete", author.id, None),
    ]
    seqs = [e["seq"] for e in about_clip]
    assert seqs == sorted(seqs, reverse=True)
    newest = about_clip[0]
    assert newest["clipId"] == gid(clip) and len(newest["hash"]) == 64

    # the author reads the entries about their clips (the owner's decisions on them too),
    # without actors; the owner reads those about their cameo
    mine = await entries(gql, author.token)
    assert {e["action"] for e in mine} >= {
        "report.take_down",
        "clip.restore",
        "clip.delete",
        "appearance.approve",
        "appearance.reject",
    }
    assert all(e["actor"] is None for e in mine)
    assert not {e["action"] for e in mine} & {"cameo.grant", "cameo.delete"}
    theirs = await entries(gql, owner.token)
    assert {e["action"] for e in theirs} >= {"cameo.grant", "cameo.delete", "appearance.remove"}
    assert not {e["action"] for e in theirs} & {"report.take_down", "clip.delete"}
    assert await entries(gql, stranger.token) == []
    for args in ({"clip": gid(clip)}, {"cameo": cameo_gid}, {"clip": gid(str(ULID()))}):
        code, _ = await gql.error(LOG, args, stranger.token)
        assert code == "NOT_FOUND", args
    code, _ = await gql.error(LOG, {})
    assert code == "UNAUTHENTICATED"
    code, _ = await gql.error(LOG, {"after": "bad"}, mod.token)
    assert code == "BAD_USER_INPUT"
    page = (await gql.ok(LOG, {"first": 2, "clip": gid(clip)}, author.token))["auditLog"]
    assert len(page["edges"]) == 2 and page["pageInfo"]["hasNextPage"]
    rest = await gql.ok(
        LOG, {"clip": gid(clip), "after": page["pageInfo"]["endCursor"]}, author.token
    )
    assert [e["node"]["seq"] for e in rest["auditLog"]["edges"]] == seqs[2:]

    # no personal data in what is chained: pseudonyms, and only a salted hash of the text
    rows = await graph.read(ENTRY_BY_SEQ, {"seq": about_clip[-1]["seq"]})
    body = rows[0]["entry"]["body"]
    assert "bulk posting" not in body and raw(mod) not in body and mod.handle not in body
    grant_row = await graph.read(ENTRY_BY_SEQ, {"seq": about_cameo[-1]["seq"]})
    granted = json.loads(grant_row[0]["entry"]["body"])
    assert raw(owner) not in grant_row[0]["entry"]["body"]
    assert raw(grantee) not in grant_row[0]["entry"]["body"]
    assert granted["actor"].startswith("p_") and granted["subject"].startswith("p_")

    code, out = verify(settings)
    assert code == 0 and "audit log intact" in out, out


async def test_cli_decisions_are_chained(gql: GraphQLClient, settings) -> None:
    user, mod = await gql.sign_up("staffer"), await gql.sign_up("mod")
    moderator(settings, mod)
    cli(settings, "admin", "grant-role", user.handle, "admin")
    cli(settings, "admin", "grant-role", user.handle, "admin")  # no change: no entry
    cli(settings, "admin", "revoke-role", user.handle, "admin")
    name = f"Figure {ULID()}"
    code, out = cli(settings, "policy", "public-figure", "add", name)
    assert code == 0, out
    code, out = cli(settings, "policy", "public-figure", "remove", name)
    assert code == 0, out
    recent = (await gql.ok(LOG, {"first": 6}, mod.token))["auditLog"]["edges"]
    actions = [e["node"]["action"] for e in reversed(recent)]
    assert actions[-4:] == [
        "role.grant",
        "role.revoke",
        "registry.public_figure.add",
        "registry.public_figure.remove",
    ], actions
    assert all(e["node"]["actor"] is None for e in recent[:4])  # the operator, not a user


async def test_verify_finds_an_edited_or_deleted_entry(gql: GraphQLClient, graph, settings) -> None:
    author = await gql.sign_up("author")
    clip = await rendered_clip(graph, raw(author), _now(), publish=True)
    await audit_repo.append(
        graph, actor_id=raw(author), action="test.first", subject=clip, reason="why one"
    )
    await audit_repo.append(graph, actor_id=None, action="test.second", subject=clip)
    code, out = verify(settings)
    assert code == 0 and "audit log intact" in out, out
    head = (await audit_repo.verify(graph)).head_seq
    first, second = head - 1, head
    kept = {
        seq: (await graph.read(ENTRY_BY_SEQ, {"seq": seq}))[0]["entry"] for seq in (first, second)
    }

    async def put_back() -> None:
        for seq, entry in kept.items():
            await graph.write(DELETE_ENTRY, {"seq": seq})
            await graph.write(PUT_BACK, {"entry": entry})

    async def broken_at(seq: int, **props: Any) -> None:
        await graph.write(EDIT_ENTRY, {"seq": first, "props": props})
        code, out = verify(settings)
        assert code == 1 and f"broken at entry {seq}" in out, (props, out)
        await put_back()

    original = kept[first]
    forged = original["body"].replace('"details":{}', '"details":{"forged":true}')
    assert forged != original["body"]
    try:
        await broken_at(first, action="test.innocent")  # a copy beside the body
        await broken_at(first, reason="why two")  # the free text
        await broken_at(first, cameoId="another")  # a filter a reader relies on
        await broken_at(first, body=forged)  # the chained bytes
        # rewritten with its hash recomputed: the next entry no longer names it
        await broken_at(second, body=forged, hash=audit_repo.sha256_hex(forged))
        code, out = verify(settings)
        assert code == 0, out

        await graph.write(DELETE_ENTRY, {"seq": first})
        code, out = verify(settings)
        assert code == 1 and f"broken at entry {first}" in out and "missing" in out, out
        await put_back()
        await graph.write(DELETE_ENTRY, {"seq": second})  # the newest: the head names it
        code, out = verify(settings)
        assert code == 1 and f"broken at entry {second}" in out, out
    finally:
        await put_back()
    code, out = verify(settings)
    assert code == 0 and "audit log intact" in out, out


async def test_forgetting_a_user_keeps_the_chain(gql: GraphQLClient, graph, settings) -> None:
    author, reporter, mod = [await gql.sign_up(n) for n in ("author", "reporter", "mod")]
    moderator(settings, mod)
    clip = await rendered_clip(graph, raw(author), _now(), publish=True)
    report = await gql.ok(REPORT, {"id": gid(clip), "reason": "SPAM"}, reporter.token)
    await gql.ok(
        RESOLVE,
        {"id": report["reportClip"]["id"], "action": "TAKE_DOWN", "note": "mod's own words"},
        mod.token,
    )
    await gql.ok(APPEAL, {"id": gid(clip), "note": "the author's words"}, author.token)
    assert await audit_repo.forget_user(graph, raw(mod)) == 1
    assert await audit_repo.forget_user(graph, raw(mod)) == 0  # nothing left to erase

    other_mod = await gql.sign_up("mod2")
    moderator(settings, other_mod)
    seen = await entries(gql, other_mod.token, clip=gid(clip))
    take_down, appeal = seen[-1], seen[-2]
    assert take_down["action"] == "report.take_down" and take_down["actor"] is None
    assert take_down["reason"] is None and take_down["reasonErased"] is True
    assert appeal["actor"] == {"id": author.id} and appeal["reason"] == "the author's words"
    code, out = verify(settings)
    assert code == 0, out


async def test_racing_appends_never_fork_the_chain(graph, settings) -> None:
    before = await audit_repo.verify(graph)
    assert before.intact
    other = driver_for(settings)  # a second connection, as another API process has
    try:
        await asyncio.gather(
            *(
                audit_repo.append(
                    db, actor_id=None, action="test.race", subject=f"s{i}", details={"i": i}
                )
                for i in range(30)
                for db in (graph, other)
            )
        )
    finally:
        await other.close()
    after = await audit_repo.verify(graph)
    assert after.intact, after.problem
    assert after.entries == before.entries + 60 and after.head_seq == after.entries
