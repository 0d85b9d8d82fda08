"""Relay building blocks shared by every domain: Node, PageInfo, times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Generic, TypeVar

import strawberry

from resolvers.pagination import Page

__all__ = ["Connection", "Edge", "Node", "PageInfo", "connection", "from_epoch_ms"]

# a TypeVar, not PEP 695 syntax: strawberry resolves the string annotations by module scope
NodeT = TypeVar("NodeT")


@strawberry.interface
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):  # noqa: UP046  # Edge[User] is named UserEdge in the schema
    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):  # noqa: UP046  # Connection[User] is named UserConnection
    edges: list[Edge[NodeT]]
    page_info: PageInfo


def connection(page: Page[dict], to_node: Callable[[dict], NodeT]) -> Connection[NodeT]:  # noqa: UP047
    return Connection(
        edges=[Edge(cursor=cursor, node=to_node(row)) for cursor, row in page.items],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
    )


def from_epoch_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)
