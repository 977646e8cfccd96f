// Behaviour of edge/viewer_request.js against docs/edge-token.md, with tokens built by node's crypto.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';

import { buildEvent, loadFunction, toDecision } from '../../edge/runtime/cf_runtime.mjs';
import {
  FUNCTION_PATH, KEY, KID, NOW, OTHER_KEY, SID, b64u, baseClaims, bindingMac, check, edgeFunction, hmac, sign, store, tokenUri,
} from './helpers.mjs';

const ASSET = '/live/ch1/seg1.ts';
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Another spelling of the same bytes (the last character of a length % 4 of 2 or 3 has unused bits). */
function nonCanonical(text) {
  assert.ok(text.length % 4 === 2 || text.length % 4 === 3, 'test setup: a length with unused bits');
  const last = ALPHABET.indexOf(text[text.length - 1]);
  const spelling = text.slice(0, -1) + ALPHABET[last ^ 1];
  assert.notEqual(spelling, text);
  assert.deepEqual(Buffer.from(spelling, 'base64url'), Buffer.from(text, 'base64url'), 'test setup: same bytes');
  return spelling;
}

/** Decide and check the invariants that hold on every path: ≤ 3 KVS reads (the key, whether the session has a
 * revocation entry, the entry), a known status. */
async function run(args) {
  const result = await check(args);
  assert.ok(result.kvs_reads <= 3, `kvs_reads ${result.kvs_reads} > 3 for ${args.uri}`);
  assert.ok([200, 401, 403].includes(result.status), `status ${result.status}`);
  return result;
}

async function allows(args, uri = ASSET) {
  const result = await run(args);
  assert.deepEqual({ decision: result.decision, status: result.status, reason: result.reason, uri: result.uri },
    { decision: 'allow', status: 200, reason: 'ok', uri });
  return result;
}

async function denies(args, status, reason) {
  const result = await run(args);
  assert.deepEqual({ decision: result.decision, status: result.status, reason: result.reason, uri: result.uri },
    { decision: 'deny', status, reason, uri: args.uri });
  return result;
}

const uriFor = (claims, opts = {}) => tokenUri(sign({ claims, ...opts }), opts.asset ?? ASSET, opts.sid ?? SID);

describe('valid tokens', () => {
  it('allows a valid token, strips the token segment and reads the KVS twice', async () => {
    const result = await allows({ uri: uriFor(baseClaims()) });
    assert.equal(result.kvs_reads, 2);
  });

  it('forwards "/" when the token segment is the whole path', async () => {
    await allows({ uri: `/${SID}.${sign({ claims: baseClaims() })}` }, '/');
  });

  it('leaves the query string untouched and returns the request itself', async () => {
    const uri = uriFor(baseClaims());
    const event = buildEvent({ uri, viewerIp: '203.0.113.7', querystring: 'a=1&b=%2F&a=2' });
    const { result } = await edgeFunction().run(event, { store: store(), now: NOW });
    assert.equal(result.uri, ASSET);
    assert.deepEqual(result.querystring, event.request.querystring);
    assert.equal(result.method, 'GET');
  });

  it('formats denials as the doc says', async () => {
    const { result } = await edgeFunction().run(buildEvent({ uri: '/plain/file.ts' }), { store: store(), now: NOW });
    assert.deepEqual(JSON.parse(JSON.stringify(result)), {
      statusCode: 401, statusDescription: 'Unauthorized (missing-token)', headers: { 'cache-control': { value: 'no-store' } },
    });
    const traversal = await edgeFunction().run(buildEvent({ uri: uriFor(baseClaims(), { asset: '/a/../b' }) }), { store: store(), now: NOW });
    assert.equal(traversal.result.statusCode, 403);
    assert.equal(traversal.result.statusDescription, 'Forbidden (bad-path)');
    assert.deepEqual(toDecision(traversal.result, '/x'), { decision: 'deny', status: 403, reason: 'bad-path', uri: '/x' });
  });
});

describe('token shape (check 1)', () => {
  for (const uri of ['/', '/live/ch1/seg1.ts', '//x', `/${SID}/x.ts`, 'no-leading-slash', '']) {
    it(`missing-token for ${JSON.stringify(uri)}`, () => denies({ uri }, 401, 'missing-token'));
  }
  const jwt = sign({ claims: baseClaims() });
  const [h, p, s] = jwt.split('.');
  const cases = {
    'short sid': `/abc.${jwt}/x`,
    'long sid': `/${'a'.repeat(33)}.${jwt}/x`,
    'sid with a bad char': `/${SID.slice(0, -1)}!.${jwt}/x`,
    'two parts': `/${SID}.${h}.${p}/x`,
    'four parts': `/${SID}.${jwt}.${s}/x`,
    'empty part': `/${SID}.${h}..${s}/x`,
    'padded signature': `/${SID}.${jwt}=/x`,
    'standard base64 alphabet': `/${SID}.${h}.${p}.${s.slice(0, -1)}+/x`,
    'empty sid': `/.${jwt}/x`,
  };
  for (const [name, uri] of Object.entries(cases)) {
    it(`malformed-token: ${name}`, () => denies({ uri }, 401, 'malformed-token'));
  }

  it('limits the first segment to 4096 characters', async () => {
    // Pad the payload and the header so that the segment is exactly 4096, then 4097 characters long.
    const tokenFor = (pad, headerPad) => sign({
      claims: baseClaims({ pad: 'x'.repeat(pad) }), header: { alg: 'HS256', kid: KID, x: 'y'.repeat(headerPad) },
    });
    const find = (length) => {
      for (let headerPad = 0; headerPad < 4; headerPad++) {
        for (let pad = 2900; pad < 3100; pad++) {
          const jwt = tokenFor(pad, headerPad);
          if (`${SID}.${jwt}`.length === length) return jwt;
        }
      }
      throw new Error(`test setup: no ${length}-character segment`);
    };
    await allows({ uri: tokenUri(find(4096)) });
    await denies({ uri: tokenUri(find(4097)) }, 401, 'malformed-token');
  });
});

