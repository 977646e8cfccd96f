"""Entitlement assertions and the issuing rules they impose: every refusal, and the session id the issuer derives."""

from __future__ import annotations

import jwt
import pytest

from edge.binding import Viewer
from edge.entitlement import (
    AUDIENCE,
    MAX_ASSERTION_SECONDS,
    EntitlementError,
    derive_session_id,
    sign_assertion,
    verify_assertion,
)
from edge.issuing import (
    InvalidIssueRequest,
    IssuePolicy,
    IssueRequest,
    NotEntitled,
    entitled_request,
    issue,
    token_request,
)
from edge.keys import generate_key
from edge.verify import MappingReader

NOW = 1_767_225_600
BACKEND = generate_key("backend-2026")
SIGNING = generate_key("sign-2026")
VIEWER = Viewer.of("203.0.113.7", {"user-agent": "Player/1", "cloudfront-viewer-country": "DE"})
CLAIMS = {"sub": "account-42", "dev": "tv-livingroom", "paths": ["/live/ch1", "/vod/"], "bnd": ["ip-prefix"],
          "ttl": 3600}  # fmt: skip


def assertion(claims: dict | None = None, key=BACKEND, now: int = NOW, lifetime: int = 60) -> str:
    return sign_assertion(key, CLAIMS if claims is None else claims, now, lifetime)


def test_a_valid_assertion_gives_the_entitlement() -> None:
    entitlement = verify_assertion(assertion(), BACKEND, NOW)
    assert (entitlement.account, entitlement.device, entitlement.paths) == ("account-42", "tv-livingroom",
                                                                            ("/live/ch1", "/vod/"))
    assert entitlement.bindings == ("ip-prefix",) and entitlement.max_ttl_seconds == 3600


def _raw(claims: dict, headers: dict | None = None, key: bytes = BACKEND.secret, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": BACKEND.kid, **(headers or {})})


BASE = {"aud": AUDIENCE, "iat": NOW, "exp": NOW + 60, **CLAIMS}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "entitlement-missing"),
        ("", "entitlement-missing"),
        ("not.a.jwt", "entitlement-invalid"),
        (_raw(BASE, key=generate_key("other").secret), "entitlement-invalid"),  # another key
        (_raw(BASE, headers={"kid": "someone-else"}), "entitlement-invalid"),  # another kid
        (_raw(BASE, algorithm="HS512", key=BACKEND.secret * 2), "entitlement-invalid"),  # another algorithm
        (_raw({**BASE, "aud": "somebody-else"}), "entitlement-invalid"),
        (_raw({k: v for k, v in BASE.items() if k != "sub"}), "entitlement-invalid"),
        (_raw({k: v for k, v in BASE.items() if k != "iat"}), "entitlement-invalid"),
        (_raw({**BASE, "iat": NOW - 100, "exp": NOW - 40}), "entitlement-expired"),
        (_raw({**BASE, "exp": NOW + MAX_ASSERTION_SECONDS + 1}), "entitlement-invalid"),  # too long-lived
        (_raw({**BASE, "iat": NOW + 120, "exp": NOW + 180}), "entitlement-invalid"),  # issued in the future
        (_raw({**BASE, "paths": []}), "entitlement-invalid"),  # entitled to nothing
        (_raw({**BASE, "sub": "has space"}), "entitlement-invalid"),
    ],
    ids=["none", "empty", "not-jwt", "other-key", "other-kid", "other-alg", "other-audience", "no-sub", "no-iat",
         "expired", "long-lived", "future", "no-paths", "bad-account"],
)
def test_every_unacceptable_assertion_is_refused_with_its_reason(text: str | None, reason: str) -> None:
    with pytest.raises(EntitlementError) as refused:
        verify_assertion(text, BACKEND, NOW)
    assert refused.value.reason == reason


def test_the_session_id_is_derived_from_account_and_device() -> None:
    sid = derive_session_id("account-42", "tv-livingroom")
    assert len(sid) == 24 and sid == derive_session_id("account-42", "tv-livingroom")
    assert sid != derive_session_id("account-42", "phone") != derive_session_id("account-43", "tv-livingroom")
    assert derive_session_id("account-42", None) == derive_session_id("account-42", "")


