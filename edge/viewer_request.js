import cf from 'cloudfront';
import crypto from 'crypto';

// Viewer-request token check for /<sid>.<jwt>/<asset path>.
// Rules, order and reasons: docs/edge-token.md (edge/verify.py implements the same).
const kvs = cf.kvs();
const SKEW = 30;
const B64 = /^[A-Za-z0-9_-]+$/;
const SID = /^[A-Za-z0-9_-]{16,32}$/;
const KID = /^[A-Za-z0-9_-]{1,64}$/;
const DESC = /^(ip|country|region|ua|ip\/(\d|[1-9]\d|1[01]\d|12[0-8])|h:[a-z0-9-]{1,64})$/;
// one spelling per object: a malformed or lowercase escape, an escaped unreserved character, / \\ ; NUL, a
// double escape, an overlong or impossible UTF-8 byte (docs/edge-token.md, Path rules)
const ENC = /%(?![0-9A-F]{2})|%(2[DEF]|3[0-9B]|4[1-9A-F]|5[0-9ACF]|6[1-9A-F]|7[0-9AE]|00|25[0-9A-Fa-f]{2}|C[01]|F[5-9A-F]|E0%[89]|F0%8)/;
const CTRL = /[\x00-\x1f\x7f\\]/;
const DOTS = /\/\.\.?(?:\/|$)/; // a segment . or ..
const HEX = '0123456789abcdef';
// When the r:<sid> read faults: 'allow' (the default) or 'deny'. The stack sets it (RevocationReadFault).
const ON_FAULT = 'allow';

function deny(st, why) {
  return {
    statusCode: st,
    statusDescription: (st == 401 ? 'Unauthorized (' : 'Forbidden (') + why + ')',
    headers: { 'cache-control': { value: 'no-store' } }
  };
}

// Canonical unpadded base64url (s matches B64): re-encoding gives s (no spare bits set in the last character).
const B64X = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
function canonical64(s) {
  const r = s.length % 4;
  return r != 1 && (r == 0 || (B64X.indexOf(s[s.length - 1]) & (r == 2 ? 15 : 3)) == 0);
}

// Canonical unpadded base64url -> Buffer, else null.
function b64(s) {
  return canonical64(s) ? Buffer.from(s, 'base64url') : null;
}

// Brackets outside strings nested deeper than DEPTH (edge/verify.py caps the same), checked before parsing.
const DEPTH = 8;
function deep(t) {
  if ((t.match(/[[{]/g) || []).length <= DEPTH) return false;
  let d = 0, q = false;
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (q) {
      if (c == '\\') i++;
      else if (c == '"') q = false;
    } else if (c == '"') q = true;
    else if (c == '[' || c == '{') {
      if (++d > DEPTH) return true;
    } else if (c == ']' || c == '}') d--;
  }
  return false;
}

// Decoded JWT part -> JSON object (UTF-8, at most DEPTH deep), else null.
function obj(b) {
  try {
    const t = b.toString(); // bad UTF-8 decodes to U+FFFD
    if ((t.includes('\uFFFD') && !Buffer.from(t).equals(b)) || deep(t)) return null;
    const o = JSON.parse(t);
    return o && typeof o == 'object' && !Array.isArray(o) ? o : null;
  } catch (e) {
    return null;
  }
}

// Constant-time string equality (lengths are public).
function eq(a, b) {
  if (typeof b != 'string' || a.length != b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.codePointAt(i) ^ b.codePointAt(i);
  return d == 0;
}

function mac(key, msg) {
  return crypto.createHmac('sha256', key).update(msg).digest('base64url');
}

const isNum = (x) => typeof x == 'number';
const prefixes = (x, empty) => Array.isArray(x) && (empty || x.length > 0) &&
  x.every((p) => typeof p == 'string' && p.startsWith('/'));

// Prefix p covers u: /live/ch1 covers /live/ch1/a.ts, not /live/ch10/a.ts.
const covers = (p, u) => u == p || (u.startsWith(p) && (p.endsWith('/') || u[p.length] == '/'));
const anyCovers = (ps, u) => ps.some((p) => covers(p, u));

function badPath(u) {
  return u.includes('//') || CTRL.test(u) || ENC.test(u) || DOTS.test(u);
}

// Dotted quad -> 4 bytes (no leading zeros), else null.
function v4(s) {
  const p = s.split('.');
  if (p.length != 4) return null;
  for (let i = 0; i < 4; i++) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p[i]) || +p[i] > 255) return null;
    p[i] = +p[i];
  }
  return p;
}

const hex4 = (x) => HEX[x >> 12] + HEX[(x >> 8) & 15] + HEX[(x >> 4) & 15] + HEX[x & 15];

// Any IPv6 notation -> 8 hextets, else null.
function v6(s) {
  const p = s.split(':');
  if (p.length < 3) return null;
  if (p[p.length - 1].includes('.')) {
    const q = v4(p.pop());
    if (!q) return null;
    p.push(hex4(q[0] * 256 + q[1]), hex4(q[2] * 256 + q[3]));
  }
  if (p.length > 9) return null;
  let z = -1;
  for (let i = 1; i < p.length - 1; i++) {
    if (p[i] == '') {
      if (z >= 0) return null;
      z = i;
    }
  }
  let hi = p.length, lo = 0;
  if (z >= 0) {
    hi = z;
    lo = p.length - z - 1;
    if (p[0] == '' && --hi) return null;
    if (p[p.length - 1] == '' && --lo) return null;
    if (hi + lo > 7) return null;
  } else if (hi != 8) return null;
  const w = p.slice(0, hi);
  while (w.length < 8 - lo) w.push('0');
  const r = w.concat(p.slice(p.length - lo, p.length));
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(r[i])) return null;
    r[i] = parseInt(r[i], 16);
  }
  return r;
}

