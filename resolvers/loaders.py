"""Per-request DataLoaders: one batched graph query per access pattern."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from graph import clips as clip_repo
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
    clip_by_id: DataLoader = field(init=False)
    author_blocks_viewer: DataLoader = field(init=False)

    def __post_init__(self) -> None:
        self.user_by_id = _loader(self._users_by_ids)
        self.follow_counts_by_user = _loader(self._follow_counts)
        self.viewer_follows_by_user = _loader(self._viewer_follows)
        self.clip_by_id = _loader(self._clips_by_ids)
        self.author_blocks_viewer = _loader(self._authors_blocking_viewer)

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

    async def _clips_by_ids(self, ids: list[str]) -> list[dict | None]:
        found = await clip_repo.clips_by_ids(self.db, ids)
        return [found.get(i) for i in ids]

    async def _authors_blocking_viewer(self, author_ids: list[str]) -> list[bool]:
        if self.viewer_id is None:
            return [False] * len(author_ids)
        found = await clip_repo.authors_blocking_viewer(self.db, self.viewer_id, author_ids)
        return [found.get(i, False) for i in author_ids]
