"""Staff roles: `reelgraph admin grant-role|revoke-role` (the real CLI, in its own process,
on the data folder the app serves) and User.roles, seen by the user and by admins only."""

from __future__ import annotations

from conftest import GraphQLClient, run_cli

ROLES = "query($h: String!) { user(handle: $h) { handle roles } }"
VIEWER = "{ viewer { handle roles } }"


def admin_cli(settings, *args: str) -> tuple[int, str]:
    done = run_cli(settings, "admin", *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


async def test_granted_and_revoked_roles_show_to_the_user_and_to_admins_only(
    settings, gql: GraphQLClient
) -> None:
    mod, boss, other = await gql.sign_up("mod"), await gql.sign_up("boss"), await gql.sign_up()
    assert (await gql.ok(VIEWER, token=mod.token))["viewer"]["roles"] == []

    code, out = admin_cli(settings, "grant-role", mod.handle, "moderator")
    assert code == 0 and f"granted moderator for @{mod.handle}" in out, out
    code, out = admin_cli(settings, "grant-role", f"@{boss.handle.upper()}", "admin")
    assert code == 0 and "granted admin" in out, out
    code, out = admin_cli(settings, "grant-role", mod.handle, "moderator")  # again: no change
    assert code == 0 and "already holds moderator" in out, out

    assert (await gql.ok(VIEWER, token=mod.token))["viewer"]["roles"] == ["MODERATOR"]
    seen = await gql.ok(ROLES, {"h": mod.handle}, token=boss.token)
    assert seen["user"]["roles"] == ["MODERATOR"]
    # another user, and a moderator, may not see someone else's roles
    for token in (other.token, mod.token):
        code, message = await gql.error(ROLES, {"h": boss.handle}, token=token)
        assert code == "FORBIDDEN", message
    code, _ = await gql.error(ROLES, {"h": boss.handle})
    assert code == "UNAUTHENTICATED"

    code, out = admin_cli(settings, "revoke-role", mod.handle, "moderator")
    assert code == 0 and "revoked moderator" in out, out
    assert (await gql.ok(VIEWER, token=mod.token))["viewer"]["roles"] == []
    code, out = admin_cli(settings, "revoke-role", mod.handle, "moderator")
    assert code == 0 and "does not hold moderator" in out, out


async def test_bad_cli_input_is_one_line_and_a_nonzero_exit(settings, gql: GraphQLClient) -> None:
    code, out = admin_cli(settings, "grant-role", "no_such_user_zz9", "admin")
    assert code == 1 and "no user @no_such_user_zz9" in out, out
    user = await gql.sign_up()
    code, out = admin_cli(settings, "grant-role", user.handle, "superuser")
    assert code == 2 and "invalid choice" in out, out
    assert (await gql.ok(VIEWER, token=user.token))["viewer"]["roles"] == []
