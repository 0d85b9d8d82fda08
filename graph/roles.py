"""Staff roles (MODERATOR, ADMIN) on a user: granted and taken back from the command line,
read per request. Stored as the `roles` list on the :User node; an account without one has
none. ADMIN includes every power of MODERATOR (see `holds`)."""

from __future__ import annotations

from graph.driver import Cypher, GraphDriver, Row

__all__ = ["ROLES", "grant_role", "holds", "revoke_role", "roles_by_ids"]

ROLES = ("MODERATOR", "ADMIN")

GRANT_ROLE = Cypher(
    """
MATCH (u:User {handle: $handle})
WITH u, coalesce(u.roles, []) AS before
SET u.roles = [r IN before WHERE r <> $role] + [$role]
RETURN u.id AS id, u.handle AS handle, before, u.roles AS roles
"""
)

REVOKE_ROLE = Cypher(
    """
MATCH (u:User {handle: $handle})
WITH u, coalesce(u.roles, []) AS before
SET u.roles = [r IN before WHERE r <> $role]
RETURN u.id AS id, u.handle AS handle, before, u.roles AS roles
"""
)

ROLES_BY_IDS = Cypher(
    """
UNWIND $ids AS id
MATCH (u:User {id: id})
RETURN u.id AS id, coalesce(u.roles, []) AS roles
"""
)


def holds(roles: frozenset[str] | set[str] | list[str], role: str) -> bool:
    """Whether these roles give `role`'s powers: an admin may do what a moderator may."""
    return role in roles or "ADMIN" in roles


async def grant_role(db: GraphDriver, handle: str, role: str) -> Row | None:
    """{id, handle, before, roles}; None when there is no such handle."""
    rows = await db.write(GRANT_ROLE, {"handle": handle, "role": role})
    return rows[0] if rows else None


async def revoke_role(db: GraphDriver, handle: str, role: str) -> Row | None:
    """{id, handle, before, roles}; None when there is no such handle."""
    rows = await db.write(REVOKE_ROLE, {"handle": handle, "role": role})
    return rows[0] if rows else None


async def roles_by_ids(db: GraphDriver, ids: list[str]) -> dict[str, frozenset[str]]:
    rows = await db.read(ROLES_BY_IDS, {"ids": ids})
    return {row["id"]: frozenset(row["roles"] or []) for row in rows}
