"""Every published clip's perceptual fingerprint, stored in Redis and indexed for lookup.

A fingerprint is the PDQ hash of one frame a second (provenance.pdq), frames under PDQ's
quality floor left out. They are stored in Redis, which every API process shares: a hash
FINGERPRINTS (clip id -> base64 of the packed hashes) and a list LOG of clip ids in the
order they were added. Each process keeps its own FingerprintIndex in memory and catches
up from LOG (only the entries past the ones it has read) before each lookup, so a clip
published through one process is found through any other, and a restarted process reads
everything back once.

Lookup is multi-index hashing (Norouzi et al.): the 256 bits are cut into 8 chunks of 32.
Two hashes within 31 bits differ in at most 3 bits of at least one chunk (8 x 4 > 31), so
probing each chunk's sorted table with the query chunk XOR every mask of at most 3 bits
(5,489 probes a chunk) finds every frame within the match distance, and only those few
candidates get a full 256-bit distance. New fingerprints go to a small unsorted tail,
scanned directly, which is merged into the sorted tables once it grows. Memory: about 96
bytes a frame (the hash, and per chunk a sorted value and a position), 100 MB for a million
frames: 100k clips of ten seconds.

A video matches a clip when at least half of its usable frames (and at least two, or its
only one) are within MATCH_DISTANCE of one of that clip's frames.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from provenance.pdq import HASH_BYTES, MATCH_DISTANCE, MIN_QUALITY, FrameHash

__all__ = [
    "FINGERPRINTS",
    "LOG",
    "FingerprintIndex",
    "Match",
    "pack",
    "shared_index",
    "store_fingerprint",
    "sync_index",
    "sync_index_blocking",
    "unpack",
]

FINGERPRINTS = "reelgraph:provenance:fingerprints"
LOG = "reelgraph:provenance:fingerprints:log"
_FORMAT = 1
_CHUNKS = 8
_CHUNK_RADIUS = MATCH_DISTANCE // _CHUNKS  # 3: pigeonhole over 8 chunks of 32 bits
_MERGE_AT = 50_000  # tail frames that trigger a merge into the sorted tables
_SYNC_BATCH = 1_000
_MATCH_SHARE = 0.5

# store the fingerprint and log the clip id, only the first time (a re-sign logs nothing)
_STORE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def _masks() -> np.ndarray:
    masks = [0]
    for k in range(1, _CHUNK_RADIUS + 1):
        for bits in itertools.combinations(range(32), k):
            masks.append(sum(1 << b for b in bits))
    return np.array(masks, dtype=np.uint32)


_MASKS = _masks()


def pack(hashes: list[FrameHash]) -> str:
    """The stored form: base64 of a format byte, then each usable frame's 32-byte hash."""
    usable = [h.hash for h in hashes if h.quality >= MIN_QUALITY]
    return base64.b64encode(bytes([_FORMAT]) + b"".join(usable)).decode()


def unpack(text: str | bytes) -> np.ndarray:
    """(frames, 32) uint8 hashes of a stored fingerprint."""
    raw = base64.b64decode(text)
    if not raw or raw[0] != _FORMAT or (len(raw) - 1) % HASH_BYTES:
        raise ValueError("not a stored fingerprint")
    return np.frombuffer(raw[1:], dtype=np.uint8).reshape(-1, HASH_BYTES)


async def store_fingerprint(redis: Any, clip_id: str, hashes: list[FrameHash]) -> bool:
    """Store a clip's fingerprint once; False when it had one already or has no usable
    frame (nothing to find it by)."""
    packed = pack(hashes)
    if len(base64.b64decode(packed)) <= 1:
        return False
    return bool(await redis.eval(_STORE, 2, FINGERPRINTS, LOG, clip_id, packed))


@dataclass(frozen=True)
class Match:
    clip_id: str
    matched_frames: int  # query frames within MATCH_DISTANCE of one of the clip's
    query_frames: int  # the query's usable frames
    mean_distance: float  # over the matched frames

    @property
    def share(self) -> float:
        return self.matched_frames / self.query_frames if self.query_frames else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "clipId": self.clip_id,
            "matchedFrames": self.matched_frames,
            "queryFrames": self.query_frames,
            "share": round(self.share, 3),
            "meanDistance": round(self.mean_distance, 2),
        }


