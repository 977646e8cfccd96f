#!/usr/bin/env node
// Long-lived bridge between Python (python -m edge check / serve) and the real CloudFront Function.
//
// Protocol: one JSON object per stdin line,
//   {"uri": "/...", "viewer_ip": "...", "headers": {"name": "value"}, "now": <epoch s>,
//    "store": {"data": [...]} | "store_path": "/path/store.json", "method": "GET", "querystring": "a=1"}
// and one JSON line per request on stdout:
//   {"decision": "allow"|"deny", "status": N, "reason": "...", "uri": "...", "kvs_reads": N}
// (pure ASCII: non-ASCII characters are written as \uXXXX escapes)
// or {"error": "..."} for a malformed (or empty) line; the loop continues (one line out per line in).
// A store_path is re-read on every request, so a revocation written to the file takes effect at once.
//
// Options: --once (read one JSON object from all of stdin, print one line, exit: 0 allow, 1 deny,
// 2 error), --function PATH (default: ../viewer_request.js next to this file).

import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { buildEvent, loadFunction, readStoreFile, toDecision } from './cf_runtime.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const options = { once: false, functionPath: path.join(here, '..', 'viewer_request.js') };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--once') options.once = true;
    else if (argv[i] === '--function' && i + 1 < argv.length) options.functionPath = argv[++i];
    else throw new Error(`unknown argument ${argv[i]} (use --once, --function PATH)`);
  }
  return options;
}

function optionalString(request, name) {
  const value = request[name];
  if (value !== undefined && value !== null && typeof value !== 'string') throw new Error(`"${name}" must be a string`);
  return value ?? undefined;
}

/** Validate one request object and decide it; throws Error with a clear message on bad input. */
export async function handleRequest(fn, request) {
  if (!request || typeof request !== 'object' || Array.isArray(request)) throw new Error('each line must be a JSON object');
  const { uri } = request;
  if (typeof uri !== 'string') throw new Error('"uri" must be a string');
  const headers = request.headers ?? {};
  if (typeof headers !== 'object' || Array.isArray(headers)) throw new Error('"headers" must be an object {name: value}');
  for (const [name, value] of Object.entries(headers)) {
    const ok = typeof value === 'string' || (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string'));
    if (!ok) throw new Error(`header "${name}" must have a string value or a non-empty list of them (sent more than once)`);
  }
  let now = request.now;
  if (now === undefined || now === null) now = Date.now() / 1000;
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new Error('"now" must be epoch seconds (a number)');
  let store;
  if (request.store_path !== undefined && request.store_path !== null) {
    if (typeof request.store_path !== 'string') throw new Error('"store_path" must be a string');
    try {
      store = readStoreFile(request.store_path);
    } catch (err) {
      throw new Error(`cannot read store ${request.store_path}: ${err.message}`);
    }
  } else {
    store = request.store ?? { data: [] };
  }
  const event = buildEvent({
    uri,
    method: optionalString(request, 'method') ?? 'GET',
    querystring: optionalString(request, 'querystring'),
    viewerIp: optionalString(request, 'viewer_ip'),
    headers,
  });
  const { result, kvsReads } = await fn.run(event, { store, now });
  return { ...toDecision(result, uri), kvs_reads: kvsReads };
}

/** One output line: JSON with every non-ASCII character escaped, so no line splitter (Python's
 * str.splitlines() breaks at U+0085, U+2028, ...) can cut an answer in two. */
export function encodeLine(value) {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) + '\n';
}

async function answer(fn, text) {
  let request;
  if (!text.trim()) return { error: 'empty line: expected a JSON object' };
  try {
    request = JSON.parse(text);
  } catch (err) {
    return { error: `invalid JSON: ${err.message}` };
  }
  try {
    return await handleRequest(fn, request);
  } catch (err) {
    return { error: err.message };
  }
}

async function main() {
  let options;
  let fn;
  try {
    options = parseArgs(process.argv.slice(2));
    fn = loadFunction({ path: options.functionPath });
  } catch (err) {
    process.stderr.write(`runner: ${err.message}\n`);
    process.exit(2);
  }
  if (options.once) {
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    const response = await answer(fn, Buffer.concat(chunks).toString('utf8'));
    process.stdout.write(encodeLine(response));
    process.exitCode = response.error ? 2 : response.decision === 'allow' ? 0 : 1;
    return;
  }
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    process.stdout.write(encodeLine(await answer(fn, line)));
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main();
}
