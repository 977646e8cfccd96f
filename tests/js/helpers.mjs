// Shared helpers for the edge function tests: tokens are built here with node's crypto directly,
// independently of the function under test.

import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { decide, loadFunction } from '../../edge/runtime/cf_runtime.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FUNCTION_PATH = path.join(ROOT, 'edge', 'viewer_request.js');
export const RUNNER_PATH = path.join(ROOT, 'edge', 'runtime', 'runner.mjs');

export const NOW = 1767225600; // 2026-01-01T00:00:00Z
export const KID = 'k2026a';
export const KEY = crypto.createHash('sha256').update('edge-test-key-1').digest(); // 32 bytes
export const OTHER_KEY = crypto.createHash('sha256').update('edge-test-key-2').digest();
export const SID = 'Sess_ion-0123456789AB'; // 21 chars

export const b64u = (data) => Buffer.from(data).toString('base64url');
export const hmac = (key, message) => crypto.createHmac('sha256', key).update(message).digest();

/** A compact JWT; `header`/`payload` may be objects (JSON-encoded) or raw strings (encoded as given). */
export function sign({ claims = {}, header = { alg: 'HS256', kid: KID, typ: 'JWT' }, key = KEY, rawPayload, rawHeader } = {}) {
  const h = rawHeader ?? b64u(typeof header === 'string' ? header : JSON.stringify(header));
  const p = rawPayload ?? b64u(JSON.stringify(claims));
  return `${h}.${p}.${b64u(hmac(key, `${h}.${p}`))}`;
}

export function baseClaims(extra = {}) {
  return { sid: SID, iat: NOW - 60, exp: NOW + 3600, ...extra };
}

/** `bh` for descriptors bound to explicit canonical values (the test states the expected canonical form). */
export function bindingMac(descriptors, canonicalValues, key = KEY) {
  const message = ['pb1', ...descriptors.map((d, i) => `${d}=${canonicalValues[i]}`)].join('\n');
  return b64u(hmac(key, message));
}

export function tokenUri(jwt, asset = '/live/ch1/seg1.ts', sid = SID) {
  return `/${sid}.${jwt}${asset}`;
}

export function store({ keys = { [KID]: KEY }, revoked = {}, extra = [] } = {}) {
  const data = [];
  for (const [kid, key] of Object.entries(keys)) data.push({ key: `k:${kid}`, value: typeof key === 'string' ? key : b64u(key) });
  for (const [sid, value] of Object.entries(revoked)) data.push({ key: `r:${sid}`, value });
  return { data: data.concat(extra) };
}

let cached;
export function edgeFunction() {
  cached ??= loadFunction({ path: FUNCTION_PATH });
  return cached;
}

/** Decide one request with the real function. */
export function check({ uri, viewerIp = '203.0.113.7', headers = {}, now = NOW, storeData = store(), kvs, querystring } = {}) {
  return decide(edgeFunction(), { uri, viewerIp, headers, store: storeData, now, kvs, querystring });
}
