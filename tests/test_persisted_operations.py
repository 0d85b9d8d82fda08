"""Persisted operations (transport/persisted.py): Apollo's automatic persisted queries over
POST and GET, trusted documents from a client's manifest (`reelgraph documents`), and
REELGRAPH_DOCUMENTS=trusted over HTTP and websockets; Apollo Client's own persisted-query
link (npm) against a real server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import redis.asyncio as aredis
from conftest import GraphQLClient, run_cli
from litestar.testing import AsyncTestClient
from test_subscriptions import Client, Server, serving

from errors import Forbidden
from server import build_app
from settings import Settings
from tests.npm_harness import ensure_installed
from transport.persisted import PersistedDocuments, PersistedQueryNotFound

CLIENT_DIR = Path(__file__).resolve().parent / "persisted_query_client"
RESPONSE_JSON = "application/graphql-response+json"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(text: str) -> dict:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}}


def unique(text: str = "query U{n} {{ __typename viewer {{ id }} }}") -> str:
    """A document no other test registered or trusted (its operation name is new)."""
    return text.format(n=secrets.token_hex(6))


async def post(client: Any, body: dict, token: str | None = None, **headers: str) -> Any:
    if token:
        headers["authorization"] = f"Bearer {token}"
    return await client.post("/graphql", json=body, headers=headers)


async def get(client: Any, params: dict, **headers: str) -> Any:
    query = {
        k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items() if v is not None
    }
    return await client.get("/graphql", params=query, headers=headers)


def only_error(response: Any) -> tuple[str, str]:
    (error,) = response.json()["errors"]
    return error["extensions"]["code"], error["message"]


async def test_apq_over_post_not_found_then_registered_then_served_by_hash(
    gql: GraphQLClient, redis: aredis.Redis
) -> None:
    account = await gql.sign_up("apq")
    client = gql.client
    text = unique("query Who{n}($handle: String!) {{ user(handle: $handle) {{ handle }} }}")
    hash_only = {"variables": {"handle": account.handle}, "extensions": persisted(text)}
    # unknown: 200 as Apollo Server answers, whatever the response type, never cached
    for accept in ("application/json", RESPONSE_JSON):
        response = await post(client, hash_only, accept=accept)
        assert response.status_code == 200, response.text
        assert only_error(response) == ("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")
        assert response.headers["cache-control"] == "private, no-cache, must-revalidate"
    # the text with its hash: runs, and registers it
    response = await post(client, {**hash_only, "query": text})
    assert response.json() == {"data": {"user": {"handle": account.handle}}}
    # the hash alone now runs it, on any process (each reads Redis once)
    response = await post(client, hash_only, accept=RESPONSE_JSON)
    assert response.status_code == 200
    assert response.json() == {"data": {"user": {"handle": account.handle}}}
    # kept in Redis, where every API process finds it
    assert await PersistedDocuments()._apq(redis, sha256(text)) == text
    # a top-level documentId (the GraphQL-over-HTTP draft) names it too
    response = await post(
        client, {"documentId": f"sha256:{sha256(text)}", "variables": hash_only["variables"]}
    )
    assert response.json() == {"data": {"user": {"handle": account.handle}}}


async def test_apq_over_get_and_mutations_stay_post_only(gql: GraphQLClient) -> None:
    account, other = await gql.sign_up("apqget"), await gql.sign_up("apqother")
    client = gql.client
    text = unique("query Get{n}($handle: String!) {{ user(handle: $handle) {{ handle }} }}")
    params = {
        "variables": {"handle": account.handle},
        "operationName": None,
        "extensions": persisted(text),
    }
    # a browser-like Accept must not get GraphiQL for a hash-only GET
    response = await get(client, params, accept="*/*")
    assert response.status_code == 200
    assert only_error(response)[0] == "PERSISTED_QUERY_NOT_FOUND"
    response = await get(client, {**params, "query": text})
    assert response.json() == {"data": {"user": {"handle": account.handle}}}
    response = await get(client, params, accept=RESPONSE_JSON)
    assert response.status_code == 200
    assert response.json() == {"data": {"user": {"handle": account.handle}}}
    # a mutation registered over POST is still refused over GET, and nothing is written
    mutation = unique("mutation F{n}($id: ID!) {{ follow(userId: $id) {{ handle }} }}")
    variables = {"id": other.id}
    response = await post(
        client,
        {"query": mutation, "variables": variables, "extensions": persisted(mutation)},
        account.token,
    )
    assert response.json() == {"data": {"follow": {"handle": other.handle}}}
    response = await client.get(
        "/graphql",
        params={"variables": json.dumps(variables), "extensions": json.dumps(persisted(mutation))},
        headers={"authorization": f"Bearer {account.token}"},
    )
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    response = await post(
        client, {"variables": variables, "extensions": persisted(mutation)}, account.token
    )
    assert response.json() == {"data": {"follow": {"handle": other.handle}}}


async def test_a_hash_that_does_not_match_is_refused_and_not_registered(
    gql: GraphQLClient,
) -> None:
    client = gql.client
    text = unique()
    wrong = {"persistedQuery": {"version": 1, "sha256Hash": sha256(text + " ")}}
    response = await post(client, {"query": text, "extensions": wrong})
    assert only_error(response) == ("BAD_USER_INPUT", "provided sha does not match query")
    response = await post(client, {"extensions": wrong})
    assert only_error(response)[0] == "PERSISTED_QUERY_NOT_FOUND"
    response = await post(client, {"extensions": persisted(text)})
    assert only_error(response)[0] == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"extensions": {"persistedQuery": "abc"}}, "must be an object"),
        ({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "a" * 64}}}, "version"),
        ({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "xyz"}}}, "SHA-256"),
        ({"documentId": "not-an-id"}, "`documentId` must name a document"),
        (
            {
                "documentId": "sha256:" + "a" * 64,
                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "b" * 64}},
            },
            "two documents",
        ),
    ],
)
async def test_malformed_persisted_requests(gql: GraphQLClient, body: dict, message: str) -> None:
    response = await post(gql.client, body, accept=RESPONSE_JSON)
    assert response.status_code == 400
    code, text = only_error(response)
    assert code == "BAD_USER_INPUT" and message in text, text


async def test_every_document_check_applies_to_persisted_documents(
    gql: GraphQLClient, settings: Settings
) -> None:
    client = gql.client
    # too deep: refused, and so never registered
    deep = "{ viewer { " + "followers { edges { node { " * 6 + "id" + " } } }" * 6 + " } }"
    response = await post(client, {"query": deep, "extensions": persisted(deep)})
    code, message = only_error(response)
    assert code == "BAD_USER_INPUT" and "depth" in message, message
    response = await post(client, {"extensions": persisted(deep)})
    assert only_error(response)[0] == "PERSISTED_QUERY_NOT_FOUND"
    # not valid against the schema: the same
    typo = unique("query T{n} {{ viewr {{ id }} }}")
    response = await post(client, {"query": typo, "extensions": persisted(typo)})
    assert "Cannot query field 'viewr'" in only_error(response)[1]
    response = await post(client, {"extensions": persisted(typo)})
    assert only_error(response)[0] == "PERSISTED_QUERY_NOT_FOUND"
    # the introspection gate is the reader's, on every request: registered by a signed-in
    # client, the same hash is refused to an anonymous one
    app = build_app(settings.model_copy(update={"introspection": "signed-in"}))
    async with AsyncTestClient(app=app) as guarded:
        insider = await GraphQLClient(guarded).sign_up("insider")
        text = unique("query I{n} {{ __schema {{ queryType {{ name }} }} }}")
        body = {"query": text, "extensions": persisted(text)}
        response = await post(guarded, body, insider.token)
        assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
        response = await post(guarded, {"extensions": persisted(text)}, insider.token)
        assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
        response = await post(guarded, {"extensions": persisted(text)})
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "introspection has been disabled" in error["message"]


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


def _apart(store: PersistedDocuments) -> PersistedDocuments:
    """A store on keys of its own, so its small bounds touch no other test's documents."""
    tag = secrets.token_hex(4)
    store.documents_key = f"reelgraph:{{apq-{tag}}}:documents"
    store.used_key = f"reelgraph:{{apq-{tag}}}:used"
    return store


