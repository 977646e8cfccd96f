"""Firehose transformation Lambda: CloudFront real-time log records (TSV) in, typed JSON records out.

CloudFront writes one tab-separated line per request to the Kinesis data stream; Firehose reads the stream, calls
this function with batches of records, and converts what it returns (JSON, one object per log line) to Parquet with
the Glue table's schema. The Glue table, the real-time log configuration and this parser all take their columns
from :data:`detection.logs.schema.DETECTION_FIELDS` (``LOG_FIELDS`` overrides the list: comma-separated CloudFront
names, canonical order).

Parsing rules: the same as the local reader (:mod:`detection.logs.reader`, DuckDB ``read_csv`` with the schema's types),
so a record becomes the same row on AWS (Parquet read by Athena) and locally (TSV read by DuckDB):

* one record per line; ``\\n`` or ``\\r\\n`` ends a line; blank lines are skipped;
* fields split on tabs, no quoting, no escaping; exactly one value per field of the list (else ``field_count``);
* ``-`` is NULL; any other text is kept verbatim for VARCHAR columns (the user agent stays URL-encoded);
* numbers as DuckDB casts them: surrounding ASCII whitespace ignored; INTEGER/BIGINT accept a decimal (rounded half
  away from zero), an exponent, ``_`` between digits, ``0x``/``0b`` prefixes, and must fit the type; DOUBLE accepts
  what DuckDB's DOUBLE cast accepts; anything else (``""``, ``1,5``, non-ASCII digits...) is ``bad_value``;
* not UTF-8 is ``binary``; longer than :data:`MAX_LINE_BYTES` is ``line_too_long``.

One deliberate difference: a non-finite DOUBLE (``nan``, ``inf``) becomes NULL, because JSON (and so Firehose's
conversion) has no such numbers; locally DuckDB keeps it. Either way the record falls out of every time window.

``tests/detection/integration/test_firehose_transform.py`` runs the same lines through this parser and through
:func:`detection.logs.reader.open_logs` and checks they agree, so the two cannot drift apart unnoticed.

Per Firehose record the result is ``Ok`` (the record's lines as concatenated JSON objects, which Firehose's OpenX
JSON deserializer reads one by one), ``Dropped`` (nothing but blank lines) or ``ProcessingFailed`` (any line that
does not parse: Firehose writes the original record under the stream's error prefix, so nothing is lost silently).

The function also counts what the edge decided, from the same records, as the CloudWatch metric ``EdgeRequests``
(namespace ``MediaShield``, dimension ``Outcome``): ``allowed`` (the viewer-request function let the request through),
``denied-401`` / ``denied-403`` (the function answered itself, ``x-edge-result-type`` = ``FunctionGeneratedResponse``,
with that status) and ``denied-other``. CloudFront publishes no per-decision metric for a function (its function
metrics count invocations, errors and compute utilisation only), so this is where the dashboard and the
tokens-rejected alarm get the numbers. Firehose may invoke a batch twice after a failure, so the counts are
at-least-once, like the records.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from typing import Any, Literal

from aws_lambda_powertools import single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import (
    KinesisFirehoseDataTransformationRecord,
    KinesisFirehoseDataTransformationResponse,
    KinesisFirehoseEvent,
    event_source,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_firehose_event import KinesisFirehoseRecord

from core.lambda_support import powertools
from detection.logs.schema import DETECTION_FIELDS, MAX_LINE_BYTES, NUMBER_SPACE, Field, parse_fields

__all__ = [
    "INT_RANGES",
    "MAX_LINE_BYTES",
    "OUTCOMES",
    "LineError",
    "TransformResult",
    "handler",
    "outcome_of",
    "parse_line",
    "parse_record",
    "parse_value",
    "transform_records",
]

NULL = "-"
FIELDS_ENV = "LOG_FIELDS"

INT_RANGES: dict[str, tuple[int, int]] = {
    "INTEGER": (-(2**31), 2**31 - 1),
    "BIGINT": (-(2**63), 2**63 - 1),
}

#: Edge decisions counted from the records (metric ``EdgeRequests``, dimension ``Outcome``).
OUTCOMES = ("allowed", "denied-401", "denied-403", "denied-other")
FUNCTION_RESPONSE = "FunctionGeneratedResponse"

_DIGITS = r"[0-9](?:_?[0-9])*"
_NUMBER = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?\Z")
_HEX = re.compile(r"0[xX][0-9a-fA-F](?:_?[0-9a-fA-F])*\Z")
_BIN = re.compile(r"0[bB][01](?:_?[01])*\Z")
_NON_FINITE = re.compile(r"[+-]?(?:nan(?:\(.*\))?|inf(?:inity)?)\Z", re.IGNORECASE)


class LineError(ValueError):
    """A log line that does not parse; ``kind`` is one of :data:`detection.logs.reader.SKIP_KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _integer(text: str, sql_type: str) -> int:
    low, high = INT_RANGES[sql_type]
    if _HEX.match(text):
        value = int(text[2:].replace("_", ""), 16)
    elif _BIN.match(text):
        value = int(text[2:].replace("_", ""), 2)
    elif _NUMBER.match(text):
        try:
            exact = Decimal(text.replace("_", ""))
            if abs(exact.adjusted()) > 40:  # far outside any 64-bit integer (or rounds to 0)
                if exact.adjusted() > 0:
                    raise ValueError("out of range")
                return 0
            value = int(exact.to_integral_value(rounding=ROUND_HALF_UP))
        except InvalidOperation as exc:
            raise ValueError("not a number") from exc
    else:
        raise ValueError("not a number")
    if not low <= value <= high:
        raise ValueError(f"out of range for {sql_type}")
    return value


def _double(text: str) -> float | None:
    if _NON_FINITE.match(text):
        return None  # JSON has no NaN/Infinity; DuckDB would keep it (see the module doc)
    if not _NUMBER.match(text):
        raise ValueError("not a number")
    value = float(text)
    return value if math.isfinite(value) else None  # 1e400 overflows to inf in both


def parse_value(text: str, sql_type: str) -> Any:
    """One field's text -> its typed value (None for ``-``); raises ValueError like a DuckDB cast would."""
    if text == NULL:
        return None
    if sql_type == "VARCHAR":
        return text
    stripped = text.strip(NUMBER_SPACE)
    if not stripped or not stripped.isascii():
        raise ValueError("not a number")
    if sql_type == "DOUBLE":
        return _double(stripped)
    return _integer(stripped, sql_type)


def parse_line(line: str | bytes, fields: Sequence[Field]) -> dict[str, Any] | None:
    """One real-time log line -> ``{column: value}`` with the schema's types (NULLs left out), or None for a
    blank line. Raises :class:`LineError` with the kind the local reader would count the line under."""
    if isinstance(line, bytes):
        if len(line.rstrip(b"\r\n")) > MAX_LINE_BYTES:
            raise LineError("line_too_long", f"line longer than {MAX_LINE_BYTES} bytes")
        raw = line.removesuffix(b"\n").removesuffix(b"\r")
        size = len(raw)  # the UTF-8 length, without encoding the decoded text again
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LineError("binary", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    else:
        line = line.removesuffix("\n").removesuffix("\r")
        size = len(line.encode("utf-8"))
    if size > MAX_LINE_BYTES:
        raise LineError("line_too_long", f"line longer than {MAX_LINE_BYTES} bytes")
    if not line:
        return None
    values = line.split("\t")
    if len(values) != len(fields):
        raise LineError("field_count", f"{len(values)} tab-separated values, expected {len(fields)}")
    row: dict[str, Any] = {}
    for f, text in zip(fields, values):
        try:
            value = parse_value(text, f.sql_type)
        except ValueError as exc:
            raise LineError("bad_value", f"{f.name}: {text[:40]!r} is not {f.sql_type} ({exc})") from None
        if value is not None:
            row[f.column] = value
    return row


def parse_record(data: bytes, fields: Sequence[Field]) -> list[dict[str, Any]]:
    """One Kinesis/Firehose record (one or more lines) -> its rows; raises :class:`LineError` for the first bad
    line."""
    rows = []
    for raw in data.split(b"\n"):
        row = parse_line(raw, fields)
        if row is not None:
            rows.append(row)
    return rows


def outcome_of(row: Mapping[str, Any]) -> str:
    """What the edge decided for one parsed record (see :data:`OUTCOMES`)."""
    result_type = row.get("x_edge_result_type")
    status = row.get("sc_status")
    generated = result_type == FUNCTION_RESPONSE if result_type is not None else status in (401, 403)
    if not generated:
        return "allowed"
    if status == 401:
        return "denied-401"
    if status == 403:
        return "denied-403"
    return "denied-other"


@dataclass
class TransformResult:
    response: KinesisFirehoseDataTransformationResponse = field(default_factory=KinesisFirehoseDataTransformationResponse)
    lines_ok: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, str]] = field(default_factory=list)

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records of the answer to Firehose (``recordId``, ``result``, base64 ``data``)."""
        return [record.asdict() for record in self.response.records]

    def answer(self, record_id: str, result: Literal["Ok", "Dropped", "ProcessingFailed"], data: str) -> None:
        self.response.add_record(KinesisFirehoseDataTransformationRecord(record_id=record_id, result=result, data=data))


def _json_line(row: Mapping[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def transform_records(records: Iterable[KinesisFirehoseRecord], fields: Sequence[Field]) -> TransformResult:
    """Firehose records (``recordId``, base64 ``data``) -> Firehose results, plus counts."""
    result = TransformResult()
    for record in records:
        try:
            data = base64.b64decode(record.data, validate=True)
            rows = parse_record(data, fields)
        except (binascii.Error, LineError) as exc:
            kind = exc.kind if isinstance(exc, LineError) else "binary"
            result.rejected[kind] += 1
            if len(result.examples) < 5:
                result.examples.append({"recordId": record.record_id, "kind": kind, "error": str(exc)[:200]})
            result.answer(record.record_id, "ProcessingFailed", record.data)
            continue
        if not rows:
            result.answer(record.record_id, "Dropped", record.data)
            continue
        result.lines_ok += len(rows)
        for row in rows:
            result.outcomes[outcome_of(row)] += 1
        payload = b"".join(_json_line(row) for row in rows)
        result.answer(record.record_id, "Ok", base64.b64encode(payload).decode("ascii"))
    return result


@cache
def configured_fields() -> tuple[Field, ...]:
    """The field list of the real-time log configuration: ``LOG_FIELDS`` or :data:`DETECTION_FIELDS`."""
    spec = os.getenv(FIELDS_ENV, "").strip()
    return tuple(parse_fields(spec)) if spec else DETECTION_FIELDS


# -- Lambda -----------------------------------------------------------------------------------------------------

observability = powertools("media-shield")
logger, metrics, SERVICE = observability.logger, observability.metrics, observability.service
NAMESPACE = metrics.namespace


@metrics.log_metrics
@event_source(data_class=KinesisFirehoseEvent)
def handler(event: KinesisFirehoseEvent, context: Any) -> dict[str, Any]:
    fields = configured_fields()
    result = transform_records(event.records, fields)
    metrics.add_metric(name="LogRecordsParsed", unit=MetricUnit.Count, value=result.lines_ok)
    metrics.add_metric(name="LogRecordsRejected", unit=MetricUnit.Count, value=sum(result.rejected.values()))
    for outcome in OUTCOMES:
        count = result.outcomes.get(outcome, 0)
        if count:
            with single_metric(
                name="EdgeRequests", unit=MetricUnit.Count, value=count, namespace=NAMESPACE,
                default_dimensions={"service": SERVICE},
            ) as metric:
                metric.add_dimension(name="Outcome", value=outcome)
    if result.rejected:
        logger.error(
            "log records rejected",
            extra={"rejected": dict(result.rejected), "examples": result.examples, "fields": [f.name for f in fields]},
        )
    return result.response.asdict() if result.response.records else {"records": []}
