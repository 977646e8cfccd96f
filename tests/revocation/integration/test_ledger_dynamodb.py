"""What only the DynamoDB ledger has: the table definition, item layout, TTL, the sparse index, and conditional writes
that hold against a concurrent writer (moto)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from revocation.ledger import LedgerConflictError, LedgerError, Reason, RevokeOutcome
from revocation.ledger.dynamodb import (
    DEFAULT_RETENTION_SECONDS,
    GSI_NAME,
    TABLE_DEFINITION,
    DynamoDbLedger,
    cloudformation_properties,
    create_table_request,
)
from tests.revocation.helpers import HOUR, NOW, sid, verdict


@pytest.fixture
def ledger(dynamodb: Any, table_name: str) -> DynamoDbLedger:
    return DynamoDbLedger(table_name, client=dynamodb)


def raw_items(client: Any, table: str) -> dict[tuple[str, str], dict[str, Any]]:
    items = client.scan(TableName=table)["Items"]
    return {(i["pk"]["S"], i["sk"]["S"]): i for i in items}


def test_the_table_is_built_from_the_definition(dynamodb: Any, table_name: str) -> None:
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    assert table["KeySchema"] == TABLE_DEFINITION["KeySchema"]
    assert [g["IndexName"] for g in table["GlobalSecondaryIndexes"]] == [GSI_NAME]
    assert table["GlobalSecondaryIndexes"][0]["Projection"] == {"ProjectionType": "ALL"}
    ttl = dynamodb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")


def test_definition_shapes_for_the_api_and_cloudformation() -> None:
    request = create_table_request("t1")
    assert request["TableName"] == "t1" and "TimeToLiveSpecification" not in request
    props = cloudformation_properties("t1")
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    request["KeySchema"].append("mutated")  # copies, not the constant itself
    assert len(TABLE_DEFINITION["KeySchema"]) == 2


def test_item_layout_ttl_and_sparse_index(dynamodb: Any, table_name: str, ledger: DynamoDbLedger) -> None:
    ledger.record_verdicts("run-1", [verdict(sid(1))])
    ledger.revoke(sid(1), "auto", NOW + HOUR, "auto:run-1", now=NOW)
    items = raw_items(dynamodb, table_name)
    v = items[(f"SESSION#{sid(1)}", "VERDICT#run-1")]
    r = items[(f"SESSION#{sid(1)}", "REVOCATION")]
    assert v["ttl"] == {"N": str(NOW + DEFAULT_RETENTION_SECONDS)}
    assert v["gsi1pk"] == {"S": "FLAGGED#2026-01-01"}
    assert json.loads(v["reasons"]["S"])[0]["code"] == "concurrent-ips"  # JSON text, like the features
    assert r["ttl"] == {"N": str(NOW + HOUR + DEFAULT_RETENTION_SECONDS)}
    assert (r["gsi1pk"], r["gsi1sk"]) == ({"S": "REVOKED"}, {"S": f"{NOW + HOUR:012d}#{sid(1)}"})
    ledger.revoke(sid(1), "auto", NOW + 2 * HOUR, "auto:run-2", now=NOW)
    r = raw_items(dynamodb, table_name)[(f"SESSION#{sid(1)}", "REVOCATION")]
    assert r["ttl"] == {"N": str(NOW + 2 * HOUR + DEFAULT_RETENTION_SECONDS)}  # TTL follows the expiry
    assert r["gsi1sk"] == {"S": f"{NOW + 2 * HOUR:012d}#{sid(1)}"}
    ledger.lift(sid(1), "manual:alice", now=NOW + 1)
    r = raw_items(dynamodb, table_name)[(f"SESSION#{sid(1)}", "REVOCATION")]
    assert "gsi1pk" not in r and "gsi1sk" not in r  # out of the active index
    index = dynamodb.scan(TableName=table_name, IndexName=GSI_NAME)["Items"]
    assert all(i["gsi1pk"]["S"] != "REVOKED" for i in index)


def test_verdicts_keep_their_reasons_values_and_read_items_written_before_they_had_any(
    dynamodb: Any, table_name: str, ledger: DynamoDbLedger
) -> None:
    reason = Reason(code="playback_rate", detail="2.5x real time", weight=1.0, values={"speed": 2.5},
                    thresholds={"min_speed": 2.0})
    ledger.record_verdicts("run-1", [verdict(sid(1)).model_copy(update={"reasons": (reason,)})])
    (stored,) = ledger.get(sid(1)).verdicts
    assert stored.reasons == (reason,)
    older = {"code": {"S": "concurrent-ips"}, "detail": {"S": "3 addresses"}}
    dynamodb.update_item(TableName=table_name, Key={"pk": {"S": f"SESSION#{sid(1)}"}, "sk": {"S": "VERDICT#run-1"}},
                         UpdateExpression="SET reasons = :r", ExpressionAttributeValues={":r": {"L": [{"M": older}]}})
    (stored,) = ledger.get(sid(1)).verdicts
    assert stored.reasons == (Reason(code="concurrent-ips", detail="3 addresses"),)


def race_once(monkeypatch: pytest.MonkeyPatch, ledger: DynamoDbLedger, reader: str,
              other_write: Callable[[DynamoDbLedger, str], Any], *, missing: bool = False) -> Callable[[str], Any]:
    """Make ``ledger.<reader>``'s first read race another writer: ``other_write`` (another ledger on the same table)
    writes right after it, and the read answers what it saw before that (``None`` when ``missing``: it read before
    the other writer created the item). Later reads are real. Returns the real reader."""
    real = getattr(ledger, reader)
    other = DynamoDbLedger(ledger.table_name, client=ledger.client)
    raced: list[int] = []

    def read(session_id: str) -> Any:
        if raced:
            return real(session_id)
        raced.append(1)
        seen = None if missing else real(session_id)
        other_write(other, session_id)
        return seen

    monkeypatch.setattr(ledger, reader, read)
    return real


def test_an_extension_never_loses_to_a_racing_longer_one(ledger: DynamoDbLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger.revoke(sid(1), "auto", NOW + HOUR, "auto:run-1", now=NOW)
    real_get = race_once(monkeypatch, ledger, "_get_revocation",  # another writer extends to +3h after we read +1h
                         lambda other, session_id: other.revoke(session_id, "auto", NOW + 3 * HOUR, "auto:run-other",
                                                                now=NOW))
    result = ledger.revoke(sid(1), "auto", NOW + 2 * HOUR, "auto:run-2", now=NOW)
    assert result.outcome is RevokeOutcome.UNCHANGED  # re-read after the failed condition: +3h already
    assert real_get(sid(1)).expires_at == NOW + 3 * HOUR


def test_a_create_racing_a_create_keeps_the_later_expiry(ledger: DynamoDbLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    real_get = race_once(monkeypatch, ledger, "_get_revocation", missing=True,  # we read before the other created it
                         other_write=lambda other, session_id: other.revoke(session_id, "auto", NOW + HOUR,
                                                                            "auto:run-other", now=NOW))
    result = ledger.revoke(sid(1), "auto", NOW + 2 * HOUR, "auto:run-2", now=NOW)
    assert result.outcome is RevokeOutcome.EXTENDED
    assert real_get(sid(1)).expires_at == NOW + 2 * HOUR


def test_endless_races_give_up_with_a_clear_error(ledger: DynamoDbLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger.revoke(sid(1), "auto", NOW + HOUR, "auto:run-1", now=NOW)
    monkeypatch.setattr(ledger, "_get_revocation", lambda session_id: None)  # always stale
    with pytest.raises(LedgerConflictError, match="conditional-write races"):
        ledger.revoke(sid(1), "auto", NOW + 2 * HOUR, "auto:run-2", now=NOW)


def test_a_missing_table_is_a_ledger_error(dynamodb: Any) -> None:
    ledger = DynamoDbLedger("no-such-table", client=dynamodb)
    with pytest.raises(LedgerError, match="no-such-table"):
        ledger.active_revocations(NOW)
    with pytest.raises(LedgerError, match="not a DynamoDB table name"):
        DynamoDbLedger("x", client=dynamodb)


def test_an_issue_between_a_revokes_read_and_write_is_covered(ledger: DynamoDbLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issuer's check ran before the revocation existed, its token expires later than the revoke saw: the revoke
    reads the issued expiry again after writing and extends."""
    ledger.record_issue(sid(1), NOW + HOUR, now=NOW)
    race_once(monkeypatch, ledger, "_issued_until",
              lambda other, session_id: other.record_issue(session_id, NOW + 9 * HOUR, now=NOW))
    result = ledger.revoke(sid(1), "auto", NOW + 600, "auto:run-1", now=NOW)
    assert result.revocation.expires_at == NOW + 9 * HOUR + 300
    assert ledger.get(sid(1)).revocation.expires_at == NOW + 9 * HOUR + 300


def test_an_issue_racing_another_issue_keeps_the_later_expiry(ledger: DynamoDbLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    race_once(monkeypatch, ledger, "_issued_until", missing=True,  # read before the other issue wrote
              other_write=lambda other, session_id: other.record_issue(session_id, NOW + 5 * HOUR, now=NOW))
    assert ledger.record_issue(sid(1), NOW + 2 * HOUR, now=NOW) == NOW + 5 * HOUR
    items = raw_items(ledger.client, ledger.table_name)
    issued = items[(f"SESSION#{sid(1)}", "ISSUED")]
    assert issued["expires_at"]["N"] == str(NOW + 5 * HOUR) and "ttl" in issued
