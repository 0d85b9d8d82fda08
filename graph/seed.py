"""A synthetic graph for demos and benchmarks: users, power-law follows, published clips with
real video files, remix chains and trees, likes and views.

The shape (who follows whom, who posts, remix parents, who likes and watches) is drawn from
one seeded random generator, so a seed gives the same graph every time; ids and handles carry
fresh randomness so a folder can be seeded more than once.

Rows are written with UNWIND in batches; every clip row carries the property set the real
path writes (CREATE_CLIP, CLAIM_RENDER, FINISH_RENDER and PUBLISH in graph.clips), so every
GraphQL field answers on a seeded clip. The engagement counters of graph.engagement are
computed here from the very LIKED and WATCHED edges written afterwards, so they match them
once the seed finishes.

A few videos are rendered once (the preview renderer); each clip gets its own media key: a
hard link of one of them on the local store (a copy on S3), so deleting one clip's file, as
deleteClip and the orphan sweep do, never takes another clip's video away.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ulid import ULID

from graph.driver import Cypher, GraphDriver

__all__ = [
    "SEED_PASSWORD",
    "SeedPlan",
    "SeedVideo",
    "plan_seed",
    "render_seed_videos",
    "seed_checks",
    "seed_graph",
    "write_seed",
]

BATCH_ROWS = 5000
SEED_PASSWORD = "seeded-password"  # every seeded user signs in with it (demos only)
DAY_MS = 86_400_000

SEED_USERS = Cypher(
    """
UNWIND $rows AS r
CREATE (:User {id: r.id, handle: r.handle, displayName: r.displayName,
               passwordHash: $passwordHash, role: 'user', createdAt: r.createdAt,
               followerCount: r.followerCount, followingCount: r.followingCount})
"""
)

SEED_FOLLOWS = Cypher(
    """
UNWIND $rows AS r
MATCH (a:User {id: r.fromId})
MATCH (b:User {id: r.toId})
CREATE (a)-[:FOLLOWS {at: r.at}]->(b)
"""
)

# the property set of CREATE_CLIP + CLAIM_RENDER + FINISH_RENDER + PUBLISH, and the
# engagement counters of the edges SEED_LIKES and SEED_VIEWS write for these clips
SEED_CLIPS = Cypher(
    """
UNWIND $rows AS r
MATCH (a:User {id: r.authorId})
CREATE (a)-[:POSTED]->(:Clip {id: r.id, prompt: r.prompt, state: 'PUBLISHED', moods: r.moods,
                              durationS: r.durationS, seed: r.seed, renderProgress: 1.0,
                              renderAttempts: 1, createdAt: r.createdAt,
                              renderedAt: r.renderedAt, publishedAt: r.publishedAt,
                              updatedAt: r.publishedAt, videoKey: r.videoKey,
                              sha256: r.sha256, videoDurationMs: r.videoDurationMs,
                              width: r.width, height: r.height, fps: r.fps,
                              hasAudio: r.hasAudio, sizeBytes: r.sizeBytes,
                              mimeType: r.mimeType, likeCount: r.likeCount,
                              viewCount: r.viewCount, completionCount: r.completionCount,
                              rewatchCount: r.rewatchCount})
"""
)

SEED_REMIXES = Cypher(
    """
UNWIND $rows AS r
MATCH (c:Clip {id: r.id})
MATCH (p:Clip {id: r.parentId})
CREATE (c)-[:REMIX_OF]->(p)
"""
)

SEED_LIKES = Cypher(
    """
UNWIND $rows AS r
MATCH (u:User {id: r.userId})
MATCH (c:Clip {id: r.clipId})
CREATE (u)-[:LIKED {at: r.at}]->(c)
"""
)

SEED_VIEWS = Cypher(
    """
UNWIND $rows AS r
MATCH (u:User {id: r.userId})
MATCH (c:Clip {id: r.clipId})
CREATE (u)-[:WATCHED {views: r.views, completions: r.completions, lastAt: r.lastAt}]->(c)
"""
)

# a consistency read over seeded clips: counters against the edges they count, and the depth
# each clip sits at in its remix chain (the tests and a curious operator use it)
SEED_CLIP_CHECKS = Cypher(
    """
