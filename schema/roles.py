"""Staff roles: the Role enum and User.roles (visible to the user and to admins only)."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.types import Info

from errors import Forbidden
from graph.roles import holds

__all__ = ["Role", "UserRoleFields"]


@strawberry.enum(description="staff roles; an ADMIN may do all a MODERATOR may")
class Role(Enum):
    MODERATOR = "MODERATOR"
    ADMIN = "ADMIN"


@strawberry.type
class UserRoleFields:
    """Mixed into User (which supplies raw_id)."""

    @strawberry.field(description="the user's staff roles; visible to the user and to admins only")
    async def roles(self, info: Info) -> list[Role]:
        context = info.context
        viewer_id = context.require_viewer()
        raw_id: str = self.raw_id  # type: ignore[attr-defined]
        if viewer_id != raw_id and not holds(await context.viewer_roles(), "ADMIN"):
            raise Forbidden("only the user and admins may see a user's roles")
        held = await context.loaders.roles_by_user.load(raw_id)
        return [Role(role) for role in ("MODERATOR", "ADMIN") if role in held]
