"""Trusted documents: the GraphQL documents an operator ships with their client (a persisted
documents manifest, `reelgraph documents add`), the only ones that run when
REELGRAPH_DOCUMENTS=trusted (transport/persisted.py serves them by id).

`(:TrustedDocument {id, sha256, body, name, type, source, addedAt, batch})`: `id` is the
manifest's id for the document, a hex digest of `body` (SHA-256 for Apollo's manifest and
most codegen output, MD5 or SHA-1 for some Relay and codegen settings), checked before it is
stored; `sha256` is always the body's SHA-256, which Apollo's persisted-query link sends.
The graph is their store, not Redis: they must survive a Redis flush (Redis only caches the
automatic persisted queries clients register themselves, which they send again).
"""

from __future__ import annotations

from graph.driver import Cypher, GraphDriver, Row

__all__ = ["add_documents", "documents_page", "remove_documents", "trusted_document"]

# one file's documents, all in one statement: a manifest is stored whole or not at all; an
# id already trusted keeps its entry (the same id is the same body)
ADD_TRUSTED_DOCUMENTS = Cypher(
    """
UNWIND $documents AS d
MERGE (t:TrustedDocument {id: d.id})
ON CREATE SET t.sha256 = d.sha256, t.body = d.body, t.name = d.name, t.type = d.type,
              t.source = $source, t.addedAt = $now, t.batch = $batch
RETURN t.id AS id, t.batch = $batch AS created
"""
)

# the body of the document with this id, or whose body has this SHA-256
TRUSTED_DOCUMENT = Cypher(
    """
MATCH (t:TrustedDocument)
WHERE t.id = $key OR t.sha256 = $key
RETURN t.body AS body
LIMIT 1
"""
)

# the documents oldest first, after the (addedAt, id) keyset
TRUSTED_DOCUMENTS_PAGE = Cypher(
    """
MATCH (t:TrustedDocument)
WHERE $afterAt IS NULL OR t.addedAt > $afterAt OR (t.addedAt = $afterAt AND t.id > $afterId)
RETURN t {.id, .sha256, .name, .type, .source, .addedAt} AS document
ORDER BY document.addedAt, document.id
LIMIT $limit
"""
)

# the documents with these ids (or body hashes), deleted
REMOVE_TRUSTED_DOCUMENTS = Cypher(
    """
MATCH (t:TrustedDocument)
WHERE t.id IN $keys OR t.sha256 IN $keys
WITH t, t {.id, .sha256, .name, .type} AS document
DELETE t
RETURN document
"""
)


async def add_documents(
    db: GraphDriver, documents: list[Row], *, source: str, now: int, batch: str
) -> list[Row]:
    """Store `documents` ({id, sha256, body, name, type}) in one statement; [{id, created}]."""
    params = {"documents": documents, "source": source, "now": now, "batch": batch}
    return await db.write(ADD_TRUSTED_DOCUMENTS, params)


async def trusted_document(db: GraphDriver, key: str) -> str | None:
    """The body of the trusted document whose id (or SHA-256) is `key`, or None."""
    rows = await db.read(TRUSTED_DOCUMENT, {"key": key})
    return rows[0]["body"] if rows else None


async def documents_page(
    db: GraphDriver, after: tuple[int, str] | None, limit: int = 500
) -> list[Row]:
    """Up to `limit` documents ({id, sha256, name, type, source, addedAt}) after the keyset."""
    after_at, after_id = after if after is not None else (None, None)
    params = {"afterAt": after_at, "afterId": after_id, "limit": limit}
    return [row["document"] for row in await db.read(TRUSTED_DOCUMENTS_PAGE, params)]


async def remove_documents(db: GraphDriver, keys: list[str]) -> list[Row]:
    """The documents removed ({id, sha256, name, type}); none when no key matched."""
    return [row["document"] for row in await db.write(REMOVE_TRUSTED_DOCUMENTS, {"keys": keys})]