describe('header and key (checks 2-5)', () => {
  it('malformed-token when the header is not JSON, not an object, not UTF-8 or not decodable', async () => {
    await denies({ uri: uriFor(baseClaims(), { header: 'not json' }) }, 401, 'malformed-token');
    await denies({ uri: uriFor(baseClaims(), { header: '["HS256"]' }) }, 401, 'malformed-token');
    await denies({ uri: uriFor(baseClaims(), { header: 'null' }) }, 401, 'malformed-token');
    await denies({ uri: uriFor(baseClaims(), { rawHeader: b64u(Buffer.from([0x7b, 0xff, 0x7d])) }) }, 401, 'malformed-token');
    await denies({ uri: uriFor(baseClaims(), { rawHeader: 'eyJhbGciOiJIUzI1NiJ9A' }) }, 401, 'malformed-token'); // length % 4 == 1
  });

  for (const alg of ['none', 'HS512', 'RS256', 'hs256', 'HS256 ', null, 256]) {
    it(`bad-alg for alg ${JSON.stringify(alg)}`, () =>
      denies({ uri: uriFor(baseClaims(), { header: { alg, kid: KID } }) }, 401, 'bad-alg'));
  }
  it('bad-alg when alg is absent, before the kid is looked at', () =>
    denies({ uri: uriFor(baseClaims(), { header: { kid: 5 } }) }, 401, 'bad-alg'));

  for (const kid of [undefined, '', 'a'.repeat(65), 'k/1', 'k.1', 42, ['k']]) {
    it(`malformed-token for kid ${JSON.stringify(kid)}`, async () => {
      const result = await denies({ uri: uriFor(baseClaims(), { header: { alg: 'HS256', kid } }) }, 401, 'malformed-token');
      assert.equal(result.kvs_reads, 0);
    });
  }

  it('unknown-kid when k:<kid> is absent, after one read', async () => {
    const result = await denies({ uri: uriFor(baseClaims(), { header: { alg: 'HS256', kid: 'nope' } }) }, 401, 'unknown-kid');
    assert.equal(result.kvs_reads, 1);
  });

  const badKeys = {
    'too short (31 bytes)': b64u(KEY.subarray(0, 31)),
    'padded': `${b64u(KEY)}=`,
    'standard alphabet': KEY.toString('base64').replace(/=+$/, ''),
    'non-canonical trailing bits': nonCanonical(b64u(KEY)),
    'empty': '',
    'length % 4 == 1': `${b64u(KEY)}AA`.slice(0, 45),
  };
  for (const [name, value] of Object.entries(badKeys)) {
    it(`unknown-kid when the stored key is ${name}`, () =>
      denies({ uri: uriFor(baseClaims()), storeData: store({ keys: { [KID]: value } }) }, 401, 'unknown-kid'));
  }

  it('accepts keys longer than 32 bytes', async () => {
    const long = Buffer.concat([KEY, OTHER_KEY]);
    await allows({ uri: uriFor(baseClaims(), { key: long }), storeData: store({ keys: { [KID]: long } }) });
  });
});

