"""`reelgraph admin grant-role|revoke-role HANDLE moderator|admin`: staff roles, set on a
running server's data folder (or a stopped one's), as `seed` and `policy` do; each change is
appended to the audit log. `reelgraph audit verify`: checks the audit log's hash chain."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from settings import Settings

__all__ = ["add_parsers", "admin", "audit"]


def add_parsers(sub: Any) -> None:
    """The `admin` command and its actions, under the main parser's subcommands."""
    adm = sub.add_parser("admin", help="staff roles: grant-role, revoke-role")
    actions = adm.add_subparsers(dest="admin_command", required=True)
    for name, text in (
        ("grant-role", "make a user a moderator or an admin"),
        ("revoke-role", "take a role back"),
    ):
        cmd = actions.add_parser(name, help=text)
        cmd.add_argument("handle", metavar="HANDLE")
        cmd.add_argument("role", metavar="ROLE", choices=("moderator", "admin"))
        cmd.add_argument("--data-dir", dest="data_dir")
    aud = sub.add_parser("audit", help="the audit log: verify its hash chain")
    checks = aud.add_subparsers(dest="audit_command", required=True)
    verify = checks.add_parser(
        "verify", help="exit 0 when every entry verifies, 1 naming the first that does not"
    )
    verify.add_argument("--data-dir", dest="data_dir")


def admin(settings: Settings, args: argparse.Namespace) -> int:
    """Grant or revoke; prints the user's roles after the change."""
    from cli import _on_graph
    from graph import audit as audit_repo
    from graph import roles as role_repo

    handle = args.handle.strip().lstrip("@").lower()
    role = args.role.upper()
    granting = args.admin_command == "grant-role"

    async def change(db: Any) -> Any:
        if granting:
            row = await role_repo.grant_role(db, handle, role)
        else:
            row = await role_repo.revoke_role(db, handle, role)
        if row is not None and granting != (role in row["before"]):
            await audit_repo.append(  # the operator at the command line: no user acted
                db,
                actor_id=None,
                action="role.grant" if granting else "role.revoke",
                subject=row["id"],
                details={"role": role, "via": "cli"},
            )
        return row

    opened, row = _on_graph(settings, change)
    if not opened:
        return 1
    if row is None:
        print(f"reelgraph: no user @{handle}", file=sys.stderr)
        return 1
    held = ", ".join(row["roles"]) or "none"
    if granting == (role in row["before"]):
        state = "already holds" if granting else "does not hold"
        print(f"@{row['handle']} {state} {role.lower()} (roles: {held})")
        return 0
    verb = "granted" if granting else "revoked"
    print(f"{verb} {role.lower()} for @{row['handle']} (roles: {held})")
    return 0


def audit(settings: Settings, args: argparse.Namespace) -> int:
    """`reelgraph audit verify`: 0 and the count when the chain is intact (the head's hash,
    printed too, is what an operator may keep elsewhere to anchor it); 1 naming the first
    entry that does not verify."""
    from cli import _on_graph
    from graph import audit as audit_repo

    opened, found = _on_graph(settings, audit_repo.verify)
    if not opened:
        return 1
    if not found.intact:
        print(
            f"reelgraph: the audit log is broken at entry {found.broken_seq}: {found.problem} "
            f"({found.entries} entries before it verify)",
            file=sys.stderr,
        )
        return 1
    print(f"audit log intact: {found.entries} entries, head {found.head_hash}")
    return 0
