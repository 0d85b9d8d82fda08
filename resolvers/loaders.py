"""Per-request DataLoaders: one batched graph query per access pattern."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from strawberry.dataloader import DataLoader

from graph import appearances as appearance_repo
from graph import cameos as cameo_repo
from graph import clips as clip_repo
from graph import engagement as engagement_repo
from graph import lineage as lineage_repo
from graph import roles as role_repo
from graph import users as user_repo
from graph import visibility
from graph.driver import GraphDriver
from graph.visibility import NO_BLOCKS, ViewerBlocks

__all__ = ["ClipPageKey", "FollowPageKey", "Loaders", "RemixPageKey"]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _loader(batch: Any) -> DataLoader:
    return DataLoader(load_fn=batch)


class FollowPageKey(NamedTuple):
    """One user's page of followers or following: the rows asked for (page size + 1)."""

    user_id: str
    direction: str  # "followers" or "following"
    limit: int
    after: tuple[int, str] | None


class ClipPageKey(NamedTuple):
    """One author's page of published clips: the rows asked for (page size + 1)."""

    author_id: str
    limit: int
    after: tuple[int, str] | None


class RemixPageKey(NamedTuple):
    """One clip's page of direct remixes: the rows asked for (page size + 1)."""

    parent_id: str
    limit: int
    after: tuple[int, str] | None


