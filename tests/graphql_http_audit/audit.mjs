// Runs graphql-http's serverAudits against the URL given as the first argument and prints
// one JSON array: [{id, name, status, reason}] (status "ok", "warn" or "error").
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql url>');
  process.exit(2);
}
const results = [];
for (const audit of serverAudits({ url })) {
  const result = await audit.fn();
  let reason = result.status === 'ok' ? '' : result.reason;
  if (result.response) {
    const body = await result.response.text().catch(() => '');
    reason += ` [${result.response.status} ${result.response.headers.get('content-type')}] ${body.slice(0, 300)}`;
  }
  results.push({ id: audit.id, name: audit.name, status: result.status, reason });
}
console.log(JSON.stringify(results));