async def test_the_apq_store_is_bounded(redis: aredis.Redis) -> None:
    store = _apart(PersistedDocuments())
    store.max_documents = 3
    texts = [unique() for _ in range(5)]
    for text in texts:
        await store.register(redis, sha256(text), text)
    reader = PersistedDocuments()  # another process: nothing held locally
    reader.documents_key, reader.used_key = store.documents_key, store.used_key
    found = [await reader._apq(redis, sha256(text)) for text in texts]
    assert found == [None, None, *texts[2:]]  # the least recently used went first
    assert await redis.hlen(store.documents_key) == 3
    # a document unused for longer than the TTL is forgotten when next asked for
    lapsed = texts[2]
    await redis.zadd(store.used_key, {sha256(lapsed): 1})
    assert await reader._apq(redis, sha256(lapsed)) is None
    assert not await redis.hexists(store.documents_key, sha256(lapsed))
    await redis.delete(store.documents_key, store.used_key)


async def test_a_long_document_runs_but_is_not_registered(gql: GraphQLClient) -> None:
    text = unique() + " " * 20_001  # padding is no token: it passes every limit
    response = await post(gql.client, {"query": text, "extensions": persisted(text)})
    assert response.json() == {"data": {"__typename": "Query", "viewer": None}}
    response = await post(gql.client, {"extensions": persisted(text)})
    assert only_error(response)[0] == "PERSISTED_QUERY_NOT_FOUND"


