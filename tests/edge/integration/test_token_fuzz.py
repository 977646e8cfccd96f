"""Property-based fuzzing of both verifiers (the Python library and the real edge function under node).

Properties, for malformed and mutated tokens:
* nothing is allowed unless its signature is valid for a published key, its sid matches the prefix and the
  forwarded path is safe and in scope (an oracle written independently of both verifiers);
* the function never crashes: every input gets a decision (a thrown error would surface as a runner error);
* both verifiers reach the same decision, status and reason.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.b64 import b64url_decode, b64url_encode
from edge.binding import Viewer
from edge.keys import SigningKey
from edge.paths import any_prefix_matches, is_safe_path
from edge.tokens import TokenRequest, issue_token
from edge.verify import MappingReader, verify_request

NOW = 1_767_225_600
KEY = SigningKey("fuzz", hashlib.sha256(b"fuzz key").digest())
STORE_DOC = {"data": [{"key": KEY.store_key, "value": KEY.encoded}]}
STORE = MappingReader({KEY.store_key: KEY.encoded})
VIEWER = Viewer.of("203.0.113.10", {"user-agent": "FuzzPlayer/1"})
SCOPE = ["/live/ch1"]
BASE = issue_token(
    TokenRequest(session_id="fuzzsession00000001", paths=SCOPE, bindings=["ip/24", "ua"], viewer=VIEWER), KEY, NOW
)
BASE_URI = f"/{BASE.segment}/live/ch1/720p/seg_001.ts"
FUZZ_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def oracle_may_allow(uri: str) -> bool:
    """Independent statement of 'validly signed and in scope' for the fuzzed URIs (all use one key)."""
    try:
        first, _, rest = uri[1:].partition("/")
        sid, jwt_text = first.split(".", 1)
        header_b64, payload_b64, signature = jwt_text.split(".")
        expected = hmac.new(KEY.secret, f"{header_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
        if signature != b64url_encode(expected):
            return False
        header = json.loads(b64url_decode(header_b64))
        claims = json.loads(b64url_decode(payload_b64))
    except (ValueError, AttributeError):
        return False
    path = "/" + rest
    scope = claims.get("paths") if isinstance(claims, dict) else None
    return (
        isinstance(header, dict) and header.get("alg") == "HS256" and header.get("kid") == KEY.kid
        and claims.get("sid") == sid and is_safe_path(path)
        and (scope is None or (isinstance(scope, list) and any_prefix_matches(scope, path)))
    )


def decide_both(runner, uri: str, viewer: Viewer = VIEWER) -> tuple[dict[str, Any], dict[str, Any]]:
    python = verify_request(uri, viewer, STORE, NOW).to_dict()
    answer = runner.request({"uri": uri, "viewer_ip": viewer.ip, "headers": dict(viewer.headers),
                             "now": NOW, "store": STORE_DOC})
    node = {k: answer[k] for k in ("decision", "status", "reason", "uri")}
    return python, node


def check(runner, uri: str) -> None:
    python, node = decide_both(runner, uri)
    assert python == node, uri
    if node["decision"] == "allow":
        assert oracle_may_allow(uri), uri
        assert node["reason"] == "ok"


def test_base_token_is_allowed(edge_runner) -> None:
    python, node = decide_both(edge_runner, BASE_URI)
    assert python == node and node["decision"] == "allow"


URI_ALPHABET = st.sampled_from(list("aZ09-_./%2e2f5c\\:?#") + ["%2e%2e", "..", "//", "\x00", "é", " "])


@st.composite
def mutated_uris(draw) -> str:
    uri = BASE_URI
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(uri)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        piece = draw(URI_ALPHABET)
        if action == "replace":
            uri = uri[:position] + piece + uri[position + 1:]
        elif action == "insert":
            uri = uri[:position] + piece + uri[position:]
        elif action == "delete":
            uri = uri[:position] + uri[position + 1:]
        else:
            uri = uri[: max(position, 1)]
    return uri if uri.startswith("/") else "/" + uri


@FUZZ_SETTINGS
@given(mutated_uris())
def test_mutated_tokens(edge_runner, uri: str) -> None:
    check(edge_runner, uri)


@FUZZ_SETTINGS
@given(st.text(min_size=0, max_size=300).map(lambda s: "/" + s))
def test_arbitrary_uris(edge_runner, uri: str) -> None:
    check(edge_runner, uri)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
CLAIM_VALUES = {
    "sid": st.sampled_from(["fuzzsession00000001", "othersession0000001"]) | JSON_VALUES,
    "exp": st.sampled_from([NOW + 600, NOW - 29, NOW - 30, NOW - 31]) | JSON_VALUES,
    "iat": st.sampled_from([NOW, NOW + 30, NOW + 31]) | JSON_VALUES,
    "nbf": st.sampled_from([NOW + 30, NOW + 31]) | JSON_VALUES,
    "paths": st.sampled_from([["/live/ch1"], ["/live/"], [], ["/other"], ["live"]]) | JSON_VALUES,
    "exc": st.sampled_from([["/live/ch1"], [], ["/keys"]]) | JSON_VALUES,
    "bnd": st.sampled_from([["ip/24"], ["ua"], ["ip"], ["country"], [], ["bogus"]]) | JSON_VALUES,
    "bh": st.sampled_from(["", "x"]) | JSON_VALUES,
}


@st.composite
def signed_claims(draw) -> dict[str, Any]:
    claims = {"sid": "fuzzsession00000001", "iat": NOW, "exp": NOW + 600}
    for name in draw(st.lists(st.sampled_from(sorted(CLAIM_VALUES)), max_size=4, unique=True)):
        if draw(st.booleans()):
            claims.pop(name, None)
        else:
            claims[name] = draw(CLAIM_VALUES[name])
    return claims


@FUZZ_SETTINGS
@given(signed_claims(), st.sampled_from(["/live/ch1/a.ts", "/live/ch2/a.ts", "/keys/k", "/"]))
def test_validly_signed_arbitrary_claims(edge_runner, claims: dict[str, Any], path: str) -> None:
    """With the real key (as if the issuer had a bug): both verifiers still agree and enforce the claims."""
    header = b64url_encode(json.dumps({"alg": "HS256", "kid": KEY.kid}).encode())
    payload = b64url_encode(json.dumps(claims).encode())
    mac = hmac.new(KEY.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    uri = f"/fuzzsession00000001.{header}.{payload}.{b64url_encode(mac)}{path}"
    python, node = decide_both(edge_runner, uri)
    assert python == node, claims
    if node["decision"] == "allow":
        assert isinstance(claims.get("exp"), (int, float)) and claims["exp"] > NOW - 30
        assert claims.get("sid") == "fuzzsession00000001"
        assert "paths" not in claims or any_prefix_matches(claims["paths"], path)


@st.composite
def deep_or_wide_json(draw) -> str:
    """JSON text nested up to 1 500 deep (arrays, objects, or both, with bracket-like strings inside) or up to
    2 000 items wide: what json.dumps cannot always write, so built as text."""
    if draw(st.booleans()):
        depth = draw(st.integers(0, 1500))
        kinds = draw(st.lists(st.sampled_from(["[", '{"k":']), min_size=1, max_size=3))
        opens = [kinds[i % len(kinds)] for i in range(depth)]
        core = json.dumps(draw(st.sampled_from(["[[{", "]]}", "x", 1, None])))
        return "".join(opens) + core + "".join("]" if o == "[" else "}" for o in reversed(opens))
    width = draw(st.integers(0, 2000))
    item = draw(st.sampled_from(["1", "[1]", '{"a":[2]}', '"[["']))
    return "[" + ",".join([item] * width) + "]"


@FUZZ_SETTINGS
@given(deep_or_wide_json(), st.sampled_from(["payload", "header"]), st.booleans())
def test_deeply_nested_and_very_wide_json(edge_runner, value: str, part: str, good_signature: bool) -> None:
    """A claim (or a header field) nested deep or very wide: both verifiers give the same decision, a depth over
    the cap is malformed (after the signature, for the payload), and neither runs out of stack."""
    header_text = json.dumps({"alg": "HS256", "kid": KEY.kid})
    payload_text = json.dumps({"sid": "fuzzsession00000001", "iat": NOW, "exp": NOW + 600})
    if part == "payload":
        payload_text = payload_text[:-1] + ', "x": ' + value + "}"
    else:
        header_text = header_text[:-1] + ', "x": ' + value + "}"
    header, payload = b64url_encode(header_text.encode()), b64url_encode(payload_text.encode())
    key = KEY.secret if good_signature else b"\x02" * 32
    mac = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    uri = f"/fuzzsession00000001.{header}.{payload}.{b64url_encode(mac)}/live/ch1/a.ts"
    python, node = decide_both(edge_runner, uri)
    assert python == node
    assert python["reason"] != "error"