def _words(hashes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(hashes).view("<u8").reshape(-1, 4)


def _chunks(hashes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(hashes).view("<u4").reshape(-1, _CHUNKS)


class FingerprintIndex:
    """Frame hashes of many clips; lookup() finds the clips a video's frames match."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clip_ids: list[str] = []
        self._known: set[str] = set()
        # sorted part
        self._hashes = np.empty((0, HASH_BYTES), np.uint8)
        self._owner = np.empty(0, np.int32)  # frame -> clip number
        self._sorted: list[np.ndarray] = []  # per chunk: chunk values, sorted
        self._order: list[np.ndarray] = []  # per chunk: frame numbers in that order
        # unsorted tail
        self._tail: list[np.ndarray] = []
        self._tail_owner: list[np.ndarray] = []
        self.log_read = 0  # entries of LOG already read (sync_index)

    @property
    def frames(self) -> int:
        return len(self._owner) + sum(len(t) for t in self._tail_owner)

    def add(self, clip_id: str, hashes: np.ndarray) -> None:
        """Index a clip's (frames, 32) uint8 hashes; a clip already indexed is ignored."""
        hashes = np.asarray(hashes, dtype=np.uint8).reshape(-1, HASH_BYTES)
        with self._lock:
            if clip_id in self._known or not len(hashes):
                return
            self._known.add(clip_id)
            number = len(self.clip_ids)
            self.clip_ids.append(clip_id)
            self._tail.append(hashes.copy())
            self._tail_owner.append(np.full(len(hashes), number, np.int32))
            if sum(len(t) for t in self._tail_owner) >= _MERGE_AT:
                self._merge()

    def add_many(self, items: list[tuple[str, np.ndarray]], *, merge: bool = True) -> None:
        """Index many clips at once (merged into the sorted tables at the end when `merge`,
        or once the tail is long)."""
        with self._lock:
            for clip_id, hashes in items:
                hashes = np.asarray(hashes, dtype=np.uint8).reshape(-1, HASH_BYTES)
                if clip_id in self._known or not len(hashes):
                    continue
                self._known.add(clip_id)
                self._tail.append(hashes)
                self._tail_owner.append(np.full(len(hashes), len(self.clip_ids), np.int32))
                self.clip_ids.append(clip_id)
            if merge or sum(len(t) for t in self._tail_owner) >= _MERGE_AT:
                self._merge()

    def _merge(self) -> None:
        if not self._tail:
            return
        self._hashes = np.concatenate([self._hashes, *self._tail])
        self._owner = np.concatenate([self._owner, *self._tail_owner])
        self._tail, self._tail_owner = [], []
        chunks = _chunks(self._hashes)
        self._order = [np.argsort(chunks[:, c], kind="stable").astype(np.int32) for c in range(8)]
        self._sorted = [chunks[order, c] for c, order in enumerate(self._order)]

    def _near(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owners, distances) of every indexed frame within MATCH_DISTANCE of query."""
        owners, distances = [], []
        if len(self._owner):
            q_chunks = _chunks(query[None, :])[0]
            found = []
            for c in range(_CHUNKS):
                probes = q_chunks[c] ^ _MASKS
                column = self._sorted[c]
                lo = np.searchsorted(column, probes, "left")
                hi = np.searchsorted(column, probes, "right")
                hit = hi > lo
                if not hit.any():
                    continue
                lo, counts = lo[hit], (hi - lo)[hit]
                starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
                found.append(self._order[c][starts + np.arange(counts.sum())])
            if found:
                frames = np.unique(np.concatenate(found))
                d = _distance(_words(self._hashes[frames]), _words(query[None, :])[0])
                keep = d <= MATCH_DISTANCE
                owners.append(self._owner[frames[keep]])
                distances.append(d[keep])
        for tail, tail_owner in zip(self._tail, self._tail_owner, strict=True):
            d = _distance(_words(tail), _words(query[None, :])[0])
            keep = d <= MATCH_DISTANCE
            owners.append(tail_owner[keep])
            distances.append(d[keep])
        if not owners:
            return np.empty(0, np.int32), np.empty(0, np.int64)
        return np.concatenate(owners), np.concatenate(distances)

    def lookup(self, query: list[FrameHash] | np.ndarray, *, limit: int = 3) -> list[Match]:
        """The clips the query video matches, best first (empty: none)."""
        if isinstance(query, list):
            usable = [h.hash for h in query if h.quality >= MIN_QUALITY]
            hashes = np.frombuffer(b"".join(usable), np.uint8).reshape(-1, HASH_BYTES)
        else:
            hashes = np.asarray(query, np.uint8).reshape(-1, HASH_BYTES)
        n = len(hashes)
        if not n:
            return []
        best: dict[int, dict[int, int]] = {}  # clip number -> query frame -> best distance
        with self._lock:
            for i, query_hash in enumerate(hashes):
                owners, distances = self._near(query_hash)
                for owner, distance in zip(owners.tolist(), distances.tolist(), strict=True):
                    frames = best.setdefault(owner, {})
                    if distance < frames.get(i, MATCH_DISTANCE + 1):
                        frames[i] = distance
            clip_ids = list(self.clip_ids)
        matches = [
            Match(clip_ids[owner], len(frames), n, sum(frames.values()) / len(frames))
            for owner, frames in best.items()
            if len(frames) >= min(2, n) and len(frames) / n >= _MATCH_SHARE
        ]
        matches.sort(key=lambda m: (-m.matched_frames, m.mean_distance))
        return matches[:limit]


def _distance(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words ^ query).sum(axis=1, dtype=np.int64)


def _decoded(values: list[Any]) -> list[Any]:
    return [v.decode() if isinstance(v, bytes) else v for v in values]


async def sync_index(redis: Any, index: FingerprintIndex) -> None:
    """Bring index up to date with what every process stored (LOG past index.log_read)."""
    # two catch-ups at once read the same entries: add_many skips clips it holds already
    read, items = index.log_read, []
    while ids := _decoded(await redis.lrange(LOG, read, read + _SYNC_BATCH - 1)):
        blobs = _decoded(await redis.hmget(FINGERPRINTS, ids))
        items += [(i, unpack(b)) for i, b in zip(ids, blobs, strict=True) if b]
        read += len(ids)
    if items:
        await asyncio.to_thread(index.add_many, items, merge=len(items) > 1)
    index.log_read = max(index.log_read, read)


def sync_index_blocking(redis: Any, index: FingerprintIndex) -> None:
    """sync_index with a synchronous Redis client (the CLI's)."""
    read, items = index.log_read, []
    while ids := _decoded(redis.lrange(LOG, read, read + _SYNC_BATCH - 1)):
        blobs = _decoded(redis.hmget(FINGERPRINTS, ids))
        items += [(i, unpack(b)) for i, b in zip(ids, blobs, strict=True) if b]
        read += len(ids)
    index.add_many(items, merge=True)
    index.log_read = read


_shared: FingerprintIndex | None = None
_shared_lock = threading.Lock()


def shared_index() -> FingerprintIndex:
    """This process's index (API processes keep one, synced before each lookup)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FingerprintIndex()
        return _shared
