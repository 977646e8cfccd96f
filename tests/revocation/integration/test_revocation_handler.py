"""The revocation API Lambda, invoked with function URL events (payload 2.0, IAM auth); the ledger is DynamoDB on moto
(table from TABLE_DEFINITION), the edge store the JSON twin."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from edge.store import LocalEdgeStore
from revocation.ledger.dynamodb import DynamoDbLedger
from tests.helpers import FakeLambdaContext, body_of, http_event, imported_handler, powertools_env, set_environment
from tests.revocation.helpers import HOUR, sid, verdict

POWERTOOLS_ENV = powertools_env("revocation-test")
CALLER = "arn:aws:iam::123456789012:role/ops-alice"
CONTEXT = FakeLambdaContext("revocation-api")


@pytest.fixture(scope="module")
def handler_module():
    with imported_handler("revocation.handler", POWERTOOLS_ENV) as module:
        yield module


class Api:
    def __init__(self, module: Any, ledger: DynamoDbLedger, store: LocalEdgeStore) -> None:
        self.module, self.ledger, self.store = module, ledger, store

    def call(self, method: str, path: str, body: Any = None, *, query: str = "",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        event = http_event(method, path, body, query=query, headers=headers, caller=CALLER)
        response = self.module.handler(event, CONTEXT)
        return response["statusCode"], body_of(response)


@pytest.fixture
def api(handler_module: Any, dynamodb: Any, table_name: str, edge_store: LocalEdgeStore,
        monkeypatch: pytest.MonkeyPatch):
    set_environment(
        monkeypatch,
        {
            **POWERTOOLS_ENV,
            "LEDGER_TABLE": table_name,
            "EDGE_STORE": str(edge_store.path),
            "ALLOW_SESSIONS": f"{sid(50)}, {sid(51)}",
        },
    )
    handler_module.runtime.cache_clear()
    yield Api(handler_module, DynamoDbLedger(table_name, client=dynamodb), edge_store)
    handler_module.runtime.cache_clear()


def test_revoke_then_lift_reaches_the_edge(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    status, body = api.call("POST", "/revocations", {"session_id": sid(1), "reason": "restreaming", "ttl_seconds": 3600})
    assert status == 201 and body["outcome"] == "created" and body["published"] is True
    revocation = body["revocation"]
    assert revocation["revoked_by"] == f"manual:{CALLER}"  # from the IAM identity, not the body
    assert abs(revocation["expires_at"] - (time.time() + HOUR)) < 60
    assert api.store.get(f"r:{sid(1)}") == f"{revocation['expires_at']}|restreaming"
    printed = capsys.readouterr().out
    assert '"ManualRevocations"' in printed and '"EdgeStoreUtilization"' in printed  # EMF metrics

    status, body = api.call("GET", "/revocations")
    assert status == 200 and body["count"] == 1 and body["revocations"][0]["session_id"] == sid(1)

    status, body = api.call("DELETE", f"/revocations/{sid(1)}")
    assert status == 200 and body["outcome"] == "lifted" and body["revocation"]["lifted_by"] == f"manual:{CALLER}"
    assert api.store.get(f"r:{sid(1)}") is None and api.store.get("k:kid-2026-01") is not None
    assert api.call("GET", "/revocations")[1]["count"] == 0
    assert api.call("DELETE", f"/revocations/{sid(1)}")[1]["outcome"] == "already-lifted"


def test_a_repeated_revoke_is_200_and_never_shortens(api: Api) -> None:
    until = int(time.time()) + 2 * HOUR
    assert api.call("POST", "/revocations", {"session_id": sid(1), "reason": "manual", "expires_at": until})[0] == 201
    status, body = api.call("POST", "/revocations", {"session_id": sid(1), "reason": "manual", "ttl_seconds": 60})
    assert status == 200 and body["outcome"] == "unchanged" and body["revocation"]["expires_at"] == until


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"session_id": "short", "reason": "manual", "ttl_seconds": 60}, "invalid-session-id"),
        ({"session_id": sid(1), "reason": "No Good", "ttl_seconds": 60}, "invalid-reason"),
        ({"session_id": sid(1), "reason": "manual", "ttl_seconds": 60, "expires_at": 99}, "invalid-expiry"),
        ({"session_id": sid(1), "reason": "manual", "expires_at": 1000}, "invalid-expiry"),
        ({"session_id": sid(1), "reason": "manual", "ttl_seconds": "60"}, "invalid-request"),
        ({"session_id": sid(1), "reason": "manual", "ttl_seconds": 60, "by": "mallory"}, "invalid-request"),
        ({"session_id": sid(1)}, "invalid-request"),
        ("{not json", "invalid-request"),
        ("", "invalid-request"),
    ],
)
def test_bad_requests_are_400_and_change_nothing(api: Api, body: Any, error: str) -> None:
    status, answer = api.call("POST", "/revocations", body)
    assert (status, answer["error"]) == (400, error) and answer["message"]
    assert api.store.items("r:") == {} and api.ledger.active_revocations() == []


def test_allow_listed_is_409_unless_forced(api: Api) -> None:
    status, body = api.call("POST", "/revocations", {"session_id": sid(50), "reason": "manual", "ttl_seconds": 60})
    assert (status, body["error"]) == (409, "allow-listed") and "force" in body["message"]
    status, body = api.call("POST", "/revocations",
                            {"session_id": sid(50), "reason": "manual", "ttl_seconds": 60, "force": True})
    assert status == 201 and api.store.get(f"r:{sid(50)}") is not None


def test_lifting_an_unknown_session_is_404(api: Api) -> None:
    status, body = api.call("DELETE", f"/revocations/{sid(7)}")
    assert (status, body["error"]) == (404, "not-revoked")
    assert api.call("DELETE", "/revocations/bad")[1]["error"] == "invalid-session-id"


def test_flagged_since(api: Api) -> None:
    now = int(time.time())
    api.ledger.record_verdicts("run-1", [verdict(sid(1), decided_at=now - 600), verdict(sid(2), decided_at=now - 3 * HOUR)])
    status, body = api.call("GET", "/flagged", query=f"since={now - HOUR}")
    assert status == 200 and [v["session_id"] for v in body["verdicts"]] == [sid(1)]
    assert body["verdicts"][0]["reasons"][0]["code"] == "concurrent-ips"
    assert api.call("GET", "/flagged")[1]["count"] == 2  # default: the last 24 hours
    status, body = api.call("GET", "/flagged", query="since=yesterday")
    assert (status, body["error"]) == (400, "invalid-since")


def test_unknown_route_and_media_type(api: Api) -> None:
    status, body = api.call("GET", "/nothing-here")
    assert (status, body["error"]) == (404, "not-found")
    status, body = api.call("POST", "/revocations", "x", headers={"content-type": "text/plain"})
    assert (status, body["error"]) == (415, "unsupported-media-type")


def test_store_failure_is_202_and_the_ledger_keeps_it(api: Api) -> None:
    api.store.path.write_text("corrupt")
    status, body = api.call("POST", "/revocations", {"session_id": sid(1), "reason": "manual", "ttl_seconds": 60})
    assert status == 202 and body["published"] is False and "not a valid KeyValueStore file" in body["publish_error"]
    assert [r.session_id for r in api.ledger.active_revocations()] == [sid(1)]


@pytest.mark.parametrize(("unset", "blank"), [("LEDGER_TABLE", "EDGE_STORE"), ("EDGE_STORE", "LEDGER_TABLE")])
def test_missing_configuration_is_500_and_logged(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, unset: str, blank: str
) -> None:
    caplog.set_level("ERROR", logger=api.module.logger.name)
    monkeypatch.delenv(unset)
    monkeypatch.setenv(blank, "  ")
    api.module.runtime.cache_clear()
    status, body = api.call("GET", "/revocations")
    assert (status, body["error"]) == (500, "misconfigured") and unset not in body["message"]
    [record] = [r for r in caplog.records if r.getMessage() == "misconfigured"]
    assert f"{unset}: Field required" in record.detail and f"{blank}: Field required" in record.detail


def test_bare_table_name_is_dynamodb_and_allow_list_is_comma_separated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from revocation.handler import RevocationSettings
    from revocation.ledger import DynamoDbLedger, SqliteLedger, open_ledger_setting

    monkeypatch.setenv("LEDGER_TABLE", "ledger")
    monkeypatch.setenv("EDGE_STORE", "store.json")
    monkeypatch.setenv("ALLOW_SESSIONS", f" {sid(1)},, {sid(2)} ,")
    settings = RevocationSettings.from_env()
    assert isinstance(open_ledger_setting(settings.ledger_table, client=object()), DynamoDbLedger)
    assert settings.allow_list() == {sid(1), sid(2)}
    monkeypatch.setenv("LEDGER_TABLE", f"sqlite:{tmp_path / 'ledger.sqlite'}")
    monkeypatch.delenv("ALLOW_SESSIONS")
    settings = RevocationSettings.from_env()
    assert isinstance(open_ledger_setting(settings.ledger_table), SqliteLedger)
    assert settings.allow_list() == frozenset()