ENTITLEMENT = verify_assertion(assertion(), BACKEND, NOW)
POLICY = IssuePolicy(default_ttl_seconds=7200, max_ttl_seconds=86400)


def request(**fields) -> IssueRequest:
    return IssueRequest(asset_url="https://cdn.example.com/live/ch1/master.m3u8", bind=["ip-prefix"], **fields)


def test_the_request_is_held_to_the_entitlement() -> None:
    held = entitled_request(request(), ENTITLEMENT, POLICY)
    assert held.session_id == derive_session_id("account-42", "tv-livingroom")
    assert held.path_prefixes == ["/live/ch1", "/vod/"]  # none asked: the entitlement's
    assert held.ttl_seconds == 3600  # the issuer's default (7200) capped at the entitlement's
    narrower = entitled_request(request(path_prefixes=["/live/ch1"], ttl_seconds=600), ENTITLEMENT, POLICY)
    assert (narrower.path_prefixes, narrower.ttl_seconds) == (["/live/ch1"], 600)


@pytest.mark.parametrize(
    ("fields", "error", "reason"),
    [
        ({"session_id": "victimsession000001"}, InvalidIssueRequest, "session-id-not-allowed"),
        ({"path_prefixes": ["/live/ch2"], "asset_url": "/live/ch2/master.m3u8"}, NotEntitled, "outside-entitlement"),
        ({"path_prefixes": ["/live"]}, NotEntitled, "outside-entitlement"),  # wider than entitled
        ({"bind": []}, NotEntitled, "binding-required"),
        ({"ttl_seconds": 3601}, NotEntitled, "ttl-over-entitlement"),
    ],
)
def test_every_request_beyond_the_entitlement_is_refused(fields: dict, error: type, reason: str) -> None:
    base = {"asset_url": "https://cdn.example.com/live/ch1/master.m3u8", "bind": ["ip-prefix"], **fields}
    with pytest.raises(error) as refused:
        entitled_request(IssueRequest(**base), ENTITLEMENT, POLICY)
    assert refused.value.reason == reason


def test_the_policy_can_require_a_path_scope_and_bindings() -> None:
    strict = IssuePolicy(require_path_scope=True, required_bindings=("ip-prefix", "country"))
    with pytest.raises(InvalidIssueRequest) as unscoped:
        token_request(IssueRequest(asset_url="/live/ch1/a.m3u8", bind=["ip-prefix", "country"]), VIEWER, strict)
    assert unscoped.value.reason == "path-scope-required"
    with pytest.raises(InvalidIssueRequest) as unbound:
        token_request(IssueRequest(asset_url="/live/ch1/a.m3u8", path_prefixes=["/live/ch1"], bind=["ip-prefix"]),
                      VIEWER, strict)
    assert unbound.value.reason == "binding-required" and "country" in unbound.value.message
    ok = token_request(IssueRequest(asset_url="/live/ch1/a.m3u8", path_prefixes=["/live/ch1"],
                                    bind=["ip-prefix", "country"]), VIEWER, strict)
    assert ok.paths == ("/live/ch1",) and len(ok.bindings) == 2


def test_issue_with_an_entitlement_signs_for_the_derived_session_only() -> None:
    store = MappingReader({SIGNING.store_key: SIGNING.encoded})
    issued = issue(request(), VIEWER, SIGNING, store, POLICY, now=NOW, entitlement=ENTITLEMENT)
    assert issued.session_id == derive_session_id("account-42", "tv-livingroom")
    revoked = MappingReader({SIGNING.store_key: SIGNING.encoded, f"r:{issued.session_id}": f"{NOW + 60}|auto"})
    with pytest.raises(Exception, match="revoked"):  # the next request for the same device is refused
        issue(request(), VIEWER, SIGNING, revoked, POLICY, now=NOW, entitlement=ENTITLEMENT)
