"""Per-request DataLoaders: one batched graph query per access pattern."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from graph import users as user_repo
from graph.driver import GraphDriver

__all__ = ["Loaders"]


def _loader(batch: Any) -> DataLoader:
    return DataLoader(load_fn=batch)


@dataclass
class Loaders:
    db: GraphDriver
    viewer_id: str | None
    user_by_id: DataLoader = field(init=False)
    follow_counts_by_user: DataLoader = field(init=False)
    viewer_follows_by_user: DataLoader = field(init=False)

    def __post_init__(self) -> None:
        self.user_by_id = _loader(self._users_by_ids)
        self.follow_counts_by_user = _loader(self._follow_counts)
        self.viewer_follows_by_user = _loader(self._viewer_follows)

    async def _users_by_ids(self, ids: list[str]) -> list[dict | None]:
        found = await user_repo.users_by_ids(self.db, ids)
        return [found.get(i) for i in ids]

    async def _follow_counts(self, ids: list[str]) -> list[tuple[int, int]]:
        found = await user_repo.follow_counts(self.db, ids)
        return [found.get(i, (0, 0)) for i in ids]

    async def _viewer_follows(self, ids: list[str]) -> list[bool]:
        if self.viewer_id is None:
            return [False] * len(ids)
        found = await user_repo.viewer_follows(self.db, self.viewer_id, ids)
        return [found.get(i, False) for i in ids]
