#!/usr/bin/env node
// Verify time of the viewer-request function per request under node, two ways: through the runtime harness
// (edge/runtime/cf_runtime.mjs: vm context, KeyValueStore emulation, a copy of the event per call, a queue) and in a
// direct loop (the handler called on the same event, only its uri restored between calls). CloudFront's own runtime
// differs (no JIT warm-up across requests), so read this as relative cost, not edge latency.
//
// Beside it, bench/reference/plain_jwt.js (the least a KeyValueStore-keyed JWT verifier does, with no revocation
// list) on the same unbound token: the "vs reference" line is the ratio of the two medians.
//
//   node bench/edge_verify.mjs [--iterations N] [--warmup N] [--function PATH] [--json]
//   (--function: another version of the function, e.g. `git show REV:edge/viewer_request.js > old.js`, to compare)

import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildEvent, compileStore, loadFunction, toDecision } from '../edge/runtime/cf_runtime.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const ITERATIONS = option('--iterations', 20000);
const WARMUP = option('--warmup', 3000);

const NOW = 1767225600;
const KID = 'bench1';
const KEY = crypto.createHash('sha256').update('bench key').digest();
const SID = 'bench_session_000001';
const b64u = (data) => Buffer.from(data).toString('base64url');
const hmac = (key, message) => crypto.createHmac('sha256', key).update(message).digest();

function token(claims, key = KEY) {
  const h = b64u(JSON.stringify({ alg: 'HS256', kid: KID, typ: 'JWT' }));
  const p = b64u(JSON.stringify(claims));
  return `${h}.${p}.${b64u(hmac(key, `${h}.${p}`))}`;
}

const ua = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 Safari/537.36';
const bnd = ['ip/24', 'country', 'ua'];
const bh = b64u(hmac(KEY, `pb1\nip/24=203.0.113.0/24\ncountry=GB\nua=${ua}`));
const claims = { sid: SID, iat: NOW - 60, exp: NOW + 3600, paths: ['/live/ch1/'], exc: ['/live/ch1/keys/'], bnd, bh };
const headers = { 'user-agent': ua, 'cloudfront-viewer-country': 'GB' };
const asset = '/live/ch1/1080p/seg_000123.ts';

const store = compileStore({ data: [{ key: `k:${KID}`, value: b64u(KEY) }] });
const revokedStore = compileStore({ data: [{ key: `k:${KID}`, value: b64u(KEY) }, { key: `r:${SID}`, value: `${NOW + 600}|auto` }] });

const unbound = { sid: SID, iat: NOW - 60, exp: NOW + 3600, paths: ['/live/ch1/'] };
const scenarios = [
  { name: 'valid bound token', uri: `/${SID}.${token(claims)}${asset}`, store, expect: 'ok' },
  { name: 'valid unbound token', uri: `/${SID}.${token(unbound)}${asset}`, store, expect: 'ok' },
  { name: 'revoked session', uri: `/${SID}.${token(claims)}${asset}`, store: revokedStore, expect: 'revoked' },
  { name: 'bad signature', uri: `/${SID}.${token(claims, crypto.randomBytes(32))}${asset}`, store, expect: 'bad-signature' },
];

const at = args.indexOf('--function');
const fn = loadFunction({ path: at >= 0 ? path.resolve(args[at + 1]) : path.join(root, 'edge', 'viewer_request.js') });
const reference = loadFunction({ path: path.join(root, 'bench', 'reference', 'plain_jwt.js') });

async function measure({ uri, store: s, expect }, fn) {
  const event = buildEvent({ uri, viewerIp: '203.0.113.77', headers });
  const first = await fn.run(event, { store: s, now: NOW });
  const decision = toDecision(first.result, uri);
  if (decision.reason !== expect) throw new Error(`expected ${expect}, got ${decision.reason}`);
  const harness = await timed(() => fn.run(event, { store: s, now: NOW }));
  const handler = fn.direct({ store: s, now: NOW });
  const own = structuredClone(event);
  const directResult = toDecision(await handler(own), uri);
  if (directResult.reason !== expect) throw new Error(`direct: expected ${expect}, got ${directResult.reason}`);
  const direct = await timed(async () => {
    await handler(own);
    own.request.uri = uri;
  });
  return { reason: decision.reason, kvs_reads: first.kvsReads, harness, direct };
}

async function timed(call) {
  for (let i = 0; i < WARMUP; i++) await call();
  const samples = new Float64Array(ITERATIONS);
  for (let i = 0; i < ITERATIONS; i++) {
    const start = process.hrtime.bigint();
    await call();
    samples[i] = Number(process.hrtime.bigint() - start) / 1000;
  }
  samples.sort();
  const mean = samples.reduce((a, b) => a + b, 0) / ITERATIONS;
  const pct = (q) => samples[Math.min(ITERATIONS - 1, Math.floor(q * ITERATIONS))];
  return { mean_us: mean, p50_us: pct(0.5), p99_us: pct(0.99) };
}

const results = [];
for (const scenario of scenarios) results.push({ scenario: scenario.name, ...(await measure(scenario, fn)) });
const plain = scenarios.find((s) => s.name === 'valid unbound token');
const ref = { scenario: 'valid unbound token (reference)', ...(await measure(plain, reference)) };
const ours = results.find((r) => r.scenario === plain.name);
const ratio = { harness: ours.harness.p50_us / ref.harness.p50_us, direct: ours.direct.p50_us / ref.direct.p50_us };

if (args.includes('--json')) {
  console.log(JSON.stringify({ source_bytes: fn.size, iterations: ITERATIONS, warmup: WARMUP, node: process.version, results, reference: ref, p50_vs_reference: ratio }));
} else {
  console.log(`edge/viewer_request.js: ${fn.size} bytes (limit 10240); node ${process.version}; ${ITERATIONS} iterations after ${WARMUP} warm-up`);
  console.log('scenario               reason          kvs reads  mode       mean µs    p50 µs    p99 µs');
  const us = (x) => x.toFixed(1).padStart(9);
  for (const r of results) {
    for (const mode of ['harness', 'direct']) {
      const m = r[mode];
      console.log(`${r.scenario.padEnd(22)} ${r.reason.padEnd(15)} ${String(r.kvs_reads).padStart(9)}  ${mode.padEnd(8)} ${us(m.mean_us)} ${us(m.p50_us)} ${us(m.p99_us)}`);
    }
  }
  console.log(`reference (bench/reference/plain_jwt.js, no revocation read), valid unbound token: p50 ${ref.harness.p50_us.toFixed(1)} µs harness, ${ref.direct.p50_us.toFixed(1)} µs direct`);
  console.log(`vs reference (p50 ratio): ${ratio.harness.toFixed(2)}x harness, ${ratio.direct.toFixed(2)}x direct`);
}
