import cf from 'cloudfront';
import crypto from 'crypto';

// A reference point for bench/edge_verify.mjs, not shipped: the least a viewer-request function does to accept a
// /<sid>.<jwt>/<asset path> URL whose HS256 key is in the KeyValueStore. It decodes the header and the claims,
// reads k:<kid>, checks the signature and exp, and strips the token. No revocation read, no path scope, no
// binding, no canonical-form checks: what "a token verifier without a revocation list" costs.
const kvs = cf.kvs();

function deny(why) {
  return { statusCode: 401, statusDescription: 'Unauthorized (' + why + ')' };
}

async function handler(event) {
  const req = event.request;
  const j = req.uri.indexOf('/', 1);
  const seg = req.uri.slice(1, j);
  const dot = seg.indexOf('.');
  const parts = seg.slice(dot + 1).split('.');
  if (dot < 0 || j < 0 || parts.length != 3) return deny('malformed-token');
  let header, claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url').toString());
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
  } catch (e) {
    return deny('malformed-token');
  }
  if (header.alg !== 'HS256') return deny('bad-alg');
  let key;
  try {
    key = Buffer.from(await kvs.get('k:' + header.kid), 'base64url');
  } catch (e) {
    return deny('unknown-kid');
  }
  const expected = crypto.createHmac('sha256', key).update(parts[0] + '.' + parts[1]).digest('base64url');
  if (expected !== parts[2]) return deny('bad-signature');
  if (!(claims.exp > Date.now() / 1000)) return deny('expired');
  req.uri = req.uri.slice(j);
  return req;
}