describe('signature (check 6)', () => {
  const jwt = sign({ claims: baseClaims() });
  const [h, p, s] = jwt.split('.');

  it('bad-signature for a token signed with another key', () =>
    denies({ uri: uriFor(baseClaims(), { key: OTHER_KEY }) }, 401, 'bad-signature'));

  it('bad-signature when the header was changed to name another valid key', async () => {
    const h2 = b64u(JSON.stringify({ alg: 'HS256', kid: 'other' }));
    await denies({ uri: tokenUri(`${h2}.${p}.${s}`), storeData: store({ keys: { [KID]: KEY, other: OTHER_KEY } }) }, 401, 'bad-signature');
  });

  it('bad-signature when the payload was changed', async () => {
    const p2 = b64u(JSON.stringify(baseClaims({ exp: NOW + 999999 })));
    await denies({ uri: tokenUri(`${h}.${p2}.${s}`) }, 401, 'bad-signature');
  });

  it('bad-signature when the signature was changed', async () => {
    const flipped = (s[5] === 'A' ? 'B' : 'A');
    await denies({ uri: tokenUri(`${h}.${p}.${s.slice(0, 5)}${flipped}${s.slice(6)}`) }, 401, 'bad-signature');
  });

  it('bad-signature for a canonical third part that is not 32 bytes', async () => {
    const mac = hmac(KEY, `${h}.${p}`);
    for (const bytes of [mac.subarray(0, 31), Buffer.concat([mac, Buffer.from([0])]), mac.subarray(0, 1), Buffer.concat([mac, mac])]) {
      await denies({ uri: tokenUri(`${h}.${p}.${b64u(bytes)}`) }, 401, 'bad-signature');
    }
    await denies({ uri: tokenUri(`${h}.${p}.${s}AAAA`) }, 401, 'bad-signature'); // 47 chars, canonical
    await denies({ uri: tokenUri(`${h}.${p}.${s}A`) }, 401, 'bad-signature'); // 44 chars = 33 bytes
  });

  it('malformed-token when any part is not canonical base64url, before alg, kid and key', async () => {
    // A header and a payload whose base64url length leaves unused bits in the last character.
    const header = { alg: 'HS256', kid: KID, typ: 'JWT', x: '' };
    while (b64u(JSON.stringify(header)).length % 4 === 0) header.x += 'x';
    const claims = baseClaims({ x: '' });
    while (b64u(JSON.stringify(claims)).length % 4 === 0) claims.x += 'x';
    const hb = b64u(JSON.stringify(header));
    const pb = b64u(JSON.stringify(claims));
    await allows({ uri: tokenUri(sign({ rawHeader: hb, rawPayload: pb })) });
    const cases = [
      sign({ rawHeader: nonCanonical(hb), rawPayload: pb }),
      sign({ rawHeader: hb, rawPayload: nonCanonical(pb) }),
      sign({ rawHeader: nonCanonical(b64u(JSON.stringify({ ...header, alg: 'none', kid: 'nope' }))), rawPayload: pb }),
      `${h}.${p}.${nonCanonical(s)}`,
      `${h}.${p}${'A'.repeat((5 - (p.length % 4)) % 4)}.${s}`, // payload length % 4 == 1
      `${h}.${p}.${s}AB`, // 45 characters: length % 4 == 1
    ];
    for (const jwt of cases) {
      const result = await denies({ uri: tokenUri(jwt) }, 401, 'malformed-token');
      assert.equal(result.kvs_reads, 0);
    }
  });

  it('a hex MAC is canonical base64url of 48 bytes: bad-signature', async () => {
    const mac = hmac(KEY, `${h}.${p}`);
    await denies({ uri: tokenUri(`${h}.${p}.${mac.toString('hex')}`) }, 401, 'bad-signature');
  });

});

describe('claims (checks 7-11)', () => {
  it('malformed-token when the signed payload is not a JSON object', async () => {
    for (const raw of ['not json', '[1,2]', '"x"', '42', 'null']) {
      await denies({ uri: tokenUri(sign({ rawPayload: b64u(raw) })) }, 401, 'malformed-token');
    }
    let undecodable = b64u(JSON.stringify(baseClaims()));
    while (undecodable.length % 4 !== 1) undecodable += 'A';
    await denies({ uri: tokenUri(sign({ rawPayload: undecodable })) }, 401, 'malformed-token');
  });

  const bad = {
    'sid a number': { sid: 5 },
    'exp a string': { exp: String(NOW + 100) },
    'exp a boolean': { exp: true },
    'exp null': { exp: null },
    'iat missing': { iat: undefined },
    'nbf null': { nbf: null },
    'nbf a string': { nbf: '1' },
    'paths empty': { paths: [] },
    'paths a string': { paths: '/live/' },
    'paths item without a slash': { paths: ['live/'] },
    'paths item a number': { paths: [1] },
    'exc a string': { exc: '/keys/' },
    'exc item without a slash': { exc: ['keys/'] },
    'bnd empty': { bnd: [], bh: 'x' },
    'bnd a string': { bnd: 'ip', bh: 'x' },
    'bnd without bh': { bnd: ['ip'] },
    'bh a number': { bnd: ['ip'], bh: 1 },
    'unknown descriptor': { bnd: ['cookie'], bh: 'x' },
    'ip/129': { bnd: ['ip/129'], bh: 'x' },
    'ip/024': { bnd: ['ip/024'], bh: 'x' },
    'ip/': { bnd: ['ip/'], bh: 'x' },
    'h: upper case': { bnd: ['h:X-Device'], bh: 'x' },
    'h: empty': { bnd: ['h:'], bh: 'x' },
    'h: 65 chars': { bnd: [`h:${'a'.repeat(65)}`], bh: 'x' },
  };
  for (const [name, extra] of Object.entries(bad)) {
    it(`bad-claims: ${name}`, () => denies({ uri: uriFor(baseClaims(extra)) }, 401, 'bad-claims'));
  }
  it('bad-claims is checked before time and sid', () =>
    denies({ uri: uriFor(baseClaims({ exp: 'x', sid: 'someone-else-12345' })) }, 401, 'bad-claims'));

  it('accepts an empty exc list, extra claims and float times', () =>
    allows({ uri: uriFor(baseClaims({ exc: [], aud: 'x', exp: NOW + 0.5 })) }));

  it('expired at exp <= now - 30, not before', async () => {
    await denies({ uri: uriFor(baseClaims({ exp: NOW - 31 })) }, 401, 'expired');
    await denies({ uri: uriFor(baseClaims({ exp: NOW - 30 })) }, 401, 'expired');
    await allows({ uri: uriFor(baseClaims({ exp: NOW - 29 })) });
  });

  it('not-yet-valid when nbf or iat > now + 30', async () => {
    await denies({ uri: uriFor(baseClaims({ nbf: NOW + 31 })) }, 401, 'not-yet-valid');
    await allows({ uri: uriFor(baseClaims({ nbf: NOW + 30 })) });
    await denies({ uri: uriFor(baseClaims({ iat: NOW + 31 })) }, 401, 'not-yet-valid');
    await allows({ uri: uriFor(baseClaims({ iat: NOW + 30 })) });
  });

  it('not-yet-valid is checked before expired', () =>
    denies({ uri: uriFor(baseClaims({ nbf: NOW + 100, exp: NOW - 100 })) }, 401, 'not-yet-valid'));

  it('the clock comes from the harness', async () => {
    const uri = uriFor(baseClaims());
    await allows({ uri, now: NOW + 3600 + 29 });
    await denies({ uri, now: NOW + 3600 + 30 }, 401, 'expired');
  });

  it('sid-mismatch when the URL prefix is another session id', async () => {
    await denies({ uri: uriFor(baseClaims(), { sid: 'Another_session_01' }) }, 401, 'sid-mismatch');
    await denies({ uri: uriFor(baseClaims({ sid: 'Another_session_01' })) }, 401, 'sid-mismatch');
  });

  it('sid-mismatch wins over a bad path', () =>
    denies({ uri: uriFor(baseClaims({ sid: 'Another_session_01' }), { asset: '/a/../b' }) }, 401, 'sid-mismatch'));
});

