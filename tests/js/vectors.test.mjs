// Shared test vectors (written by `python -m tests.vectors.generate` from the Python token library):
// the JS function must give exactly the expected status, reason and, on allow, forwarded uri.
// A missing or empty vectors file is a failure, never a skip.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { compileStore, decide } from '../../edge/runtime/cf_runtime.mjs';
import { ROOT, edgeFunction } from './helpers.mjs';

const VECTORS_PATH = path.join(ROOT, 'tests', 'vectors', 'edge_vectors.json');

let suite;
let loadError;
try {
  suite = JSON.parse(fs.readFileSync(VECTORS_PATH, 'utf8'));
  if (!suite || !Array.isArray(suite.vectors) || suite.vectors.length === 0) throw new Error('no "vectors" in the file');
  if (typeof suite.now !== 'number') throw new Error('"now" (epoch seconds) is missing');
  compileStore(suite.store);
} catch (err) {
  loadError = err;
}

describe('shared edge vectors', () => {
  it(`loads ${path.relative(ROOT, VECTORS_PATH)}`, () => {
    assert.ifError(loadError && new Error(`cannot use ${VECTORS_PATH}: ${loadError.message}`));
  });
  if (loadError) return;

  const sharedStore = compileStore(suite.store);
  suite.vectors.forEach((vector, index) => {
    it(`${index}: ${vector.name}`, async () => {
      const { expect } = vector;
      assert.ok(expect && Number.isInteger(expect.status) && typeof expect.reason === 'string', 'vector has expect.status and expect.reason');
      const result = await decide(edgeFunction(), {
        uri: vector.uri,
        viewerIp: vector.viewer_ip ?? undefined,
        headers: vector.headers ?? {},
        method: vector.method ?? 'GET',
        querystring: vector.querystring,
        store: vector.store ? compileStore(vector.store) : sharedStore,
        now: vector.now ?? suite.now,
      });
      assert.equal(result.status, expect.status, `status for ${vector.name}`);
      assert.equal(result.reason, expect.reason, `reason for ${vector.name}`);
      if (expect.status === 200) assert.equal(result.uri, expect.uri, `forwarded uri for ${vector.name}`);
      assert.ok(result.kvs_reads <= 3, `kvs_reads ${result.kvs_reads}`);
    });
  });
});
