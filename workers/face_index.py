"""One face, one owner: the faces a capture is matched against, held by each capture worker.

A passed capture's 128-d embedding (workers.faces) is compared with the face of every cameo
that holds one (ACTIVE, or held for review) and with the reference photos of the registered
public figures (graph.figure_faces). Two of dlib's embeddings within MATCH_DISTANCE
(Euclidean; dlib's customary threshold, and what we measured: one person's photos 0.38
apart, different people 0.77-0.88) are taken for one person.

Where the faces live. Each cameo's embedding is at rest only once: sealed under the cameo's
own data key on its node (consent.references.seal_face), shredded with the key. A capture
worker process already holds the KEK ring (it seals new captures), so it opens every sealed
face into a float32 matrix in its own memory (FaceIndex) and matches by brute force (one
matrix-vector product: about 8 ms for 100k faces, benchmarks/face_match.py). The trade-off:
the plaintext embeddings of every cameo sit in the memory of each capture worker process
(about 50 MB per 100k), which a memory dump of that process would expose, but the one place
that already holds the key to all of them; in exchange there is no second copy at rest (no
plaintext or KEK-sealed index on disk or in the graph to leak, to rewrap when the KEK
rotates, or to forget when a cameo is deleted), and a cameo's deletion shreds its face
everywhere but in these caches, which drop it at their next refresh. The sandboxed child that
decodes the upload never sees any of it.

Staying current. The graph counts every change to the set of faces (graph.cameos: the
FaceRegistry's `version`, bumped by activation, review and deletion, each stamping the
cameo's `faceVersion`). refresh() reads that count; when it moved, it reads only the cameos
changed since the count it holds (a full load, paged, the first time or when the count went
back, e.g. a new graph). The match is then made against the faces as of that count, and the
activation statement writes only if the count has not moved since (compare-and-set): two
workers activating the same face at once cannot both win; the loser refreshes, matches
again, and finds the face taken.

Public figures are few (operators register them): FigureIndex keeps them whole and reads
them again whenever the registry's stamp changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from consent.envelope import EnvelopeError
from consent.references import open_face
from graph import cameos as cameo_repo
from graph import figure_faces as figure_face_repo

if TYPE_CHECKING:
    from consent.envelope import Kek, KekRing
    from graph.driver import GraphDriver, Row

__all__ = ["MATCH_DISTANCE", "FaceEntry", "FaceIndex", "FigureIndex", "FigureMatch", "distance"]

logger = logging.getLogger(__name__)

MATCH_DISTANCE = 0.6
DIM = 128
_PAGE = 1000


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))


@dataclass(frozen=True)
class FaceEntry:
    """A cameo's face as the index holds it."""

    cameo_id: str
    owner_id: str
    state: str
    distance: float


