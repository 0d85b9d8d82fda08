#!/usr/bin/env node
// Lint Cypher statements with Neo4j's official linter (@neo4j-cypher/language-support).
//
// stdin:  a JSON object {"name": "cypher text", ...}
// stdout: a JSON object {"name": [diagnostic, ...], ...} with the same keys, where a
//         diagnostic is
//           {
//             "message": "Parameter $id is not defined.",
//             "severity": "error" | "warning" | "information" | "hint",
//             "range": {"start": {"line": 0, "character": 19}, "end": {...}},  // 0-based
//             "offsets": {"start": 19, "end": 22},  // character offsets into the text
//             "tags": ["deprecated"],               // only when the linter sets tags
//             "source": "neo4j" | "harness",
//             "undefined_parameter": true | false   // the package's own isNotParamError()
//           }
//
// Options:
//   --check-functions  also report calls to functions that are not Neo4j built-ins (the
//                      built-in list is the one shipped in the package's testData) and
//                      the package's "Function x is deprecated." warnings.
//
// Statements are linted with Cypher 5 semantics (dbSchema.defaultLanguage); a statement
// that starts with an explicit "CYPHER 25" prefix overrides that. The schema is otherwise
// empty, so the linter reports no unknown labels, relationship types or properties; it
// does report every $parameter as undefined, which callers are expected to filter out.
//
// Besides the linter's own diagnostics, the harness adds an error (source "harness") when a
// text holds no statement or more than one ";"-separated statement: the drivers run exactly
// one statement per query.

// Keep stdout for the JSON result only: anything the library logs goes to stderr. The
// library is imported dynamically so that this redirect is in place before it loads.
console.log = console.error;
console.info = console.error;
console.debug = console.error;
console.warn = console.error;

const { lintCypherQuery, isNotParamError, parseStatementsStrs, testData } = await import(
  '@neo4j-cypher/language-support'
);

const CYPHER_VERSION = 'CYPHER 5';
const SEVERITIES = { 1: 'error', 2: 'warning', 3: 'information', 4: 'hint' };
const TAGS = { 1: 'unnecessary', 2: 'deprecated' };

function fail(message) {
  process.stderr.write(`lint.mjs: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { checkFunctions: false };
  for (const arg of argv) {
    if (arg === '--check-functions') options.checkFunctions = true;
    else fail(`unknown argument ${JSON.stringify(arg)}`);
  }
  return options;
}

function buildSchema({ checkFunctions }) {
  const dbSchema = { defaultLanguage: CYPHER_VERSION };
  if (checkFunctions) {
    const known = testData?.mockSchema?.functions?.[CYPHER_VERSION];
    if (!known) fail('this package version ships no built-in function list (testData)');
    dbSchema.functions = {
      [CYPHER_VERSION]: Object.fromEntries(
        Object.entries(known).filter(([, fn]) => fn.isBuiltIn),
      ),
    };
  }
  return dbSchema;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function convert(diagnostic, source) {
  const out = {
    message: diagnostic.message,
    severity: SEVERITIES[diagnostic.severity] ?? String(diagnostic.severity),
    range: diagnostic.range,
    offsets: diagnostic.offsets,
  };
  if (diagnostic.tags?.length) out.tags = diagnostic.tags.map((t) => TAGS[t] ?? String(t));
  out.source = source;
  out.undefined_parameter = !isNotParamError(diagnostic);
  return out;
}

function wholeTextDiagnostic(text, message) {
  const lines = text.split('\n');
  return {
    message,
    severity: 1,
    range: {
      start: { line: 0, character: 0 },
      end: { line: lines.length - 1, character: lines[lines.length - 1].length },
    },
    offsets: { start: 0, end: text.length },
  };
}

function lintOne(text, dbSchema) {
  const { diagnostics } = lintCypherQuery(text, dbSchema, { consoleCommandsEnabled: false });
  const result = diagnostics.map((d) => convert(d, 'neo4j'));
  const count = parseStatementsStrs(text).length;
  if (count === 0) {
    result.push(convert(wholeTextDiagnostic(text, 'The text holds no Cypher statement.'), 'harness'));
  } else if (count > 1) {
    const message =
      `The text holds ${count} ';'-separated statements; ` +
      'a driver query must be exactly one statement.';
    result.push(convert(wholeTextDiagnostic(text, message), 'harness'));
  }
  return result;
}

const options = parseArgs(process.argv.slice(2));
let statements;
try {
  statements = JSON.parse(await readStdin());
} catch (error) {
  fail(`stdin is not valid JSON: ${error.message}`);
}
if (statements === null || typeof statements !== 'object' || Array.isArray(statements)) {
  fail('stdin must be a JSON object mapping names to Cypher text');
}
for (const [name, text] of Object.entries(statements)) {
  if (typeof text !== 'string') fail(`statement ${JSON.stringify(name)} is not a string`);
}

const dbSchema = buildSchema(options);
const results = {};
for (const [name, text] of Object.entries(statements)) {
  results[name] = lintOne(text, dbSchema);
}
process.stdout.write(JSON.stringify(results) + '\n');
