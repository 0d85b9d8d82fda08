"""Relay building blocks shared by every domain: Node, PageInfo, times."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

__all__ = ["Node", "PageInfo", "from_epoch_ms"]


@strawberry.interface
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def from_epoch_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)
