"""Rights holders' works: entries (works, characters, marks) that a prompt may not use
unless the holder licensed them to its author (consent.policy reads them; rights holders keep
them through GraphQL).

- `(:User {rightsHolder: true})`: an account an admin marked as a rights holder. Only a
  marked account registers entries; unmarking one withdraws (deletes) every entry it holds,
  with their licences, in the same statement, so an unmarked account protects nothing and
  keeps no name from a later, genuine holder.
- `(:ProtectedWork {id, kind, name, aliases, terms, keys, holderId, everyone, createdAt})`:
  `keys` are the name and aliases as the matcher reads them, run together ("star wars",
  "Star-Wars" and "StarWars" are one key); a key belongs to one entry across every holder.
  `everyone`: licensed to every user (the opt-in model).
- `(:ProtectedWork)-[:LICENSED_TO {at}]->(:User)`: a licence to one named user.
- `(:ProtectedWorkRegistry {key: 'protected-works', version})`: a fresh random stamp written
  in the same statement as every change of the entries' names (register, withdraw, unmark),
  as graph.public_figures does: API processes keep the compiled names and read them again
  only when the stamp moved on. Licences are not compiled: they are read when a prompt uses
  an entry (`blocking_works`), so a licence granted or revoked counts from the next prompt.
"""

from __future__ import annotations

import secrets
from typing import Any

from graph.driver import Cypher, GraphDriver, Row

__all__ = [
    "blocking_works",
    "holder_state",
    "license_everyone",
    "license_user",
    "licensed_page",
    "licensees_page",
    "register_refusal",
    "register_work",
    "revoke_user_licence",
    "set_rights_holder",
    "withdraw_work",
    "works_page",
    "works_since",
]

REGISTRY = "protected-works"

# the registry's lock and stamp: MERGE then a write on the node serialises the statements
# that touch it on Neo4j (FalkorDB runs writes one at a time anyway)

# an admin marks an account; `before` tells whether it was marked already
MARK_RIGHTS_HOLDER = Cypher(
    """
MATCH (u:User {id: $userId})
WITH u, coalesce(u.rightsHolder, false) AS before
SET u.rightsHolder = true
RETURN u.id AS id, before, [] AS withdrawn
"""
)

# an admin unmarks an account: its entries and their licences go with it
UNMARK_RIGHTS_HOLDER = Cypher(
    """
MERGE (r:ProtectedWorkRegistry {key: $registry})
SET r._lock = true REMOVE r._lock
WITH r
MATCH (u:User {id: $userId})
WITH r, u, coalesce(u.rightsHolder, false) AS before
REMOVE u.rightsHolder
SET r.version = $version
WITH u, before
OPTIONAL MATCH (w:ProtectedWork {holderId: u.id})
WITH u, before, collect(w.id) AS withdrawn, collect(w) AS works
UNWIND CASE WHEN size(works) = 0 THEN [null] ELSE works END AS w
DETACH DELETE w
RETURN DISTINCT u.id AS id, before, withdrawn
"""
)

HOLDER_STATE = Cypher(
    """
MATCH (u:User {id: $userId})
RETURN coalesce(u.rightsHolder, false) AS holder
"""
)

# a new entry, written only when its holder is marked, none of its keys is any entry's and
# the holder holds fewer than $maxWorks (no row otherwise: `register_refusal` says why)
REGISTER_WORK = Cypher(
    """
MERGE (r:ProtectedWorkRegistry {key: $registry})
SET r._lock = true REMOVE r._lock
WITH r
MATCH (h:User {id: $holderId})
WHERE h.rightsHolder = true
OPTIONAL MATCH (other:ProtectedWork)
WHERE any(k IN other.keys WHERE k IN $keys)
WITH r, h, count(other) AS clashes
OPTIONAL MATCH (mine:ProtectedWork {holderId: h.id})
WITH r, h, clashes, count(mine) AS held
WHERE clashes = 0 AND held < $maxWorks
CREATE (w:ProtectedWork {id: $id, kind: $kind, name: $name, aliases: $aliases,
                         terms: $terms, keys: $keys, holderId: h.id, everyone: false,
                         createdAt: $now})
SET r.version = $version
RETURN w {.id, .kind, .name, .aliases, .terms, .holderId, .everyone, .createdAt} AS work
"""
)

