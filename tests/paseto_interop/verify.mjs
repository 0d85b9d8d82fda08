// Verifies reelgraph consent tokens with panva's `paseto` (an independent implementation).
// stdin: {"cases": [{"token", "paserk" (k4.public), "assertion", "issuer", "audience"}]}
// stdout: {"results": [{"ok": true, "claims", "footer"} | {"ok": false, "error"}]}
import { PublicProtocol } from 'paseto'
import { ImportPublicKeyFactory, VerifyFactory } from 'paseto/v4/public'

const v4 = new PublicProtocol(ImportPublicKeyFactory, VerifyFactory)
const encoder = new TextEncoder()
const decoder = new TextDecoder()

let input = ''
for await (const chunk of process.stdin) input += chunk
const { cases } = JSON.parse(input)

const results = []
for (const c of cases) {
  try {
    const key = await v4.ImportPublicKey(c.paserk)
    const { claims, footer } = await v4.Verify(key, c.token, {
      implicitAssertion: encoder.encode(c.assertion),
      issuer: c.issuer,
      audience: c.audience,
    })
    results.push({ ok: true, claims, footer: decoder.decode(footer) })
  } catch (err) {
    results.push({ ok: false, error: `${err?.name}: ${err?.message}` })
  }
}
process.stdout.write(JSON.stringify({ results }))
