"""Persisted operations: documents a client names by id instead of sending their text.

A request names a document by `extensions.persistedQuery` (`{"version": 1, "sha256Hash":
"<hex>"}`, Apollo's automatic persisted queries, which Apollo Client, urql and Relay send)
or by a top-level `documentId` (`sha256:<hex>` or a manifest's id, the GraphQL-over-HTTP
persisted documents draft), over HTTP (POST body, or GET's query string) and over the
websocket (the subscribe payload). Two kinds of documents answer to an id:

- automatic persisted queries (APQ): a request with the text and its hash registers it,
  once it has run (it parsed, validated and passed every document limit); a request with the
  hash alone then runs it. An unknown hash is answered `PersistedQueryNotFound` /
  PERSISTED_QUERY_NOT_FOUND with HTTP 200 (as Apollo Server does), and the client sends the
  text with the hash. They are kept in Redis, shared by every API process, and bounded: at
  most APQ_MAX_DOCUMENTS, each forgotten APQ_TTL_S after its last use (or sooner, least
  recently used first, past the cap), none longer than MAX_CACHED_TEXT characters (a longer
  document runs, unregistered). Redis is a cache here: a document it lost is registered
  again by the client's next request.
- trusted documents: the manifest an operator ships with the client (`reelgraph documents
  add`, documents_cli.py), validated before they are stored, in the graph
  (graph/documents.py): they must survive a Redis flush.

REELGRAPH_DOCUMENTS picks what runs:
- `any` (the default): any document: text, APQ, trusted ids;
- `trusted`: only trusted documents, named by id (or sent as text whose SHA-256 is a trusted
  document's); any other document, text or an APQ registration, is refused FORBIDDEN.

A persisted document runs as its text would: every check applies to it on every request
(the limits, the introspection gate, the operation type: a mutation over GET is refused).
Each process keeps the text of the documents it served by id, so a warm persisted request
costs no round trip, and the parsed and validated document is cached by its text
(schema/extensions.py's DocumentGate). A trusted document a process holds is looked up again
after TRUSTED_RECHECK_S in trusted mode, so a removal reaches every process within that.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from errors import BadUserInput, ClientError, Forbidden, ServiceUnavailable
from graph import documents as document_repo
from graph.driver import GraphUnavailable
from schema.extensions import MAX_CACHED_TEXT

__all__ = [
    "APQ_MAX_DOCUMENTS",
    "APQ_TTL_S",
    "MODES",
    "NOT_FOUND_CACHE_CONTROL",
    "TRUSTED_ONLY",
    "PersistedDocuments",
    "PersistedQueryNotFound",
    "Resolved",
    "digest_for",
    "normalize_id",
    "requested_id",
]

logger = logging.getLogger("reelgraph.documents")

MODES = ("any", "trusted")
APQ_MAX_DOCUMENTS = 4096  # with MAX_CACHED_TEXT, at most about 80 MB of Redis
APQ_TTL_S = 7 * 24 * 3600
TRUSTED_RECHECK_S = 10.0
LOCAL_CACHE_SIZE = 2048
NOT_FOUND_CACHE_CONTROL = "private, no-cache, must-revalidate"  # as Apollo Server answers
TRUSTED_ONLY = (
    "this server runs only its trusted documents: send the id of a document from the "
    "client's manifest (extensions.persistedQuery.sha256Hash or documentId)"
)

_DOCUMENTS_KEY = "reelgraph:{apq}:documents"  # hash: sha256 -> text
_USED_KEY = "reelgraph:{apq}:used"  # sorted set: sha256 scored by its last use (µs)
_HEX_ID = re.compile(r"(?:(sha256|sha1|md5):)?([0-9a-fA-F]{64}|[0-9a-fA-F]{40}|[0-9a-fA-F]{32})")
_DIGESTS = {64: "sha256", 40: "sha1", 32: "md5"}

# KEYS: documents, used. ARGV: sha256, text, ttl µs, cap. Registers the document, forgets
# the lapsed ones (a few per call) and, past the cap, the least recently used.
_REGISTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]),
                          'LIMIT', 0, 64)
for _, sha in ipairs(lapsed) do
  redis.call('HDEL', KEYS[1], sha)
  redis.call('ZREM', KEYS[2], sha)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #oldest, 2 do redis.call('HDEL', KEYS[1], oldest[i]) end
end
return 1
"""

# KEYS: documents, used. ARGV: sha256, ttl µs. The text, its use recorded; nil when unknown
# or lapsed.
_LOOKUP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local used = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not used or tonumber(used) < now - tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return false
end
local text = redis.call('HGET', KEYS[1], ARGV[1])
if text then redis.call('ZADD', KEYS[2], now, ARGV[1]) end
return text
"""


class PersistedQueryNotFound(ClientError):
    """The hash names no document this server holds: the client sends the text with it.
    The message is the one Apollo Client, urql and Relay look for."""

    code = "PERSISTED_QUERY_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("PersistedQueryNotFound")


def digest_for(document_id: str, text: str) -> str:
    """The hex digest of `text` by the algorithm `document_id`'s length says."""
    algorithm = _DIGESTS[len(document_id)]
    return hashlib.new(algorithm, text.encode("utf-8")).hexdigest()


def normalize_id(value: object) -> str | None:
    """A document id as stored: lower-case hex, any `sha256:` (`sha1:`, `md5:`) prefix off;
    None when it is no such id (or the prefix names another length)."""
    if not isinstance(value, str):
        return None
    match = _HEX_ID.fullmatch(value.strip())
    if match is None:
        return None
    algorithm, digest = match.groups()
    if algorithm is not None and _DIGESTS[len(digest)] != algorithm:
        return None
    return digest.lower()


