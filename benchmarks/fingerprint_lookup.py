"""Fingerprint lookup against 100k clips (provenance.fingerprints).

    .venv/bin/python benchmarks/fingerprint_lookup.py [--clips 100000] [--frames 10]
        [--queries 50]

Builds an index of --clips clips of --frames frame hashes each (ten seconds at one frame a
second), then times lookups of --frames-frame queries of three kinds: a known clip's frames
with 24 of 256 bits flipped in each (about what a CRF 30 re-encode plus a half-size scale
does; measured 0-10 bits in tests/test_fingerprints.py), the same with 31 flipped (the
match distance: the worst case that must still be found), and unrelated hashes (found
nowhere). Two catalogues: uniform random hashes, and a clustered one where clips come in
families of near-duplicates (each within about 40 bits of its family's base: remixes and
similar renders that share structure), which gives the multi-index tables more candidates.
Prints build time, memory, the index size, and per-query latency (median, p95) and recall.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provenance.fingerprints import FingerprintIndex


def flip(hashes: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    unpacked = np.unpackbits(hashes, axis=1)
    for row in unpacked:
        row[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(unpacked, axis=1)


def catalogue(kind: str, clips: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return rng.integers(0, 256, (clips, frames, 32), dtype=np.uint8)
    family = 20
    bases = rng.integers(0, 256, (clips // family + 1, frames, 32), dtype=np.uint8)
    out = np.repeat(bases, family, axis=0)[:clips]
    noise = (rng.random((clips, frames, 256)) < 40 / 256).astype(np.uint8)
    return out ^ np.packbits(noise, axis=2)


def run(kind: str, clips: int, frames: int, queries: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    hashes = catalogue(kind, clips, frames, rng)
    index = FingerprintIndex()
    started = time.perf_counter()
    index.add_many([(f"clip{i}", hashes[i]) for i in range(clips)])
    build_s = time.perf_counter() - started
    memory = index._hashes.nbytes + sum(a.nbytes for a in index._sorted + index._order)
    memory += index._owner.nbytes
    print(
        f"[{kind}] {clips} clips x {frames} frames = {index.frames} hashes; build {build_s:.2f} s;"
        f" index arrays {memory / 2**20:.0f} MiB"
    )
    for label, bits in (
        ("copy, 24 bits flipped", 24),
        ("copy, 31 bits flipped", 31),
        ("unrelated", None),
    ):
        times, found = [], 0
        for _ in range(queries):
            target = int(rng.integers(clips))
            if bits is None:
                query = rng.integers(0, 256, (frames, 32), dtype=np.uint8)
            else:
                query = flip(hashes[target], bits, rng)
            started = time.perf_counter()
            matches = index.lookup(query)
            times.append(time.perf_counter() - started)
            if bits is None:
                found += not matches
            else:
                found += bool(matches) and matches[0].clip_id == f"clip{target}"
        times.sort()
        p95 = times[int(0.95 * (len(times) - 1))]
        outcome = "nothing found" if bits is None else "right clip first"
        print(
            f"  {label:24s} median {statistics.median(times) * 1000:7.1f} ms  p95 "
            f"{p95 * 1000:7.1f} ms  {outcome}: {found}/{queries}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for kind in ("uniform", "clustered"):
        run(kind, args.clips, args.frames, args.queries, args.seed)


if __name__ == "__main__":
    main()
