"""How long matching one capture's face against every ACTIVE cameo takes: numpy brute force.

One face, one owner compares a new capture's 128-d embedding (workers.faces) with the
embedding of every other account's ACTIVE cameo and takes the nearest (Euclidean; dlib's
customary "same person" threshold is 0.6). This measures that search on N synthetic
embeddings (random vectors shaped like dlib's: float32, norm about 1.4) held as
one float32 matrix, as a capture worker process would hold them in memory:

- build: stacking N vectors into the matrix (what a full refresh of the index costs);
- match: the nearest of N to one query (squared distances via one matrix-vector product);
- memory: the matrix's size.

    .venv/bin/python benchmarks/face_match.py               # 100k embeddings
    .venv/bin/python benchmarks/face_match.py --count 1000000

Prints one JSON line. The vectors are random, so it measures time and memory, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

DIM = 128


def synthetic(count: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0.0, 0.125, size=(count, DIM)).astype(np.float32)
    return vectors


def nearest(matrix: np.ndarray, norms: np.ndarray, query: np.ndarray) -> tuple[int, float]:
    """The row nearest to query and its Euclidean distance."""
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, one BLAS matrix-vector product for all rows
    squared = norms - 2.0 * (matrix @ query) + float(query @ query)
    row = int(np.argmin(squared))
    return row, float(np.sqrt(max(0.0, float(squared[row]))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    rows = list(synthetic(args.count))
    started = time.perf_counter()
    matrix = np.ascontiguousarray(np.stack(rows))
    norms = np.einsum("ij,ij->i", matrix, matrix)
    build_s = time.perf_counter() - started

    queries = synthetic(args.queries, seed=2)
    queries[0] = matrix[12345 % args.count] + 0.01  # one true match: found, and found near
    found, distance = nearest(matrix, norms, queries[0])
    assert found == 12345 % args.count and distance < 0.6, (found, distance)
    times = []
    for query in queries:
        started = time.perf_counter()
        nearest(matrix, norms, query)
        times.append(time.perf_counter() - started)
    times.sort()
    print(
        json.dumps(
            {
                "embeddings": args.count,
                "build_ms": round(build_s * 1000, 1),
                "match_ms_median": round(statistics.median(times) * 1000, 2),
                "match_ms_p95": round(times[int(len(times) * 0.95)] * 1000, 2),
                "matrix_mb": round(matrix.nbytes / 2**20, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
