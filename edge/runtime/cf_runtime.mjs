// A small emulation of the CloudFront Functions JavaScript runtime 2.0 (cloudfront-js-2.0) for tests,
// the `python -m edge check|serve` commands and the benchmark.
//
// It enforces the limits a deployment would hit (source size, allowed imports), runs the source in a
// fresh `vm` context without Node globals (no require, process, timers, fs; no eval), supplies the
// `cloudfront` module with a KeyValueStore backed by a store in CloudFront's import format
// ({"data": [{"key": ..., "value": ...}]}), counts KeyValueStore reads per invocation and fixes the
// clock (Date.now() returns the given `now`, like CloudFront's constant per-run Date).

import { Buffer } from 'node:buffer';
import nodeCrypto from 'node:crypto';
import fs from 'node:fs';
import querystring from 'node:querystring';
import vm from 'node:vm';

export const MAX_SOURCE_BYTES = 10240;
export const ALLOWED_MODULES = Object.freeze(['crypto', 'querystring', 'buffer', 'cloudfront']);
const HASH_ALGORITHMS = new Set(['md5', 'sha1', 'sha256']);
const DIGEST_ENCODINGS = new Set(['hex', 'base64', 'base64url']);
const IMPORT_LINE = /^[ \t]*import[ \t]+([A-Za-z_$][\w$]*)[ \t]+from[ \t]+(['"])([^'"\n]+)\2[ \t]*;?[ \t]*$/;

/** The source breaks a limit of the CloudFront Functions runtime; the message says which. */
export class RuntimeLimitError extends Error {
  constructor(message) {
    super(message);
    this.name = 'RuntimeLimitError';
  }
}

/** Raised by the KeyValueStore handle's get() for a key that is not in the store (as CloudFront does). */
export class KeyNotFoundError extends Error {
  constructor(key) {
    super(`KeyValueStore: key not found: ${key}`);
    this.name = 'KeyNotFoundError';
  }
}

/**
 * Check the runtime's limits and rewrite each top-level `import X from 'mod';` into a lookup of a
 * provided module. Throws RuntimeLimitError on any violation. Line numbers are preserved.
 */
export function prepareSource(source) {
  if (typeof source !== 'string') throw new RuntimeLimitError('function source must be a string');
  const size = Buffer.byteLength(source, 'utf8');
  if (size > MAX_SOURCE_BYTES) {
    throw new RuntimeLimitError(`function source is ${size} bytes; CloudFront Functions allow at most ${MAX_SOURCE_BYTES}`);
  }
  if (/\brequire\s*\(/.test(source)) throw new RuntimeLimitError('require( is not allowed; use import X from \'module\';');
  if (/(^|[;{}\s])export\b/.test(source)) throw new RuntimeLimitError('export is not allowed in a CloudFront Function');
  if (/\bimport\s*\(/.test(source)) throw new RuntimeLimitError('dynamic import() is not allowed');
  const imports = [];
  const lines = source.split('\n').map((line, index) => {
    const match = IMPORT_LINE.exec(line.replace(/\r$/, ''));
    if (!match) {
      if (/^\s*import\b/.test(line)) {
        throw new RuntimeLimitError(`line ${index + 1}: only \`import name from 'module';\` is supported: ${line.trim()}`);
      }
      return line;
    }
    const [, name, , module] = match;
    if (!ALLOWED_MODULES.includes(module)) {
      throw new RuntimeLimitError(`line ${index + 1}: module '${module}' is not available (allowed: ${ALLOWED_MODULES.join(', ')})`);
    }
    imports.push({ name, module });
    return `const ${name} = __cf_modules[${JSON.stringify(module)}];`;
  });
  return { code: lines.join('\n'), imports, size };
}

/** Turn a store in CloudFront's KeyValueStore import format (or a Map / plain object) into a Map. */
export function compileStore(store) {
  if (store instanceof Map) return store;
  if (store === undefined || store === null) return new Map();
  if (typeof store !== 'object' || !Array.isArray(store.data)) {
    throw new TypeError('store must look like {"data": [{"key": "...", "value": "..."}]}');
  }
  const map = new Map();
  for (const [index, item] of store.data.entries()) {
    if (!item || typeof item.key !== 'string' || typeof item.value !== 'string') {
      throw new TypeError(`store.data[${index}] must be {"key": string, "value": string}`);
    }
    map.set(item.key, item.value);
  }
  return map;
}

/** Read a store file (CloudFront import format). */
export function readStoreFile(path) {
  return compileStore(JSON.parse(fs.readFileSync(path, 'utf8')));
}

function restrictedCrypto() {
  const wrap = (impl) => {
    const object = {
      update(data) {
        impl.update(data);
        return object;
      },
      digest(encoding) {
        if (encoding !== undefined && !DIGEST_ENCODINGS.has(encoding)) {
          throw new Error(`digest encoding '${encoding}' is not supported (hex, base64, base64url)`);
        }
        return encoding === undefined ? impl.digest() : impl.digest(encoding);
      },
    };
    return object;
  };
  const checkAlgorithm = (algorithm) => {
    if (!HASH_ALGORITHMS.has(algorithm)) throw new Error(`algorithm '${algorithm}' is not supported (md5, sha1, sha256)`);
  };
  return Object.freeze({
    createHash(algorithm) {
      checkAlgorithm(algorithm);
      return wrap(nodeCrypto.createHash(algorithm));
    },
    createHmac(algorithm, key) {
      checkAlgorithm(algorithm);
      return wrap(nodeCrypto.createHmac(algorithm, key));
    },
  });
}

function decodeValue(value, format) {
  if (format === undefined || format === 'string') return value;
  if (format === 'json') return JSON.parse(value);
  if (format === 'bytes') return Buffer.from(value, 'utf8');
  throw new Error(`unknown format '${format}' (string, json, bytes)`);
}

const CLOCK_PRELUDE = `(() => {
  const RealDate = Date;
  const clock = __cf_clock;
  class FixedDate extends RealDate {
    constructor(...args) { if (args.length === 0) super(clock()); else super(...args); }
    static now() { return clock(); }
  }
  globalThis.Date = FixedDate;
})();`;

/**
 * Load a CloudFront Function from `source` or `path`. Returns `{run, size, imports}` where
 * `run(event, {store, now, kvs})` resolves to `{result, kvsReads}`:
 *  - `store`: import-format object or a Map from compileStore(); missing keys make get() throw;
 *  - `now`: epoch seconds the function sees (default: the real clock);
 *  - `kvs`: optional object replacing the store ({get, exists, meta}), e.g. to simulate faults.
 * Runs are serialised (the clock and store are per invocation). If the handler throws or rejects,
 * `run` rejects with an Error whose `functionError` is true.
 */
export function loadFunction({ source, path } = {}) {
  if (source === undefined) {
    if (!path) throw new TypeError('loadFunction needs {source} or {path}');
    source = fs.readFileSync(path, 'utf8');
  }
  const prepared = prepareSource(source);
  let current = null;
  const requireCurrent = () => {
    if (!current) throw new Error('KeyValueStore used outside an invocation');
    return current;
  };
  const handle = Object.freeze({
    async get(key, options) {
      const state = requireCurrent();
      state.reads += 1;
      if (state.kvs) return state.kvs.get(key, options);
      if (!state.store.has(key)) throw new KeyNotFoundError(key);
      return decodeValue(state.store.get(key), options && options.format);
    },
    async exists(key) {
      const state = requireCurrent();
      state.reads += 1;
      if (state.kvs) return state.kvs.exists(key);
      return state.store.has(key);
    },
    async meta() {
      const state = requireCurrent();
      if (state.kvs && state.kvs.meta) return state.kvs.meta();
      const stamp = new Date(0).toISOString();
      return { creationDateTime: stamp, lastUpdatedDateTime: stamp, keyCount: state.store.size };
    },
  });
  const modules = Object.freeze({
    crypto: restrictedCrypto(),
    querystring,
    buffer: Object.freeze({ Buffer }),
    cloudfront: Object.freeze({ kvs: () => handle }),
  });
  const sandbox = {
    __cf_modules: modules,
    __cf_clock: () => requireCurrent().nowMs,
    Buffer,
    console: Object.freeze({ log: () => {} }),
    TextEncoder,
    TextDecoder,
    atob,
    btoa,
  };
  const context = vm.createContext(sandbox, { codeGeneration: { strings: false, wasm: false } });
  vm.runInContext(CLOCK_PRELUDE, context);
  new vm.Script(prepared.code, { filename: path || 'viewer_request.js' }).runInContext(context);
  delete context.__cf_modules;
  delete context.__cf_clock;
  const handler = context.handler;
  if (typeof handler !== 'function') throw new RuntimeLimitError('the function source does not define handler(event)');

  let queue = Promise.resolve();
  async function invoke(event, { store, now, kvs } = {}) {
    current = {
      store: kvs ? null : compileStore(store),
      kvs: kvs || null,
      reads: 0,
      nowMs: now === undefined || now === null ? Date.now() : Number(now) * 1000,
    };
    try {
      let result;
      try {
        result = await handler(structuredClone(event));
      } catch (err) {
        const error = new Error(`the function threw: ${err && err.message ? err.message : String(err)}`);
        error.functionError = true;
        error.cause = err;
        throw error;
      }
      return { result, kvsReads: current.reads };
    } finally {
      current = null;
    }
  }
  function run(event, options) {
    const next = queue.then(() => invoke(event, options));
    queue = next.catch(() => {});
    return next;
  }
  /** The handler itself on one store and clock, for tight loops: no event copy, no queue, no error wrapping
   * (the benchmark's direct mode). The handler may change the event it is given (it rewrites request.uri). Do not
   * mix with run() while a direct handler is in use. */
  function direct({ store, now, kvs } = {}) {
    const state = {
      store: kvs ? null : compileStore(store),
      kvs: kvs || null,
      reads: 0,
      nowMs: now === undefined || now === null ? Date.now() : Number(now) * 1000,
    };
    return (event) => {
      current = state;
      return handler(event);
    };
  }
  return { run, direct, size: prepared.size, imports: prepared.imports };
}

function parseQueryString(qs) {
  if (qs === undefined || qs === null || qs === '') return {};
  if (typeof qs === 'object') return qs;
  const out = {};
  for (const part of String(qs).replace(/^\?/, '').split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if (out[name]) {
      out[name].multiValue = out[name].multiValue || [{ value: out[name].value }];
      out[name].multiValue.push({ value });
    } else {
      out[name] = { value };
    }
  }
  return out;
}

/**
 * A CloudFront Functions viewer-request event. `headers` is {name: value | [values]}; names are
 * lower-cased, a cookie header is moved to `cookies` as CloudFront does. `viewerIp` omitted leaves
 * `event.viewer.ip` undefined (the function then treats any ip binding as missing).
 */
export function buildEvent({ uri, method = 'GET', querystring: qs, viewerIp, headers = {} } = {}) {
  if (typeof uri !== 'string') throw new TypeError('uri must be a string');
  const hs = {};
  const cookies = {};
  for (const [rawName, rawValue] of Object.entries(headers || {})) {
    const name = rawName.toLowerCase();
    const values = (Array.isArray(rawValue) ? rawValue : [rawValue]).map(String);
    if (name === 'cookie') {
      for (const pair of values.join(';').split(';')) {
        const eq = pair.indexOf('=');
        if (eq > 0) cookies[pair.slice(0, eq).trim()] = { value: pair.slice(eq + 1).trim() };
      }
      continue;
    }
    if (values.length === 0) continue;
    hs[name] = values.length === 1 ? { value: values[0] } : { value: values[0], multiValue: values.map((value) => ({ value })) };
  }
  const viewer = {};
  if (viewerIp !== undefined && viewerIp !== null) viewer.ip = String(viewerIp);
  return {
    version: '1.0',
    context: {
      distributionDomainName: 'd111111abcdef8.cloudfront.net',
      distributionId: 'ELOCALHARNESS',
      eventType: 'viewer-request',
      requestId: nodeCrypto.randomBytes(12).toString('base64url'),
    },
    viewer,
    request: { method, uri, querystring: parseQueryString(qs), headers: hs, cookies },
  };
}

/**
 * Map the function's return value to {decision, status, reason, uri}: a request object is an allow
 * (uri = the forwarded uri), a response object a deny (reason = the text in parentheses of
 * statusDescription, uri = the original uri).
 */
export function toDecision(result, originalUri) {
  if (result && typeof result === 'object' && 'statusCode' in result) {
    const status = Number(result.statusCode);
    const match = /\(([^()]*)\)\s*$/.exec(String(result.statusDescription || ''));
    return { decision: status >= 200 && status < 300 ? 'allow' : 'deny', status, reason: match ? match[1] : String(result.statusDescription || ''), uri: originalUri };
  }
  if (result && typeof result === 'object' && typeof result.uri === 'string') {
    return { decision: 'allow', status: 200, reason: 'ok', uri: result.uri };
  }
  throw new Error('the function returned neither a request nor a response');
}

/** Convenience: build the event, run it and map the result; adds kvs_reads. */
export async function decide(fn, { uri, method, querystring: qs, viewerIp, headers, store, now, kvs }) {
  const event = buildEvent({ uri, method, querystring: qs, viewerIp, headers });
  const { result, kvsReads } = await fn.run(event, { store, now, kvs });
  return { ...toDecision(result, uri), kvs_reads: kvsReads };
}
