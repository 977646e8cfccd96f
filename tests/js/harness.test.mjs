// The runtime emulation (edge/runtime/cf_runtime.mjs) and the runner protocol (edge/runtime/runner.mjs).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, describe, it } from 'node:test';

import {
  MAX_SOURCE_BYTES, RuntimeLimitError, buildEvent, compileStore, loadFunction, prepareSource, toDecision,
} from '../../edge/runtime/cf_runtime.mjs';
import { FUNCTION_PATH, NOW, RUNNER_PATH, SID, baseClaims, sign, store, tokenUri } from './helpers.mjs';

const MINIMAL = `import cf from 'cloudfront';
const kvs = cf.kvs();
async function handler(event) {
  return event.request;
}
`;

const padTo = (source, bytes) => source + '/'.repeat(2) + 'x'.repeat(bytes - Buffer.byteLength(source) - 3) + '\n';

describe('runtime limits', () => {
  it('the real function loads and is at most 10240 bytes', () => {
    const size = fs.statSync(FUNCTION_PATH).size;
    assert.ok(size <= MAX_SOURCE_BYTES, `viewer_request.js is ${size} bytes`);
    const fn = loadFunction({ path: FUNCTION_PATH });
    assert.equal(fn.size, size);
    assert.deepEqual(fn.imports.map((i) => i.module).sort(), ['cloudfront', 'crypto']);
  });

  it('the real function uses only the documented module and handler shape', () => {
    const source = fs.readFileSync(FUNCTION_PATH, 'utf8');
    assert.match(source, /^import cf from 'cloudfront';\nimport crypto from 'crypto';\n/);
    assert.match(source, /\nconst kvs = cf\.kvs\(\);\n/);
    assert.match(source, /\nasync function handler\(event\) \{\n/);
    assert.equal((source.match(/\basync\b/g) || []).length, 1, 'only the handler is async');
    assert.doesNotMatch(source, /timingSafeEqual|\?\.|\?\?|\bclass\b|\bfor\s*\([^)]*\bof\b|\.\.\.|charCodeAt/);
  });

  it('accepts a source of exactly 10240 bytes and rejects 10241', () => {
    const exact = padTo(MINIMAL, MAX_SOURCE_BYTES);
    assert.equal(Buffer.byteLength(exact), MAX_SOURCE_BYTES);
    loadFunction({ source: exact });
    const over = padTo(MINIMAL, MAX_SOURCE_BYTES + 1);
    assert.throws(() => loadFunction({ source: over }), (err) => err instanceof RuntimeLimitError && /10241 bytes/.test(err.message));
  });

  it('counts bytes, not characters', () => {
    const multibyte = MINIMAL + '// ' + 'é'.repeat(5100) + '\n';
    assert.ok(multibyte.length < MAX_SOURCE_BYTES);
    assert.throws(() => prepareSource(multibyte), RuntimeLimitError);
  });

  const rejected = {
    'an import of fs': `import fs from 'fs';\n${MINIMAL}`,
    'an import of node:crypto': `import c from 'node:crypto';\n${MINIMAL}`,
    'a named import': `import { createHmac } from 'crypto';\n${MINIMAL}`,
    'a namespace import': `import * as c from 'crypto';\n${MINIMAL}`,
    'require(': `const fs = require('fs');\n${MINIMAL}`,
    'require (': `const q = require ('querystring');\n${MINIMAL}`,
    'export': `${MINIMAL}export { handler };\n`,
    'export default': `${MINIMAL.replace('async function', 'export default async function')}`,
    'dynamic import()': `${MINIMAL}const m = import('fs');\n`,
  };
  for (const [name, source] of Object.entries(rejected)) {
    it(`rejects ${name}`, () => assert.throws(() => loadFunction({ source }), RuntimeLimitError));
  }

  it('allows the four runtime modules', async () => {
    const source = `import crypto from 'crypto';
import qs from 'querystring';
import buffer from "buffer";
import cf from 'cloudfront';
async function handler(event) {
  return { statusCode: 200, statusDescription: [typeof crypto.createHmac, typeof qs.parse, typeof buffer.Buffer, typeof cf.kvs].join(',') };
}
`;
    const { result } = await loadFunction({ source }).run(buildEvent({ uri: '/' }), { store: { data: [] } });
    assert.equal(result.statusDescription, 'function,function,function,function');
  });

  it('rejects a source without a handler', () => {
    assert.throws(() => loadFunction({ source: 'const x = 1;\n' }), RuntimeLimitError);
  });
});

describe('runtime emulation', () => {
  const probe = (body) => loadFunction({
    source: `import cf from 'cloudfront';\nimport crypto from 'crypto';\nconst kvs = cf.kvs();\nasync function handler(event) {\n${body}\n}\n`,
  });

  it('fixes the clock to now (seconds x 1000)', async () => {
    const fn = probe('return { statusCode: 200, statusDescription: String(Date.now()) + " " + new Date().toISOString() };');
    const { result } = await fn.run(buildEvent({ uri: '/' }), { now: NOW });
    assert.equal(result.statusDescription, `${NOW * 1000} 2026-01-01T00:00:00.000Z`);
    const later = await fn.run(buildEvent({ uri: '/' }), { now: NOW + 1.5 });
    assert.equal(later.result.statusDescription.split(' ')[0], String(NOW * 1000 + 1500));
  });

  it('exposes no Node globals, timers or eval', async () => {
    const fn = probe(`
      let evalBlocked = false;
      try { eval('1'); } catch (e) { evalBlocked = true; }
      return { statusCode: 200, statusDescription: [typeof require, typeof process, typeof setTimeout, typeof fetch,
        typeof Buffer, evalBlocked, typeof crypto.timingSafeEqual, typeof crypto.randomBytes].join(',') };`);
    const { result } = await fn.run(buildEvent({ uri: '/' }), {});
    assert.equal(result.statusDescription, 'undefined,undefined,undefined,undefined,function,true,undefined,undefined');
  });

  it('restricts crypto to md5/sha1/sha256 and hex/base64/base64url digests', async () => {
    const fn = probe(`
      const out = [crypto.createHmac('sha256', 'k').update('m').digest('base64url'),
        crypto.createHash('sha1').update('m').digest('hex')];
      for (const f of [() => crypto.createHmac('sha512', 'k'), () => crypto.createHash('sha256').update('m').digest('latin1')]) {
        try { f(); out.push('no error'); } catch (e) { out.push('error'); }
      }
      return { statusCode: 200, statusDescription: out.join(',') };`);
    const { result } = await fn.run(buildEvent({ uri: '/' }), {});
    const [mac, sha1, e1, e2] = result.statusDescription.split(',');
    assert.equal(mac.length, 43);
    assert.equal(sha1.length, 40);
    assert.deepEqual([e1, e2], ['error', 'error']);
  });

  it('KeyValueStore: get throws for a missing key, formats, exists, meta, and reads are counted', async () => {
    const fn = probe(`
      const out = [];
      out.push(await kvs.get('a'));
      out.push(JSON.stringify(await kvs.get('j', { format: 'json' })));
      out.push((await kvs.get('a', { format: 'bytes' })).length);
      try { await kvs.get('missing'); out.push('no error'); } catch (e) { out.push('missing throws'); }
      out.push(await kvs.exists('a'), await kvs.exists('missing'));
      out.push((await kvs.meta()).keyCount);
      return { statusCode: 200, statusDescription: out.join('|') };`);
    const data = { data: [{ key: 'a', value: 'hello' }, { key: 'j', value: '{"x":1}' }] };
    const { result, kvsReads } = await fn.run(buildEvent({ uri: '/' }), { store: data });
    assert.equal(result.statusDescription, 'hello|{"x":1}|5|missing throws|true|false|2');
    assert.equal(kvsReads, 6);
  });

  it('validates the store format', () => {
    assert.throws(() => compileStore({ items: [] }), TypeError);
    assert.throws(() => compileStore({ data: [{ key: 'a', value: 1 }] }), TypeError);
    assert.equal(compileStore({ data: [{ key: 'a', value: 'b' }] }).get('a'), 'b');
  });

  it('a handler that throws makes run() reject with functionError', async () => {
    const fn = probe('throw new Error("boom");');
    await assert.rejects(fn.run(buildEvent({ uri: '/' }), {}), (err) => err.functionError === true && /boom/.test(err.message));
  });

  it('runs are isolated: the event is copied and reads are per invocation', async () => {
    const fn = loadFunction({ path: FUNCTION_PATH });
    const event = buildEvent({ uri: tokenUri(sign({ claims: baseClaims() })), viewerIp: '203.0.113.7' });
    const before = JSON.stringify(event);
    const results = await Promise.all([1, 2, 3].map(() => fn.run(event, { store: store(), now: NOW })));
    assert.equal(JSON.stringify(event), before);
    assert.deepEqual(results.map((r) => r.kvsReads), [2, 2, 2]);
  });

  it('buildEvent builds a viewer-request event', () => {
    const event = buildEvent({
      uri: '/a', method: 'HEAD', querystring: 'x=1&y=2&x=3&z', viewerIp: '2001:db8::1',
      headers: { 'User-Agent': 'UA', 'X-Multi': ['a', 'b'], Cookie: 'c1=v1; c2=v2' },
    });
    assert.equal(event.version, '1.0');
    assert.equal(event.context.eventType, 'viewer-request');
    assert.deepEqual(event.viewer, { ip: '2001:db8::1' });
    assert.equal(event.request.method, 'HEAD');
    assert.deepEqual(event.request.headers, { 'user-agent': { value: 'UA' }, 'x-multi': { value: 'a', multiValue: [{ value: 'a' }, { value: 'b' }] } });
    assert.deepEqual(event.request.cookies, { c1: { value: 'v1' }, c2: { value: 'v2' } });
    assert.deepEqual(event.request.querystring, { x: { value: '1', multiValue: [{ value: '1' }, { value: '3' }] }, y: { value: '2' }, z: { value: '' } });
  });

  it('toDecision maps requests and responses', () => {
    assert.deepEqual(toDecision({ uri: '/x.ts', method: 'GET' }, '/tok/x.ts'), { decision: 'allow', status: 200, reason: 'ok', uri: '/x.ts' });
    assert.deepEqual(toDecision({ statusCode: 403, statusDescription: 'Forbidden (out-of-scope)' }, '/t/x'),
      { decision: 'deny', status: 403, reason: 'out-of-scope', uri: '/t/x' });
    assert.throws(() => toDecision(undefined, '/'));
  });
});

describe('runner protocol', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-runner-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const uri = tokenUri(sign({ claims: baseClaims() }));

  it('answers one JSON line per line, re-reads store_path and survives malformed lines', async () => {
    const storePath = path.join(tmp, 'store.json');
    fs.writeFileSync(storePath, JSON.stringify(store()));
    const child = spawn(process.execPath, [RUNNER_PATH], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const rawLines = [];
    const ask = async (text) => {
      child.stdin.write(`${text}\n`);
      const { value } = await lines.next();
      rawLines.push(value);
      return JSON.parse(value);
    };
    try {
      const request = { uri, viewer_ip: '203.0.113.7', headers: { 'User-Agent': 'x' }, now: NOW, store_path: storePath };
      assert.deepEqual(await ask(JSON.stringify(request)),
        { decision: 'allow', status: 200, reason: 'ok', uri: '/live/ch1/seg1.ts', kvs_reads: 2 });

      fs.writeFileSync(storePath, JSON.stringify(store({ revoked: { [SID]: `${NOW + 60}|manual` } })));
      assert.deepEqual(await ask(JSON.stringify(request)), { decision: 'deny', status: 403, reason: 'revoked', uri, kvs_reads: 3 });

      assert.match((await ask('{not json')).error, /invalid JSON/);
      assert.match((await ask('')).error, /empty line/);
      assert.match((await ask('[1]')).error, /JSON object/);
      assert.match((await ask(JSON.stringify({ uri: 5 }))).error, /uri/);
      assert.equal((await ask(JSON.stringify({ uri: 'relative', now: NOW }))).reason, 'missing-token');
      assert.deepEqual(await ask(JSON.stringify({ uri: '/a\u2028b\u0085/c', now: NOW })),
        { decision: 'deny', status: 401, reason: 'missing-token', uri: '/a\u2028b\u0085/c', kvs_reads: 0 });
      assert.match((await ask(JSON.stringify({ uri, headers: { a: 1 } }))).error, /header/);
      assert.match((await ask(JSON.stringify({ uri, store_path: path.join(tmp, 'nope.json') }))).error, /cannot read store/);
      assert.match((await ask(JSON.stringify({ uri, store: { data: 'x' } }))).error, /store/);

      const inline = { uri: `${uri}`, now: NOW + 7200, store: store(), method: 'GET', querystring: 'a=1' };
      assert.deepEqual(await ask(JSON.stringify(inline)), { decision: 'deny', status: 401, reason: 'expired', uri, kvs_reads: 1 });
      assert.deepEqual(await ask(JSON.stringify({ uri: '/plain/a.ts', now: NOW })),
        { decision: 'deny', status: 401, reason: 'missing-token', uri: '/plain/a.ts', kvs_reads: 0 });
      // Output lines are pure ASCII, so no line splitter can break an answer (U+2028, U+0085, ...).
      assert.ok(rawLines.every((line) => /^[\x20-\x7e]*$/.test(line)));
    } finally {
      child.stdin.end();
    }
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 0);
  });

  it('--once prints one line and exits 0 on allow, 1 on deny, 2 on bad input', () => {
    const once = (input) => spawnSync(process.execPath, [RUNNER_PATH, '--once'], { input, encoding: 'utf8' });
    const allow = once(JSON.stringify({ uri, viewer_ip: '203.0.113.7', now: NOW, store: store() }));
    assert.equal(allow.status, 0);
    assert.equal(JSON.parse(allow.stdout).decision, 'allow');
    const deny = once(JSON.stringify({ uri, now: NOW, store: { data: [] } }));
    assert.equal(deny.status, 1);
    assert.equal(JSON.parse(deny.stdout).reason, 'unknown-kid');
    const bad = once('nope');
    assert.equal(bad.status, 2);
    assert.ok(JSON.parse(bad.stdout).error);
  });

  it('refuses to start with a function that breaks the limits', () => {
    const bigPath = path.join(tmp, 'big.js');
    fs.writeFileSync(bigPath, padTo(MINIMAL, MAX_SOURCE_BYTES + 1));
    const result = spawnSync(process.execPath, [RUNNER_PATH, '--function', bigPath], { input: '', encoding: 'utf8' });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /10241 bytes/);
  });
});