# why REGISTER_WORK wrote nothing
REGISTER_REFUSAL = Cypher(
    """
OPTIONAL MATCH (h:User {id: $holderId})
WITH coalesce(h.rightsHolder, false) AS holder
OPTIONAL MATCH (other:ProtectedWork)
WHERE any(k IN other.keys WHERE k IN $keys)
WITH holder, count(other) AS clashes
OPTIONAL MATCH (mine:ProtectedWork {holderId: $holderId})
RETURN holder, clashes, count(mine) AS held
"""
)

# the holder's entry withdrawn (deleted with its licences); no row when it is not theirs
WITHDRAW_WORK = Cypher(
    """
MERGE (r:ProtectedWorkRegistry {key: $registry})
SET r._lock = true REMOVE r._lock
WITH r
MATCH (w:ProtectedWork {id: $id, holderId: $holderId})
SET r.version = $version
WITH w, w {.id, .kind, .name, .aliases, .terms, .holderId, .everyone, .createdAt} AS work
DETACH DELETE w
RETURN work
"""
)

# a licence to one user (kept as it was when granted already); no row when the entry is not
# the holder's or the user does not exist
LICENSE_USER = Cypher(
    """
MATCH (w:ProtectedWork {id: $id, holderId: $holderId})
MATCH (u:User {id: $userId})
MERGE (w)-[l:LICENSED_TO]->(u)
ON CREATE SET l.at = $now
RETURN w {.id, .kind, .name, .aliases, .terms, .holderId, .everyone, .createdAt} AS work,
       l.at = $now AS created
"""
)

# the licence to one user taken back (`revoked` 0 when there was none)
REVOKE_USER_LICENCE = Cypher(
    """
MATCH (w:ProtectedWork {id: $id, holderId: $holderId})
OPTIONAL MATCH (w)-[l:LICENSED_TO]->(:User {id: $userId})
WITH w, collect(l) AS licences
UNWIND CASE WHEN size(licences) = 0 THEN [null] ELSE licences END AS l
DELETE l
RETURN DISTINCT w {.id, .kind, .name, .aliases, .terms, .holderId, .everyone, .createdAt}
       AS work, size(licences) AS revoked
"""
)

# the licence to everyone granted ($everyone true) or taken back
LICENSE_EVERYONE = Cypher(
    """
MATCH (w:ProtectedWork {id: $id, holderId: $holderId})
WITH w, coalesce(w.everyone, false) AS before
SET w.everyone = $everyone
RETURN w {.id, .kind, .name, .aliases, .terms, .holderId, .everyone, .createdAt} AS work,
       before
"""
)

# of the entries `$ids` a prompt uses, those its author may not use: not the author's own,
# not licensed to everyone, not licensed to the author ($authorId "" for nobody)
BLOCKING_WORKS = Cypher(
    """
UNWIND $ids AS id
MATCH (w:ProtectedWork {id: id})
WHERE w.holderId <> $authorId AND NOT coalesce(w.everyone, false)
OPTIONAL MATCH (w)-[l:LICENSED_TO]->(:User {id: $authorId})
WITH w, count(l) AS licences
WHERE licences = 0
RETURN w.id AS id
"""
)

# the registry's stamp, and every entry's names unless the caller's stamp is the graph's
PROTECTED_WORKS = Cypher(
    """
OPTIONAL MATCH (r:ProtectedWorkRegistry {key: $registry})
WITH collect(r.version) AS versions
OPTIONAL MATCH (w:ProtectedWork)
WHERE $known IS NULL OR versions <> $known
RETURN versions,
       collect(CASE WHEN w IS NULL THEN null
               ELSE {id: w.id, name: w.name, aliases: w.aliases} END) AS works
"""
)

