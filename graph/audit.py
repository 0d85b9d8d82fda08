"""The tamper-evident audit log: every consent and moderation decision, hash-chained.

Each `(:AuditEntry)` holds `body`, the canonical JSON of what is chained (format version,
seq, the previous entry's hash, when, what, who, on what, the hash of why, which clip and
cameo, details), and `hash` = sha256(body). Entry n's body names entry n-1's hash, so any
edit or deletion of an entry breaks the chain from there on; the queryable copies beside the
body (seq, action, actor, clipId...) must agree with it, and the single `(:AuditHead)` names
the last entry's seq and hash (so dropping the newest entry is seen too). `verify` checks it
all.

Appending without forking the chain, from any number of API processes: the hash is computed
here, in Python, from the head read just before; the write is ONE statement that locks the
head (`SET h._lock`: on Neo4j that takes its write lock before the guard reads it; FalkorDB
runs writes one at a time), creates the entry only while the head still names the seq and
hash that were read (compare-and-set), and moves the head. A writer that lost the race wrote
nothing and tries again from the new head. Cypher has no sha256, which is why the hash is not
computed inside the statement.

Personal data stays out of the chained bytes, so that erasing it never breaks the chain:
- who: users (the actor, and a subject that is a user) are chained as pseudonyms, random
  per user, mapped to the user by `(:AuditPseudonym {userId, pseudonym})`, stored apart;
- why: free text is stored beside the entry (`reason`, with a random `reasonSalt`), and only
  sha256(salt + text) is chained: without the salt the hash says nothing about the text.
`forget_user` deletes a user's mapping and the text of the entries they wrote: every entry
still verifies, and none can be tied to them any more. `details` must hold facts without
personal data (roles, ids of grants, report reasons), as callers are told.

A decision is written first and appended after: the two are separate writes. If the append
fails (after CAS retries), the caller logs it (resolvers.audit.record); the decision stands.
An operator can anchor the head hash `verify` prints somewhere else: the chain proves that
nothing before an anchored head was changed since, which is as far as a log inside the same
database can go against someone holding write access to it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ulid import ULID

from graph.driver import Cypher, GraphDriver, Row

__all__ = [
    "GENESIS",
    "AuditContention",
    "Verification",
    "append",
    "entries_page",
    "forget_user",
    "verify",
]

FORMAT = 1
GENESIS = "0" * 64  # the "previous hash" of the first entry
_ATTEMPTS = 200  # compare-and-set tries of one append; each loses only to another append
_VERIFY_BATCH = 1000

# the actor's pseudonym, and the subject's when it is a user; made on first use
PSEUDONYMS = Cypher(
    """
UNWIND $users AS user
OPTIONAL MATCH (u:User {id: user.id})
WITH user, u
WHERE u IS NOT NULL OR user.actor
MERGE (p:AuditPseudonym {userId: user.id})
ON CREATE SET p.pseudonym = user.fresh, p.createdAt = $now
RETURN user.id AS userId, p.pseudonym AS pseudonym
"""
)

# the chain's head, made (seq 0, GENESIS) with the first append
HEAD = Cypher(
    """
MERGE (h:AuditHead {id: 'audit'})
ON CREATE SET h.seq = 0, h.hash = $genesis
RETURN h.seq AS seq, h.hash AS hash
"""
)

# compare-and-set: the entry is created, and the head moved, only while the head is still
# the one the hash was computed from (locked first, so the guard reads it under its lock)
APPEND = Cypher(
    """
MATCH (h:AuditHead {id: 'audit'})
SET h._lock = true REMOVE h._lock
WITH h
WHERE h.seq = $prevSeq AND h.hash = $prevHash
CREATE (e:AuditEntry {id: $id, seq: $seq, prevHash: $prevHash, hash: $hash, body: $body,
                      at: $at, action: $action, actor: $actor, subject: $subject,
                      clipId: $clipId, cameoId: $cameoId, reason: $reason,
                      reasonSalt: $reasonSalt})
SET h.seq = $seq, h.hash = $hash
RETURN e.id AS id
"""
)

# entries by seq, oldest first, for verify
CHAIN_BATCH = Cypher(
    """
MATCH (e:AuditEntry)
WHERE e.seq > $afterSeq
RETURN e {.*} AS entry
ORDER BY e.seq ASC
LIMIT $limit
"""
)

CHAIN_HEADS = Cypher(
    """
MATCH (h:AuditHead)
RETURN h.id AS id, h.seq AS seq, h.hash AS hash
"""
)

CHAIN_SIZE = Cypher(
    """
MATCH (e:AuditEntry)
RETURN count(e) AS entries
"""
)

_ENTRY = """e {.id, .seq, .hash, .prevHash, .at, .action, .clipId, .cameoId, .reason,
           .reasonErasedAt} AS entry"""

# everything, or one clip's or one cameo's entries, newest first (keyset on seq); the actor
# mapped back to a user while their mapping exists
PAGE_ALL = Cypher(
    """
