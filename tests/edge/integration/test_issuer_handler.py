"""The token-issuing Lambda, invoked the way Lambda invokes it: function URL / HTTP API (payload 2.0) events.

Secrets Manager is moto; the edge store is the local JSON twin (the same file format as the KeyValueStore import).
Logs and EMF metrics go to stdout, so they are read back from it.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge.binding import Viewer
from edge.entitlement import derive_session_id, sign_assertion
from edge.keys import SigningKey, generate_key
from edge.store import LocalEdgeStore
from edge.verify import verify_request
from revocation.ledger import LedgerError, SqliteLedger
from tests.helpers import (
    FakeLambdaContext,
    body_of,
    http_event,
    imported_handler,
    new_secret,
    powertools_env,
    set_environment,
    with_metric,
)

SID = "revokedSession_0001"
POWERTOOLS_ENV = powertools_env("token-issuer-test")
CONTEXT = FakeLambdaContext("token-issuer")


@pytest.fixture(scope="module")
def handler_module():
    with imported_handler("edge.issuer_handler", POWERTOOLS_ENV) as module:
        yield module


@dataclass
class Issuer:
    module: Any
    key: SigningKey
    secret_arn: str
    secret_name: str
    store: LocalEdgeStore
    secrets: Any

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.module.handler(event, CONTEXT)


@pytest.fixture
def issuer(handler_module, secretsmanager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    key = generate_key("kid-2026-01")
    store = LocalEdgeStore(tmp_path / "edge-store.json")
    store.put(key.store_key, key.encoded)
    secret_name, arn = new_secret(secretsmanager, key.to_secret_json())
    set_environment(
        monkeypatch,
        {
            **POWERTOOLS_ENV,
            "SIGNING_KEY_FILE": None,
            "SIGNING_KEY_CACHE_SECONDS": None,
            "SIGNING_SECRET_ARN": arn,
            "EDGE_STORE": str(store.path),
            "DEFAULT_TTL_SECONDS": "1800",
            "MAX_TTL_SECONDS": "7200",
        },
    )
    handler_module.runtime.cache_clear()
    yield Issuer(handler_module, key, arn, secret_name, store, secretsmanager)
    handler_module.runtime.cache_clear()


def function_url_event(
    body: Any = None, headers: dict[str, str] | None = None, *, method: str = "POST", path: str = "/tokens", **kwargs
) -> dict[str, Any]:
    """A function URL event (IAM auth, payload 2.0) for ``POST /tokens`` by default."""
    return http_event(method, path, body, headers=headers, **kwargs)


def http_api_event(body: Any, headers: dict[str, str] | None = None, *, stage: str = "prod", **kwargs) -> dict:
    """An API Gateway HTTP API event on a named stage (the stage is part of rawPath)."""
    event = function_url_event(body, headers, **kwargs)
    event["routeKey"] = "POST /tokens"
    event["rawPath"] = f"/{stage}/tokens"
    event["requestContext"]["routeKey"] = "POST /tokens"
    event["requestContext"]["stage"] = stage
    event["requestContext"]["http"]["path"] = f"/{stage}/tokens"
    return event


def uri_of(url: str) -> str:
    return "/" + url.split("/", 3)[3] if url.startswith("https://") else url


# -- 201 ---------------------------------------------------------------------------------------------------------


def test_issues_a_bound_url_that_the_edge_accepts(issuer: Issuer, output) -> None:
    headers = {
        "cloudfront-viewer-address": "203.0.113.7:53211",
        "cloudfront-viewer-country": "DE",
        "user-agent": "Player/2.0",
    }
    before = int(time.time())
    response = issuer.invoke(
        function_url_event(
            {"asset_url": "https://cdn.example.com/vod/t1/master.m3u8", "bind": ["ip-prefix", "country"]}, headers
        )
    )
    assert response["statusCode"] == 201, response["body"]
    assert response["headers"]["Cache-Control"] == "no-store"
    body = body_of(response)
    assert set(body) == {"url", "session_id", "expires_at", "kid"}
    assert body["kid"] == issuer.key.kid
    assert before + 1800 <= body["expires_at"] <= int(time.time()) + 1800  # DEFAULT_TTL_SECONDS
    assert body["url"].startswith(f"https://cdn.example.com/{body['session_id']}.")

    now = time.time()
    viewer = Viewer.of("203.0.113.99", {"cloudfront-viewer-country": "DE"})
    assert verify_request(uri_of(body["url"]), viewer, issuer.store, now).allowed
    elsewhere = Viewer.of("198.51.100.1", {"cloudfront-viewer-country": "DE"})
    assert verify_request(uri_of(body["url"]), elsewhere, issuer.store, now).reason == "binding"

    out, logs, blobs = output()
    assert with_metric(blobs, "TokensIssued")[0]["TokensIssued"] == [1.0]
    assert with_metric(blobs, "TokensIssued")[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MediaShieldTest"
    assert not with_metric(blobs, "TokenRequestsRejected")
    issued_log = next(r for r in logs if r["message"] == "token issued")
    assert issued_log["session_id"] == body["session_id"]
    assert issued_log["caller"] == "arn:aws:iam::123456789012:role/playback-api"
    assert issued_log["service"] == "token-issuer-test"
    token = body["url"].split("/")[3]
    assert issuer.key.encoded not in out and token.split(".", 1)[1] not in out and body["url"] not in out


def test_http_api_stage_base64_body_ipv6_viewer(issuer: Issuer) -> None:
    response = issuer.invoke(
        http_api_event(
            {"asset_url": "/live/ch1/index.m3u8", "bind": ["ip"], "ttl_seconds": 120, "path_prefixes": ["/live/ch1"]},
            {"cloudfront-viewer-address": "2001:db8:5::1:443"},
            base64_body=True,
        )
    )
    assert response["statusCode"] == 201, response["body"]
    body = body_of(response)
    assert body["url"].startswith(f"/{body['session_id']}.") and body["url"].endswith("/live/ch1/index.m3u8")
    now = time.time()
    assert verify_request(body["url"], Viewer.of("2001:db8:5:0:0:0:0:1"), issuer.store, now).allowed
    assert verify_request(body["url"], Viewer.of("2001:db8:5::2"), issuer.store, now).reason == "binding"


def test_source_ip_is_used_without_viewer_address_header(issuer: Issuer) -> None:
    response = issuer.invoke(function_url_event({"asset_url": "/a/b.ts", "bind": ["ip"]}, source_ip="192.0.2.44"))
    assert response["statusCode"] == 201, response["body"]
    url = body_of(response)["url"]
    assert verify_request(url, Viewer.of("192.0.2.44"), issuer.store, time.time()).allowed
    assert verify_request(url, Viewer.of("192.0.2.45"), issuer.store, time.time()).reason == "binding"


def test_new_secret_version_is_used_once_the_cache_allows(issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNING_KEY_CACHE_SECONDS", "0")
    issuer.module.runtime.cache_clear()
    assert body_of(issuer.invoke(function_url_event({"asset_url": "/a.m3u8"})))["kid"] == issuer.key.kid
    rotated = generate_key("kid-2026-02")
    issuer.secrets.put_secret_value(SecretId=issuer.secret_arn, SecretString=rotated.to_secret_json())
    assert body_of(issuer.invoke(function_url_event({"asset_url": "/a.m3u8"})))["kid"] == rotated.kid


# -- 400 / 415 / 404 ----------------------------------------------------------------------------------------------


def rejected(response: dict[str, Any], status: int, reason: str) -> dict[str, Any]:
    assert response["statusCode"] == status, response["body"]
    body = body_of(response)
    assert body["error"] == reason and body["message"]
    return body


def test_bad_json_is_400(issuer: Issuer, output) -> None:
    body = rejected(issuer.invoke(function_url_event('{"asset_url": ')), 400, "invalid-request")
    assert "not valid JSON" in body["message"]
    _, _, blobs = output()
    [blob] = with_metric(blobs, "TokenRequestsRejected")
    assert blob["reason"] == "invalid-request" and blob["TokenRequestsRejected"] == [1.0]


def test_missing_body_is_400(issuer: Issuer) -> None:
    body = rejected(issuer.invoke(function_url_event(None)), 400, "invalid-request")
    assert "body is required" in body["message"]


@pytest.mark.parametrize(
    ("payload", "field", "text"),
    [
        ({"asset_url": "/a.m3u8", "bind": ["geo"]}, "bind", "unknown binding 'geo'"),
        ({"asset_url": "http://cdn.example.com/a.m3u8"}, "asset_url", "https://"),
        ({"asset_url": "/a.m3u8", "session_id": "tiny"}, "session_id", "16-32"),
        ({"asset_url": "/a.m3u8", "ttl_seconds": "60"}, "ttl_seconds", "integer"),
        ({"bind": ["ip"]}, "asset_url", "required"),
        ({"asset_url": "/a.m3u8", "bindings": ["ip"]}, "bindings", "not permitted"),
        ([{"asset_url": "/a.m3u8"}], "", "Input should be an object"),  # one object, not the first of a list
    ],
)
def test_invalid_fields_are_400_naming_the_field(issuer: Issuer, payload: Any, field: str, text: str) -> None:
    body = rejected(issuer.invoke(function_url_event(payload)), 400, "invalid-request")
    assert any(d["field"] == field and text in d["message"] for d in body["details"]), body
    assert text in body["message"]


def test_missing_viewer_attribute_is_400(issuer: Issuer) -> None:
    body = rejected(
        issuer.invoke(function_url_event({"asset_url": "/a.m3u8", "bind": ["country", "region"]},
                                         {"cloudfront-viewer-country": "FR"})),
        400,
        "missing-viewer-attribute",
    )
    assert "'region'" in body["message"] and "CloudFront-Viewer-Country-Region" in body["message"]
    assert "'country'" not in body["message"]


def test_malformed_viewer_address_does_not_fall_back_to_source_ip(issuer: Issuer) -> None:
    event = function_url_event({"asset_url": "/a.m3u8", "bind": ["ip"]}, {"cloudfront-viewer-address": "bogus"})
    rejected(issuer.invoke(event), 400, "missing-viewer-attribute")


def test_ttl_above_the_configured_maximum_is_400(issuer: Issuer) -> None:
    assert issuer.invoke(function_url_event({"asset_url": "/a.m3u8", "ttl_seconds": 7200}))["statusCode"] == 201
    body = rejected(
        issuer.invoke(function_url_event({"asset_url": "/a.m3u8", "ttl_seconds": 7201})), 400, "ttl-too-large"
    )
    assert "7200" in body["message"]


def test_non_json_content_type_is_415(issuer: Issuer) -> None:
    event = function_url_event("asset_url=/a.m3u8", {"content-type": "text/plain"})
    rejected(issuer.invoke(event), 415, "unsupported-media-type")


def test_other_routes_are_404(issuer: Issuer) -> None:
    rejected(issuer.invoke(function_url_event(None, method="GET")), 404, "not-found")
    rejected(issuer.invoke(function_url_event({"asset_url": "/a"}, path="/token")), 404, "not-found")


# -- 409 ----------------------------------------------------------------------------------------------------------


def test_revoked_session_is_409(issuer: Issuer, output) -> None:
    issuer.store.put(f"r:{SID}", f"{int(time.time()) + 3600}|auto")
    body = rejected(issuer.invoke(function_url_event({"asset_url": "/a.m3u8", "session_id": SID})), 409, "revoked")
    assert SID in body["message"]
    _, _, blobs = output()
    assert [b["reason"] for b in with_metric(blobs, "TokenRequestsRejected")] == ["revoked"]
    # the same session id once its revocation has lapsed, and a fresh session meanwhile, are issued
    assert issuer.invoke(function_url_event({"asset_url": "/a.m3u8"}))["statusCode"] == 201
    issuer.store.put(f"r:{SID}", f"{int(time.time()) - 1}|auto")
    response = issuer.invoke(function_url_event({"asset_url": "/a.m3u8", "session_id": SID}))
    assert response["statusCode"] == 201 and body_of(response)["session_id"] == SID


def test_with_a_ledger_every_token_is_recorded_and_a_revocation_covers_it(
    issuer: Issuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_TABLE", f"sqlite:{tmp_path / 'ledger.sqlite'}")
    issuer.module.runtime.cache_clear()
    long = body_of(issuer.invoke(function_url_event({"asset_url": "/a.m3u8", "session_id": SID, "ttl_seconds": 7200})))
    short = body_of(issuer.invoke(function_url_event({"asset_url": "/a.m3u8", "session_id": SID, "ttl_seconds": 600})))
    with SqliteLedger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.get(SID).issued_until == long["expires_at"] > short["expires_at"]
        # detection saw only the short token: the revocation still outlasts the long one
        revocation = ledger.revoke(SID, "auto", short["expires_at"] + 300, "auto:run-1").revocation
        assert revocation.expires_at == long["expires_at"] + 300
    # the edge store has not heard of it yet: the ledger refuses
    rejected(issuer.invoke(function_url_event({"asset_url": "/a.m3u8", "session_id": SID})), 409, "revoked")
    with SqliteLedger(tmp_path / "ledger.sqlite") as ledger:
        ledger.revoke(SID, "auto", int(time.time()) + 1, "auto:run-2")  # whatever happens to the entry...
        assert ledger.get(SID).issued_until == long["expires_at"]  # ...a refused request recorded nothing
    # a fresh session is issued and recorded
    fresh = body_of(issuer.invoke(function_url_event({"asset_url": "/a.m3u8"})))
    with SqliteLedger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.get(fresh["session_id"]).issued_until == fresh["expires_at"]


def test_an_unreachable_ledger_is_503_and_no_token(issuer: Issuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_TABLE", f"sqlite:{tmp_path / 'ledger.sqlite'}")
    issuer.module.runtime.cache_clear()
    ledger = issuer.module.runtime().ledger

    def unreachable(*args: Any, **kwargs: Any) -> int:
        raise LedgerError("UpdateItem on DynamoDB table ledger failed: ProvisionedThroughputExceededException")

    monkeypatch.setattr(ledger, "record_issue", unreachable)
    body = rejected(issuer.invoke(function_url_event({"asset_url": "/a.m3u8"})), 503, "store-unavailable")
    assert "ledger" in body["message"] and "url" not in body  # no token without its record


def test_with_entitlements_only_what_the_backend_vouches_for_is_issued(
    issuer: Issuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output
) -> None:
    backend = generate_key("backend-2026")
    key_file = tmp_path / "entitlement.json"
    key_file.write_text(backend.to_secret_json(), encoding="utf-8")
    monkeypatch.setenv("ENTITLEMENT_KEY_FILE", str(key_file))
    issuer.module.runtime.cache_clear()
    asked = {"asset_url": "https://cdn.example.com/live/ch1/master.m3u8", "bind": ["ip-prefix"]}
    claims = {"sub": "account-42", "dev": "tv-1", "paths": ["/live/ch1"], "bnd": ["ip-prefix"], "ttl": 900}
    now = int(time.time())

    def with_assertion(body: dict, assertion_claims: dict = claims, key=backend) -> dict:
        return issuer.invoke(function_url_event(body, {"X-Entitlement": sign_assertion(key, assertion_claims, now)}))

    rejected(issuer.invoke(function_url_event(asked)), 401, "entitlement-missing")
    rejected(with_assertion(asked, key=generate_key("backend-2026")), 401, "entitlement-invalid")  # a forged one
    issued = body_of(with_assertion(asked))
    assert issued["session_id"] == derive_session_id("account-42", "tv-1")
    assert issued["expires_at"] <= now + 900 + 1  # the entitlement's cap, not the issuer's default (1800)
    rejected(with_assertion({**asked, "session_id": SID}), 400, "session-id-not-allowed")
    rejected(with_assertion({**asked, "asset_url": "/live/ch2/a.m3u8", "path_prefixes": ["/live/ch2"]}), 403,
             "outside-entitlement")
    rejected(with_assertion({**asked, "bind": []}), 403, "binding-required")
    _, _, blobs = output()
    reasons = [b["reason"] for b in with_metric(blobs, "TokenRequestsRejected")]
    assert reasons == ["entitlement-missing", "entitlement-invalid", "session-id-not-allowed", "outside-entitlement",
                       "binding-required"]


def test_the_issuer_can_require_a_path_scope_and_bindings(issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUIRE_PATH_SCOPE", "true")
    monkeypatch.setenv("REQUIRED_BINDINGS", "ip-prefix")
    issuer.module.runtime.cache_clear()
    rejected(issuer.invoke(function_url_event({"asset_url": "/live/ch1/a.m3u8", "bind": ["ip-prefix"]})), 400,
             "path-scope-required")
    rejected(issuer.invoke(function_url_event({"asset_url": "/live/ch1/a.m3u8", "path_prefixes": ["/live/ch1"]})),
             400, "binding-required")
    ok = issuer.invoke(function_url_event({"asset_url": "/live/ch1/a.m3u8", "path_prefixes": ["/live/ch1"],
                                           "bind": ["ip-prefix"]}))
    assert ok["statusCode"] == 201


# -- 503 / 500 ----------------------------------------------------------------------------------------------------


def test_missing_secret_is_503(issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNING_SECRET_ARN", issuer.secret_arn.replace(issuer.secret_name, "media-shield/absent"))
    issuer.module.runtime.cache_clear()
    body = rejected(issuer.invoke(function_url_event({"asset_url": "/a.m3u8"})), 503, "key-unavailable")
    assert "retry" in body["message"]


def test_malformed_secret_is_503_and_not_leaked(issuer: Issuer, output) -> None:
    issuer.secrets.put_secret_value(SecretId=issuer.secret_arn, SecretString='{"kid": "k", "key": "c2hvcnQ"}')
    response = issuer.invoke(function_url_event({"asset_url": "/a.m3u8"}))
    rejected(response, 503, "key-unavailable")
    out, logs, _ = output()
    assert any(r["reason"] == "key-unavailable" and "malformed" in r["detail"] and "at least 32" in r["detail"]
               for r in logs if r["message"] == "token request rejected")
    assert "c2hvcnQ" not in out


def test_unreadable_edge_store_is_503_only_for_chosen_session_ids(issuer: Issuer) -> None:
    issuer.store.path.write_text("{not json")
    rejected(issuer.invoke(function_url_event({"asset_url": "/a.m3u8", "session_id": SID})), 503, "store-unavailable")
    assert issuer.invoke(function_url_event({"asset_url": "/a.m3u8"}))["statusCode"] == 201


@pytest.mark.parametrize(
    ("env", "text"),
    [
        ({"SIGNING_SECRET_ARN": ""}, "SIGNING_KEY_FILE"),
        ({"SIGNING_KEY_FILE": "/tmp/key.json"}, "exactly one"),
        ({"EDGE_STORE": ""}, "EDGE_STORE"),
        ({"EDGE_STORE": "store.txt"}, "cannot open edge store"),
        ({"DEFAULT_TTL_SECONDS": "9000"}, "must not exceed"),
        ({"MAX_TTL_SECONDS": "lots"}, "MAX_TTL_SECONDS"),
    ],
)
def test_bad_configuration_is_500_and_logged(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch, output, env: dict, text: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    issuer.module.runtime.cache_clear()
    rejected(issuer.invoke(function_url_event({"asset_url": "/a.m3u8"})), 500, "misconfigured")
    _, logs, _ = output()
    assert any(r.get("reason") == "misconfigured" and text in r["detail"] for r in logs), logs


def test_undecodable_base64_body_is_400(issuer: Issuer) -> None:
    event = function_url_event(None)
    event.update(body=base64.b64encode(b"\xff\xfe{}").decode(), isBase64Encoded=True)
    body = rejected(issuer.invoke(event), 400, "invalid-request")
    assert "UTF-8" in body["message"]


def test_unexpected_error_is_500_and_logged(issuer: Issuer, monkeypatch: pytest.MonkeyPatch, output) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(issuer.module, "issue", broken)
    response = issuer.invoke(function_url_event({"asset_url": "/a.m3u8"}))
    rejected(response, 500, "internal")
    assert type(response["statusCode"]) is int
    _, logs, blobs = output()
    assert any(r["message"] == "unexpected error" and "boom" in r.get("exception", "") for r in logs)
    assert [b["reason"] for b in with_metric(blobs, "TokenRequestsRejected")] == ["internal"]