describe('path rules (checks 12-13)', () => {
  const badPaths = [
    '/live/ch1/../ch2/x.ts', '/live/..', '/..', '/live/./x.ts', '/.', '/live/ch1/.',
    '/live/%2e%2e/x', '/live/%2E%2E/x', '/live/%2e/x', '/live/ch1%2fx.ts', '/live/ch1%2Fx.ts',
    '/live/%5c/x', '/live/%5C', '/live/a%00.ts', '/live//x.ts', '//live/x.ts',
    '/live\\ch1', '/live/\x01', '/live/\x1f', '/live/\x7f', '/live/\tx', '/live/\nx',
    // one spelling per object: escaped unreserved characters, lowercase or malformed escapes, double escapes
    '/live/%41.ts', '/live/seg_1.t%73', '/live/%252e%252e/x', '/live/%252E/x', '/live/caf%c3%a9.ts', '/live/%C0%AE',
    '/live/%E0%80%AE', '/live/%F8.ts', '/live/x.ts%3Bx', '/live/%', '/live/%4', '/live/%g1',
  ];
  for (const asset of badPaths) {
    it(`bad-path for ${JSON.stringify(asset)}`, async () => {
      const result = await denies({ uri: uriFor(baseClaims({ paths: ['/'] }), { asset }) }, 403, 'bad-path');
      assert.equal(result.kvs_reads, 1);
    });
  }
  for (const asset of ['/live/ch1/', '/live/...', '/live/..x/a.ts', '/live/a..b', '/live/caf%C3%A9.ts', '/live/a%20b.ts',
    '/live/50%25.ts', '/live/%40x.ts', '/']) {
    it(`not a bad path: ${JSON.stringify(asset)}`, () => allows({ uri: uriFor(baseClaims(), { asset }) }, asset));
  }

  it('scope prefixes respect segment boundaries', async () => {
    const claims = baseClaims({ paths: ['/live/ch1'] });
    await allows({ uri: uriFor(claims, { asset: '/live/ch1/a.ts' }) }, '/live/ch1/a.ts');
    await allows({ uri: uriFor(claims, { asset: '/live/ch1' }) }, '/live/ch1');
    await denies({ uri: uriFor(claims, { asset: '/live/ch10/a.ts' }) }, 403, 'out-of-scope');
    await denies({ uri: uriFor(claims, { asset: '/live/ch1.m3u8' }) }, 403, 'out-of-scope');
    await denies({ uri: uriFor(claims, { asset: '/live/ch2/a.ts' }) }, 403, 'out-of-scope');
    await denies({ uri: uriFor(claims, { asset: '/live' }) }, 403, 'out-of-scope');
  });

  it('a prefix ending in "/" matches anything under it; several prefixes are alternatives', async () => {
    const claims = baseClaims({ paths: ['/vod/movie1/', '/live/ch1'] });
    await allows({ uri: uriFor(claims, { asset: '/vod/movie1/x.m4s' }) }, '/vod/movie1/x.m4s');
    await allows({ uri: uriFor(claims, { asset: '/live/ch1/x.ts' }) }, '/live/ch1/x.ts');
    await denies({ uri: uriFor(claims, { asset: '/vod/movie1' }) }, 403, 'out-of-scope');
    await denies({ uri: uriFor(claims, { asset: '/vod/movie10/x' }) }, 403, 'out-of-scope');
  });

  it('bad-path is checked before scope, and traversal cannot escape a scope', async () => {
    const claims = baseClaims({ paths: ['/live/ch1/'] });
    await denies({ uri: uriFor(claims, { asset: '/live/ch1/../ch2/x.ts' }) }, 403, 'bad-path');
    await denies({ uri: uriFor(claims, { asset: '/live/ch1/%2e%2e/ch2/x.ts' }) }, 403, 'bad-path');
    await denies({ uri: uriFor(claims, { asset: '/live/ch1%2f..%2fch2/x.ts' }) }, 403, 'bad-path');
  });
});