MATCH (e:AuditEntry)
WHERE ($clipId IS NULL OR e.clipId = $clipId) AND ($cameoId IS NULL OR e.cameoId = $cameoId)
  AND ($afterSeq IS NULL OR e.seq < $afterSeq)
WITH e
ORDER BY e.seq DESC
LIMIT $limit
OPTIONAL MATCH (p:AuditPseudonym {pseudonym: e.actor})
RETURN """
    + _ENTRY
    + """, p.userId AS actorId
"""
)

# the entries about a user's own clips (every state) and own cameo, newest first
PAGE_OF_USER = Cypher(
    """
MATCH (u:User {id: $userId})
OPTIONAL MATCH (u)-[:POSTED]->(c:Clip)
WITH u, collect(c.id) AS clipIds
OPTIONAL MATCH (u)-[:OWNS]->(m:Cameo)
WITH clipIds, collect(m.id) AS cameoIds
MATCH (e:AuditEntry)
WHERE (e.clipId IN clipIds OR e.cameoId IN cameoIds)
  AND ($clipId IS NULL OR e.clipId = $clipId) AND ($cameoId IS NULL OR e.cameoId = $cameoId)
  AND ($afterSeq IS NULL OR e.seq < $afterSeq)
WITH e
ORDER BY e.seq DESC
LIMIT $limit
RETURN """
    + _ENTRY
    + """, null AS actorId
"""
)

# erasure: the user's mapping goes, and the text of every entry they wrote (its salt with
# it); the chained bytes are untouched, so the chain still verifies
FORGET_USER = Cypher(
    """
MATCH (p:AuditPseudonym {userId: $userId})
OPTIONAL MATCH (e:AuditEntry {actor: p.pseudonym})
WITH p, [x IN collect(e) WHERE x.reason IS NOT NULL] AS written
FOREACH (x IN written | SET x.reason = null, x.reasonSalt = null, x.reasonErasedAt = $now)
WITH p, size(written) AS erased
DELETE p
RETURN count(*) AS mappings, sum(erased) AS erased
"""
)


class AuditContention(Exception):
    """An append lost the compare-and-set every time it tried (nothing was written)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def canonical(body: dict[str, Any]) -> str:
    """The chained bytes (as text): sorted keys, no spaces, ASCII only."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def reason_hash(salt: str, reason: str) -> str:
    return sha256_hex(salt + "\n" + reason)


async def _pseudonyms(
    db: GraphDriver, actor_id: str | None, subject: str, now: int
) -> tuple[str | None, str]:
    """(the actor's pseudonym, the subject as chained: a user's pseudonym, else as given)."""
    users = []
    if actor_id is not None:
        users.append({"id": actor_id, "actor": True, "fresh": "p_" + secrets.token_hex(12)})
    if subject != actor_id:
        users.append({"id": subject, "actor": False, "fresh": "p_" + secrets.token_hex(12)})
    rows = await db.write(PSEUDONYMS, {"users": users, "now": now})
    found = {row["userId"]: row["pseudonym"] for row in rows}
    actor = found.get(actor_id) if actor_id is not None else None
    return actor, found.get(subject, subject)


async def append(
    db: GraphDriver,
    *,
    actor_id: str | None,
    action: str,
    subject: str,
    reason: str | None = None,
    clip_id: str | None = None,
    cameo_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one decision: who (`actor_id`, a user id; None for the system), what
    (`action`, e.g. "registry.rights_holder.add", "report.take_down"), on what (`subject`,
    an id), why (`reason`), which clip or cameo it concerns (for who may read it), and
    other facts without personal data (`details`). When is taken here."""
    at = _now_ms()
    actor, chained_subject = await _pseudonyms(db, actor_id, subject, at)
    salt = secrets.token_hex(16) if reason is not None else None
    fields = {
        "v": FORMAT,
        "at": at,
        "action": action,
        "actor": actor,
        "subject": chained_subject,
        "reasonHash": reason_hash(salt, reason)
        if salt is not None and reason is not None
        else None,
        "clipId": clip_id,
        "cameoId": cameo_id,
        "details": details or {},
    }
    entry_id = str(ULID())
    for _ in range(_ATTEMPTS):
        head = (await db.write(HEAD, {"genesis": GENESIS}))[0]
        seq = int(head["seq"]) + 1
        body = canonical({**fields, "seq": seq, "prev": head["hash"]})
        params = {
            "id": entry_id,
            "prevSeq": int(head["seq"]),
            "prevHash": head["hash"],
            "seq": seq,
            "hash": sha256_hex(body),
            "body": body,
            "at": at,
            "action": action,
            "actor": actor,
            "subject": chained_subject,
            "clipId": clip_id,
            "cameoId": cameo_id,
            "reason": reason,
            "reasonSalt": salt,
        }
        if await db.write(APPEND, params):
            return None
    raise AuditContention(f"could not append {action!r} to the audit log: too many racing appends")


