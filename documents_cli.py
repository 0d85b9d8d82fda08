"""`reelgraph documents add FILE... | list | remove ID...`: the trusted documents, the
manifest of GraphQL documents an operator ships with their client. With
REELGRAPH_DOCUMENTS=trusted they are the only documents the API runs (transport/persisted.py).

A manifest is one of:
- `{"<id>": "<document>", ...}`: what `@graphql-codegen/client-preset` writes for persisted
  documents (persisted-documents.json) and Relay's compiler writes (persisted_queries.json);
- Apollo's persisted query manifest (`@apollo/generate-persisted-query-manifest`):
  `{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id", "name",
  "type", "body"}, ...]}`.

Each id must be the hex SHA-256 (or SHA-1 or MD5, which some codegen and Relay settings use)
of its document, and each document must pass what the API checks before it runs a document
(syntax, the document limits, validation against this server's schema). A file with one
document that does not is refused whole, naming each problem: nothing of it is stored. The
documents of a file are stored in the graph in one statement, and each change is appended to
the audit log. Running API processes serve a new document at once, and stop serving a
removed one within transport/persisted.py's TRUSTED_RECHECK_S.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from settings import Settings

__all__ = ["ManifestError", "add_parsers", "documents", "read_manifest"]

APOLLO_FORMAT = "apollo-persisted-query-manifest"
_TYPES = ("query", "mutation", "subscription")


class ManifestError(Exception):
    """A manifest file that cannot be read as one of the formats."""


def add_parsers(sub: Any) -> None:
    """The `documents` command and its actions, under the main parser's subcommands."""
    docs = sub.add_parser("documents", help="trusted documents: add a client's manifest, list")
    actions = docs.add_subparsers(dest="documents_command", required=True)
    add = actions.add_parser(
        "add", help="trust every document of persisted-document manifests (JSON)"
    )
    add.add_argument("files", metavar="FILE", nargs="+", type=Path)
    listed = actions.add_parser("list", help="the trusted documents, oldest first")
    remove = actions.add_parser("remove", help="stop trusting documents, by id (or SHA-256)")
    remove.add_argument("ids", metavar="ID", nargs="+")
    for cmd in (add, listed, remove):
        cmd.add_argument("--data-dir", dest="data_dir")


def read_manifest(text: str) -> list[dict[str, Any]]:
    """The entries of a manifest: [{id, body, name, type}] (name and type None when the
    format has none); ManifestError when it is none of the formats."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ManifestError("not a manifest: expected a JSON object")
    if data.get("format") == APOLLO_FORMAT:
        if data.get("version") != 1:
            raise ManifestError(f"unsupported {APOLLO_FORMAT} version {data.get('version')!r}")
        operations = data.get("operations")
        if not isinstance(operations, list):
            raise ManifestError("`operations` must be a list")
        entries = []
        for n, op in enumerate(operations):
            if not isinstance(op, dict) or not all(
                isinstance(op.get(k), str) for k in ("id", "body")
            ):
                raise ManifestError(f"operation {n} needs a string `id` and `body`")
            name, kind = op.get("name"), op.get("type")
            entries.append(
                {
                    "id": op["id"],
                    "body": op["body"],
                    "name": name if isinstance(name, str) else None,
                    "type": kind if kind in _TYPES else None,
                }
            )
        return entries
    if not data or not all(isinstance(v, str) for v in data.values()):
        raise ManifestError(
            'not a manifest: expected {"<id>": "<document>", ...} or '
            f'{{"format": "{APOLLO_FORMAT}", ...}}'
        )
    return [{"id": k, "body": v, "name": None, "type": None} for k, v in data.items()]


def _operation(body: str) -> tuple[str | None, str | None]:
    """(name, type) of the document's first operation."""
    from graphql import OperationDefinitionNode, parse

    for definition in parse(body).definitions:
        if isinstance(definition, OperationDefinitionNode):
            name = definition.name.value if definition.name else None
            return name, definition.operation.value
    return None, None


def check_manifest(schema: Any, entries: list[dict[str, Any]]) -> tuple[list, list[str]]:
    """(the documents to store, the problems): each id must be its document's digest, each
    document short enough and one the API would run."""
    from schema.extensions import MAX_CACHED_TEXT, document_problems
    from transport.persisted import digest_for, normalize_id

    stored: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        given, body = entry["id"], entry["body"]
        label = f"document {given[:80]!r}" + (f" ({entry['name']})" if entry["name"] else "")
        key = normalize_id(given)
        if key is None:
            problems.append(f"{label}: the id is not a hex SHA-256 (or SHA-1, MD5) digest")
            continue
        if digest_for(key, body) != key:
            problems.append(f"{label}: the id is not the digest of its document")
            continue
        if len(body) > MAX_CACHED_TEXT:
            problems.append(f"{label}: longer than {MAX_CACHED_TEXT} characters")
            continue
        refused = document_problems(schema, body)
        if refused:
            problems.append(f"{label}: {'; '.join(refused)}")
            continue
        if key in seen:
            continue
        seen.add(key)
        name, kind = _operation(body)
        stored.append(
            {
                "id": key,
                "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
                "body": body,
                "name": entry["name"] or name,
                "type": entry["type"] or kind,
            }
        )
    return stored, problems


