"""The ledger in DynamoDB: one table, single-table design (the shape is :data:`TABLE_DEFINITION`).

Items
=====

=================================  ==========================  =============================================================
pk                                 sk                          what
=================================  ==========================  =============================================================
``SESSION#<session id>``           ``VERDICT#<run id>``        a verdict: score, reasons (list of {code, detail}), features
                                                               (JSON text), action, decided_at, source
``SESSION#<session id>``           ``REVOCATION``              the session's revocation: reason, expires_at, revoked_by,
                                                               created_at, updated_at, lifted_at, lifted_by
``SESSION#<session id>``           ``ISSUED``                  expires_at: the latest token expiry the issuer signed;
                                                               updated_at
=================================  ==========================  =============================================================

One query on ``pk`` returns a session's whole history. ``ttl`` (the table's TTL attribute) is ``decided_at +
retention`` on verdicts and ``expires_at + retention`` on revocations, so DynamoDB deletes both after they stop
mattering; every read filters on time itself, because TTL deletion lags by up to a couple of days.

The overloaded sparse index ``gsi1`` answers the two listing queries without a scan:

* active revocations: ``gsi1pk = "REVOKED"``, ``gsi1sk = "<expires_at, 12 digits>#<session id>"``. The attributes are
  removed when a revocation is lifted, so lifted ones drop out of the index; expired ones are excluded by the key
  condition ``gsi1sk > "<now>#~"``. The publisher reads exactly the revocations in force, page by page.
* flagged sessions: ``gsi1pk = "FLAGGED#<UTC day>"``, ``gsi1sk = "<decided_at>#<session id>#<run id>"``: one query per
  day of the requested range (day buckets keep a busy day's verdicts from piling onto one partition forever).

Writes are conditional, so they are idempotent and safe against concurrent writers: a verdict is put with
``attribute_not_exists(pk)`` (a re-run of the same window changes nothing); a revocation is created with
``attribute_not_exists(pk)``, extended only with ``expires_at < :new`` (never shortened, even by a racing writer),
replaced (after expiry or a lift) only if it is still the version that was read, and lifted with
``attribute_not_exists(lifted_at)``. A lost race re-reads and decides again (:func:`~revocation.ledger.base.plan_revoke`).
An issue is one transaction: a condition check that the session's revocation is absent or lifted, and the
``ISSUED`` expiry raised only if it is still the value that was read. A revoke reads ``ISSUED`` before it writes and
again after: an issue that slipped in between (its check ran before the revocation existed) makes it extend the
revocation, and any issue after the write fails its check.

Queries on ``gsi1`` are eventually consistent (as every GSI read is): a revocation written a moment ago may be
missing from :meth:`DynamoDbLedger.active_revocations` for a fraction of a second. Callers that publish right after
writing pass the records they wrote to the publisher (``revocation.publisher.publish(..., fresh=...)``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core.aws import dynamodb_client
from revocation.ledger.base import (
    ISSUED_MARGIN_SECONDS,
    Ledger,
    LedgerConflictError,
    LedgerError,
    RecordResult,
    Revocation,
    RevokeOutcome,
    RevokeResult,
    SessionHistory,
    SessionRefused,
    Verdict,
    check_actor,
    check_session_id,
    normalise_verdicts,
    now_epoch,
    plan_revoke,
    revocation_sort_key,
    verdict_sort_key,
)

__all__ = [
    "DEFAULT_RETENTION_SECONDS",
    "GSI_NAME",
    "TABLE_DEFINITION",
    "DynamoDbLedger",
    "cloudformation_properties",
    "create_table",
    "create_table_request",
]

GSI_NAME = "gsi1"
TTL_ATTRIBUTE = "ttl"
DEFAULT_RETENTION_SECONDS = 30 * 24 * 3600
REVOKED_PARTITION = "REVOKED"
_REVOCATION_SK = "REVOCATION"
_ISSUED_SK = "ISSUED"
_TIME_DIGITS = 12
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}\Z")

TABLE_DEFINITION: dict[str, Any] = {
    "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
        {"AttributeName": "gsi1pk", "AttributeType": "S"},
        {"AttributeName": "gsi1sk", "AttributeType": "S"},
    ],
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": GSI_NAME,
            "KeySchema": [
                {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
    "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
}
"""The ledger table: key schema, GSI, billing and TTL, in the shape of ``AWS::DynamoDB::Table`` properties (the
first four keys are also ``CreateTable`` parameters). template.yaml and the tests build the table from this."""


def create_table_request(table_name: str) -> dict[str, Any]:
    """``CreateTable`` parameters for the ledger table (TTL is a separate call: see :func:`create_table`)."""
    request = {k: v for k, v in TABLE_DEFINITION.items() if k != "TimeToLiveSpecification"}
    return {"TableName": table_name, **json.loads(json.dumps(request))}


def cloudformation_properties(table_name: str | None = None) -> dict[str, Any]:
    """``AWS::DynamoDB::Table`` properties for the ledger (with point-in-time recovery: it is an audit record)."""
    properties = json.loads(json.dumps(TABLE_DEFINITION))
    properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    if table_name:
        properties["TableName"] = table_name
    return properties


def create_table(client: Any, table_name: str) -> None:
    """Create the ledger table, wait for it, and enable TTL (tests, local set-ups; AWS gets it from the template)."""
    client.create_table(**create_table_request(table_name))
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(TableName=table_name, TimeToLiveSpecification=TABLE_DEFINITION["TimeToLiveSpecification"])


class DynamoDbLedger(Ledger):
    """A :class:`Ledger` in a DynamoDB table shaped like :data:`TABLE_DEFINITION`.

    ``page_size`` sets ``Limit`` on queries (``None``: DynamoDB's 1 MB pages); every query follows
    ``LastEvaluatedKey`` to the end. ``max_attempts`` bounds the re-read-and-retry loop of a revoke that loses a
    conditional-write race. Throttling is retried by botocore (standard retry mode on the default client).
    """

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        *,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
        page_size: int | None = None,
        max_attempts: int = 5,
    ) -> None:
        if not isinstance(table_name, str) or not _TABLE_NAME.match(table_name):
            raise LedgerError(f"{table_name!r} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be at least 1")
        if retention_seconds < 0:
            raise ValueError("retention_seconds must not be negative")
        self.table_name = table_name
        self.client = client if client is not None else dynamodb_client()
        self.retention_seconds = retention_seconds
        self.page_size = page_size
        self.max_attempts = max_attempts
        # boto3 (0.4 s to import) only when a DynamoDB ledger is made: the local CLI's SQLite ledger never needs it
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    def __repr__(self) -> str:
        return f"DynamoDbLedger({self.table_name!r})"

    # -- writes ----------------------------------------------------------------------------------------------

    def record_verdicts(self, run_id: str, verdicts: Iterable[Verdict | Mapping[str, Any]]) -> RecordResult:
        rows = normalise_verdicts(run_id, verdicts)
        recorded = 0
        for verdict in rows:
            if self._put(self._verdict_item(verdict), "attribute_not_exists(pk)"):
                recorded += 1
        return RecordResult(recorded=recorded, unchanged=len(rows) - recorded)

    def revoke(
        self, session_id: str, reason: str, expires_at: int, by: str, *, now: float | None = None,
        margin: int = ISSUED_MARGIN_SECONDS,
    ) -> RevokeResult:
        check_session_id(session_id)
        check_actor(by)
        at = now_epoch(now)
        result = self._revoke(session_id, reason, expires_at, by, at, margin)
        # an issue whose check ran before the revocation existed may have raised the session's latest expiry
        for _ in range(self.max_attempts):
            issued = self._issued_until(session_id)
            if issued is None or result.revocation.expires_at >= issued + margin or result.revocation.lifted_at:
                return result
            result = self._revoke(session_id, reason, result.revocation.expires_at, by, at, margin)
        return result

    def _revoke(self, session_id: str, reason: str, expires_at: int, by: str, at: int, margin: int) -> RevokeResult:
        for _ in range(self.max_attempts):
            current = self._get_revocation(session_id)
            outcome, record = plan_revoke(
                current, session_id=session_id, reason=reason, expires_at=expires_at, by=by, now=at,
                issued_until=self._issued_until(session_id), margin=margin,
            )
            if outcome in (RevokeOutcome.UNCHANGED, RevokeOutcome.SUPPRESSED):
                return RevokeResult(revocation=record, outcome=outcome)
            if outcome is RevokeOutcome.CREATED:
                written = self._put(self._revocation_item(record), "attribute_not_exists(pk)")
            elif outcome is RevokeOutcome.EXTENDED:
                written = self._extend(record)
            else:  # REACTIVATED: replace the expired or lifted record, if it is still the one we read
                assert current is not None
                lifted = "attribute_exists(lifted_at)" if current.lifted_at is not None else "attribute_not_exists(lifted_at)"
                written = self._put(
                    self._revocation_item(record),
                    f"expires_at = :old_expires AND {lifted}",
                    {":old_expires": {"N": str(current.expires_at)}},
                )
            if written:
                return RevokeResult(revocation=record, outcome=outcome)
        raise LedgerConflictError(
            f"{self!r}: revoking {session_id} lost {self.max_attempts} conditional-write races in a row; retry later"
        )

    def record_issue(self, session_id: str, expires_at: int, *, now: float | None = None) -> int:
        check_session_id(session_id)
        at = now_epoch(now)
        for _ in range(self.max_attempts):
            seen = self._issued_until(session_id)
            latest = max(seen or 0, int(expires_at))
            unchanged = "attribute_not_exists(pk)" if seen is None else "expires_at = :seen"  # still what was read
            values: dict[str, Any] = {":e": {"N": str(latest)}, ":u": {"N": str(at)},
                                      ":t": {"N": str(latest + self.retention_seconds)}}
            if seen is not None:
                values[":seen"] = {"N": str(seen)}
            try:
                self._call(
                    "TransactWriteItems",
                    self.client.transact_write_items,
                    TransactItems=[
                        {"ConditionCheck": {
                            "TableName": self.table_name, "Key": self._key(session_id, _REVOCATION_SK),
                            "ConditionExpression": "attribute_not_exists(pk) OR attribute_exists(lifted_at)"}},
                        {"Update": {
                            "TableName": self.table_name, "Key": self._key(session_id, _ISSUED_SK),
                            "UpdateExpression": "SET expires_at = :e, updated_at = :u, #ttl = :t",
                            "ConditionExpression": unchanged,
                            "ExpressionAttributeNames": {"#ttl": TTL_ATTRIBUTE},
                            "ExpressionAttributeValues": values}},
                    ],
                )
            except _Cancelled as cancelled:
                if cancelled.codes and cancelled.codes[0] == "ConditionalCheckFailed":
                    raise SessionRefused(f"session {session_id} has a revocation that no operator lifted") from None
                continue  # another issue raised the expiry meanwhile: read it again
            return latest
        raise LedgerConflictError(
            f"{self!r}: recording an issue for {session_id} lost {self.max_attempts} races in a row; retry later"
        )

    def lift(self, session_id: str, by: str, *, now: float | None = None) -> Revocation | None:
        check_session_id(session_id)
        check_actor(by)
        at = now_epoch(now)
        try:
            response = self._call(
                "UpdateItem",
                self.client.update_item,
                TableName=self.table_name,
                Key=self._key(session_id, _REVOCATION_SK),
                UpdateExpression="SET lifted_at = :at, lifted_by = :by, updated_at = :at REMOVE gsi1pk, gsi1sk",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(lifted_at)",
                ExpressionAttributeValues={":at": {"N": str(at)}, ":by": {"S": by}},
                ReturnValues="ALL_NEW",
            )
        except _ConditionFailed:
            return self._get_revocation(session_id)  # never revoked (None), or lifted already (kept as it was)
        return self._revocation_from(response["Attributes"])

    # -- reads -----------------------------------------------------------------------------------------------

    def active_revocations(self, now: float | None = None) -> list[Revocation]:
        at = now_epoch(now)
        items = self._query(
            IndexName=GSI_NAME,
            KeyConditionExpression="gsi1pk = :p AND gsi1sk > :after",
            ExpressionAttributeValues={":p": {"S": REVOKED_PARTITION}, ":after": {"S": f"{_pad(at)}#~"}},
        )
        revocations = [self._revocation_from(item) for item in items]
        # The index is eventually consistent: drop anything a just-applied lift has not yet removed from it.
        return sorted((r for r in revocations if r.is_active(at)), key=revocation_sort_key)

    def flagged(self, since: float, until: float | None = None) -> list[Verdict]:
        end = now_epoch(until)
        # Older verdicts are past their TTL (give TTL's deletion lag two days): no need to query those days.
        start = max(now_epoch(max(since, 0)), end - self.retention_seconds - 2 * 86400, 0)
        if start > end:
            return []  # an empty range (BETWEEN needs lo <= hi)
        verdicts: list[Verdict] = []
        for day in _days(start, end):
            items = self._query(
                IndexName=GSI_NAME,
                KeyConditionExpression="gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={
                    ":p": {"S": f"FLAGGED#{day}"},
                    ":lo": {"S": _pad(start)},
                    ":hi": {"S": f"{_pad(end)}#~"},
                },
            )
            verdicts.extend(self._verdict_from(item) for item in items)
        return sorted(verdicts, key=verdict_sort_key)

    def get(self, session_id: str) -> SessionHistory:
        check_session_id(session_id)
        items = self._query(
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": _pk(session_id)}},
            ConsistentRead=True,
        )
        verdicts, revocation, issued_until = [], None, None
        for item in items:
            if item["sk"]["S"] == _REVOCATION_SK:
                revocation = self._revocation_from(item)
            elif item["sk"]["S"] == _ISSUED_SK:
                issued_until = int(item["expires_at"]["N"])
            else:
                verdicts.append(self._verdict_from(item))
        return SessionHistory(
            session_id=session_id, verdicts=tuple(sorted(verdicts, key=verdict_sort_key)), revocation=revocation,
            issued_until=issued_until,
        )

    # -- items -----------------------------------------------------------------------------------------------

    def _verdict_item(self, v: Verdict) -> dict[str, Any]:
        plain = {
            "pk": _pk(v.session_id),
            "sk": f"VERDICT#{v.run_id}",
            "type": "verdict",
            "session_id": v.session_id,
            "run_id": v.run_id,
            "score": Decimal(repr(v.score)),
            # JSON like the features: the policy's reasons carry values and thresholds (floats DynamoDB refuses)
            "reasons": json.dumps([r.model_dump(mode="json") for r in v.reasons], ensure_ascii=False, allow_nan=False),
            "features": json.dumps(v.features, ensure_ascii=False, sort_keys=True, allow_nan=False),
            "action": v.action,
            "decided_at": v.decided_at,
            "source": v.source,
            TTL_ATTRIBUTE: v.decided_at + self.retention_seconds,
            "gsi1pk": f"FLAGGED#{_day(v.decided_at)}",
            "gsi1sk": f"{_pad(v.decided_at)}#{v.session_id}#{v.run_id}",
        }
        return {k: self._ser.serialize(value) for k, value in plain.items()}

    def _verdict_from(self, item: Mapping[str, Any]) -> Verdict:
        plain = {k: self._de.deserialize(v) for k, v in item.items()}
        return Verdict(
            session_id=plain["session_id"],
            run_id=plain["run_id"],
            score=float(plain["score"]),
            reasons=tuple(_reasons(plain.get("reasons"))),
            features=json.loads(plain.get("features") or "{}"),
            action=plain["action"],
            decided_at=int(plain["decided_at"]),
            source=plain["source"],
        )

    def _revocation_item(self, r: Revocation) -> dict[str, Any]:
        plain: dict[str, Any] = {
            "pk": _pk(r.session_id),
            "sk": _REVOCATION_SK,
            "type": "revocation",
            **{k: v for k, v in r.model_dump().items() if v is not None},
            TTL_ATTRIBUTE: r.expires_at + self.retention_seconds,
        }
        if r.lifted_at is None:
            plain["gsi1pk"] = REVOKED_PARTITION
            plain["gsi1sk"] = _active_sk(r)
        return {k: self._ser.serialize(value) for k, value in plain.items()}

    def _revocation_from(self, item: Mapping[str, Any]) -> Revocation:
        plain = {k: self._de.deserialize(v) for k, v in item.items()}
        fields = {name: plain.get(name) for name in Revocation.model_fields}
        for name in ("expires_at", "created_at", "updated_at", "lifted_at"):
            if fields[name] is not None:
                fields[name] = int(fields[name])
        return Revocation.model_validate(fields)

    # -- calls -----------------------------------------------------------------------------------------------

    def _get_item(self, session_id: str, sk: str) -> dict[str, Any] | None:
        """One item of the session's partition, read consistently (None when absent)."""
        response = self._call(
            "GetItem",
            self.client.get_item,
            TableName=self.table_name,
            Key=self._key(session_id, sk),
            ConsistentRead=True,
        )
        return response.get("Item")

    def _get_revocation(self, session_id: str) -> Revocation | None:
        item = self._get_item(session_id, _REVOCATION_SK)
        return self._revocation_from(item) if item else None

    def _issued_until(self, session_id: str) -> int | None:
        item = self._get_item(session_id, _ISSUED_SK)
        return int(item["expires_at"]["N"]) if item else None

    def _extend(self, record: Revocation) -> bool:
        try:
            self._call(
                "UpdateItem",
                self.client.update_item,
                TableName=self.table_name,
                Key=self._key(record.session_id, _REVOCATION_SK),
                UpdateExpression=(
                    "SET expires_at = :e, reason = :r, revoked_by = :b, updated_at = :u, #ttl = :t, gsi1sk = :g"
                ),
                ConditionExpression="attribute_exists(pk) AND expires_at < :e AND attribute_not_exists(lifted_at)",
                ExpressionAttributeNames={"#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":e": {"N": str(record.expires_at)},
                    ":r": {"S": record.reason},
                    ":b": {"S": record.revoked_by},
                    ":u": {"N": str(record.updated_at)},
                    ":t": {"N": str(record.expires_at + self.retention_seconds)},
                    ":g": {"S": _active_sk(record)},
                },
            )
        except _ConditionFailed:
            return False
        return True

    def _put(self, item: dict[str, Any], condition: str, values: dict[str, Any] | None = None) -> bool:
        """Conditional PutItem; ``False`` when the condition did not hold (nothing written)."""
        request: dict[str, Any] = {"TableName": self.table_name, "Item": item, "ConditionExpression": condition}
        if values:
            request["ExpressionAttributeValues"] = values
        try:
            self._call("PutItem", self.client.put_item, **request)
        except _ConditionFailed:
            return False
        return True

    def _query(self, **request: Any) -> Iterator[dict[str, Any]]:
        """All items of a query, following ``LastEvaluatedKey`` page by page."""
        request["TableName"] = self.table_name
        if self.page_size is not None:
            request["Limit"] = self.page_size
        while True:
            response = self._call("Query", self.client.query, **request)
            yield from response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def _call(self, operation: str, method: Callable[..., dict[str, Any]], **request: Any) -> dict[str, Any]:
        try:
            return method(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise _ConditionFailed() from exc
            if code == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons") or []
                raise _Cancelled([r.get("Code", "") for r in reasons]) from exc
            message = exc.response.get("Error", {}).get("Message", "") or "(no message)"
            raise LedgerError(f"{operation} on DynamoDB table {self.table_name} failed: {code}: {message}") from exc
        except BotoCoreError as exc:
            raise LedgerError(
                f"{operation} on DynamoDB table {self.table_name} failed: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _key(session_id: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": _pk(session_id)}, "sk": {"S": sk}}


class _Cancelled(Exception):
    """A transaction was cancelled; ``codes``: each item's cancellation reason (``"None"`` for items that passed)."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__(codes)
        self.codes = codes


class _ConditionFailed(Exception):
    pass


def _reasons(stored: Any) -> list[Any]:
    """A verdict item's reasons: JSON text, or a list of maps as items written before the reasons had values."""
    if isinstance(stored, str):
        return list(json.loads(stored))
    return list(stored or ())


def _pk(session_id: str) -> str:
    return f"SESSION#{session_id}"


def _pad(epoch: int) -> str:
    return f"{epoch:0{_TIME_DIGITS}d}"


def _active_sk(r: Revocation) -> str:
    return f"{_pad(r.expires_at)}#{r.session_id}"


def _day(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d")


def _days(start: int, end: int) -> Iterator[str]:
    day = datetime.fromtimestamp(start, tz=timezone.utc).date()
    last = datetime.fromtimestamp(max(start, end), tz=timezone.utc).date()
    while day <= last:
        yield day.isoformat()
        day += timedelta(days=1)