# ---------- trusted documents ----------


def codegen_manifest(*texts: str) -> dict:
    """@graphql-codegen/client-preset's persisted documents (hashAlgorithm sha256)."""
    return {sha256(text): text for text in texts}


def relay_manifest(*texts: str) -> dict:
    """Relay's persisted_queries.json (the compiler's default MD5 ids)."""
    return {hashlib.md5(text.encode()).hexdigest(): text for text in texts}


def apollo_manifest(*texts: str) -> dict:
    """@apollo/generate-persisted-query-manifest's output."""
    return {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            {"id": sha256(t), "name": t.split()[1], "type": t.split()[0], "body": t} for t in texts
        ],
    }


def write(tmp_path: Path, manifest: Any, name: str = "manifest.json") -> Path:
    path = tmp_path / f"{secrets.token_hex(3)}-{name}"
    path.write_text(json.dumps(manifest))
    return path


def listed(settings: Settings) -> dict[str, list[str]]:
    proc = run_cli(settings, "documents", "list")
    assert proc.returncode == 0, proc.stderr
    return {line.split("\t")[0]: line.split("\t") for line in proc.stdout.splitlines()}


def test_documents_add_reads_each_manifest_format_and_list_and_remove(
    settings: Settings, tmp_path: Path
) -> None:
    codegen = unique("query Codegen{n} {{ __typename }}")
    relay = unique("query Relay{n} {{ viewer {{ id }} }}")
    apollo = unique("mutation Apollo{n}($id: ID!) {{ follow(userId: $id) {{ id }} }}")
    files = [
        write(tmp_path, codegen_manifest(codegen), "persisted-documents.json"),
        write(tmp_path, relay_manifest(relay), "persisted_queries.json"),
        write(tmp_path, apollo_manifest(apollo), "persisted-query-manifest.json"),
    ]
    proc = run_cli(settings, "documents", "add", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("1 document(s) trusted (1 new, 0 already)") == 3, proc.stdout
    rows = listed(settings)
    relay_id = hashlib.md5(relay.encode()).hexdigest()
    assert rows[sha256(codegen)][1:3] == [codegen.split()[1], "query"]
    assert rows[relay_id][1:3] == [relay.split()[1], "query"]
    assert rows[sha256(apollo)][1:3] == [apollo.split()[1], "mutation"]
    assert rows[sha256(apollo)][3] == files[2].name
    # adding again changes nothing
    proc = run_cli(settings, "documents", "add", str(files[0]))
    assert proc.returncode == 0 and "(0 new, 1 already)" in proc.stdout, proc.stdout
    # removed by id, or by the SHA-256 of a document whose id is MD5
    proc = run_cli(settings, "documents", "remove", sha256(codegen), f"sha256:{sha256(relay)}")
    assert proc.returncode == 0, proc.stderr
    rows = listed(settings)
    assert sha256(codegen) not in rows and relay_id not in rows and sha256(apollo) in rows
    proc = run_cli(settings, "documents", "remove", sha256(codegen))
    assert proc.returncode == 1 and "no trusted document" in proc.stderr
    proc = run_cli(settings, "documents", "remove", "nope")
    assert proc.returncode == 1 and "not a document id" in proc.stderr


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (lambda good: codegen_manifest(good, "query Bad { viewr { id } }"), "viewr"),
        (lambda good: {**codegen_manifest(good), "a" * 64: "{ __typename }"}, "not the digest"),
        (lambda good: {**codegen_manifest(good), "Q1": "{ __typename }"}, "not a hex SHA-256"),
        (
            lambda good: codegen_manifest(
                good, "{ " + " ".join(f"a{i}: __typename" for i in range(40)) + " }"
            ),
            "aliases",
        ),
        (lambda good: apollo_manifest(good) | {"version": 2}, "unsupported"),
        (lambda good: [good], "expected a JSON object"),
    ],
)
def test_a_manifest_with_a_bad_document_is_refused_whole(
    settings: Settings, tmp_path: Path, manifest: Any, reason: str
) -> None:
    good = unique("query Good{n} {{ __typename }}")
    path = write(tmp_path, manifest(good))
    proc = run_cli(settings, "documents", "add", str(path))
    assert proc.returncode == 1
    assert str(path) in proc.stderr and reason in proc.stderr, proc.stderr
    assert "nothing of it was stored" in proc.stderr
    assert sha256(good) not in listed(settings)


