"""Write tests/vectors/edge_vectors.json: the cases both verifiers (Python and the CloudFront Function) must
decide identically. Deterministic (fixed keys, clock and session ids), so the committed file can be checked
for drift: `python -m tests.vectors.generate` rewrites it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import jwt

from core.b64 import b64url_decode, b64url_encode
from edge.binding import Viewer
from edge.keys import SigningKey
from edge.tokens import TokenRequest, issue_token

NOW = 1767225600
OUTPUT = Path(__file__).with_name("edge_vectors.json")
KEY = SigningKey("k1", hashlib.sha256(b"vector key one").digest())
OTHER_KEY = SigningKey("k2", hashlib.sha256(b"vector key two").digest())
UNPUBLISHED_KEY = SigningKey("k9", hashlib.sha256(b"vector key nine").digest())
SHORT_KEY_KID = "kshort"
ASSET = "/vod/movie/master.m3u8"


def sid(n: int) -> str:
    return f"session{n:04d}-vector-id"


def token(n: int, key: SigningKey = KEY, now: int = NOW, **fields: Any) -> tuple[str, str]:
    issued = issue_token(TokenRequest(session_id=sid(n), **fields), key, now=now)
    return issued.session_id, issued.jwt


def url(pair: tuple[str, str], asset: str = ASSET) -> str:
    return f"/{pair[0]}.{pair[1]}{asset}"


def raw_jwt(header: dict[str, Any], payload: Any, key: bytes = KEY.secret) -> str:
    signing_input = f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(json.dumps(payload).encode())}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url_encode(mac)}"


def signed_text(header: str, payload: str, key: bytes = KEY.secret) -> str:
    """A token over exact JSON texts (for JSON that json.dumps would not write)."""
    signing_input = f"{b64url_encode(header.encode())}.{b64url_encode(payload.encode())}"
    return f"{signing_input}.{b64url_encode(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def swap_part(jwt_text: str, index: int, replacement: str) -> str:
    parts = jwt_text.split(".")
    parts[index] = replacement
    return ".".join(parts)


def flip_last(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


def non_canonical(signature: str) -> str:
    """Same 32 bytes, another spelling: the last base64url character carries 2 unused bits."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(signature[-1])
    return signature[:-1] + alphabet[index ^ 1]


def claims_of(n: int, **extra: Any) -> dict[str, Any]:
    return {"sid": sid(n), "iat": NOW, "exp": NOW + 3600, **extra}


def vector(name: str, uri: str, status: int, reason: str, forwarded: str | None = None,
           viewer_ip: str = "198.51.100.7", headers: dict[str, str | list[str]] | None = None, now: int | None = None
           ) -> dict[str, Any]:
    case: dict[str, Any] = {"name": name, "uri": uri, "viewer_ip": viewer_ip, "headers": headers or {}}
    if now is not None:
        case["now"] = now
    decision = "allow" if status == 200 else "deny"
    case["expect"] = {"decision": decision, "status": status, "reason": reason,
                      "uri": forwarded if forwarded is not None else uri}
    return case


def allow(name: str, uri: str, forwarded: str = ASSET, **kw: Any) -> dict[str, Any]:
    return vector(name, uri, 200, "ok", forwarded, **kw)


