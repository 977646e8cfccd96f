"""Reading sid and exp from logged tokens without verifying them, robust to garbage; and revocation expiries."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.b64 import b64url_encode
from edge.keys import generate_key
from edge.tokens import MAX_TTL_SECONDS, TokenRequest, issue_token
from revocation.token_expiry import (
    DEFAULT_MARGIN_SECONDS,
    TokenInfo,
    expiry_for_session,
    read_token,
    revocation_expiry,
    token_expiry,
)
from tests.revocation.helpers import NOW

SID = "viewerSession_0001"
NAN_PAYLOAD = b64url_encode(b'{"exp": NaN}')


def jwt_with(payload: object, *, raw: str | None = None) -> str:
    header = b64url_encode(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    body = raw if raw is not None else b64url_encode(json.dumps(payload).encode())
    return f"{header}.{body}.{b64url_encode(b'x' * 32)}"


def test_a_real_token_in_a_logged_uri() -> None:
    issued = issue_token(TokenRequest(session_id=SID, ttl_seconds=1800), generate_key("k1"), now=NOW)
    uri = issued.url_for("/live/ch1/seg_00042.ts")
    assert read_token(uri) == TokenInfo(session_id=SID, exp=NOW + 1800)
    assert token_expiry(uri) == NOW + 1800
    assert token_expiry(issued.url_for("https://cdn.example.com/live/ch1/master.m3u8?x=1")) == NOW + 1800
    assert token_expiry(issued.segment) == NOW + 1800


def test_bare_jwt_takes_the_session_from_the_payload() -> None:
    assert read_token(jwt_with({"sid": SID, "exp": NOW})) == TokenInfo(SID, NOW)
    assert read_token(jwt_with({"exp": NOW})) == TokenInfo(None, NOW)


def test_fractional_exp_rounds_up() -> None:
    assert token_expiry(f"/{SID}.{jwt_with({'sid': SID, 'exp': NOW + 0.2})}/a.ts") == NOW + 1


@pytest.mark.parametrize(
    "payload",
    [{"sid": SID}, {"sid": SID, "exp": "1767225600"}, {"sid": SID, "exp": True}, {"sid": SID, "exp": -5},
     {"sid": SID, "exp": 2**60}, {"sid": SID, "exp": None}, {"sid": SID, "exp": [NOW]}],
    ids=["missing", "string", "bool", "negative", "huge", "null", "list"],
)
def test_unusable_exp_is_none_but_the_session_is_read(payload: dict) -> None:
    assert read_token(f"/{SID}.{jwt_with(payload)}/a.ts") == TokenInfo(SID, None)


@pytest.mark.parametrize(
    "text",
    [
        None, "", "/", "/live/ch1/a.ts", "/nodot/a.ts", f"/{SID}.notajwt/a.ts", f"/{SID}.a.b/a.ts",
        f"/short.{jwt_with({'exp': NOW})}/a.ts",  # prefix is not a session id
        f"/{SID}.{jwt_with(None, raw='!!!')}/a.ts",  # not base64url
        f"/{SID}.{jwt_with(None, raw=b64url_encode(b'not json'))}/a.ts",
        f"/{SID}.{jwt_with(None, raw=b64url_encode(b'[1,2]'))}/a.ts",  # not an object
        f"/{SID}.{jwt_with(None, raw=NAN_PAYLOAD)}/a.ts",
        f"/{SID}.{jwt_with(None, raw=b64url_encode(bytes([0xff, 0xfe])))}/a.ts",  # not UTF-8
        f"/{SID}.{jwt_with({'sid': 'otherSession_00001', 'exp': NOW})}/a.ts",  # sid mismatch: edge denies
        "/" + SID + "." + "a" * 5000 + ".b.c/a.ts",  # longer than the edge accepts
        "http://[::1/",  # unparseable URL
        12345,
    ],
)
def test_garbage_is_none(text: object) -> None:
    assert read_token(text) is None  # type: ignore[arg-type]
    assert token_expiry(text) is None  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.from_regex(r"/[A-Za-z0-9_-]{16}\.[A-Za-z0-9_.-]{0,80}/x", fullmatch=True))
def test_never_raises(text: str) -> None:
    info = read_token(text)
    assert info is None or isinstance(info, TokenInfo)


def test_revocation_expiry_adds_the_margin() -> None:
    assert revocation_expiry(NOW) == NOW + DEFAULT_MARGIN_SECONDS
    assert revocation_expiry(NOW + 0.5, 60) == NOW + 61
    with pytest.raises(ValueError, match="at least 30"):
        revocation_expiry(NOW, 10)  # the edge accepts a token until exp + 30 s
    with pytest.raises(ValueError, match="plausible"):
        revocation_expiry(float("nan"))
    with pytest.raises(TypeError):
        revocation_expiry(NOW, 60.0)  # type: ignore[arg-type]


def test_session_expiry_is_the_latest_exp_seen() -> None:
    assert expiry_for_session([NOW + 10, None, NOW + 900, NOW + 300], now=NOW) == NOW + 900 + DEFAULT_MARGIN_SECONDS


def test_session_expiry_without_a_readable_exp_covers_the_longest_token() -> None:
    assert expiry_for_session([None], now=NOW, margin=60) == NOW + MAX_TTL_SECONDS + 60
    assert expiry_for_session([], now=NOW, margin=60, max_token_lifetime=3600) == NOW + 3660
    # An exp beyond any token's lifetime is capped: a garbage exp cannot make a revocation last for years.
    assert expiry_for_session([NOW + 10**8], now=NOW, margin=60) == NOW + MAX_TTL_SECONDS + 60
