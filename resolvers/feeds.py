"""The feeds: FOLLOWING (newest first) and FOR_YOU (ranked), each filtered by mood.

FOLLOWING pages by the keyset (publishedAt, id) of PUBLISHED clips by people the viewer
follows; it needs a signed-in viewer (UNAUTHENTICATED otherwise: an anonymous viewer follows
nobody). On a large graph a page is first read from the recent window (the publishedAt
index), and from all of the viewer's follows only when that window holds less than a page.
The window is the one the last FOR_YOU ranking of the mood sized in this process or, when
none did within WINDOW_TTL_S, one sized by counting the newest clips (_size_window). A clip
published between two pages is newer than any cursor, so it never shifts a later page: no
duplicates, no skips.

FOR_YOU is ranked once per first page and then read by position. What is guaranteed:
- The first page (no `after`) ranks candidates, never every clip: the newest RECENT_CLIPS
  published clips (read through the publishedAt index, in a window that adapts to the
  publishing rate) and the POPULAR_CLIPS most popular ones (resolvers.popularity: a Redis
  sorted set kept current by likes and views, rebuilt from the graph every few minutes).
  Each candidate's score is recomputed exactly from the graph: tier (2: by someone the viewer
  follows, or a remix of such a person's clip; 1: by someone a followed person follows; 0:
  anyone else), then popularity decayed by age, then newest, then id. The viewer's follows
  and friends of friends are read once per VIEWER_CONTEXT_TTL_S. The best FOR_YOU_CANDIDATES
  go through the author-diversity rule below, and the ordered ids are kept for
  SNAPSHOT_TTL_S in Redis under a random token. The cursor is (token, position).
  So a page costs O(candidates), whatever the graph's size; the price is that a clip that is
  neither among the newest nor among the most popular is not shown (a followed person's
  old, unnoticed clip is in FOLLOWING, not FOR_YOU).
- Later pages read the same list by position: clips published, liked or viewed in between
  change nothing, so no clip is shown twice and none is skipped. Each page's clips are read
  again from the graph, and any that is no longer PUBLISHED, that the viewer may no longer
  see (graph.visibility: a block by or of its author or of anyone featured in it), or whose
  author the viewer now blocks, is left out (a page may then hold fewer than `first` clips;
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
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from errors import BadUserInput
from graph import feeds as feed_repo
from resolvers.moods import normalize_moods
from resolvers.pagination import Page, cursor_key, encode_cursor, page_size
from resolvers.popularity import decayed_score, popular_ids, popularity
from resolvers.users import now_ms

if TYPE_CHECKING:
    from resolvers.context import Context

__all__ = [
    "DIVERSITY_WINDOW",
    "FOR_YOU_CANDIDATES",
    "PER_AUTHOR",
    "POPULAR_CLIPS",
    "RECENT_CLIPS",
    "SNAPSHOT_TTL_S",
    "VIEWER_CONTEXT_TTL_S",
    "WINDOW_TTL_S",
    "diversify",
    "following_feed",
    "for_you_feed",
    "rank_candidates",
]

FOR_YOU_CANDIDATES = 500  # the length of a ranked list (what all its pages can show)
RECENT_CLIPS = 300  # candidates: the newest published clips...
POPULAR_CLIPS = 200  # ...and the top of the popularity index
MIN_WINDOW_MS = 15 * 60_000
MAX_WINDOW_MS = 90 * 86_400_000
VIEWER_CONTEXT_TTL_S = 60
SNAPSHOT_TTL_S = 1800
DIVERSITY_WINDOW = 10
PER_AUTHOR = 2
_FOLLOWING, _FOR_YOU = "F", "Y"  # the first value of each kind's cursor
_KIND_NAMES = {_FOLLOWING: "FOLLOWING", _FOR_YOU: "FOR_YOU"}
_SNAPSHOT_KEY = "reelgraph:feed:for-you:{}"
_CONTEXT_KEY = "reelgraph:feed:for-you-viewer:{}"
WINDOW_TTL_S = 600  # FOLLOWING sizes the window again when no ranking did for this long
# per mood, how far back the newest clips are read (None: no bound); adapted after each
# ranking to the publishing rate, so the window holds a few times RECENT_CLIPS clips
_windows: dict[str | None, int | None] = {}
_sized_at: dict[str | None, float] = {}  # per mood, time.monotonic() it was last sized


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
    # the recent window (a few hundred of the newest clips of the mood), below the cursor;
    # none on a small graph
    window = await _following_window(ctx, mood)
    since = None
    if window is not None:
        since = (cursor[0] if cursor else now_ms()) - window  # type: ignore[index]
    rows = await feed_repo.following_page(
        ctx.services.graph,
        viewer_id,
        mood,
        cursor,
        limit + 1,  # type: ignore[arg-type]
        since,
        await ctx.loaders.viewer_blocks(),
    )
    shown = rows[:limit]
    for row in shown:
        ctx.loaders.clip_by_id.prime(row["clip"]["id"], row["clip"])
    items = [(encode_cursor(_FOLLOWING, r["at"], r["clip"]["id"]), r["clip"]) for r in shown]
    return Page(items, len(rows) > limit)


async def _following_window(ctx: Context, mood: str | None) -> int | None:
    """The mood's recent window: the last ranking's, or sized here when none is recent."""
    sized_at = _sized_at.get(mood)
    if sized_at is not None and time.monotonic() - sized_at < WINDOW_TTL_S:
        return _windows.get(mood)
    window = await _size_window(ctx, mood, now_ms())
    _windows[mood], _sized_at[mood] = window, time.monotonic()
    return window


async def _size_window(ctx: Context, mood: str | None, now: int) -> int | None:
    """The narrowest window of MIN_WINDOW_MS x 4^k holding RECENT_CLIPS clips of the mood (at
    the same publishing rate, RECENT_CLIPS to 4 x RECENT_CLIPS: the band the rankings keep
    it in, _next_window); None (no bound) when even MAX_WINDOW_MS holds fewer. At most
    seven counts of a few hundred index entries each."""
    window = MIN_WINDOW_MS
    while window <= MAX_WINDOW_MS:
        db, since = ctx.services.graph, now - window
        if await feed_repo.recent_clip_count(db, mood, since, RECENT_CLIPS) >= RECENT_CLIPS:
            return window
        window *= 4
    return None


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


async def _viewer_context(ctx: Context, viewer_id: str | None) -> tuple[set[str], set[str]]:
    """(followed ids, friends-of-friends ids), kept VIEWER_CONTEXT_TTL_S per viewer."""
    if viewer_id is None:
        return set(), set()
    key = _CONTEXT_KEY.format(viewer_id)
    raw = await ctx.services.redis.get(key)
    if raw is not None:
        followed, fof = json.loads(raw)
    else:
        followed, fof = await feed_repo.for_you_viewer(ctx.services.graph, viewer_id)
        await ctx.services.redis.set(key, json.dumps([followed, fof]), ex=VIEWER_CONTEXT_TTL_S)
    return set(followed), set(fof)


def _next_window(window: int | None, in_window: int, edge: int | None, now: int) -> int | None:
    """The recent window for the next ranking of this mood: wide enough to hold RECENT_CLIPS
    clips, narrow enough to read no more than a few times that."""
    if in_window > 4 * RECENT_CLIPS and edge is not None:
        return max(MIN_WINDOW_MS, 2 * (now - edge))  # the newest RECENT_CLIPS span now - edge
    if window is not None and in_window < RECENT_CLIPS:
        return None if window * 4 > MAX_WINDOW_MS else window * 4
    return window


def rank_candidates(
    rows: list[dict], followed: set[str], friends_of_friends: set[str], now: int
) -> list[dict]:
    """Candidate rows, best first: tier (2: by someone the viewer follows or a remix of such a
    person's clip; 1: by a friend of a friend; 0: anyone else), then decayed popularity, then
    newest, then id. Rows published after `now` are left out."""
    ranked = []
    for row in rows:
        if row["publishedAt"] > now:
            continue
        if row["authorId"] in followed or row.get("parentAuthorId") in followed:
            tier = 2
        elif row["authorId"] in friends_of_friends:
            tier = 1
        else:
            tier = 0
        value = popularity(row["likes"], row["views"], row["completions"], row["remixes"])
        score = decayed_score(value, row["publishedAt"], now)
        ranked.append((tier, score, row["publishedAt"], row["id"], row))
    ranked.sort(key=lambda entry: entry[:4], reverse=True)
    return [entry[4] for entry in ranked]


async def _rank(ctx: Context, viewer_id: str | None, mood: str | None) -> tuple[str, list[str]]:
    now = now_ms()
    followed, fof = await _viewer_context(ctx, viewer_id)
    popular = await popular_ids(ctx.services, mood, POPULAR_CLIPS)
    window = _windows.get(mood)
    rows = await feed_repo.for_you_candidates(
        ctx.services.graph,
        viewer_id,
        mood,
        now=now,
        since=0 if window is None else now - window,
        recent=RECENT_CLIPS,
        popular=popular,
        blocks=await ctx.loaders.viewer_blocks(),
    )
    # no rows at all: an empty window (and nothing popular) says nothing else; widen it
    in_window, edge = (rows[0]["inWindow"], rows[0]["edge"]) if rows else (0, None)
    _windows[mood] = _next_window(window, in_window, edge, now)
    _sized_at[mood] = time.monotonic()
    ranked = rank_candidates(rows, followed, fof, now)[:FOR_YOU_CANDIDATES]
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
        # one ranking (and snapshot) per request: a document that asks twice gets one feed
        memo_key = ("for-you", viewer_id, mood)
        if memo_key not in ctx.memo:
            ctx.memo[memo_key] = await _rank(ctx, viewer_id, mood)
        token, ids = ctx.memo[memo_key]
        start = 0
    else:
        token, start = cursor
        ids = await _snapshot(ctx, token, viewer_id, mood)
    chunk = ids[start : start + limit]
    clips = {}
    if chunk:
        blocks = await ctx.loaders.viewer_blocks()
        clips = await feed_repo.visible_feed_clips(ctx.services.graph, viewer_id, chunk, blocks)
    items = []
    for offset, clip_id in enumerate(chunk):
        clip = clips.get(clip_id)
        if clip is not None:
            ctx.loaders.clip_by_id.prime(clip_id, clip)
            items.append((encode_cursor(_FOR_YOU, token, start + offset + 1), clip))
    return Page(items, start + limit < len(ids))
