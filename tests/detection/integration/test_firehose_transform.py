"""detection/logs/firehose.py: the Firehose transformation parses real-time log lines exactly as the local reader
(detection.logs.reader, DuckDB) does, answers Firehose's record contract, and counts edge decisions."""

from __future__ import annotations

import base64
import gzip
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest
from aws_lambda_powertools.utilities.data_classes import KinesisFirehoseEvent

from detection.logs import firehose as ft
from detection.logs.reader import MAX_LINE_BYTES, open_logs
from detection.logs.schema import DETECTION_FIELDS, FIELDS_BY_NAME, athena_columns
from tests.helpers import firehose_parse
from tools.generate import generate_corpus

NUMBERS = [
    "5", " 5", "5 ", "+5", "-5", "-0", "000", "00012", "1e3", "1E3", "1.5E+2", "1e-3", "0.5e1", "12e-1", "15e-1",
    "25e-1", "1.5", "1.4", "2.5", "3.5", "-2.5", "-1.5", ".5", "-.5", "5.", "1.e3", "0.5", "2.4999999999",
    "0.49999999999999999", "1.5000000001", "0x10", "0X10", "0x1_0", "0B1", "0b101", "1_000", "1_000.5", "1_000e1",
    "1.5_0", "1e1_0", "0_0", "2147483647", "2147483648", "-2147483648", "2147483647.5", "-2147483648.5",
    "9223372036854775807", "9223372036854775807.4", "9223372036854775807.5", "9223372036854775808",
    "-9223372036854775808", "0x7fffffffffffffff", "0xffffffffffffffff", "0x80000000", "123456789012345678.5",
    "1e18", "9.3e18", "1e400", "1e-400", "1700000000.123", "\x0b5", "5\x0c",
    # rejected (or NULL) by both
    "", " ", "-", " - ", "--5", "1,5", "1 000", "1__0", "_1", "1_", "1.2.3", "1e2.5", "1.5e", "e5", ".", "+",
    ".e1", "1e", "1e+", "0x", "0xg", "00x10", "-0x10", "+0b1", "0o17", "0x1p3", "true", '"5"', "\u00a05", "\u0663",
    "\uff11", "nan", "NaN", "+nan", "nan(1)", "inf", "Inf", "+inf", "-inf", "Infinity", "INFINITY",
]


def _local_values(tmp_path: Path, field_name: str, texts: list[str]) -> list[object]:
    """What the local reader makes of each text in ``field_name`` ('REJECTED' when it rejects the line): one file,
    one line per text, keyed by cs-method."""
    fields = sorted([FIELDS_BY_NAME["cs-method"], FIELDS_BY_NAME[field_name]], key=lambda f: f.position)
    path = tmp_path / f"{field_name}.tsv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        for i, text in enumerate(texts):
            handle.write("\t".join(text if f.name == field_name else f"k{i}" for f in fields) + "\n")
    column = FIELDS_BY_NAME[field_name].column
    with open_logs(path, fields=fields) as logs:
        rows = {r["cs_method"]: r[column] for r in logs.execute(f"SELECT cs_method, {column} FROM logs").to_pylist()}
    values: list[object] = []
    for i in range(len(texts)):
        value = rows.get(f"k{i}", "REJECTED")
        values.append(None if isinstance(value, float) and not math.isfinite(value) else value)  # NaN/inf -> NULL
    return values


def _transform_value(field_name: str, text: str) -> object:
    try:
        return ft.parse_value(text, FIELDS_BY_NAME[field_name].sql_type)
    except ValueError:
        return "REJECTED"


@pytest.mark.parametrize("field_name", ["sc-status", "sc-bytes", "timestamp"])  # INTEGER, BIGINT, DOUBLE
def test_numbers_parse_as_duckdb_casts_them(tmp_path: Path, field_name: str) -> None:
    local = _local_values(tmp_path, field_name, NUMBERS)
    mismatches = {
        text: (expected, _transform_value(field_name, text))
        for text, expected in zip(NUMBERS, local)
        if _transform_value(field_name, text) != expected
    }
    assert not mismatches, f"{field_name}: local reader vs transformation differ: {mismatches}"
    assert local.count("REJECTED") > 20  # the table exercises rejections too


_FIELDS3 = [FIELDS_BY_NAME["sc-status"], FIELDS_BY_NAME["cs-method"], FIELDS_BY_NAME["cs-user-agent"]]