def requested_id(extensions: Any, document_id: Any) -> str | None:
    """The id a request names its document by, or None; BadUserInput when it is malformed."""
    key = None
    persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
    if persisted is not None:
        if not isinstance(persisted, dict):
            raise BadUserInput(
                '`extensions.persistedQuery` must be an object: {"version": 1, "sha256Hash": ...}'
            )
        if persisted.get("version") != 1:
            raise BadUserInput("unsupported persisted query version: send version 1")
        sha = persisted.get("sha256Hash")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
            raise BadUserInput(
                "`extensions.persistedQuery.sha256Hash` must be the document's SHA-256 in hex"
            )
        key = sha.lower()
    if document_id is not None:
        named = normalize_id(document_id)
        if named is None:
            raise BadUserInput(
                "`documentId` must name a document: sha256:<hex>, or its id in the manifest"
            )
        if key is not None and named != key:
            raise BadUserInput("`documentId` and `extensions.persistedQuery` name two documents")
        key = named
    return key


@dataclass(frozen=True)
class Resolved:
    """What a request runs: `query` (None: it sent nothing to run), and the SHA-256 to
    register the text under once it has run (an APQ registration), if any."""

    query: str | None
    register: str | None = None


@dataclass
class _Held:
    text: str
    trusted: bool
    checked_at: float


class PersistedDocuments:
    """One API process's view of the persisted documents (see the module's doc)."""

    def __init__(self, mode: str = "any", cache_size: int = LOCAL_CACHE_SIZE) -> None:
        if mode not in MODES:
            raise ValueError(f"REELGRAPH_DOCUMENTS must be one of {', '.join(MODES)}")
        self.mode = mode
        self.cache_size = cache_size
        self.held: OrderedDict[str, _Held] = OrderedDict()
        self.ttl_us = APQ_TTL_S * 1_000_000
        self.max_documents = APQ_MAX_DOCUMENTS
        self.recheck_s = TRUSTED_RECHECK_S
        self.documents_key, self.used_key = _DOCUMENTS_KEY, _USED_KEY

    @property
    def trusted_only(self) -> bool:
        return self.mode == "trusted"

    async def resolve(
        self, services: Any, query: str | None, extensions: Any, document_id: Any
    ) -> Resolved:
        """The text this request runs; a ClientError when it may not run or names no
        document this server holds (PersistedQueryNotFound)."""
        key = requested_id(extensions, document_id)
        if key is None:
            if query is not None and self.trusted_only:
                sha = hashlib.sha256(query.encode("utf-8")).hexdigest()
                if not await self._trusted(services, sha):
                    raise Forbidden(TRUSTED_ONLY)
            return Resolved(query)
        if query is not None:
            if digest_for(key, query) != key:
                raise BadUserInput("provided sha does not match query")
            if self.trusted_only:
                if not await self._trusted(services, key):
                    raise Forbidden(TRUSTED_ONLY)
                return Resolved(query)
            known = key in self.held
            apq = len(key) == 64 and len(query) <= MAX_CACHED_TEXT and not known
            return Resolved(query, key if apq else None)
        text = await self._lookup(services, key)
        if text is None:
            raise PersistedQueryNotFound()
        return Resolved(text)

    async def register(self, redis: Redis, sha: str, text: str) -> None:
        """Keep a document that has run under its SHA-256 (an APQ registration). A Redis
        that fails only costs the client its text again next time."""
        try:
            await redis.eval(
                _REGISTER,
                2,
                self.documents_key,
                self.used_key,
                sha,
                text,
                self.ttl_us,
                self.max_documents,
            )
        except RedisError:
            logger.warning("could not register a persisted query", exc_info=True)
            return
        self._hold(sha, text, trusted=False)

    def forget(self) -> None:
        """Drop what this process holds (the next request per id looks it up again)."""
        self.held.clear()

    async def _lookup(self, services: Any, key: str) -> str | None:
        held = self._held(key)
        if held is not None and (not self.trusted_only or (held.trusted and self._fresh(held))):
            return held.text
        if not self.trusted_only and len(key) == 64:
            text = await self._apq(services.redis, key)
            if text is not None:
                self._hold(key, text, trusted=False)
                return text
        return await self._trusted_text(services, key)

    async def _trusted(self, services: Any, key: str) -> bool:
        held = self._held(key)
        if held is not None and held.trusted and self._fresh(held):
            return True
        return await self._trusted_text(services, key) is not None

    async def _trusted_text(self, services: Any, key: str) -> str | None:
        try:
            text = await document_repo.trusted_document(services.graph, key)
        except GraphUnavailable as exc:
            raise ServiceUnavailable(
                "the graph is unavailable, so the persisted document could not be read: retry"
            ) from exc
        if text is None:
            if self.trusted_only:
                self.held.pop(key, None)  # removed from the trusted documents
            return None
        self._hold(key, text, trusted=True)
        return text

    async def _apq(self, redis: Redis, sha: str) -> str | None:
        try:
            return await redis.eval(_LOOKUP, 2, self.documents_key, self.used_key, sha, self.ttl_us)
        except RedisError:
            # answered as unknown: the client sends the text, which runs
            logger.warning("could not read a persisted query", exc_info=True)
            return None

    def _held(self, key: str) -> _Held | None:
        held = self.held.get(key)
        if held is not None:
            self.held.move_to_end(key)
        return held

    def _hold(self, key: str, text: str, *, trusted: bool) -> None:
        self.held[key] = _Held(text, trusted, time.monotonic())
        self.held.move_to_end(key)
        while len(self.held) > self.cache_size:
            self.held.popitem(last=False)

    def _fresh(self, held: _Held) -> bool:
        return time.monotonic() - held.checked_at < self.recheck_s