@dataclass
class Loaders:
    db: GraphDriver
    viewer_id: str | None
    user_by_id: DataLoader = field(init=False)
    follow_counts_by_user: DataLoader = field(init=False)
    follow_page_by_user: DataLoader = field(init=False)
    viewer_follows_by_user: DataLoader = field(init=False)
    clip_by_id: DataLoader = field(init=False)
    clip_page_by_author: DataLoader = field(init=False)
    ancestors_by_clip: DataLoader = field(init=False)
    descendants_by_clip: DataLoader = field(init=False)
    hidden_descendants_by_clip: DataLoader = field(init=False)
    remix_page_by_parent: DataLoader = field(init=False)
    blocks_of_viewer: DataLoader = field(init=False)
    viewer_likes_clip: DataLoader = field(init=False)
    published_remix_count_by_clip: DataLoader = field(init=False)
    appearances_by_clip: DataLoader = field(init=False)
    cameo_by_owner: DataLoader = field(init=False)
    cameo_by_id: DataLoader = field(init=False)
    cameo_usable_by_viewer: DataLoader = field(init=False)
    grants_by_cameo: DataLoader = field(init=False)
    roles_by_user: DataLoader = field(init=False)

    def __post_init__(self) -> None:
        self.user_by_id = _loader(self._users_by_ids)
        self.follow_counts_by_user = _loader(self._follow_counts)
        self.follow_page_by_user = _loader(self._follow_pages)
        self.viewer_follows_by_user = _loader(self._viewer_follows)
        self.clip_by_id = _loader(self._clips_by_ids)
        self.clip_page_by_author = _loader(self._clip_pages)
        self.ancestors_by_clip = _loader(self._ancestors)
        self.descendants_by_clip = _loader(self._descendants)
        self.hidden_descendants_by_clip = _loader(self._hidden_descendants)
        self.remix_page_by_parent = _loader(self._remix_pages)
        self.viewer_likes_clip = _loader(self._viewer_likes)
        self.published_remix_count_by_clip = _loader(self._published_remix_counts)
        self.appearances_by_clip = _loader(self._appearances)
        self.cameo_by_owner = _loader(self._cameos_by_owners)
        self.cameo_by_id = _loader(self._cameos_by_ids)
        self.cameo_usable_by_viewer = _loader(self._cameos_usable_by_viewer)
        self.grants_by_cameo = _loader(self._grants_by_cameos)
        self.roles_by_user = _loader(self._roles)
        self.blocks_of_viewer = _loader(self._blocks_of_viewers)

    async def viewer_blocks(self) -> ViewerBlocks:
        """The viewer's blocks both ways (graph.visibility), read once per request (no read
        for a signed-out viewer): what every visibility decision of the request uses."""
        if self.viewer_id is None:
            return NO_BLOCKS
        return await self.blocks_of_viewer.load(self.viewer_id)

    async def _blocks_of_viewers(self, viewer_ids: list[str]) -> list[ViewerBlocks]:
        return [await visibility.viewer_blocks(self.db, viewer_id) for viewer_id in viewer_ids]

    async def _users_by_ids(self, ids: list[str]) -> list[dict | None]:
        found = await user_repo.users_by_ids(self.db, ids)
        return [found.get(i) for i in ids]

    async def _roles(self, ids: list[str]) -> list[frozenset[str]]:
        found = await role_repo.roles_by_ids(self.db, ids)
        return [found.get(i, frozenset()) for i in ids]

    async def _follow_counts(self, ids: list[str]) -> list[tuple[int, int]]:
        found = await user_repo.follow_counts(self.db, ids)
        return [found.get(i, (0, 0)) for i in ids]

    async def _follow_pages(self, keys: list[FollowPageKey]) -> list[list[dict]]:
        # the parents of one nested connection share its arguments: one statement per level
        groups: dict[tuple, list[str]] = defaultdict(list)
        for key in keys:
            groups[key.direction, key.limit, key.after].append(key.user_id)
        pages: dict[FollowPageKey, list[dict]] = {}
        for (direction, limit, after), user_ids in groups.items():
            found = await user_repo.follow_pages(
                self.db, user_ids=user_ids, direction=direction, after=after, limit=limit
            )
            for user_id in user_ids:
                pages[FollowPageKey(user_id, direction, limit, after)] = found.get(user_id, [])
        return [pages[key] for key in keys]

    async def _viewer_follows(self, ids: list[str]) -> list[bool]:
        if self.viewer_id is None:
            return [False] * len(ids)
        found = await user_repo.viewer_follows(self.db, self.viewer_id, ids)
        return [found.get(i, False) for i in ids]

    async def _clips_by_ids(self, ids: list[str]) -> list[dict | None]:
        found = await clip_repo.clips_by_ids(self.db, ids)
        return [found.get(i) for i in ids]

    async def _clip_pages(self, keys: list[ClipPageKey]) -> list[list[dict]]:
        # as _follow_pages: the parents of one nested connection share its arguments
        groups: dict[tuple, list[str]] = defaultdict(list)
        for key in keys:
            groups[key.limit, key.after].append(key.author_id)
        pages: dict[ClipPageKey, list[dict]] = {}
        blocks = await self.viewer_blocks()
        for (limit, after), author_ids in groups.items():
            found = await clip_repo.published_pages(
                self.db,
                author_ids=author_ids,
                after=after,
                limit=limit,
                viewer_id=self.viewer_id,
                blocks=blocks,
            )
            for author_id in author_ids:
                pages[ClipPageKey(author_id, limit, after)] = found.get(author_id, [])
        return [pages[key] for key in keys]

    async def _viewer_likes(self, ids: list[str]) -> list[bool]:
        if self.viewer_id is None:
            return [False] * len(ids)
        found = await engagement_repo.viewer_likes(self.db, self.viewer_id, ids)
        return [found.get(i, False) for i in ids]

    async def _published_remix_counts(self, ids: list[str]) -> list[int]:
        blocks = await self.viewer_blocks()
        found = await engagement_repo.published_remix_counts(self.db, self.viewer_id, ids, blocks)
        return [found.get(i, 0) for i in ids]

    async def _appearances(self, ids: list[str]) -> list[list[dict]]:
        """Each clip's FEATURES edges (cameo, owner, decision): Clip.cameos and who may see
        a draft (its cameos' owners)."""
        found = await appearance_repo.appearances_by_clips(self.db, ids)
        return [found.get(i, []) for i in ids]

    # --- cameos: rows carry `blocked` (owner and viewer block each other, either way)

    async def _cameos_by_owners(self, owner_ids: list[str]) -> list[dict | None]:
        found = await cameo_repo.cameos_of_owners(self.db, owner_ids, self.viewer_id)
        return [found.get(i) for i in owner_ids]

    async def _cameos_by_ids(self, ids: list[str]) -> list[dict | None]:
        found = await cameo_repo.cameos_by_ids(self.db, ids, self.viewer_id)
        return [found.get(i) for i in ids]

    async def _cameos_usable_by_viewer(self, ids: list[str]) -> list[bool]:
        if self.viewer_id is None:
            return [False] * len(ids)
        rows = await cameo_repo.usable_cameos(self.db, self.viewer_id, ids, _now_ms())
        usable = {row["id"]: row["usable"] for row in rows}
        return [usable.get(i, False) for i in ids]

    async def _grants_by_cameos(self, ids: list[str]) -> list[list[dict]]:
        found = await cameo_repo.grants_of_cameo(self.db, ids)
        return [found.get(i, []) for i in ids]

    # --- remix lineage: one statement per level of a document, for every clip in it

    async def _ancestors(self, ids: list[str]) -> list[list[dict]]:
        found = await lineage_repo.ancestors(self.db, ids)
        return [found[i] for i in ids]

    async def _descendants(self, ids: list[str]) -> list[list[dict]]:
        found = await lineage_repo.descendants(self.db, ids)
        return [found[i] for i in ids]

    async def _hidden_descendants(self, ids: list[str]) -> list[set[str]]:
        # only asked for a viewer with some block: the descendants it may not see
        assert self.viewer_id is not None
        blocks = await self.viewer_blocks()
        found = await lineage_repo.hidden_descendants(self.db, ids, self.viewer_id, blocks)
        return [found[i] for i in ids]

    async def _remix_pages(self, keys: list[RemixPageKey]) -> list[list[dict]]:
        # as _follow_pages: the parents of one nested connection share its arguments
        blocks = await self.viewer_blocks()
        groups: dict[tuple, list[str]] = defaultdict(list)
        for key in keys:
            groups[key.limit, key.after].append(key.parent_id)
        pages: dict[RemixPageKey, list[dict]] = {}
        for (limit, after), parent_ids in groups.items():
            found = await lineage_repo.remix_pages(
                self.db,
                parent_ids=parent_ids,
                viewer_id=self.viewer_id,
                blocks=blocks,
                after=after,
                limit=limit,
            )
            for parent_id in parent_ids:
                pages[RemixPageKey(parent_id, limit, after)] = found.get(parent_id, [])
        return [pages[key] for key in keys]