# the holder's entries, newest first
WORKS_PAGE = Cypher(
    """
MATCH (w:ProtectedWork {holderId: $holderId})
WHERE $afterAt IS NULL OR w.createdAt < $afterAt
      OR (w.createdAt = $afterAt AND w.id < $afterId)
RETURN w {.id, .kind, .name, .aliases, .terms, .holderId, .everyone, .createdAt} AS work
ORDER BY work.createdAt DESC, work.id DESC
LIMIT $limit
"""
)

# the entries a user may use: licensed to them by name or to everyone, newest first
LICENSED_PAGE = Cypher(
    """
MATCH (w:ProtectedWork)
WHERE $afterAt IS NULL OR w.createdAt < $afterAt
      OR (w.createdAt = $afterAt AND w.id < $afterId)
OPTIONAL MATCH (w)-[l:LICENSED_TO]->(:User {id: $userId})
WITH w, count(l) AS licences
WHERE licences > 0 OR w.everyone = true
RETURN w {.id, .kind, .name, .aliases, .terms, .holderId, .everyone, .createdAt} AS work
ORDER BY work.createdAt DESC, work.id DESC
LIMIT $limit
"""
)

# the users an entry is licensed to by name, latest licence first
LICENSEES_PAGE = Cypher(
    """
MATCH (:ProtectedWork {id: $id})-[l:LICENSED_TO]->(u:User)
WHERE $afterAt IS NULL OR l.at < $afterAt OR (l.at = $afterAt AND u.id < $afterId)
RETURN u.id AS id, l.at AS at
ORDER BY at DESC, id DESC
LIMIT $limit
"""
)


def _stamp() -> str:
    return secrets.token_hex(8)


async def set_rights_holder(db: GraphDriver, user_id: str, enabled: bool) -> Row | None:
    """{id, before, withdrawn}: whether the account was marked before, and the ids of the
    entries withdrawn with an unmarking; None when there is no such user."""
    if enabled:
        rows = await db.write(MARK_RIGHTS_HOLDER, {"userId": user_id})
    else:
        params = {"registry": REGISTRY, "userId": user_id, "version": _stamp()}
        rows = await db.write(UNMARK_RIGHTS_HOLDER, params)
    if not rows:
        return None
    row = dict(rows[0])
    row["withdrawn"] = list(row["withdrawn"] or [])
    return row


async def holder_state(db: GraphDriver, user_id: str) -> bool:
    """Whether the account is a marked rights holder (False when there is no such user)."""
    rows = await db.read(HOLDER_STATE, {"userId": user_id})
    return bool(rows and rows[0]["holder"])


def _work(row: Any) -> dict:
    work = dict(row)
    work["aliases"] = list(work.get("aliases") or [])
    work["everyone"] = bool(work.get("everyone"))
    return work


async def register_work(
    db: GraphDriver,
    *,
    id: str,
    holder_id: str,
    kind: str,
    name: str,
    aliases: list[str],
    terms: str,
    keys: list[str],
    max_works: int,
    now: int,
) -> dict | None:
    """The entry written; None when nothing was (see `register_refusal`)."""
    params = {
        "registry": REGISTRY,
        "id": id,
        "holderId": holder_id,
        "kind": kind,
        "name": name,
        "aliases": aliases,
        "terms": terms,
        "keys": keys,
        "maxWorks": max_works,
        "now": now,
        "version": _stamp(),
    }
    rows = await db.write(REGISTER_WORK, params)
    return _work(rows[0]["work"]) if rows else None


async def register_refusal(db: GraphDriver, holder_id: str, keys: list[str]) -> Row:
    """{holder, clashes, held}: whether the account is marked, how many entries hold one of
    these keys, and how many entries it holds."""
    return (await db.read(REGISTER_REFUSAL, {"holderId": holder_id, "keys": keys}))[0]