def _schema(settings: Settings) -> Any:
    """The API's schema with the settings' document limits, to check documents against."""
    from schema import build_schema

    return build_schema(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_fields=settings.max_fields,
        max_same_name_fields=settings.max_same_name_fields,
    )


def documents(settings: Settings, args: argparse.Namespace) -> int:
    if args.documents_command == "add":
        return add(settings, args.files)
    if args.documents_command == "list":
        return list_documents(settings)
    return remove(settings, args.ids)


def add(settings: Settings, files: list[Path]) -> int:
    """Trust every document of each file; a file with a problem is refused whole (1)."""
    from cli import _on_graph
    from graph import audit as audit_repo
    from graph import documents as document_repo

    schema = _schema(settings)
    checked: list[tuple[Path, str, list[dict[str, Any]]]] = []
    failed = False
    for path in files:
        try:
            raw = path.read_bytes()
            entries = read_manifest(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, ManifestError) as exc:
            print(f"reelgraph: {path}: {exc}; nothing of it was stored", file=sys.stderr)
            failed = True
            continue
        stored, problems = check_manifest(schema, entries)
        if problems:
            for problem in problems:
                print(f"reelgraph: {path}: {problem}", file=sys.stderr)
            print(f"reelgraph: {path}: refused, nothing of it was stored", file=sys.stderr)
            failed = True
            continue
        checked.append((path, hashlib.sha256(raw).hexdigest(), stored))
    if not checked:
        return 1

    async def store(db: Any) -> list[tuple[Path, int, int]]:
        done = []
        for path, fingerprint, stored in checked:
            batch = secrets.token_hex(8)
            rows = await document_repo.add_documents(
                db, stored, source=path.name, now=int(time.time() * 1000), batch=batch
            )
            added = sum(1 for row in rows if row["created"])
            await audit_repo.append(  # the operator at the command line: no user acted
                db,
                actor_id=None,
                action="documents.trust",
                subject=fingerprint,
                details={"source": path.name, "documents": len(stored), "added": added},
            )
            done.append((path, len(stored), added))
        return done

    opened, done = _on_graph(settings, store)
    if not opened:
        return 1
    for path, count, added in done:
        print(f"{path}: {count} document(s) trusted ({added} new, {count - added} already)")
    return 1 if failed else 0


def list_documents(settings: Settings) -> int:
    """Every trusted document, oldest first: id, operation name, type, source file, added."""
    from cli import _iso_ms, _on_graph
    from graph import documents as document_repo

    async def read(db: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = None
        while True:
            page = await document_repo.documents_page(db, after)
            found.extend(page)
            if len(page) < 500:
                return found
            after = (page[-1]["addedAt"], page[-1]["id"])

    opened, found = _on_graph(settings, read)
    if not opened:
        return 1
    for doc in found:
        print(
            f"{doc['id']}\t{doc['name'] or '-'}\t{doc['type'] or '-'}\t{doc['source']}"
            f"\tadded {_iso_ms(doc['addedAt'])}"
        )
    print(f"{len(found)} trusted document(s)", file=sys.stderr)
    return 0


def remove(settings: Settings, ids: list[str]) -> int:
    """Stop trusting the documents with these ids (or SHA-256s); 1 when one matched none."""
    from cli import _on_graph
    from graph import audit as audit_repo
    from graph import documents as document_repo
    from transport.persisted import normalize_id

    keys = [normalize_id(given) for given in ids]
    bad = [given for given, key in zip(ids, keys, strict=True) if key is None]
    if bad:
        for given in bad:
            print(f"reelgraph: {given!r} is not a document id (hex digest)", file=sys.stderr)
        return 1

    async def drop(db: Any) -> list[dict[str, Any]]:
        removed = await document_repo.remove_documents(db, keys)
        for doc in removed:
            await audit_repo.append(
                db,
                actor_id=None,
                action="documents.remove",
                subject=doc["id"],
                details={"name": doc["name"], "type": doc["type"]},
            )
        return removed

    opened, removed = _on_graph(settings, drop)
    if not opened:
        return 1
    matched = {doc["id"] for doc in removed} | {doc["sha256"] for doc in removed}
    for doc in removed:
        print(f"removed {doc['id']} ({doc['name'] or '-'})")
    missing = [given for given, key in zip(ids, keys, strict=True) if key not in matched]
    for given in missing:
        print(f"reelgraph: no trusted document {given}", file=sys.stderr)
    return 1 if missing else 0