describe('viewer binding (check 14)', () => {
  const bound = (descriptors, values, extra = {}) => baseClaims({ bnd: descriptors, bh: bindingMac(descriptors, values), ...extra });

  it('ip: IPv4 exact', async () => {
    const claims = bound(['ip'], ['203.0.113.7']);
    await allows({ uri: uriFor(claims), viewerIp: '203.0.113.7' });
    await denies({ uri: uriFor(claims), viewerIp: '203.0.113.8' }, 403, 'binding');
  });

  it('ip: IPv6 in any notation', async () => {
    const claims = bound(['ip'], ['2001:0db8:0000:0000:0000:0000:0000:0001']);
    for (const ip of ['2001:db8::1', '2001:DB8::1', '2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8:0:0:0:0:0:1',
      '2001:db8:0::0:1', '2001:db8::0.0.0.1', ' 2001:db8::1 ']) {
      await allows({ uri: uriFor(claims), viewerIp: ip });
    }
    await denies({ uri: uriFor(claims), viewerIp: '2001:db8::2' }, 403, 'binding');
  });

  it('ip: an IPv4-mapped IPv6 address is the IPv4 address', async () => {
    const claims = bound(['ip'], ['203.0.113.7']);
    for (const ip of ['::ffff:203.0.113.7', '::FFFF:cb00:7107', '0:0:0:0:0:ffff:cb00:7107', '0000:0000:0000:0000:0000:ffff:203.0.113.7']) {
      await allows({ uri: uriFor(claims), viewerIp: ip });
    }
    // IPv4-compatible (::a.b.c.d) and NAT64 addresses are not mapped.
    await denies({ uri: uriFor(claims), viewerIp: '::203.0.113.7' }, 403, 'binding');
    await denies({ uri: uriFor(claims), viewerIp: '64:ff9b::203.0.113.7' }, 403, 'binding');
  });

  it('ip/24 binds the IPv4 network', async () => {
    const claims = bound(['ip/24'], ['203.0.113.0/24']);
    await allows({ uri: uriFor(claims), viewerIp: '203.0.113.200' });
    await allows({ uri: uriFor(claims), viewerIp: '::ffff:203.0.113.1' });
    await denies({ uri: uriFor(claims), viewerIp: '203.0.114.1' }, 403, 'binding');
  });

  it('ip/48 binds the IPv6 network', async () => {
    const claims = bound(['ip/48'], ['2001:0db8:0001:0000:0000:0000:0000:0000/48']);
    await allows({ uri: uriFor(claims), viewerIp: '2001:db8:1:ffff::5' });
    await allows({ uri: uriFor(claims), viewerIp: '2001:db8:1::' });
    await denies({ uri: uriFor(claims), viewerIp: '2001:db8:2::1' }, 403, 'binding');
    await denies({ uri: uriFor(claims), viewerIp: '203.0.113.7' }, 403, 'binding');
  });

  it('odd prefix lengths, /0 and full-length prefixes', async () => {
    const cases = [
      ['ip/0', '0.0.0.0/0', '198.51.100.1'],
      ['ip/1', '128.0.0.0/1', '203.0.113.7'],
      ['ip/17', '203.0.0.0/17', '203.0.113.7'],
      ['ip/31', '203.0.113.6/31', '203.0.113.7'],
      ['ip/32', '203.0.113.7/32', '203.0.113.7'],
      ['ip/0', '0000:0000:0000:0000:0000:0000:0000:0000/0', '2001:db8::1'],
      ['ip/13', '2000:0000:0000:0000:0000:0000:0000:0000/13', '2001:db8::1'],
      ['ip/29', '2001:0db8:0000:0000:0000:0000:0000:0000/29', '2001:dbf:ffff::1'],
      ['ip/127', '2001:0db8:0000:0000:0000:0000:0000:0000/127', '2001:db8::1'],
      ['ip/128', '2001:0db8:0000:0000:0000:0000:0000:0001/128', '2001:db8::1'],
      ['ip/33', '2001:0db8:8000:0000:0000:0000:0000:0000/33', '2001:db8:8abc::1'],
    ];
    for (const [d, canonical, ip] of cases) {
      await allows({ uri: uriFor(bound([d], [canonical])), viewerIp: ip });
    }
  });

  it('random IPv6 addresses and prefixes match an independent BigInt computation', async () => {
    let seed = 12345;
    const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
    for (let i = 0; i < 40; i++) {
      const words = Array.from({ length: 8 }, () => (rnd(4) === 0 ? 0 : rnd(65536)));
      if (words[5] === 0xffff && words.slice(0, 5).every((w) => w === 0)) words[5] = 1;
      const full = words.map((w) => w.toString(16).padStart(4, '0')).join(':');
      const compressed = new URL(`http://[${full}]/`).hostname.slice(1, -1);
      const n = rnd(129);
      const value = words.reduce((acc, w) => (acc << 16n) | BigInt(w), 0n);
      const mask = n === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - n)) - 1n);
      const net = value & mask;
      const netWords = Array.from({ length: 8 }, (_, k) => Number((net >> BigInt(112 - 16 * k)) & 0xffffn));
      const canonical = `${netWords.map((w) => w.toString(16).padStart(4, '0')).join(':')}/${n}`;
      await allows({ uri: uriFor(bound([`ip/${n}`], [canonical])), viewerIp: compressed.toUpperCase() });
      await allows({ uri: uriFor(bound(['ip'], [full])), viewerIp: compressed });
    }
  });

  it('ip/N beyond the family has no value (denied, never skipped)', async () => {
    await denies({ uri: uriFor(bound(['ip/33'], ['203.0.113.7/33'])), viewerIp: '203.0.113.7' }, 403, 'binding');
  });

  it('an unparsable or missing viewer address is a binding failure', async () => {
    const claims = bound(['ip'], ['203.0.113.7']);
    for (const ip of ['203.0.113.07', '203.0.113', '203.0.113.7.1', '256.0.0.1', '1:2:3:4:5:6:7:8:9', '1::2::3', ':1:2:3:4:5:6:7',
      '1:2:3:4:5:6:7::8', '12345::1', 'fe80::1%eth0', 'garbage', '', '::ffff:203.0.113.07']) {
      await denies({ uri: uriFor(claims), viewerIp: ip }, 403, 'binding');
    }
    await denies({ uri: uriFor(claims), viewerIp: null }, 403, 'binding'); // no event.viewer.ip
  });

  it('country and region are upper-cased', async () => {
    const claims = bound(['country', 'region'], ['GB', 'ENG']);
    await allows({ uri: uriFor(claims), headers: { 'CloudFront-Viewer-Country': 'gb', 'cloudfront-viewer-country-region': 'eng' } });
    await denies({ uri: uriFor(claims), headers: { 'cloudfront-viewer-country': 'FR', 'cloudfront-viewer-country-region': 'ENG' } }, 403, 'binding');
    await denies({ uri: uriFor(claims), headers: { 'cloudfront-viewer-country': 'GB' } }, 403, 'binding');
    await denies({ uri: uriFor(claims), headers: { 'cloudfront-viewer-country': '', 'cloudfront-viewer-country-region': 'ENG' } }, 403, 'binding');
  });

  it('ua and h:<name> are taken as sent', async () => {
    const ua = 'Mozilla/5.0 (X11; Linux x86_64) Player/1.0 ünïcode';
    const claims = bound(['ua', 'h:x-device-id'], [ua, 'Dev-42']);
    await allows({ uri: uriFor(claims), headers: { 'User-Agent': ua, 'X-Device-Id': 'Dev-42' } });
    await denies({ uri: uriFor(claims), headers: { 'user-agent': ua.toLowerCase(), 'x-device-id': 'Dev-42' } }, 403, 'binding');
    await denies({ uri: uriFor(claims), headers: { 'user-agent': ua, 'x-device-id': 'dev-42' } }, 403, 'binding');
    await denies({ uri: uriFor(claims), headers: { 'user-agent': ua } }, 403, 'binding');
    await denies({ uri: uriFor(claims), headers: {} }, 403, 'binding');
  });

  it('the message follows the bnd order and covers every descriptor', async () => {
    const descriptors = ['ip/24', 'country', 'ua'];
    const values = ['203.0.113.0/24', 'GB', 'agent'];
    const headers = { 'cloudfront-viewer-country': 'GB', 'user-agent': 'agent' };
    await allows({ uri: uriFor(bound(descriptors, values)), viewerIp: '203.0.113.9', headers });
    const swapped = baseClaims({ bnd: descriptors, bh: bindingMac(['country', 'ip/24', 'ua'], ['GB', '203.0.113.0/24', 'agent']) });
    await denies({ uri: uriFor(swapped), viewerIp: '203.0.113.9', headers }, 403, 'binding');
    const otherKey = baseClaims({ bnd: descriptors, bh: bindingMac(descriptors, values, Buffer.alloc(32, 7)) });
    await denies({ uri: uriFor(otherKey), viewerIp: '203.0.113.9', headers }, 403, 'binding');
  });

  it('bh must match exactly (no other spelling, no prefix)', async () => {
    const mac = bindingMac(['ip'], ['203.0.113.7']);
    for (const bh of [`${mac}=`, mac.slice(0, -1), `${mac}A`, '', Buffer.from(mac, 'base64url').toString('base64')]) {
      await denies({ uri: uriFor(baseClaims({ bnd: ['ip'], bh })), viewerIp: '203.0.113.7' }, 403, 'binding');
    }
  });

  it('exc prefixes are exempt from binding; scope still applies', async () => {
    const claims = bound(['ip'], ['198.51.100.1'], { exc: ['/keys/', '/live/ch1/init.mp4'], paths: ['/live/ch1/', '/keys/'] });
    await allows({ uri: uriFor(claims, { asset: '/keys/k1.key' }) }, '/keys/k1.key');
    await allows({ uri: uriFor(claims, { asset: '/live/ch1/init.mp4' }) }, '/live/ch1/init.mp4');
    await denies({ uri: uriFor(claims, { asset: '/live/ch1/init.mp40' }) }, 403, 'binding');
    await denies({ uri: uriFor(claims, { asset: '/live/ch1/seg1.ts' }) }, 403, 'binding');
    await denies({ uri: uriFor(claims, { asset: '/keys2/k1.key' }) }, 403, 'out-of-scope');
  });

  it('binding is checked before revocation (one read)', async () => {
    const claims = bound(['ip'], ['198.51.100.1']);
    const result = await denies({ uri: uriFor(claims), storeData: store({ revoked: { [SID]: `${NOW + 100}|auto` } }) }, 403, 'binding');
    assert.equal(result.kvs_reads, 1);
  });
});