@pytest.fixture(scope="module")
async def trusted_server(settings: Settings) -> AsyncIterator[Server]:
    async with serving(settings, documents="trusted") as running:
        yield running


def http_url(server: Server) -> str:
    return server.url.replace("ws://", "http://")


async def test_trusted_mode_runs_only_trusted_documents_over_http(
    settings: Settings, trusted_server: Server, tmp_path: Path
) -> None:
    by_sha = unique("query BySha{n} {{ __typename }}")
    by_md5 = unique("query ByMd5{n} {{ __typename }}")
    proc = run_cli(
        settings,
        "documents",
        "add",
        str(write(tmp_path, codegen_manifest(by_sha))),
        str(write(tmp_path, relay_manifest(by_md5))),
    )
    assert proc.returncode == 0, proc.stderr
    md5 = hashlib.md5(by_md5.encode()).hexdigest()
    served = {"data": {"__typename": "Query"}}
    async with httpx.AsyncClient(base_url=http_url(trusted_server).removesuffix("/graphql")) as c:
        # named by hash, by documentId (with or without its algorithm), or sent as text
        assert (await post(c, {"extensions": persisted(by_sha)})).json() == served
        assert (await post(c, {"documentId": f"sha256:{sha256(by_sha)}"})).json() == served
        assert (await post(c, {"documentId": md5})).json() == served
        assert (await post(c, {"documentId": f"md5:{md5}"})).json() == served
        assert (await get(c, {"extensions": persisted(by_md5)})).json() == served
        assert (await post(c, {"query": by_sha})).json() == served
        body = {"query": by_sha, "extensions": persisted(by_sha)}
        assert (await post(c, body)).json() == served
        # anything else is refused, APQ registrations included, and nothing is registered
        free = unique()
        for body in ({"query": free}, {"query": free, "extensions": persisted(free)}):
            response = await post(c, body, accept=RESPONSE_JSON)
            assert response.status_code == 400
            code, message = only_error(response)
            assert code == "FORBIDDEN" and "only its trusted documents" in message
        response = await post(c, {"extensions": persisted(free)})
        assert response.status_code == 200
        assert only_error(response)[0] == "PERSISTED_QUERY_NOT_FOUND"
        # a removed document is no longer served
        gone = unique("query Gone{n} {{ __typename }}")
        assert (
            run_cli(
                settings, "documents", "add", str(write(tmp_path, codegen_manifest(gone)))
            ).returncode
            == 0
        )
        assert run_cli(settings, "documents", "remove", sha256(gone)).returncode == 0
        response = await post(c, {"extensions": persisted(gone)})
        assert only_error(response)[0] == "PERSISTED_QUERY_NOT_FOUND"
        response = await post(c, {"query": gone})
        assert only_error(response)[0] == "FORBIDDEN"


async def test_a_removed_trusted_document_stops_running_within_the_recheck(
    settings: Settings, graph: Any, redis: aredis.Redis, tmp_path: Path
) -> None:
    text = unique("query Held{n} {{ __typename }}")
    assert (
        run_cli(
            settings, "documents", "add", str(write(tmp_path, codegen_manifest(text)))
        ).returncode
        == 0
    )
    services = SimpleNamespace(graph=graph, redis=redis)  # what a request reaches
    store, rechecking = PersistedDocuments("trusted"), PersistedDocuments("trusted")
    rechecking.recheck_s = 0  # every request looks the document up again
    for each in (store, rechecking):
        assert (await each.resolve(services, None, persisted(text), None)).query == text
    assert run_cli(settings, "documents", "remove", sha256(text)).returncode == 0
    # held: still served until TRUSTED_RECHECK_S has passed since it was last looked up
    assert (await store.resolve(services, None, persisted(text), None)).query == text
    with pytest.raises(PersistedQueryNotFound):
        await rechecking.resolve(services, None, persisted(text), None)
    with pytest.raises(Forbidden):
        await rechecking.resolve(services, text, None, None)


