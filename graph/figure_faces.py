"""Public figures' reference faces: the embeddings of the photos an operator registered.

`reelgraph policy public-figure add NAME --photo FILE...` stores one 128-d embedding per
photo (workers.faces) on the figure's own node, `(:PublicFigure {faces: [...]})`: removing
the entry (graph.public_figures REMOVE_PUBLIC_FIGURE deletes the node) takes its faces
along in the same statement. Each face is base64 of 128 little-endian float32.

They are stored in the clear. They are derived from photographs of public people that the
operator chose and still holds, so anyone with those photos can compute them again: sealing
them would protect nothing those photos do not already give away, while it would make every
capture worker and the CLI depend on the KEK for them, and make KEK rotation rewrap them too.
(Users' own faces are different: graph.cameos seals each under its cameo's key.)

Writing faces moves the registry's stamp (PublicFigureRegistry.version), which capture
workers compare to know when to read the faces again (workers.face_index.FigureIndex).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence

import numpy as np

from graph.driver import Cypher, GraphDriver, Row
from graph.public_figures import REGISTRY

__all__ = ["decode_face", "encode_face", "figure_faces_since", "set_figure_faces"]

# the figure's reference faces replaced (the registry locked, its stamp moved on)
SET_FIGURE_FACES = Cypher(
    """
MERGE (r:PublicFigureRegistry {key: $registry})
SET r._lock = true REMOVE r._lock
WITH r
MATCH (f:PublicFigure {id: $id})
SET f.faces = $faces, r.version = $version
RETURN f.id AS id
"""
)

# the registry's stamp, and every figure with faces unless `$known` is the graph's stamp
FIGURE_FACES = Cypher(
    """
OPTIONAL MATCH (r:PublicFigureRegistry {key: $registry})
WITH collect(r.version) AS versions
OPTIONAL MATCH (f:PublicFigure)
WHERE f.faces IS NOT NULL AND ($known IS NULL OR versions <> $known)
RETURN versions,
       collect(CASE WHEN f IS NULL THEN null
               ELSE {id: f.id, name: f.name, userId: f.userId, faces: f.faces} END) AS figures
"""
)


def encode_face(embedding: Sequence[float] | np.ndarray) -> str:
    raw = np.asarray(embedding, dtype="<f4")
    if raw.shape != (128,):
        raise ValueError("a face embedding has 128 values")
    return base64.b64encode(raw.tobytes()).decode()


def decode_face(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


async def set_figure_faces(
    db: GraphDriver, figure_id: str, faces: Sequence[np.ndarray | Sequence[float]]
) -> bool:
    """Store these faces as the figure's reference faces; False when there is no such entry."""
    params = {
        "registry": REGISTRY,
        "id": figure_id,
        "faces": [encode_face(face) for face in faces],
        "version": secrets.token_hex(8),
    }
    return bool(await db.write(SET_FIGURE_FACES, params))


async def figure_faces_since(db: GraphDriver, known: str | None) -> tuple[str, list[Row] | None]:
    """(the registry's stamp, [{id, name, userId, faces: [ndarray]}] of the figures with
    faces); None instead of the list when `known` is that stamp already."""
    params = {"registry": REGISTRY, "known": None if known is None else known.split(",")}
    row = (await db.read(FIGURE_FACES, params))[0]
    stamp = ",".join(str(v) for v in row["versions"])
    if known is not None and stamp == known:
        return stamp, None
    figures = []
    for figure in row["figures"]:
        if figure is None:
            continue
        faces = [decode_face(text) for text in figure["faces"] or []]
        figures.append({**figure, "faces": [f for f in faces if f.shape == (128,)]})
    return stamp, figures