describe('revocation (check 15)', () => {
  const uri = uriFor(baseClaims());
  const revokedWith = (value) => store({ revoked: { [SID]: value } });

  it('revoked while the expiry is in the future', async () => {
    const result = await denies({ uri, storeData: revokedWith(`${NOW + 100}|auto`) }, 403, 'revoked');
    assert.equal(result.kvs_reads, 3); // the key, exists(r:<sid>), get(r:<sid>)
    await denies({ uri, storeData: revokedWith(`${NOW + 1}|manual`) }, 403, 'revoked');
    await denies({ uri, storeData: revokedWith(`${NOW + 100}`) }, 403, 'revoked');
  });

  it('a revocation whose expiry has passed no longer applies', async () => {
    await allows({ uri, storeData: revokedWith(`${NOW}|auto`) });
    await allows({ uri, storeData: revokedWith(`${NOW - 1}|auto`) });
    await allows({ uri, storeData: revokedWith('0|auto') });
  });

  it('a revoked session whose token has expired is reported expired', () =>
    denies({ uri: uriFor(baseClaims({ exp: NOW - 100 })), storeData: revokedWith(`${NOW + 100}|auto`) }, 401, 'expired'));

  for (const value of ['garbage', '', '|auto', 'abc|auto', ' 1|auto', '1.5|auto', '-5|auto', '1e12|auto', '0x7fffffff|auto', '٣|auto']) {
    it(`fails closed on the revocation value ${JSON.stringify(value)}`, () => denies({ uri, storeData: revokedWith(value) }, 403, 'revoked'));
  }

  it('only the revoked session is affected', async () => {
    await allows({ uri, storeData: store({ revoked: { Other_session_0001: `${NOW + 100}|auto` } }) });
  });
});