UNWIND $ids AS id
MATCH (a:User)-[:POSTED]->(c:Clip {id: id})
OPTIONAL MATCH (:User)-[l:LIKED]->(c)
WITH a, c, count(l) AS likes
OPTIONAL MATCH (:User)-[w:WATCHED]->(c)
WITH a, c, likes, count(w) AS viewers, sum(w.views) AS views, sum(w.completions) AS completions
RETURN c.id AS id, c.state AS state, a.id AS authorId, c.likeCount AS likeCount,
       likes, c.viewCount AS viewCount, views, c.completionCount AS completionCount,
       completions, c.rewatchCount AS rewatchCount, viewers
"""
)

# and per seeded user: its follow edges beside the counts stored on the node
SEED_FOLLOW_COUNTS = Cypher(
    """
UNWIND $ids AS id
MATCH (u:User {id: id})
OPTIONAL MATCH (u)-[f:FOLLOWS]->(t:User)
WITH u, count(f) AS follows, count(DISTINCT t) AS distinctFollows,
     sum(CASE WHEN t = u THEN 1 ELSE 0 END) AS selfFollows
OPTIONAL MATCH (u)<-[g:FOLLOWS]-(:User)
RETURN u.id AS id, follows, distinctFollows, selfFollows, count(g) AS followers,
       u.followingCount AS followingCount, u.followerCount AS followerCount
"""
)

# prompt fragments per mood, built from the mood's own cue words so the prompt reads as it
_SUBJECTS = ("a", "two", "a tiny", "a giant", "an old", "a glowing")


@dataclass(frozen=True)
class SeedVideo:
    """One rendered file seeded clips share (each under its own key)."""

    path: Path
    duration_s: int
    sha256: str
    duration_ms: int
    width: int
    height: int
    fps: float
    has_audio: bool
    size_bytes: int
    mime_type: str


@dataclass
class SeedPlan:
    users: list[dict[str, Any]] = field(default_factory=list)
    follows: list[dict[str, Any]] = field(default_factory=list)
    clips: list[dict[str, Any]] = field(default_factory=list)  # in publish order
    remixes: list[dict[str, Any]] = field(default_factory=list)
    likes: list[dict[str, Any]] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)
    video_of: dict[str, int] = field(default_factory=dict)  # clip id -> index of its video
    max_depth: int = 0


def _ulid(at_ms: int) -> str:
    # time from the plan (keyset paging orders by time, then id), randomness fresh
    return str(ULID.from_bytes(at_ms.to_bytes(6, "big") + secrets.token_bytes(10)))


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Popularity of n items: rank^-exponent over a shuffled order, normalised."""
    ranks = rng.permutation(n) + 1
    weights = ranks.astype(np.float64) ** -exponent
    return weights / weights.sum()