def basic_vectors() -> list[dict[str, Any]]:
    valid = token(1)
    t = valid[1]
    header, payload, signature = t.split(".")
    tampered_payload = b64url_encode(json.dumps(claims_of(1, exp=NOW + 99999)).encode())
    tampered_header = b64url_encode(json.dumps({"alg": "HS256", "kid": "k2", "typ": "JWT"}).encode())
    with warnings.catch_warnings():  # PyJWT warns that 32 bytes is short for HS512; that token is refused anyway
        warnings.simplefilter("ignore")
        hs512 = jwt.encode(claims_of(6), KEY.secret, algorithm="HS512", headers={"kid": "k1"})
    rs256 = swap_part(raw_jwt({"alg": "RS256", "kid": "k1"}, claims_of(7)), 2, b64url_encode(b"x" * 256))
    none = swap_part(raw_jwt({"alg": "none", "kid": "k1"}, claims_of(8)), 2, "AA")
    return [
        allow("valid", url(valid)),
        allow("valid-token-only", f"/{valid[0]}.{t}", forwarded="/"),
        allow("valid-query-free-subpath", url(valid, "/vod/movie/720p/seg_00001.ts"), "/vod/movie/720p/seg_00001.ts"),
        vector("missing-token", ASSET, 401, "missing-token"),
        vector("missing-token-root", "/", 401, "missing-token"),
        vector("malformed-short-sid", f"/short.{t}{ASSET}", 401, "malformed-token"),
        vector("malformed-two-part-jwt", f"/{sid(1)}.{header}.{payload}{ASSET}", 401, "malformed-token"),
        vector("malformed-header-json", url((sid(1), f"{b64url_encode(b'not json')}.{payload}.{signature}")),
               401, "malformed-token"),
        vector("expired", url(token(2, now=NOW - 3600 - 31)), 401, "expired"),
        allow("expired-within-skew", url(token(3, now=NOW - 3600 - 10))),
        vector("not-yet-valid-nbf", url(token(4, not_before=NOW + 100)), 401, "not-yet-valid"),
        allow("nbf-within-skew", url(token(5, not_before=NOW + 20))),
        vector("not-yet-valid-iat", url(token(9, now=NOW + 120)), 401, "not-yet-valid"),
        vector("wrong-key", url((sid(10), raw_jwt({"alg": "HS256", "kid": "k1"}, claims_of(10), OTHER_KEY.secret))),
               401, "bad-signature"),
        vector("unknown-kid", url(token(11, UNPUBLISHED_KEY)), 401, "unknown-kid"),
        vector("short-key-in-store", url((sid(12), raw_jwt({"alg": "HS256", "kid": SHORT_KEY_KID}, claims_of(12)))),
               401, "unknown-kid"),
        vector("tampered-header", url((sid(1), swap_part(t, 0, tampered_header))), 401, "bad-signature"),
        vector("tampered-payload", url((sid(1), swap_part(t, 1, tampered_payload))), 401, "bad-signature"),
        vector("tampered-signature", url((sid(1), swap_part(t, 2, flip_last(signature[:-2]) + signature[-2:]))),
               401, "bad-signature"),
        vector("non-canonical-signature", url((sid(1), swap_part(t, 2, non_canonical(signature)))),
               401, "malformed-token"),
        vector("non-canonical-payload", url((sid(1), swap_part(t, 1, non_canonical(payload)))),
               401, "malformed-token"),
        vector("signature-wrong-length", url((sid(1), swap_part(t, 2, signature + "AAAA"))), 401, "bad-signature"),
        vector("alg-none", url((sid(8), none)), 401, "bad-alg"),
        vector("alg-hs512", url((sid(6), hs512)), 401, "bad-alg"),
        vector("alg-rs256", url((sid(7), rs256)), 401, "bad-alg"),
        vector("payload-not-object", url((sid(13), raw_jwt({"alg": "HS256", "kid": "k1"}, [1, 2]))),
               401, "malformed-token"),
        vector("missing-exp", url((sid(14), raw_jwt({"alg": "HS256", "kid": "k1"}, {"sid": sid(14), "iat": NOW}))),
               401, "bad-claims"),
        vector("exp-not-number", url((sid(15), raw_jwt({"alg": "HS256", "kid": "k1"}, claims_of(15, exp="9999999999")))),
               401, "bad-claims"),
        vector("exp-boolean", url((sid(16), raw_jwt({"alg": "HS256", "kid": "k1"}, claims_of(16, exp=True)))),
               401, "bad-claims"),
        vector("sid-prefix-swapped", url((sid(99), t)), 401, "sid-mismatch"),
        vector("header-crit", url((sid(17), raw_jwt({"alg": "HS256", "kid": "k1", "crit": ["exp"]}, claims_of(17)))),
               401, "malformed-token"),
        vector("header-b64-false", url((sid(18), raw_jwt({"alg": "HS256", "kid": "k1", "b64": False},
                                                         claims_of(18)))), 401, "malformed-token"),
        vector("header-kid-number-alg-first", url((sid(19), raw_jwt({"alg": "HS512", "kid": 7}, claims_of(19)))),
               401, "bad-alg"),
        vector("header-kid-number", url((sid(19), raw_jwt({"alg": "HS256", "kid": 7}, claims_of(19)))),
               401, "malformed-token"),
        vector("header-utf8-bom", url((sid(1), swap_part(t, 0, b64url_encode(b"\xef\xbb\xbf" + b64url_decode(header))))),
               401, "malformed-token"),
        vector("payload-nan-exp", url((sid(23), signed_text('{"alg":"HS256","kid":"k1"}',
                                                            '{"sid":"%s","iat":%d,"exp":NaN}' % (sid(23), NOW)))),
               401, "malformed-token"),
    ]