async def withdraw_work(db: GraphDriver, work_id: str, holder_id: str) -> dict | None:
    """The entry withdrawn; None when the holder holds no entry with that id."""
    params = {"registry": REGISTRY, "id": work_id, "holderId": holder_id, "version": _stamp()}
    rows = await db.write(WITHDRAW_WORK, params)
    return _work(rows[0]["work"]) if rows else None


async def license_user(
    db: GraphDriver, work_id: str, holder_id: str, user_id: str, now: int
) -> tuple[dict, bool] | None:
    """(the entry, whether the licence is new); None when the entry is not the holder's or
    the user does not exist."""
    params = {"id": work_id, "holderId": holder_id, "userId": user_id, "now": now}
    rows = await db.write(LICENSE_USER, params)
    return (_work(rows[0]["work"]), bool(rows[0]["created"])) if rows else None


async def revoke_user_licence(
    db: GraphDriver, work_id: str, holder_id: str, user_id: str
) -> tuple[dict, bool] | None:
    """(the entry, whether a licence was taken back); None when the entry is not theirs."""
    params = {"id": work_id, "holderId": holder_id, "userId": user_id}
    rows = await db.write(REVOKE_USER_LICENCE, params)
    return (_work(rows[0]["work"]), rows[0]["revoked"] > 0) if rows else None


async def license_everyone(
    db: GraphDriver, work_id: str, holder_id: str, everyone: bool
) -> tuple[dict, bool] | None:
    """(the entry, whether its licence to everyone changed); None when it is not theirs."""
    params = {"id": work_id, "holderId": holder_id, "everyone": everyone}
    rows = await db.write(LICENSE_EVERYONE, params)
    if not rows:
        return None
    return _work(rows[0]["work"]), bool(rows[0]["before"]) != everyone


async def blocking_works(db: GraphDriver, work_ids: list[str], author_id: str | None) -> list[str]:
    """Of these entries, the ids of those the author may not use (any author: `None`)."""
    rows = await db.read(BLOCKING_WORKS, {"ids": work_ids, "authorId": author_id or ""})
    return [row["id"] for row in rows]


async def works_since(db: GraphDriver, known: str | None) -> tuple[str, list[Row] | None]:
    """(the registry's stamp, every entry's {id, name, aliases}); the entries are None when
    `known` is that stamp already. `known` None: always the entries."""
    params = {"registry": REGISTRY, "known": None if known is None else known.split(",")}
    row = (await db.read(PROTECTED_WORKS, params))[0]
    version = ",".join(str(v) for v in row["versions"])
    if known is not None and version == known:
        return version, None
    works = [dict(w) for w in row["works"] if w is not None]
    for work in works:
        work["aliases"] = list(work.get("aliases") or [])
    return version, works


def _keyset(after: tuple[int, str] | None) -> dict[str, Any]:
    return {"afterAt": after[0] if after else None, "afterId": after[1] if after else None}


async def works_page(
    db: GraphDriver, holder_id: str, after: tuple[int, str] | None, limit: int
) -> list[dict]:
    """Up to `limit` of the holder's entries after the (createdAt, id) keyset, newest first."""
    params = {"holderId": holder_id, "limit": limit, **_keyset(after)}
    return [_work(row["work"]) for row in await db.read(WORKS_PAGE, params)]


async def licensed_page(
    db: GraphDriver, user_id: str, after: tuple[int, str] | None, limit: int
) -> list[dict]:
    """Up to `limit` entries licensed to the user or to everyone, newest first."""
    params = {"userId": user_id, "limit": limit, **_keyset(after)}
    return [_work(row["work"]) for row in await db.read(LICENSED_PAGE, params)]


async def licensees_page(
    db: GraphDriver, work_id: str, after: tuple[int, str] | None, limit: int
) -> list[Row]:
    """Up to `limit` {id, at} of the users the entry is licensed to, latest first."""
    params = {"id": work_id, "limit": limit, **_keyset(after)}
    return list(await db.read(LICENSEES_PAGE, params))
