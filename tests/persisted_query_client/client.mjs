// Apollo Client's persisted-query link against a reelgraph server: runs one query twice and
// prints each HTTP request the link made (method, whether the text went along, the hash, the
// answer's status and error codes) and each result, as JSON lines.
// Usage: node client.mjs <graphql url> <post|get> <handle> <operation name>
// (a new operation name each run: a document the server has not seen yet)
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { createHash } from "node:crypto";

const [url, method, handle, name] = process.argv.slice(2);
const out = (event) => process.stdout.write(JSON.stringify(event) + "\n");

async function loggedFetch(input, init = {}) {
  const target = new URL(String(input));
  let sent;
  if (init.body) {
    sent = JSON.parse(init.body);
  } else {
    const params = Object.fromEntries(target.searchParams);
    sent = { ...params, extensions: params.extensions ? JSON.parse(params.extensions) : undefined };
  }
  const response = await fetch(input, init);
  const body = JSON.parse(await response.clone().text());
  out({
    event: "request",
    method: init.method ?? "GET",
    query: typeof sent.query === "string",
    hash: sent.extensions?.persistedQuery?.sha256Hash ?? null,
    status: response.status,
    codes: (body.errors ?? []).map((e) => e.extensions?.code ?? null),
  });
  return response;
}

const link = new PersistedQueryLink({
  sha256: (text) => createHash("sha256").update(text).digest("hex"),
  useGETForHashedQueries: method === "get",
}).concat(new HttpLink({ uri: url, fetch: loggedFetch }));
const client = new ApolloClient({ link, cache: new InMemoryCache() });
const query = gql(`
  query ${name}($handle: String!) {
    user(handle: $handle) {
      handle
    }
  }
`);
try {
  for (let n = 0; n < 2; n++) {
    const result = await client.query({ query, variables: { handle }, fetchPolicy: "no-cache" });
    out({ event: "result", data: result.data, error: result.error?.message ?? null });
  }
} catch (error) {
  console.error(String(error?.stack ?? error));
  process.exitCode = 1;
}