describe('KeyValueStore use', () => {
  it('reads twice for an allowed request, and not at all for a malformed URI', async () => {
    assert.equal((await run({ uri: '/nothing' })).kvs_reads, 0);
    assert.equal((await run({ uri: uriFor(baseClaims(), { header: { alg: 'none', kid: KID } }) })).kvs_reads, 0);
    assert.equal((await run({ uri: uriFor(baseClaims(), { key: OTHER_KEY }) })).kvs_reads, 1);
    assert.equal((await run({ uri: uriFor(baseClaims({ exp: NOW - 100 })) })).kvs_reads, 1);
    assert.equal((await run({ uri: uriFor(baseClaims()) })).kvs_reads, 2);
  });

  it('a KVS that throws on every read denies', async () => {
    const failing = { get: async () => { throw new Error('KVS unavailable'); }, exists: async () => { throw new Error('x'); } };
    await denies({ uri: uriFor(baseClaims()), kvs: failing }, 401, 'unknown-kid');
    const syncThrow = { get: () => { throw new Error('boom'); }, exists: () => false };
    await denies({ uri: uriFor(baseClaims()), kvs: syncThrow }, 401, 'unknown-kid');
  });

  it('a KVS returning something odd for the key denies', async () => {
    for (const value of [42, null, undefined, { k: 1 }, Buffer.from(b64u(KEY))]) {
      const odd = { get: async (key) => (key.startsWith('k:') ? value : Promise.reject(new Error('absent'))), exists: async () => true };
      await denies({ uri: uriFor(baseClaims()), kvs: odd }, 401, 'unknown-kid');
    }
  });

  it('a non-string revocation value fails closed', async () => {
    for (const value of [{ expiry: NOW + 100 }, [], true]) {
      const odd = { get: async (key) => (key.startsWith('k:') ? b64u(KEY) : value), exists: async () => true };
      await denies({ uri: uriFor(baseClaims()), kvs: odd }, 403, 'revoked');
    }
  });

  it('an absent r:<sid> is known from exists() without a get() (the hot path)', async () => {
    const reads = [];
    const absent = {
      get: async (key) => { reads.push(`get ${key}`); if (key.startsWith('k:')) return b64u(KEY); throw new Error('not found'); },
      exists: async (key) => { reads.push(`exists ${key}`); return false; },
    };
    await allows({ uri: uriFor(baseClaims()), kvs: absent });
    assert.deepEqual(reads, [`get k:${KID}`, `exists r:${SID}`]);
  });

  const faulty = (where) => ({
    get: async (key) => {
      if (key.startsWith('k:')) return b64u(KEY);
      if (where == 'get') throw new Error('KVS unavailable');
      return `${NOW + 100}|auto`;
    },
    exists: async () => { if (where == 'exists') throw new Error('KVS unavailable'); return true; },
  });

  it('a fault reading r:<sid> lets the request through by default (RevocationReadFault=allow)', async () => {
    for (const where of ['exists', 'get']) await allows({ uri: uriFor(baseClaims()), kvs: faulty(where) });
  });

  it('with RevocationReadFault=deny a fault reading r:<sid> is 403 revocation-unavailable', async () => {
    const source = fs.readFileSync(FUNCTION_PATH, 'utf8');
    assert.ok(source.includes("const ON_FAULT = 'allow';"));
    const strict = loadFunction({ source: source.replace("const ON_FAULT = 'allow';", "const ON_FAULT = 'deny';") });
    for (const where of ['exists', 'get']) {
      const { result } = await strict.run(buildEvent({ uri: uriFor(baseClaims()) }), { kvs: faulty(where), now: NOW });
      assert.equal(result.statusCode, 403);
      assert.equal(result.statusDescription, 'Forbidden (revocation-unavailable)');
    }
    const { result } = await strict.run(buildEvent({ uri: uriFor(baseClaims()) }), { store: store(), now: NOW });
    assert.equal(result.uri, '/live/ch1/seg1.ts'); // no fault: the same decisions
  });
});

