"""The feeds: FOLLOWING (newest first) and FOR_YOU (ranked), each filtered by mood.

FOLLOWING pages by the keyset (publishedAt, id) of PUBLISHED clips by people the viewer
follows; it needs a signed-in viewer (UNAUTHENTICATED otherwise: an anonymous viewer follows
nobody). A clip published between two pages is newer than any cursor, so it never shifts a
later page: no duplicates, no skips.

FOR_YOU is ranked once per first page and then read by position. What is guaranteed:
- The first page (no `after`) ranks up to FOR_YOU_CANDIDATES published clips as of that
  moment (graph.feeds FOR_YOU_RANKING: tier, then decayed popularity, then newest, then id),
  applies the author-diversity rule below over that whole list, and keeps the ordered ids
  for SNAPSHOT_TTL_S in Redis under a random token. The cursor is (token, position).
- Later pages read the same list by position: clips published, liked or viewed in between
  change nothing, so no clip is shown twice and none is skipped. Each page's clips are read
  again from the graph, and any that is no longer PUBLISHED, or whose author now has a block
  with the viewer either way, is left out (a page may then hold fewer than `first` clips;
  hasNextPage still says whether the list goes on).
- Diversity: no author has more than PER_AUTHOR clips in any DIVERSITY_WINDOW consecutive
  clips of the whole list, across page boundaries. The list is built greedily, best first:
  the next clip is the best-ranked one that keeps the rule; clips that cannot be placed (at
  the list's tail, when too few distinct authors remain to fill a window) are left out. A
  clip left out at read time (above) can bring two of one author's clips closer in what is
  shown than they are in the list: the rule is kept by the list, not re-checked per page.
- The whole thing is deterministic: the same graph and the same moment give the same list.
- After SNAPSHOT_TTL_S, or past the list's end, the feed is reloaded from the first page;
  an expired cursor is BAD_USER_INPUT saying so.
A cursor names its feed: one kind's cursor given to the other kind, to another viewer, or
with another mood filter is BAD_USER_INPUT.
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from errors import BadUserInput
from graph import feeds as feed_repo
from resolvers.moods import normalize_moods
from resolvers.pagination import Page, cursor_key, encode_cursor, page_size
from resolvers.users import now_ms

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = [
    "DIVERSITY_WINDOW",
    "FOR_YOU_CANDIDATES",
    "PER_AUTHOR",
    "SNAPSHOT_TTL_S",
    "diversify",
    "following_feed",
    "for_you_feed",
]

FOR_YOU_CANDIDATES = 500
SNAPSHOT_TTL_S = 1800
DIVERSITY_WINDOW = 10
PER_AUTHOR = 2
_FOLLOWING, _FOR_YOU = "F", "Y"  # the first value of each kind's cursor
_KIND_NAMES = {_FOLLOWING: "FOLLOWING", _FOR_YOU: "FOR_YOU"}
_SNAPSHOT_KEY = "reelgraph:feed:for-you:{}"


def _mood(mood: str | None) -> str | None:
    """A known mood, lower-cased; BAD_USER_INPUT for one outside the vocabulary."""
    return None if mood is None else normalize_moods([mood])[0]


def _cursor(after: str | None, kind: str) -> tuple[Any, ...] | None:
    key = cursor_key(after)
    if key is None:
        return None
    if key[0] in _KIND_NAMES and key[0] != kind:
        raise BadUserInput(
            f"this cursor pages the {_KIND_NAMES[key[0]]} feed, not {_KIND_NAMES[kind]}"
        )
    if kind == _FOLLOWING:
        valid = len(key) == 3 and isinstance(key[1], int) and isinstance(key[2], str)
    else:
        valid = len(key) == 3 and isinstance(key[1], str) and isinstance(key[2], int)
        valid = valid and key[2] >= 0
    if key[0] != kind or not valid:
        raise BadUserInput("invalid cursor")
    return key[1:]


async def following_feed(
    ctx: Context, mood: str | None, first: int | None, after: str | None
) -> Page[dict]:
    """Published clips by people the viewer follows, newest first."""
    limit = page_size(first, ctx.settings.max_page_size)  # bad arguments fail before any read
    mood = _mood(mood)
    cursor = _cursor(after, _FOLLOWING)
    viewer_id = ctx.require_viewer()
    rows = await feed_repo.following_page(
        ctx.services.graph,
        viewer_id,
        mood,
        cursor,
        limit + 1,  # type: ignore[arg-type]
    )
    shown = rows[:limit]
    for row in shown:
        ctx.loaders.clip_by_id.prime(row["clip"]["id"], row["clip"])
    items = [(encode_cursor(_FOLLOWING, r["at"], r["clip"]["id"]), r["clip"]) for r in shown]
    return Page(items, len(rows) > limit)


def diversify(
    ranked: Sequence[dict], window: int = DIVERSITY_WINDOW, per_author: int = PER_AUTHOR
) -> list[dict]:
    """Rows of {id, authorId} re-ordered so that no author has more than `per_author` rows in
    any `window` consecutive ones: each step takes the best-ranked row that keeps the rule;
    rows that never can are dropped. Deterministic; the input order is the ranking."""
    pending = list(ranked)
    out: list[dict] = []
    recent: deque[str] = deque(maxlen=window - 1)  # the authors of the last window-1 rows
    counts: dict[str, int] = {}
    while pending:
        index = next(
            (i for i, row in enumerate(pending) if counts.get(row["authorId"], 0) < per_author),
            None,
        )
        if index is None:
            break  # every remaining row's author is at the limit: the rest cannot be placed
        row = pending.pop(index)
        out.append(row)
        if len(recent) == recent.maxlen:
            gone = recent[0]
            counts[gone] -= 1
        recent.append(row["authorId"])
        counts[row["authorId"]] = counts.get(row["authorId"], 0) + 1
    return out


async def _rank(ctx: Context, viewer_id: str | None, mood: str | None) -> tuple[str, list[str]]:
    ranked = await feed_repo.for_you_ranking(
        ctx.services.graph, viewer_id, mood, now_ms(), FOR_YOU_CANDIDATES
    )
    ids = [row["id"] for row in diversify(ranked)]
    token = secrets.token_urlsafe(12)
    snapshot = json.dumps({"viewer": viewer_id or "", "mood": mood or "", "ids": ids})
    await ctx.services.redis.set(_SNAPSHOT_KEY.format(token), snapshot, ex=SNAPSHOT_TTL_S)
    return token, ids


async def _snapshot(ctx: Context, token: str, viewer_id: str | None, mood: str | None) -> list[str]:
    raw = await ctx.services.redis.get(_SNAPSHOT_KEY.format(token))
    if raw is None:
        raise BadUserInput("this FOR_YOU cursor has expired; load the feed from its first page")
    snapshot = json.loads(raw)
    if snapshot["viewer"] != (viewer_id or ""):
        raise BadUserInput("this cursor pages another viewer's feed")
    if snapshot["mood"] != (mood or ""):
        raise BadUserInput("this cursor was made with another mood filter")
    return snapshot["ids"]


async def for_you_feed(
    ctx: Context, mood: str | None, first: int | None, after: str | None
) -> Page[dict]:
    """The ranked feed; works for a viewer who follows nobody and for no viewer at all."""
    limit = page_size(first, ctx.settings.max_page_size)
    mood = _mood(mood)
    cursor = _cursor(after, _FOR_YOU)
    viewer_id = ctx.optional_viewer()
    if cursor is None:
        token, ids = await _rank(ctx, viewer_id, mood)
        start = 0
    else:
        token, start = cursor
        ids = await _snapshot(ctx, token, viewer_id, mood)
    chunk = ids[start : start + limit]
    clips = {}
    if chunk:
        clips = await feed_repo.visible_feed_clips(ctx.services.graph, viewer_id, chunk)
    items = []
    for offset, clip_id in enumerate(chunk):
        clip = clips.get(clip_id)
        if clip is not None:
            ctx.loaders.clip_by_id.prime(clip_id, clip)
            items.append((encode_cursor(_FOR_YOU, token, start + offset + 1), clip))
    return Page(items, start + limit < len(ids))