class FaceIndex:
    """The faces of every cameo holding one, decrypted, in one float32 matrix (rows reused
    when a face goes: a free row's squared norm is +inf, so it never matches)."""

    def __init__(self, kek: Kek | KekRing) -> None:
        self._kek = kek
        self.version = -1  # the registry's count these faces are as of; -1: none read
        self._matrix = np.zeros((0, DIM), np.float32)
        self._norms = np.zeros(0, np.float32)
        self._rows: dict[str, int] = {}  # cameo id -> row
        self._meta: list[tuple[str, str, str] | None] = []  # row -> (cameo, owner, state)
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self._rows)

    async def refresh(self, db: GraphDriver) -> int:
        """Bring the faces up to the graph's count, and return it (what the activation
        compares with)."""
        version = await cameo_repo.current_face_version(db)
        if version == self.version:
            return version
        if self.version < 0 or version < self.version:
            self._clear()
            after = ""
            while True:
                rows = await cameo_repo.faces_page(db, after, _PAGE)
                for row in rows:
                    self._apply(row)
                if len(rows) < _PAGE:
                    break
                after = rows[-1]["id"]
        else:
            for row in await cameo_repo.faces_changed(db, self.version):
                self._apply(row)
        self.version = version
        return version

    def nearest(self, embedding: np.ndarray, *, other_than: str | None = None) -> FaceEntry | None:
        """The nearest face within MATCH_DISTANCE whose owner is not `other_than`."""
        if not self._rows:
            return None
        query = np.asarray(embedding, np.float32)
        squared = self._norms - 2.0 * (self._matrix @ query) + float(query @ query)
        for row in np.argsort(squared)[:8]:  # an owner has one face: a few rows suffice
            meta = self._meta[int(row)]
            found = float(np.sqrt(max(0.0, float(squared[row]))))
            if meta is None or found > MATCH_DISTANCE:
                return None
            if meta[1] != other_than:
                return FaceEntry(meta[0], meta[1], meta[2], found)
        return None

    def face_of(self, cameo_id: str) -> tuple[np.ndarray, str] | None:
        """(the cameo's face, its state) as held now; None when it holds none."""
        row = self._rows.get(cameo_id)
        if row is None:
            return None
        meta = self._meta[row]
        assert meta is not None
        return self._matrix[row].copy(), meta[2]

    def _clear(self) -> None:
        self._matrix = np.zeros((0, DIM), np.float32)
        self._norms = np.zeros(0, np.float32)
        self._rows, self._meta, self._free = {}, [], []

    def _apply(self, row: Row) -> None:
        cameo_id = row["id"]
        face = None
        if row.get("faceSealed") and row.get("wrappedKey"):
            try:
                face = open_face(self._kek, row["wrappedKey"], cameo_id, row["faceSealed"])
            except EnvelopeError as err:  # its KEK retired or a damaged value: say so
                logger.error("cameo %s: its face cannot be opened for matching: %s", cameo_id, err)
        if face is None or face.shape != (DIM,):
            self._drop(cameo_id)
        else:
            self._put(cameo_id, row["ownerId"], row["state"], face)

    def _put(self, cameo_id: str, owner_id: str, state: str, face: np.ndarray) -> None:
        row = self._rows.get(cameo_id)
        if row is None:
            if not self._free:
                self._grow()
            row = self._free.pop()
            self._rows[cameo_id] = row
        self._matrix[row] = face
        self._norms[row] = float(face @ face)
        self._meta[row] = (cameo_id, owner_id, state)

    def _drop(self, cameo_id: str) -> None:
        row = self._rows.pop(cameo_id, None)
        if row is not None:
            self._matrix[row] = 0.0
            self._norms[row] = np.inf
            self._meta[row] = None
            self._free.append(row)

    def _grow(self) -> None:
        size = len(self._meta)
        extra = max(64, size)
        self._matrix = np.vstack([self._matrix, np.zeros((extra, DIM), np.float32)])
        self._norms = np.concatenate([self._norms, np.full(extra, np.inf, np.float32)])
        self._meta.extend([None] * extra)
        self._free.extend(range(size + extra - 1, size - 1, -1))


@dataclass(frozen=True)
class FigureMatch:
    figure_id: str
    name: str
    distance: float


class FigureIndex:
    """The registered public figures' reference faces, read again when the registry changes."""

    def __init__(self) -> None:
        self._stamp: str | None = None
        self._faces: list[tuple[str, str, str | None, np.ndarray]] = []

    async def refresh(self, db: GraphDriver) -> None:
        stamp, figures = await figure_face_repo.figure_faces_since(db, self._stamp)
        if figures is not None:
            self._faces = [
                (f["id"], f["name"], f.get("userId"), face) for f in figures for face in f["faces"]
            ]
        self._stamp = stamp

    def match(self, embedding: np.ndarray, *, owner_id: str | None) -> FigureMatch | None:
        """The nearest figure within MATCH_DISTANCE, unless it is linked to `owner_id`'s own
        account (the operator said that account is that person)."""
        best: tuple[float, str, str, str | None] | None = None
        for figure_id, name, user_id, face in self._faces:
            found = distance(face, embedding)
            if found <= MATCH_DISTANCE and (best is None or found < best[0]):
                best = (found, figure_id, name, user_id)
        if best is None or (best[3] is not None and best[3] == owner_id):
            return None
        return FigureMatch(best[1], best[2], best[0])
