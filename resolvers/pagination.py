"""Keyset cursors and page sizes shared by every connection."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from errors import BadUserInput

__all__ = [
    "Page",
    "cursor_key",
    "decode_cursor",
    "encode_cursor",
    "make_page",
    "page_size",
    "time_id_cursor",
]

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 20
_MAX_CURSOR_LENGTH = 256


def page_size(first: int | None, maximum: int) -> int:
    """`first` defaults to 20 and is capped at the maximum; negative is a client error."""
    if first is None:
        return DEFAULT_PAGE_SIZE
    if first < 0:
        raise BadUserInput("`first` must not be negative")
    return min(first, maximum)


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def cursor_key(cursor: str | None) -> tuple[Any, ...] | None:
    """The key a cursor of ours holds, of any arity; BAD_USER_INPUT when it is not one."""
    if cursor is None:
        return None
    if len(cursor) > _MAX_CURSOR_LENGTH:  # ours are far shorter; bounds json.loads' work
        raise BadUserInput("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise BadUserInput("invalid cursor") from None
    if not isinstance(key, list) or not key or not all(map(_cursor_value, key)):
        raise BadUserInput("invalid cursor")
    return tuple(key)


def decode_cursor(cursor: str | None, arity: int = 2) -> tuple[Any, ...] | None:
    key = cursor_key(cursor)
    if key is not None and len(key) != arity:
        raise BadUserInput("invalid cursor")
    return key


def time_id_cursor(cursor: str | None) -> tuple[int, str] | None:
    """The (epoch ms, id) keyset every newest-first list pages by."""
    key = decode_cursor(cursor)
    if key is not None and not (isinstance(key[0], int) and isinstance(key[1], str)):
        raise BadUserInput("invalid cursor")
    return key


def _cursor_value(value: object) -> bool:
    """Values a graph engine accepts back: int64 integers and short ASCII ids."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    # no control characters: a NUL made FalkorDB fail to parse the statement's parameters
    return isinstance(value, str) and len(value) <= 64 and value.isascii() and value.isprintable()


@dataclass(frozen=True)
class Page[T]:
    items: list[tuple[str, T]]  # (cursor, item)
    has_next_page: bool

    @property
    def end_cursor(self) -> str | None:
        return self.items[-1][0] if self.items else None


def make_page[T](rows: Sequence[T], limit: int, key: Callable[[T], Sequence[Any]]) -> Page[T]:
    """Rows fetched with LIMIT limit+1: the extra row only tells that there is a next page."""
    shown = list(rows[:limit])
    return Page([(encode_cursor(*key(row)), row) for row in shown], len(rows) > limit)