def _both(tmp_path: Path, lines: list[bytes]) -> tuple[list[dict], dict, list[dict], dict]:
    path = tmp_path / "lines.tsv"
    path.write_bytes(b"".join(lines))
    with open_logs(path, fields=_FIELDS3) as logs:
        local = logs.execute("SELECT * FROM logs").to_pylist()
        report = logs.report(len(local), require_records=False)
    ours, kinds = firehose_parse(lines, _FIELDS3)
    return local, dict(report.records_skipped), ours, kinds


def test_line_rules_match_the_local_reader(tmp_path: Path) -> None:
    lines = [
        b"200\tGET\tMozilla/5.0%20(X11)\n",
        b"\n",  # blank: skipped by both, not counted
        b"-\t-\t-\n",  # all NULL
        b"200\t\t\"quoted\"\n",  # empty VARCHAR stays '', quotes are literal
        b"200\tG\x01T\tx\n",  # control characters in text are kept, as DuckDB keeps them
        b"200\tGET\n",  # too few fields
        b"200\tGET\tx\ty\n",  # too many
        b"2OO\tGET\tx\n",  # bad number
        b"200\tG\xffT\tx\n",  # not UTF-8
        b"200\tGET\t" + b"a" * (MAX_LINE_BYTES + 10) + b"\n",  # too long
        b"204\tHEAD\tlast line without a line break",
    ]
    local, skipped, ours, kinds = _both(tmp_path, lines)
    assert len(local) == 5
    assert ours == local
    assert kinds == skipped == {"field_count": 2, "bad_value": 1, "binary": 1, "line_too_long": 1}


def test_crlf_lines_match_the_local_reader(tmp_path: Path) -> None:
    local, skipped, ours, kinds = _both(tmp_path, [b"200\tGET\tcurl\r\n", b"206\tGET\t-\r\n"])
    assert ours == local == [
        {"sc_status": 200, "cs_method": "GET", "cs_user_agent": "curl"},
        {"sc_status": 206, "cs_method": "GET", "cs_user_agent": None},
    ]
    assert kinds == skipped == {}


def test_max_line_bytes_is_the_local_readers() -> None:
    assert ft.MAX_LINE_BYTES == MAX_LINE_BYTES


def _event(lines: list[bytes]) -> dict:
    return {
        "invocationId": "inv-1",
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/x",
        "region": "us-east-1",
        "records": [
            {"recordId": f"r{i}", "approximateArrivalTimestamp": 1767225600000, "data": base64.b64encode(line).decode()}
            for i, line in enumerate(lines)
        ],
    }


def _line(**values: str) -> bytes:
    row = {f.name: "-" for f in DETECTION_FIELDS}
    row.update({"timestamp": "1767225600.123", "sc-status": "200", "cs-method": "GET", "c-ip": "203.0.113.7",
                "cs-uri-stem": "/abcdefghijklmnop.h.p.s/live/seg_1.ts", "x-edge-result-type": "Miss"})
    row.update({k.replace("_", "-"): v for k, v in values.items()})
    return ("\t".join(row[f.name] for f in DETECTION_FIELDS) + "\n").encode()


def test_handler_answers_firehoses_record_contract(capsys: pytest.CaptureFixture[str]) -> None:
    good = _line(sc_bytes="1234", asn="64496")
    denied = _line(sc_status="403", x_edge_result_type="FunctionGeneratedResponse")
    unauthorised = _line(sc_status="401", x_edge_result_type="FunctionGeneratedResponse")
    origin_403 = _line(sc_status="403", x_edge_result_type="Error")  # the origin said 403: the edge allowed it
    two_lines = good + good
    bad = b"1767225600\tonly-two-fields\n"
    event = _event([good, denied, bad, b"\n", unauthorised, origin_403, two_lines])
    response = ft.handler(event, None)

    records = response["records"]
    assert [r["recordId"] for r in records] == [r["recordId"] for r in event["records"]]
    assert [r["result"] for r in records] == ["Ok", "Ok", "ProcessingFailed", "Dropped", "Ok", "Ok", "Ok"]
    assert records[2]["data"] == event["records"][2]["data"]  # the original goes to the error prefix

    first = json.loads(base64.b64decode(records[0]["data"]))
    assert first["timestamp"] == 1767225600.123 and first["sc_status"] == 200 and first["sc_bytes"] == 1234
    assert first["asn"] == 64496 and first["c_ip"] == "203.0.113.7"
    assert "cs_referer" not in first  # '-' is NULL: left out, which OpenX JSON reads as NULL
    assert set(first) <= {f.column for f in DETECTION_FIELDS}
    objects = base64.b64decode(records[6]["data"]).decode().splitlines()
    assert len(objects) == 2 and all(json.loads(o) == first for o in objects)  # {..}{..}: one object per line

    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics: dict[tuple[str, str | None], float] = {}
    for blob in emitted:
        for directive in blob.get("_aws", {}).get("CloudWatchMetrics", []):
            assert directive["Namespace"] == "MediaShield"
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                metrics[(metric["Name"], blob.get("Outcome"))] = sum(value) if isinstance(value, list) else value
            assert blob["service"] == "media-shield"
    assert metrics[("LogRecordsParsed", None)] == 6
    assert metrics[("LogRecordsRejected", None)] == 1
    assert metrics[("EdgeRequests", "allowed")] == 4
    assert metrics[("EdgeRequests", "denied-403")] == 1
    assert metrics[("EdgeRequests", "denied-401")] == 1