async def forget_user(db: GraphDriver, user_id: str) -> int:
    """Erase the user from the log: their pseudonym's mapping, and the free text of the
    entries they wrote. The chain still verifies. Returns how many texts were erased."""
    rows = await db.write(FORGET_USER, {"userId": user_id, "now": _now_ms()})
    return int(rows[0]["erased"] or 0) if rows else 0


async def entries_page(
    db: GraphDriver,
    *,
    user_id: str | None,
    clip_id: str | None,
    cameo_id: str | None,
    after_seq: int | None,
    limit: int,
) -> list[Row]:
    """Entries newest first, after seq `after_seq`: all of them (user_id None: a moderator's
    view), or those about user_id's own clips and cameo; narrowed to a clip or cameo.
    Rows are {entry, actorId} (actorId: None for a user's view, or after erasure)."""
    params = {"clipId": clip_id, "cameoId": cameo_id, "afterSeq": after_seq, "limit": limit}
    if user_id is None:
        rows = await db.read(PAGE_ALL, params)
    else:
        rows = await db.read(PAGE_OF_USER, {**params, "userId": user_id})
    # the OPTIONAL MATCH after the LIMIT need not keep the order on every engine
    return sorted(rows, key=lambda row: row["entry"]["seq"], reverse=True)


@dataclass(frozen=True)
class Verification:
    """What `verify` found: `entries` checked, and the first break (`broken_seq`, the seq
    of the first entry that does not verify, or of the head; None when intact)."""

    entries: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


async def _chain(db: GraphDriver) -> AsyncIterator[Row]:
    after = 0
    while True:
        rows = await db.read(CHAIN_BATCH, {"afterSeq": after, "limit": _VERIFY_BATCH})
        for row in rows:
            yield row["entry"]
        if len(rows) < _VERIFY_BATCH:
            return
        after = rows[-1]["entry"]["seq"]


_COPIES = {  # property beside the body -> its key in the body
    "seq": "seq",
    "prevHash": "prev",
    "at": "at",
    "action": "action",
    "actor": "actor",
    "subject": "subject",
    "clipId": "clipId",
    "cameoId": "cameoId",
}


def _entry_problem(entry: Row, seq: int, prev: str) -> str | None:
    """Why this entry (expected at `seq`, after hash `prev`) does not verify; None if it does."""
    if entry.get("seq") != seq:
        return f"entry {seq} is missing (found seq {entry.get('seq')} next)"
    body_text = entry.get("body")
    if not isinstance(body_text, str) or sha256_hex(body_text) != entry.get("hash"):
        return f"entry {seq}'s hash does not match its contents"
    try:
        body = json.loads(body_text)
    except ValueError:
        return f"entry {seq}'s body is not JSON"
    if not isinstance(body, dict) or body.get("v") != FORMAT:
        return f"entry {seq}'s body is not an audit entry"
    if body.get("prev") != prev:
        return f"entry {seq} does not name the hash of the entry before it"
    for prop, key in _COPIES.items():
        if entry.get(prop) != body.get(key):
            return f"entry {seq}'s {prop} differs from what was chained"
    reason, salt = entry.get("reason"), entry.get("reasonSalt")
    if reason is not None and (salt is None or reason_hash(salt, reason) != body.get("reasonHash")):
        return f"entry {seq}'s reason differs from what was chained"
    return None


async def verify(db: GraphDriver) -> Verification:
    """Walk the chain from the first entry: contiguous seqs, each hash recomputed, each entry
    naming its predecessor's hash, the copies beside the body and the kept reasons agreeing
    with it, and one head naming the last entry. Stops at the first break."""
    heads = await db.read(CHAIN_HEADS)
    head = heads[0] if len(heads) == 1 else None
    head_seq = int(head["seq"]) if head else 0
    head_hash = head["hash"] if head else GENESIS
    seq, prev = 0, GENESIS
    async for entry in _chain(db):
        seq += 1
        problem = _entry_problem(entry, seq, prev)
        if problem is not None:
            return Verification(seq - 1, head_seq, head_hash, seq, problem)
        prev = entry["hash"]
    total = (await db.read(CHAIN_SIZE))[0]["entries"]
    if total != seq:
        return Verification(
            seq, head_seq, head_hash, seq + 1, "entries share a seq: the chain forked"
        )
    if len(heads) > 1:
        return Verification(seq, head_seq, head_hash, seq + 1, "the log has more than one head")
    if (head is None and seq > 0) or (head is not None and (head_seq, head_hash) != (seq, prev)):
        missing = "is missing" if head is None else f"names entry {head_seq}, not {seq}"
        return Verification(seq, head_seq, head_hash, seq + 1, f"the log's head {missing}")
    return Verification(seq, head_seq, head_hash)