async def test_trusted_mode_refuses_free_documents_over_the_socket(
    settings: Settings, trusted_server: Server, gql: GraphQLClient, tmp_path: Path
) -> None:
    account = await gql.sign_up("trustedws")
    text = unique("query Sock{n} {{ __typename }}")
    path = write(tmp_path, apollo_manifest(text))
    assert run_cli(settings, "documents", "add", str(path)).returncode == 0
    async with Client.open(trusted_server.url, account.token) as client:
        await client.subscribe("free", unique())
        message = await client.message()
        assert message["type"] == "error" and message["id"] == "free", message
        (error,) = message["payload"]
        assert error["extensions"]["code"] == "FORBIDDEN"
        # the socket stays open: a trusted document named by hash alone runs
        payload = {"extensions": persisted(text)}
        await client.ws.send(json.dumps({"id": "ok", "type": "subscribe", "payload": payload}))
        assert await client.next("ok") == {"__typename": "Query"}
        assert (await client.message()) == {"id": "ok", "type": "complete"}
        # ... and an unknown hash is answered on its operation
        payload = {"extensions": persisted(unique())}
        await client.ws.send(json.dumps({"id": "gone", "type": "subscribe", "payload": payload}))
        message = await client.message()
        assert message["type"] == "error"
        assert message["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        # the text with its (trusted) hash, as Apollo's link sends it over graphql-ws
        payload = {"query": text, "extensions": persisted(text)}
        await client.ws.send(json.dumps({"id": "both", "type": "subscribe", "payload": payload}))
        assert await client.next("both") == {"__typename": "Query"}


async def test_apq_by_hash_over_the_socket(server_any: Server, gql: GraphQLClient) -> None:
    account = await gql.sign_up("apqws")
    text = unique("query Ws{n} {{ __typename }}")
    async with httpx.AsyncClient(base_url=http_url(server_any).removesuffix("/graphql")) as c:
        response = await post(c, {"query": text, "extensions": persisted(text)})
        assert response.json() == {"data": {"__typename": "Query"}}
    async with Client.open(server_any.url, account.token) as client:
        payload = {"extensions": persisted(text)}
        await client.ws.send(json.dumps({"id": "a", "type": "subscribe", "payload": payload}))
        assert await client.next("a") == {"__typename": "Query"}
        assert (await client.message()) == {"id": "a", "type": "complete"}
        wrong = {"query": text, "extensions": persisted(text + "x")}
        await client.ws.send(json.dumps({"id": "b", "type": "subscribe", "payload": wrong}))
        message = await client.message()
        assert message["type"] == "error", message
        assert message["payload"][0]["message"] == "provided sha does not match query"


# ---------- a real client: Apollo Client's persisted-query link ----------


@pytest.fixture(scope="module")
async def server_any(settings: Settings) -> AsyncIterator[Server]:
    async with serving(settings) as running:
        yield running


@pytest.mark.parametrize("method", ["post", "get"])
async def test_apollo_clients_persisted_query_link(
    server_any: Server, gql: GraphQLClient, method: str
) -> None:
    node = ensure_installed(
        CLIENT_DIR, "@apollo/client", why="the persisted-query link interoperability test"
    )
    account = await gql.sign_up(f"link{method}")
    proc = await asyncio.create_subprocess_exec(
        node,
        str(CLIENT_DIR / "client.mjs"),
        http_url(server_any),
        method,
        account.handle,
        f"Who{secrets.token_hex(6)}",
        cwd=CLIENT_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    requests = [e for e in events if e["event"] == "request"]
    results = [e for e in events if e["event"] == "result"]
    hashed = "GET" if method == "get" else "POST"
    # 1: the hash alone, unknown; 2: the link sends the text with it (POST); 3: the hash alone
    assert [(r["method"], r["query"], r["status"], r["codes"]) for r in requests] == [
        (hashed, False, 200, ["PERSISTED_QUERY_NOT_FOUND"]),
        ("POST", True, 200, []),
        (hashed, False, 200, []),
    ], requests
    assert len({r["hash"] for r in requests}) == 1 and requests[0]["hash"]
    assert (
        results
        == [
            {
                "event": "result",
                "data": {"user": {"handle": account.handle, "__typename": "User"}},
                "error": None,
            }
        ]
        * 2
    )