def test_undecodable_record_fails_alone() -> None:
    event = _event([_line()])
    event["records"].append({"recordId": "broken", "data": "not base64!"})
    result = ft.transform_records(KinesisFirehoseEvent(event).records, DETECTION_FIELDS)
    assert [r["result"] for r in result.records] == ["Ok", "ProcessingFailed"]
    assert result.rejected == {"binary": 1}


def test_outcome_without_result_type_falls_back_to_status() -> None:
    assert ft.outcome_of({"sc_status": 403}) == "denied-403"
    assert ft.outcome_of({"sc_status": 200}) == "allowed"
    assert ft.outcome_of({"sc_status": 403, "x_edge_result_type": "Error"}) == "allowed"
    assert ft.outcome_of({"sc_status": 302, "x_edge_result_type": "FunctionGeneratedResponse"}) == "denied-other"


def test_field_list_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FIELDS", "timestamp,c-ip,sc-status")
    ft.configured_fields.cache_clear()
    try:
        assert [f.name for f in ft.configured_fields()] == ["timestamp", "c-ip", "sc-status"]
    finally:
        monkeypatch.delenv("LOG_FIELDS")
        ft.configured_fields.cache_clear()
    assert ft.configured_fields() == DETECTION_FIELDS


_ARROW = {"double": pa.float64(), "bigint": pa.int64(), "int": pa.int32(), "string": pa.string()}


def test_firehose_path_gives_the_rows_the_local_reader_reads(tmp_path: Path) -> None:
    """Generated corpus -> transformation (record by record, as Kinesis delivers) -> JSON read with the Glue
    schema and written as Parquet in the same hour folders (standing in for Firehose's OpenX JSON + Parquet
    conversion) -> detection.logs.reader reads the same rows as from the TSV."""
    tsv = tmp_path / "tsv"
    generate_corpus(tsv, sessions=30, minutes=3, seed=7, pirate_share=0.2)
    schema = pa.schema([(name, _ARROW[hive]) for name, hive in athena_columns(DETECTION_FIELDS)])
    parquet = tmp_path / "parquet"
    converted = 0
    for source in sorted(tsv.rglob("*.gz")):
        lines = gzip.decompress(source.read_bytes()).splitlines(keepends=True)
        result = ft.transform_records(KinesisFirehoseEvent(_event(lines)).records, DETECTION_FIELDS)
        assert {r["result"] for r in result.records} == {"Ok"}
        payload = b"".join(base64.b64decode(r["data"]) for r in result.records)
        table = pa_json.read_json(pa.BufferReader(payload), parse_options=pa_json.ParseOptions(explicit_schema=schema,
                                                                                            unexpected_field_behavior="error"))
        target = parquet / source.relative_to(tsv).with_suffix(".parquet")
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.select(schema.names), target, compression="snappy")
        converted += table.num_rows
    columns = ", ".join(f.column for f in DETECTION_FIELDS)
    with open_logs(tsv) as logs:
        expected = logs.execute(f"SELECT {columns} FROM logs ORDER BY x_edge_request_id")
    with open_logs(parquet, fields=DETECTION_FIELDS) as logs:
        actual = logs.execute(f"SELECT {columns} FROM logs ORDER BY x_edge_request_id")
    assert converted == expected.num_rows > 1000
    assert actual.equals(expected)