describe('robustness', () => {
  it('an unexpected error is a 401 error, never a crash', async () => {
    const fn = edgeFunction();
    for (const mutate of [
      (e) => { e.request.uri = 42; },
      (e) => { e.request.uri = null; },
      (e) => { delete e.request; },
    ]) {
      const event = buildEvent({ uri: uriFor(baseClaims()) });
      mutate(event);
      const { result } = await fn.run(event, { store: store(), now: NOW });
      assert.equal(result.statusCode, 401);
      assert.equal(result.statusDescription, 'Unauthorized (error)');
    }
  });

  it('tolerates events without headers or viewer', async () => {
    const fn = edgeFunction();
    const claims = baseClaims({ bnd: ['ip', 'ua'], bh: bindingMac(['ip', 'ua'], ['203.0.113.7', 'x']) });
    const event = buildEvent({ uri: uriFor(claims) });
    delete event.request.headers;
    delete event.viewer;
    const { result } = await fn.run(event, { store: store(), now: NOW });
    assert.equal(result.statusDescription, 'Forbidden (binding)');
  });

  it('random garbage URIs never throw out of the handler', async () => {
    let seed = 987654321;
    const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
    const pieces = ['/', '.', '..', '%2e', '%2F', '%', '\\', '\x00', '\n', 'A', 'z', '-', '_', '=', '+', '?', '#', '\u00e9',
      '\ud83d\ude00', '\ud800', '::', SID, '.eyJ', 'e30', '{}', 'null', ' ', '\u2028'];
    const valid = uriFor(baseClaims());
    const fn = edgeFunction();
    for (let i = 0; i < 1500; i++) {
      let uri;
      if (i % 3 === 0) {
        uri = Array.from({ length: rnd(40) }, () => pieces[rnd(pieces.length)]).join('');
      } else if (i % 3 === 1) {
        const at = rnd(valid.length);
        uri = valid.slice(0, at) + pieces[rnd(pieces.length)] + valid.slice(at + rnd(3));
      } else {
        uri = `/${SID}.${Array.from({ length: 3 }, () => b64u(Buffer.from(Array.from({ length: rnd(60) }, () => rnd(256))))).join('.')}/x${pieces[rnd(pieces.length)]}`;
      }
      const { result, kvsReads } = await fn.run(buildEvent({ uri, viewerIp: pieces[rnd(pieces.length)] }), { store: store(), now: NOW });
      const decision = toDecision(result, uri);
      assert.ok(kvsReads <= 3);
      assert.ok(['allow', 'deny'].includes(decision.decision));
      if (decision.decision === 'allow') assert.ok(decision.uri.startsWith('/'));
      else assert.match(result.statusDescription, /^(Unauthorized|Forbidden) \([a-z-]+\)$/);
    }
  });
});
