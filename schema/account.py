"""Your data: exportMyData and deleteAccount."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from strawberry.types import Info

from resolvers import account as account_resolvers

__all__ = ["AccountDeletion", "AccountMutations", "DataExport"]


@strawberry.type(description="an archive of the viewer's data, behind a link only they can open")
class DataExport:
    url: str = strawberry.field(description="a download link for the viewer only, until expiresAt")
    expires_at: datetime
    size_bytes: int
    clip_count: int


@strawberry.type
class AccountDeletion:
    deleted_at: datetime
    clips_taken_down: int = strawberry.field(description="the clips of the account taken down")
    cameo_erased: bool = strawberry.field(description="a cameo was erased (its key destroyed)")


@strawberry.type
class AccountMutations:
    @strawberry.mutation(
        description="an archive of the viewer's clips (files and metadata), cameo uses, "
        "decisions and audit entries; each export replaces the last"
    )
    async def export_my_data(self, info: Info) -> DataExport:
        done = await account_resolvers.export_my_data(info.context)
        return DataExport(
            url=done["url"],
            expires_at=datetime.fromtimestamp(done["expires_at"], tz=UTC),
            size_bytes=done["size_bytes"],
            clip_count=done["clip_count"],
        )

    @strawberry.mutation(
        description="deletes the viewer's account (the password confirms it): the cameo is "
        "erased by key destruction, every clip of the account and every clip featuring its "
        "cameo taken down, sessions and sockets closed; audit entries stay, without personal "
        "data"
    )
    async def delete_account(self, info: Info, password: str) -> AccountDeletion:
        done = await account_resolvers.delete_account(info.context, password)
        return AccountDeletion(
            deleted_at=datetime.fromtimestamp(done["deleted_at"] / 1000, tz=UTC),
            clips_taken_down=done["clips_taken_down"],
            cameo_erased=done["cameo_erased"],
        )