def nested(depth: int) -> Any:
    """``depth`` arrays inside one another."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def depth_vectors() -> list[dict[str, Any]]:
    """JSON nesting: both verifiers refuse a part nested deeper than 8 before parsing it (brackets in strings do
    not count), validly signed or not, so neither runs out of stack."""
    header = {"alg": "HS256", "kid": "k1"}
    deep_claims = json.dumps(claims_of(24))[:-1] + ', "x": ' + "[" * 1200 + "1" + "]" * 1200 + "}"  # as reviewed
    return [
        allow("depth-payload-at-limit", url((sid(24), raw_jwt(header, claims_of(24, x=nested(7)))))),
        vector("depth-payload-over-limit", url((sid(24), raw_jwt(header, claims_of(24, x=nested(8))))),
               401, "malformed-token"),
        vector("depth-payload-1200-signed", url((sid(24), signed_text(json.dumps(header), deep_claims))),
               401, "malformed-token"),
        vector("depth-payload-1200-bad-signature", url((sid(24), signed_text(json.dumps(header), deep_claims,
                                                                           key=b"\x01" * 32))),
               401, "bad-signature"),  # the signature is checked before the payload is read
        vector("depth-header-over-limit", url((sid(24), raw_jwt({**header, "x": nested(8)}, claims_of(24)))),
               401, "malformed-token"),
        allow("depth-brackets-in-strings", url((sid(24), raw_jwt(header, claims_of(24, x="[[[[{{{{[[[[{{{{\\\"[[")))),),
        allow("depth-wide-payload", url((sid(24), raw_jwt(header, claims_of(24, x=[[1]] * 300))))),
    ]


def scope_vectors() -> list[dict[str, Any]]:
    scoped = token(20, paths=["/live/ch1"])
    slash_scoped = token(21, paths=["/vod/"])
    return [
        allow("scope-in", url(scoped, "/live/ch1/720p/seg1.ts"), "/live/ch1/720p/seg1.ts"),
        allow("scope-exact", url(scoped, "/live/ch1"), "/live/ch1"),
        vector("scope-out", url(scoped, "/live/ch2/720p/seg1.ts"), 403, "out-of-scope"),
        vector("scope-prefix-boundary", url(scoped, "/live/ch10/seg1.ts"), 403, "out-of-scope"),
        allow("scope-trailing-slash", url(slash_scoped, "/vod/x/y.m3u8"), "/vod/x/y.m3u8"),
        vector("traversal-dotdot", url(scoped, "/live/ch1/../ch2/seg1.ts"), 403, "bad-path"),
        vector("traversal-dot", url(scoped, "/live/ch1/./seg1.ts"), 403, "bad-path"),
        vector("traversal-encoded-dots", url(scoped, "/live/ch1/%2e%2e/ch2/seg1.ts"), 403, "bad-path"),
        vector("traversal-encoded-dots-upper", url(scoped, "/live/ch1/%2E%2E/ch2/seg1.ts"), 403, "bad-path"),
        vector("traversal-encoded-slash", url(scoped, "/live/ch1%2f..%2fch2/seg1.ts"), 403, "bad-path"),
        vector("traversal-double-slash", url(scoped, "/live/ch1//seg1.ts"), 403, "bad-path"),
        vector("traversal-backslash", url(scoped, "/live/ch1/..\\ch2/seg1.ts"), 403, "bad-path"),
        vector("traversal-unscoped-dotdot", url(token(22), "/vod/../secret/x.ts"), 403, "bad-path"),
        # one spelling per object: only canonical percent-escapes (docs/edge-token.md, Path rules)
        vector("spelling-escaped-unreserved", url(scoped, "/live/ch1/seg_00042.t%73"), 403, "bad-path"),
        vector("spelling-escaped-digit", url(scoped, "/live/ch1/seg_0004%32.ts"), 403, "bad-path"),
        vector("spelling-escaped-tilde", url(scoped, "/live/ch1/%7Eseg1.ts"), 403, "bad-path"),
        vector("spelling-escaped-hyphen", url(scoped, "/live/ch1/seg%2D1.ts"), 403, "bad-path"),
        vector("spelling-lowercase-escape", url(scoped, "/live/ch1/caf%c3%a9.ts"), 403, "bad-path"),
        vector("spelling-double-escape", url(scoped, "/live/ch1/%252E%252E/seg1.ts"), 403, "bad-path"),
        vector("spelling-overlong-utf8-dot", url(scoped, "/live/ch1/%C0%AE%C0%AE/seg1.ts"), 403, "bad-path"),
        vector("spelling-overlong-utf8-3byte", url(scoped, "/live/ch1/%E0%80%AE/seg1.ts"), 403, "bad-path"),
        vector("spelling-impossible-utf8-byte", url(scoped, "/live/ch1/%FFseg1.ts"), 403, "bad-path"),
        vector("spelling-escaped-semicolon", url(scoped, "/live/ch1/seg1.ts%3Bjsessionid=x"), 403, "bad-path"),
        vector("spelling-malformed-escape", url(scoped, "/live/ch1/seg%zz1.ts"), 403, "bad-path"),
        vector("spelling-truncated-escape", url(scoped, "/live/ch1/seg1.ts%4"), 403, "bad-path"),
        allow("spelling-canonical-utf8", url(scoped, "/live/ch1/caf%C3%A9.ts"), "/live/ch1/caf%C3%A9.ts"),
        allow("spelling-escaped-space", url(scoped, "/live/ch1/my%20seg1.ts"), "/live/ch1/my%20seg1.ts"),
    ]


def bound(n: int, bindings: list[str], ip: str | None = None, headers: dict[str, Any] | None = None,
          **fields: Any) -> tuple[str, str]:
    return token(n, bindings=bindings, viewer=Viewer.of(ip, headers), **fields)


def binding_vectors() -> list[dict[str, Any]]:
    ua = "Mozilla/5.0 (SMART-TV; Linux) AppleWebKit/537.36 VectorPlayer/1.0"
    geo = {"CloudFront-Viewer-Country": "DE", "CloudFront-Viewer-Country-Region": "BE"}
    ip_exact = bound(30, ["ip"], "198.51.100.7")
    ip24 = bound(31, ["ip/24"], "203.0.113.0")
    ip48 = bound(32, ["ip/48"], "2001:db8:1::")
    v6 = bound(33, ["ip"], "2001:db8::1")
    mapped = bound(34, ["ip"], "198.51.100.7")
    country = bound(35, ["country"], headers=geo)
    region = bound(36, ["country", "region"], headers=geo)
    agent = bound(37, ["ua"], headers={"User-Agent": ua})
    device = bound(38, ["h:x-device-id"], headers={"X-Device-Id": "tv-42"})
    combo = bound(39, ["ip/24", "ua"], "203.0.113.0", {"User-Agent": ua})
    exempt = bound(40, ["ip"], "198.51.100.7", exempt_paths=["/keys"])
    all_kinds = bound(41, ["ip/48", "country", "region", "ua", "h:x-device-id"], "2001:db8:1::",
                      {**geo, "User-Agent": ua, "X-Device-Id": "tv-42"})
    full = {**geo, "User-Agent": ua, "X-Device-Id": "tv-42"}
    return [
        allow("bind-ip-exact-match", url(ip_exact)),
        vector("bind-ip-exact-mismatch", url(ip_exact), 403, "binding", viewer_ip="198.51.100.8"),
        vector("bind-ip-missing", url(ip_exact), 403, "binding", viewer_ip=""),
        allow("bind-ip24-match", url(ip24), viewer_ip="203.0.113.250"),
        vector("bind-ip24-mismatch", url(ip24), 403, "binding", viewer_ip="203.0.114.1"),
        vector("bind-ip24-ipv6-viewer", url(ip24), 403, "binding", viewer_ip="2001:db8:1::5"),
        allow("bind-ip48-match", url(ip48), viewer_ip="2001:db8:1:ffff::abcd"),
        allow("bind-ip48-match-expanded", url(ip48), viewer_ip="2001:0db8:0001:00ff:0000:0000:0000:0001"),
        vector("bind-ip48-mismatch", url(ip48), 403, "binding", viewer_ip="2001:db8:2::1"),
        allow("bind-ipv6-compressed", url(v6), viewer_ip="2001:db8::1"),
        allow("bind-ipv6-expanded", url(v6), viewer_ip="2001:0db8:0000:0000:0000:0000:0000:0001"),
        allow("bind-ipv6-mixed-case-partial", url(v6), viewer_ip="2001:DB8:0:0::1"),
        vector("bind-ipv6-mismatch", url(v6), 403, "binding", viewer_ip="2001:db8::2"),
        allow("bind-ipv4-mapped-dotted", url(mapped), viewer_ip="::ffff:198.51.100.7"),
        allow("bind-ipv4-mapped-hex", url(mapped), viewer_ip="::ffff:c633:6407"),
        allow("bind-ipv4-mapped-expanded", url(mapped), viewer_ip="0:0:0:0:0:ffff:c633:6407"),
        vector("bind-ip-garbage-viewer", url(mapped), 403, "binding", viewer_ip="198.51.100.300"),
        vector("bind-ipv6-scoped-viewer", url(v6), 403, "binding", viewer_ip="2001:db8::1%eth0"),
        vector("bind-mac-not-ascii", url((sid(42), raw_jwt({"alg": "HS256", "kid": "k1"},
                                                           claims_of(42, bnd=["ip"], bh="é")))), 403, "binding"),
        vector("bind-header-empty", url(device), 403, "binding", headers={"X-Device-Id": ""}),
        allow("bind-country-match", url(country), headers={"CloudFront-Viewer-Country": "de"}),
        vector("bind-country-mismatch", url(country), 403, "binding", headers={"CloudFront-Viewer-Country": "FR"}),
        vector("bind-country-missing", url(country), 403, "binding"),
        allow("bind-region-match", url(region), headers=geo),
        vector("bind-region-mismatch", url(region), 403, "binding",
               headers={**geo, "CloudFront-Viewer-Country-Region": "BY"}),
        vector("bind-region-missing", url(region), 403, "binding", headers={"CloudFront-Viewer-Country": "DE"}),
        allow("bind-ua-match", url(agent), headers={"User-Agent": ua}),
        vector("bind-ua-mismatch", url(agent), 403, "binding", headers={"User-Agent": ua + " Evil"}),
        vector("bind-ua-missing", url(agent), 403, "binding"),
        allow("bind-header-match", url(device), headers={"X-Device-Id": "tv-42"}),
        vector("bind-header-mismatch", url(device), 403, "binding", headers={"X-Device-Id": "tv-43"}),
        vector("bind-header-missing", url(device), 403, "binding"),
        allow("bind-combo-match", url(combo), viewer_ip="203.0.113.9", headers={"User-Agent": ua}),
        vector("bind-combo-ua-missing-ip-matches", url(combo), 403, "binding", viewer_ip="203.0.113.9"),
        vector("bind-combo-ip-mismatch-ua-matches", url(combo), 403, "binding", viewer_ip="192.0.2.9",
               headers={"User-Agent": ua}),
        allow("bind-all-kinds-match", url(all_kinds), viewer_ip="2001:db8:1:2::3", headers=full),
        vector("bind-all-kinds-one-header-missing", url(all_kinds), 403, "binding", viewer_ip="2001:db8:1:2::3",
               headers={k: v for k, v in full.items() if k != "X-Device-Id"}),
        # A bound header sent twice (the viewer's own copy beside CloudFront's) is never read: deny.
        vector("bind-country-sent-twice", url(country), 403, "binding",
               headers={"CloudFront-Viewer-Country": ["DE", "DE"]}),
        vector("bind-region-viewer-copy-first", url(region), 403, "binding",
               headers={**geo, "CloudFront-Viewer-Country-Region": ["BE", "BY"]}),
        vector("bind-ua-sent-twice", url(agent), 403, "binding", headers={"User-Agent": [ua, ua]}),
        allow("bind-unbound-header-sent-twice", url(country),
              headers={"CloudFront-Viewer-Country": "DE", "Accept": ["a/b", "c/d"]}),
        allow("bind-exempt-path-other-viewer", url(exempt, "/keys/k1.key"), "/keys/k1.key", viewer_ip="192.0.2.1"),
        vector("bind-not-exempt-other-viewer", url(exempt), 403, "binding", viewer_ip="192.0.2.1"),
    ]


REVOKED, REVOKED_EXPIRED, REVOKED_GARBAGE, REVOKED_NO_REASON = 50, 51, 52, 53


def revocation_vectors() -> list[dict[str, Any]]:
    return [
        vector("revoked", url(token(REVOKED)), 403, "revoked"),
        allow("revoked-but-expired", url(token(REVOKED_EXPIRED))),
        vector("revoked-garbage-value", url(token(REVOKED_GARBAGE)), 403, "revoked"),
        vector("revoked-no-reason", url(token(REVOKED_NO_REASON)), 403, "revoked"),
        allow("revoked-expiry-passes-later", url(token(REVOKED, now=NOW + 3600)), now=NOW + 3601),
        vector("revoked-bad-signature-still-401", url((sid(REVOKED), flip_last(token(REVOKED)[1]))),
               401, "bad-signature"),
    ]


def store() -> dict[str, Any]:
    data = {
        KEY.store_key: KEY.encoded,
        OTHER_KEY.store_key: OTHER_KEY.encoded,
        f"k:{SHORT_KEY_KID}": b64url_encode(b"too short"),
        f"r:{sid(REVOKED)}": f"{NOW + 3600}|auto",
        f"r:{sid(REVOKED_EXPIRED)}": f"{NOW - 1}|auto",
        f"r:{sid(REVOKED_GARBAGE)}": "soon|manual",
        f"r:{sid(REVOKED_NO_REASON)}": f"{NOW + 60}",
    }
    return {"data": [{"key": k, "value": v} for k, v in sorted(data.items())]}


def build() -> dict[str, Any]:
    vectors = basic_vectors() + depth_vectors() + scope_vectors() + binding_vectors() + revocation_vectors()
    names = [v["name"] for v in vectors]
    assert len(names) == len(set(names)), "vector names must be unique"
    return {"now": NOW, "store": store(), "vectors": vectors}


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=False) + "\n"


def main() -> int:
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(build()['vectors'])} vectors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
