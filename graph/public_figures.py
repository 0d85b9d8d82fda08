"""Public figures: the operator's registry of protected people whom a prompt may not name
(consent.policy reads it; `reelgraph policy public-figure` keeps it).

`(:PublicFigure {id, name, key, aliases, createdAt, userId?})`: `key` is the name as the
matcher reads it (folded words, one space apart), one entry per key; `userId` links the entry
to that person's own account, whose cameo a clip may feature with their consent.

`(:PublicFigureRegistry {key: 'public-figures', version})`: `version` is a fresh random
stamp written in the same statement as every add and remove. API processes keep the
compiled registry and read it again only when the stamp they hold is not the graph's
(PUBLIC_FIGURES answers with no entries while it is): one small read per prompt checked,
across every process, whichever process changed the registry.
"""

from __future__ import annotations

import secrets

from graph.driver import Cypher, GraphDriver, Row

__all__ = ["add_figure", "figures_page", "figures_since", "remove_figure"]

REGISTRY = "public-figures"

_FIGURE = "f {.id, .name, .aliases, .createdAt, .userId}"

# a new entry, unless its key is registered already (then that entry, created false)
ADD_PUBLIC_FIGURE = Cypher(
    """
MERGE (r:PublicFigureRegistry {key: $registry})
SET r._lock = true REMOVE r._lock
WITH r
MERGE (f:PublicFigure {key: $key})
ON CREATE SET f.id = $id, f.name = $name, f.aliases = $aliases, f.createdAt = $now,
              f.userId = $userId, r.version = $version
RETURN f {.id, .name, .aliases, .createdAt, .userId} AS figure, f.id = $id AS created
"""
)

# the entry with this id, deleted; the registry's stamp moves on only when one was
REMOVE_PUBLIC_FIGURE = Cypher(
    """
MERGE (r:PublicFigureRegistry {key: $registry})
SET r._lock = true REMOVE r._lock
WITH r
MATCH (f:PublicFigure {id: $id})
SET r.version = $version
WITH f, f {.id, .name, .aliases, .createdAt, .userId} AS figure
DELETE f
RETURN figure
"""
)

# the registry's stamp, and every entry unless the caller's stamp `$known` is the graph's
# (`$known` null: always the entries)
PUBLIC_FIGURES = Cypher(
    """
OPTIONAL MATCH (r:PublicFigureRegistry {key: $registry})
WITH collect(r.version) AS versions
OPTIONAL MATCH (f:PublicFigure)
WHERE $known IS NULL OR versions <> $known
RETURN versions,
       collect(CASE WHEN f IS NULL THEN null
               ELSE {id: f.id, name: f.name, aliases: f.aliases, createdAt: f.createdAt,
                     userId: f.userId} END) AS figures
"""
)

# the entries oldest first, after the (createdAt, id) keyset (admins page through them)
PUBLIC_FIGURES_PAGE = Cypher(
    """
MATCH (f:PublicFigure)
WHERE $afterAt IS NULL OR f.createdAt > $afterAt
      OR (f.createdAt = $afterAt AND f.id > $afterId)
RETURN f {.id, .name, .aliases, .createdAt, .userId} AS figure
ORDER BY figure.createdAt, figure.id
LIMIT $limit
"""
)


def _stamp() -> str:
    return secrets.token_hex(8)


async def add_figure(
    db: GraphDriver,
    *,
    id: str,
    name: str,
    key: str,
    aliases: list[str],
    user_id: str | None,
    now: int,
) -> tuple[Row, bool]:
    """(the entry, whether it is new): an entry whose key is registered already is returned
    as it is, unchanged."""
    params = {
        "registry": REGISTRY,
        "id": id,
        "name": name,
        "key": key,
        "aliases": aliases,
        "userId": user_id,
        "now": now,
        "version": _stamp(),
    }
    row = (await db.write(ADD_PUBLIC_FIGURE, params))[0]
    return row["figure"], bool(row["created"])


async def remove_figure(db: GraphDriver, figure_id: str) -> Row | None:
    """The entry removed; None when there was none with that id."""
    params = {"registry": REGISTRY, "id": figure_id, "version": _stamp()}
    rows = await db.write(REMOVE_PUBLIC_FIGURE, params)
    return rows[0]["figure"] if rows else None


async def figures_since(db: GraphDriver, known: str | None) -> tuple[str, list[Row] | None]:
    """(the registry's stamp, its entries); the entries are None when `known` is that stamp
    already (nothing changed since). `known` None: always the entries."""
    params = {"registry": REGISTRY, "known": None if known is None else known.split(",")}
    row = (await db.read(PUBLIC_FIGURES, params))[0]
    version = ",".join(str(v) for v in row["versions"])
    if known is not None and version == known:
        return version, None
    figures = sorted(
        (dict(f) for f in row["figures"] if f is not None),
        key=lambda f: (f["createdAt"], f["id"]),
    )  # oldest first (FalkorDB fails on sorting rows that may hold a null f, and on projecting
    # a null f: hence the CASE above)
    for figure in figures:
        figure["aliases"] = list(figure.get("aliases") or [])
    return version, figures


async def figures_page(db: GraphDriver, after: tuple[int, str] | None, limit: int) -> list[Row]:
    """Up to `limit` entries after the (createdAt, id) keyset, oldest first."""
    params = {
        "afterAt": after[0] if after else None,
        "afterId": after[1] if after else None,
        "limit": limit,
    }
    figures = [dict(row["figure"]) for row in await db.read(PUBLIC_FIGURES_PAGE, params)]
    for figure in figures:
        figure["aliases"] = list(figure.get("aliases") or [])
    return figures
