import json

import jwt
import pytest

from core.b64 import b64url_decode, b64url_encode
from edge.binding import Viewer
from edge.keys import InvalidKeyError, SigningKey, generate_key, load_key_file, parse_key_text
from edge.tokens import MAX_TTL_SECONDS, TokenRequest, TokenRequestError, issue_token, new_session_id
from edge.verify import MappingReader, verify_request

NOW = 1_800_000_000


def test_base64url_is_strict() -> None:
    assert b64url_decode(b64url_encode(b"\xff\x00abc")) == b"\xff\x00abc"
    for bad in ["ab=", "a+b/", "abcde", "AB"]:  # padding, wrong alphabet, impossible length, non-canonical
        with pytest.raises(ValueError):
            b64url_decode(bad)


def test_key_file_shapes(tmp_path) -> None:
    key = generate_key("main")
    secret_file = tmp_path / "secret.json"
    secret_file.write_text(key.to_secret_json())
    assert load_key_file(secret_file) == key
    raw = tmp_path / "raw.key"
    raw.write_text(key.encoded + "\n")
    assert load_key_file(raw, kid="main") == key
    with pytest.raises(InvalidKeyError, match="--kid"):
        load_key_file(raw)
    with pytest.raises(InvalidKeyError, match="does not match"):
        load_key_file(secret_file, kid="other")
    with pytest.raises(InvalidKeyError, match="at least 32"):
        parse_key_text(b64url_encode(b"short"), kid="x")
    with pytest.raises(InvalidKeyError, match="cannot read"):
        load_key_file(tmp_path / "missing.json")
    with pytest.raises(InvalidKeyError, match="kid"):
        parse_key_text(json.dumps({"kid": "bad kid!", "key": key.encoded}))
    assert "secret" not in repr(key) and key.encoded not in repr(key)


def test_session_ids_are_random_and_valid() -> None:
    ids = {new_session_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(16 <= len(s) <= 32 for s in ids)


def test_issued_token_layout() -> None:
    key = SigningKey("k1", b"s" * 32)
    issued = issue_token(TokenRequest(session_id="abcdefghijklmnop", ttl_seconds=60, paths=["/live/ch1"]), key, NOW)
    header = jwt.get_unverified_header(issued.jwt)
    assert header["alg"] == "HS256" and header["kid"] == "k1"
    claims = jwt.decode(issued.jwt, key.secret, algorithms=["HS256"], options={"verify_exp": False,
                                                                               "verify_iat": False})
    assert claims == {"sid": "abcdefghijklmnop", "iat": NOW, "exp": NOW + 60, "paths": ["/live/ch1"]}
    url = issued.url_for("https://cdn.example.com/live/ch1/master.m3u8?x=1")
    assert url == f"https://cdn.example.com/abcdefghijklmnop.{issued.jwt}/live/ch1/master.m3u8?x=1"


def test_bound_values_never_in_clear() -> None:
    key = generate_key()
    viewer = Viewer.of("203.0.113.5", {"user-agent": "SecretPlayer/9", "cloudfront-viewer-country": "NZ"})
    issued = issue_token(TokenRequest(bindings=["ip", "ua", "country"], viewer=viewer), key, NOW)
    claims = json.loads(b64url_decode(issued.jwt.split(".")[1]))
    assert len(b64url_decode(claims.pop("bh"))) == 32  # an HMAC, not the values
    claims.pop("sid")  # random text: may contain any two letters by chance
    readable = json.dumps(claims)
    for secret in ["203.0.113.5", "SecretPlayer", "NZ"]:
        assert secret not in readable
    assert claims["bnd"] == ["ip", "ua", "country"]


@pytest.mark.parametrize(
    "request_,message",
    [
        (TokenRequest(session_id="short"), "session id"),
        (TokenRequest(ttl_seconds=0), "ttl"),
        (TokenRequest(ttl_seconds=MAX_TTL_SECONDS + 1), "ttl"),
        (TokenRequest(paths=["live"]), "path prefix"),
        (TokenRequest(paths=["/live/../x"]), "path prefix"),
        (TokenRequest(bindings=["ip", "ip"], viewer=Viewer.of("192.0.2.1")), "repeat"),
    ],
)
def test_bad_requests_are_refused(request_: TokenRequest, message: str) -> None:
    with pytest.raises(TokenRequestError, match=message):
        issue_token(request_, generate_key(), NOW)


def test_issue_then_verify_round_trip() -> None:
    key = generate_key()
    store = MappingReader({key.store_key: key.encoded})
    viewer = Viewer.of("2001:db8:1:2::3", {"user-agent": "p"})
    issued = issue_token(TokenRequest(bindings=["ip/48", "ua"], viewer=viewer, paths=["/vod/"]), key, NOW)
    uri = f"/{issued.segment}/vod/film/index.m3u8"
    assert verify_request(uri, viewer, store, NOW).uri == "/vod/film/index.m3u8"
    other = Viewer.of("2001:db8:2::3", {"user-agent": "p"})
    assert verify_request(uri, other, store, NOW).reason == "binding"
    assert verify_request(uri, viewer, store, issued.expires_at + 31).reason == "expired"