// Canonical address (n < 0) or /n network; IPv4-mapped IPv6 is IPv4. null if none.
function canon(s, n) {
  let a = v4(s), w = 8;
  if (!a) {
    a = v6(s);
    if (!a) return null;
    w = 16;
    if (a[5] == 0xffff && !(a[0] | a[1] | a[2] | a[3] | a[4])) {
      a = [a[6] >> 8, a[6] & 255, a[7] >> 8, a[7] & 255];
      w = 8;
    }
  }
  if (n > a.length * w) return null;
  if (n >= 0) {
    a = a.map((x, i) => {
      const k = Math.min(w, Math.max(0, n - i * w));
      return x & (((1 << w) - 1) ^ ((1 << (w - k)) - 1));
    });
  }
  const t = w == 8 ? a.join('.') : a.map(hex4).join(':');
  return n >= 0 ? t + '/' + n : t;
}

// Canonical value of one bound viewer attribute, null when missing or sent more than once.
function attr(d, ev) {
  const hs = ev.request.headers || {};
  const h = (n) => {
    const x = hs[n];
    return x && !x.multiValue && typeof x.value == 'string' && x.value != '' ? x.value : null;
  };
  if (d == 'ua') return h('user-agent');
  if (d.startsWith('h:')) return h(d.slice(2));
  if (d == 'country' || d == 'region') {
    const v = h(d == 'country' ? 'cloudfront-viewer-country' : 'cloudfront-viewer-country-region');
    return v && v.toUpperCase();
  }
  const ip = ev.viewer && ev.viewer.ip;
  return typeof ip == 'string' ? canon(ip.trim(), d == 'ip' ? -1 : +d.slice(3)) : null;
}

function bound(c, key, ev) {
  let m = 'pb1';
  for (let i = 0; i < c.bnd.length; i++) {
    const v = attr(c.bnd[i], ev);
    if (v === null) return false;
    m += '\n' + c.bnd[i] + '=' + v;
  }
  return eq(mac(key, m), c.bh);
}

async function handler(event) {
  try {
    const req = event.request;
    const uri = req.uri;
    const j = uri.indexOf('/', 1);
    const seg = j < 0 ? uri.slice(1) : uri.slice(1, j);
    const path = j < 0 ? '/' : uri.slice(j);
    const dot = seg.indexOf('.');
    if (uri.charAt(0) != '/' || dot < 0) return deny(401, 'missing-token');
    const sid = seg.slice(0, dot);
    const t = seg.slice(dot + 1).split('.');
    if (seg.length > 4096 || !SID.test(sid) || t.length != 3 || !t.every((x) => B64.test(x))) {
      return deny(401, 'malformed-token');
    }
    if (!canonical64(t[2])) return deny(401, 'malformed-token'); // compared as text, never decoded
    const raw = [b64(t[0]), b64(t[1])];
    const hd = raw[0] && raw[1] && obj(raw[0]);
    if (!hd || 'crit' in hd || 'b64' in hd) return deny(401, 'malformed-token'); // no JWS extensions
    if (hd.alg !== 'HS256') return deny(401, 'bad-alg');
    if (typeof hd.kid != 'string' || !KID.test(hd.kid)) return deny(401, 'malformed-token');

    let kv = null;
    try {
      kv = await kvs.get('k:' + hd.kid); // throws when absent
    } catch (e) {
      kv = null;
    }
    const key = typeof kv == 'string' && B64.test(kv) ? b64(kv) : null;
    if (!key || key.length < 32) return deny(401, 'unknown-kid');
    // Canonical third part, so equal text = the same 32 bytes.
    if (!eq(mac(key, t[0] + '.' + t[1]), t[2])) return deny(401, 'bad-signature');

    const c = obj(raw[1]);
    if (!c) return deny(401, 'malformed-token');
    if (typeof c.sid != 'string' || !isNum(c.exp) || !isNum(c.iat) ||
      ('nbf' in c && !isNum(c.nbf)) ||
      ('paths' in c && !prefixes(c.paths)) ||
      ('exc' in c && !prefixes(c.exc, true)) ||
      ('bnd' in c && !(Array.isArray(c.bnd) && c.bnd.length > 0 && typeof c.bh == 'string' &&
        c.bnd.every((d) => typeof d == 'string' && DESC.test(d))))) {
      return deny(401, 'bad-claims');
    }
    const now = Date.now() / 1000;
    if (c.iat > now + SKEW || ('nbf' in c && c.nbf > now + SKEW)) return deny(401, 'not-yet-valid');
    if (c.exp <= now - SKEW) return deny(401, 'expired');
    if (c.sid !== sid) return deny(401, 'sid-mismatch');

    if (badPath(path)) return deny(403, 'bad-path');
    if ('paths' in c && !anyCovers(c.paths, path)) return deny(403, 'out-of-scope');
    if ('bnd' in c && !('exc' in c && anyCovers(c.exc, path)) && !bound(c, key, event)) {
      return deny(403, 'binding');
    }

    let rv = null;
    try {
      // nearly every session is unrevoked: exists() answers that without get()'s throw for an absent key
      if (await kvs.exists('r:' + sid)) rv = await kvs.get('r:' + sid);
    } catch (e) {
      if (ON_FAULT != 'allow') return deny(403, 'revocation-unavailable');
    }
    if (rv !== null && rv !== undefined) {
      const x = String(rv).split('|')[0];
      if (!/^\d+$/.test(x) || +x > now) return deny(403, 'revoked'); // unreadable expiry: fail closed
    }

    req.uri = path;
    return req;
  } catch (e) {
    return deny(401, 'error');
  }
}