def _draw(cdf: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    # rng.choice(p=...) rebuilds the cumulative sum on every call: O(n) per clip
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _prompt(moods: list[str], rng: np.random.Generator) -> str:
    from resolvers.moods import MOODS

    words = [MOODS[m][int(rng.integers(len(MOODS[m])))] for m in moods]
    subject = _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
    return f"{subject} {' '.join(words)} scene, take {int(rng.integers(1, 1000))}"


def plan_seed(
    users: int,
    clips: int,
    videos: list[SeedVideo],
    *,
    seed: int = 0,
    follows_per_user: int = 100,
    max_depth: int = 50,
    now_ms: int,
    span_days: int = 28,
    big_tree: int = 10_000,
) -> SeedPlan:
    """The whole synthetic graph as rows; deterministic in shape for a given seed."""
    from resolvers.moods import MOODS, infer_moods

    if users < 1 or clips < 0 or not videos:
        raise ValueError("seeding needs at least one user and one video")
    rng = np.random.default_rng(seed)
    plan = SeedPlan()
    tag = secrets.token_hex(3)  # handles unique across runs on one folder
    start = now_ms - span_days * DAY_MS
    user_at = np.sort(rng.integers(start, start + DAY_MS * max(1, span_days // 4), users))
    user_ids = [_ulid(int(at)) for at in user_at]
    for i, (uid, at) in enumerate(zip(user_ids, user_at, strict=True)):
        plan.users.append(
            {"id": uid, "handle": f"s{tag}_{i}", "displayName": f"Seeded {i}", "createdAt": int(at)}
        )

    # follows: out-degrees from a heavy-tailed law with the requested mean, targets by a Zipf
    # popularity, so a few users have most followers (preferential-attachment-like)
    popularity = _zipf_weights(users, 1.0, rng)
    popular_cdf = np.cumsum(popularity)
    # a small graph where everyone follows everyone has no shape: at most a third of it
    mean = min(follows_per_user, (users - 1) // 3 or users - 1)
    if mean > 0:
        raw = rng.pareto(2.0, users) + 1.0  # mean 2 for shape 2
        degrees = np.clip(np.rint(raw * mean / 2.0), 1, users - 1).astype(np.int64)
        follow_start = int(user_at[-1])
        for i in range(users):
            want = int(degrees[i])
            picked = _draw(popular_cdf, min(users, int(want * 1.5) + 8), rng)
            chosen = list(dict.fromkeys(int(t) for t in picked if t != i))[:want]
            if len(chosen) < want:  # the popular few taken: fill from everyone else
                rest = [t for t in rng.permutation(users).tolist() if t != i and t not in chosen]
                chosen += rest[: want - len(chosen)]
            ats = rng.integers(follow_start, now_ms, len(chosen))
            plan.follows.extend(
                {"fromId": user_ids[i], "toId": user_ids[t], "at": int(a)}
                for t, a in zip(chosen, ats, strict=True)
            )

    # the counts graph.users keeps on every User node, written with the node
    following_of = Counter(f["fromId"] for f in plan.follows)
    followers_of = Counter(f["toId"] for f in plan.follows)
    for user in plan.users:
        user["followingCount"] = following_of[user["id"]]
        user["followerCount"] = followers_of[user["id"]]

    # clips: published over the span in order; authors skewed towards the popular
    clip_start = int(user_at[-1]) + 60_000
    published = np.sort(rng.integers(clip_start, now_ms - 60_000, clips))
    authors = _draw(popular_cdf, clips, rng)
    parent = [-1] * clips
    depth = [0] * clips
    # a few long chains (one reaching max_depth), one large tree, then many shallow trees: a
    # remix of a uniformly chosen earlier clip gives depth about log(n)
    chains = max(1, clips // 5000) if max_depth > 0 and clips > max_depth else 0
    in_chain = [False] * clips
    for _ in range(chains):
        free = [k for k in range(clips) if not in_chain[k]]
        if len(free) <= max_depth:
            break
        links = sorted(rng.choice(free, size=max_depth + 1, replace=False).tolist())
        for prev, cur in itertools.pairwise(links):
            parent[cur], depth[cur] = prev, depth[prev] + 1
        for k in links:
            in_chain[k] = True
    # one large tree (a tenth of the clips, up to big_tree) for the remixTree benchmark: each
    # member remixes a uniformly chosen earlier member, so the tree is wide and ~e*ln(n) deep
    tree_size = min(big_tree, clips // 10)
    free = [k for k in range(clips) if not in_chain[k]]
    if tree_size > 1 and len(free) > tree_size:
        members = sorted(rng.choice(free[: len(free) // 2], size=1).tolist())
        later = [k for k in free if k > members[0]]
        members += sorted(rng.choice(later, size=tree_size - 1, replace=False).tolist())
        for i, k in enumerate(members[1:], start=1):
            p = members[int(rng.integers(i))]
            if depth[p] >= max_depth:
                p = members[0]
            parent[k], depth[k] = p, depth[p] + 1
        for k in members:
            in_chain[k] = True  # placed: the random remixes below leave them be
    for k in range(1, clips):
        if in_chain[k] or rng.random() >= 0.3:
            continue
        p = int(rng.integers(k))
        if depth[p] < max_depth:
            parent[k], depth[k] = p, depth[p] + 1
    plan.max_depth = max(depth, default=0)

    mood_names = sorted(MOODS)
    viewer_cdf = np.cumsum(_zipf_weights(users, 0.8, rng))
    for k in range(clips):
        pub = int(published[k])
        created = pub - int(rng.integers(30_000, 300_000))
        video = int(rng.integers(len(videos)))
        v = videos[video]
        moods = sorted(set(rng.choice(mood_names, size=int(rng.integers(1, 3))).tolist()))
        prompt = _prompt(moods, rng)
        moods = moods or infer_moods(prompt)
        cid = _ulid(created)
        author = int(authors[k])
        # engagement: popular authors draw more viewers; likers are among the viewers
        reach = 1 + popularity[author] * users * 4
        n_view = min(users, int(rng.poisson(min(reach, 40))))
        viewers = list(dict.fromkeys(_draw(viewer_cdf, n_view, rng).tolist()))
        like_n = views_n = completions_n = rewatches_n = 0
        for u in viewers:
            views = int(rng.integers(1, 4))
            done = 0
            for _ in range(views):
                if done:
                    rewatches_n += 1  # a view after a completion by the same viewer
                done += int(rng.random() < 0.6)
            views_n += views
            completions_n += done
            last_at = int(rng.integers(pub, now_ms))
            plan.views.append(
                {
                    "userId": user_ids[u],
                    "clipId": cid,
                    "views": views,
                    "completions": done,
                    "lastAt": last_at,
                }
            )
            if rng.random() < 0.35:
                like_n += 1
                plan.likes.append({"userId": user_ids[u], "clipId": cid, "at": last_at})
        plan.clips.append(
            {
                "id": cid,
                "authorId": user_ids[author],
                "prompt": prompt,
                "moods": moods,
                "durationS": v.duration_s,
                "seed": int(rng.integers(0, 2**31)),
                "createdAt": created,
                "renderedAt": created + 20_000,
                "publishedAt": pub,
                "videoKey": None,  # set when the file is stored (it names the clip id)
                "sha256": v.sha256,
                "videoDurationMs": v.duration_ms,
                "width": v.width,
                "height": v.height,
                "fps": v.fps,
                "hasAudio": v.has_audio,
                "sizeBytes": v.size_bytes,
                "mimeType": v.mime_type,
                "likeCount": like_n,
                "viewCount": views_n,
                "completionCount": completions_n,
                "rewatchCount": rewatches_n,
            }
        )
        plan.video_of[cid] = video
        if parent[k] >= 0:
            plan.remixes.append({"id": cid, "parentId": plan.clips[parent[k]]["id"]})
    return plan


def render_seed_videos(tmp_dir: Path, count: int = 3) -> list[SeedVideo]:
    """Render `count` short preview videos once; the seeded clips share them."""
    from media.probe import probe_video
    from workers.renderers.base import RenderSpec
    from workers.renderers.preview import PreviewRenderer

    renderer = PreviewRenderer(size=(256, 448), fps=12, tmp_dir=tmp_dir)
    prompts = ("a calm sunset over the ocean", "a funny cat chase", "a robot dance in tokyo")
    moods = (("relaxing", "nature"), ("funny", "animals"), ("scifi", "music"))
    videos = []
    for i in range(count):
        spec = RenderSpec(
            clip_id=f"seed{i}",
            prompt=prompts[i % len(prompts)],
            duration_s=2 + i % 3,
            moods=moods[i % len(moods)],
            seed=i,
        )
        path = renderer.render(spec, lambda _fraction: None)
        info = probe_video(path)
        videos.append(
            SeedVideo(
                path=path,
                duration_s=spec.duration_s,
                sha256=info.sha256,
                duration_ms=info.duration_ms,
                width=info.width,
                height=info.height,
                fps=float(info.fps),
                has_audio=info.has_audio,
                size_bytes=info.size_bytes,
                mime_type=info.mime_type,
            )
        )
    return videos


def _store_videos(plan: SeedPlan, videos: list[SeedVideo], media: Any) -> Iterator[int]:
    """Give every clip its own stored file; yields per clip stored (for the progress bar)."""
    from media.store import clip_video_key

    root = getattr(media, "root", None)  # the local store: hard links cost no space
    for clip in plan.clips:
        v = videos[plan.video_of[clip["id"]]]
        key = clip_video_key(clip["id"], v.sha256)
        clip["videoKey"] = key
        if root is not None:
            target = Path(root) / key
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(v.path, target)
            except OSError:  # another filesystem: a copy
                media.put(v.path, key)
        else:
            media.put(v.path, key)
        yield 1


async def seed_checks(
    db: GraphDriver, clip_ids: list[str], user_ids: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per clip: counters beside the edges they count, per user: follows) for seeded ids."""
    clips = await db.read(SEED_CLIP_CHECKS, {"ids": clip_ids})
    users = await db.read(SEED_FOLLOW_COUNTS, {"ids": user_ids})
    return clips, users


def _batches(rows: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


async def write_seed(
    db: GraphDriver,
    plan: SeedPlan,
    password_hash: str,
    progress: Callable[[int], None] = lambda _n: None,
    batch_rows: int = BATCH_ROWS,
) -> None:
    """Write the plan's rows: users, follows, clips, remix edges, likes, views."""
    for statement, rows, extra in (
        (SEED_USERS, plan.users, {"passwordHash": password_hash}),
        (SEED_FOLLOWS, plan.follows, {}),
        (SEED_CLIPS, plan.clips, {}),
        (SEED_REMIXES, plan.remixes, {}),
        (SEED_LIKES, plan.likes, {}),
        (SEED_VIEWS, plan.views, {}),
    ):
        for batch in _batches(rows, batch_rows):
            await db.write(statement, {"rows": batch, **extra})
            progress(len(batch))


def seed_graph(
    db_factory: Callable[[], GraphDriver],
    media: Any,
    *,
    users: int,
    clips: int,
    seed: int = 0,
    max_depth: int = 50,
    follows_per_user: int = 100,
    tmp_dir: Path,
    show_progress: bool = True,
    now_ms: int,
) -> SeedPlan:
    """Render a few videos, plan the graph, store every clip's file, and write the rows."""
    from auth.passwords import hash_password

    videos = render_seed_videos(tmp_dir)
    try:
        plan = plan_seed(
            users,
            clips,
            videos,
            seed=seed,
            follows_per_user=follows_per_user,
            max_depth=max_depth,
            now_ms=now_ms,
        )
        total = (
            sum(
                len(rows)
                for rows in (plan.users, plan.follows, plan.clips, plan.remixes, plan.likes)
            )
            + len(plan.views)
            + len(plan.clips)
        )
        bar = _progress_bar(total, show_progress)
        try:
            for n in _store_videos(plan, videos, media):
                bar(n)

            async def write() -> None:
                db = db_factory()
                try:
                    await db.ensure_schema()
                    await write_seed(db, plan, await hash_password(SEED_PASSWORD), bar)
                finally:
                    await db.close()

            asyncio.run(write())
        finally:
            bar(0, close=True)
    finally:
        for v in videos:
            v.path.unlink(missing_ok=True)
    return plan


def _progress_bar(total: int, show: bool) -> Callable[..., None]:
    try:
        from tqdm import tqdm
    except ImportError:  # a line per update on stderr instead
        done = [0]

        def line(n: int, close: bool = False) -> None:
            done[0] += n
            if show and (n or close):
                print(f"seed: {done[0]}/{total} rows", file=sys.stderr)

        return line
    bar = tqdm(total=total, unit="row", file=sys.stderr, disable=not show, mininterval=0.5)

    def update(n: int, close: bool = False) -> None:
        if n:
            bar.update(n)
        if close:
            bar.close()

    return update
