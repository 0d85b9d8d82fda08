// The graphql-ws reference client: subscribe to notifications, print the first event as a
// JSON line, complete the subscription, and exit 0 once the server has acknowledged it.
// Usage: node client.mjs <ws url> <access token>
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, token] = process.argv.slice(2);
const out = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${token}` },
  retryAttempts: 0,
  on: { connected: () => out({ event: "subscribed" }) },
});

const query = `subscription { notifications { kind cursor actor { handle } } }`;
const subscription = client.iterate({ query });
const timer = setTimeout(() => {
  console.error("no event within 60 s");
  process.exit(2);
}, 60_000);
try {
  for await (const result of subscription) {
    if (result.errors) throw new Error(JSON.stringify(result.errors));
    out({ event: "next", data: result.data });
    break; // leaving the loop sends `complete` for the subscription
  }
  out({ event: "complete" });
} catch (error) {
  console.error(String(error?.message ?? error));
  process.exitCode = 1;
} finally {
  clearTimeout(timer);
  await client.dispose();
}
