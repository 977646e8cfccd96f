import re
from pathlib import Path

import pytest

from detection.logs.schema import (
    ALL_FIELDS,
    DETECTION_FIELDS,
    FIELDS_BY_COLUMN,
    FIELDS_BY_NAME,
    SchemaError,
    athena_columns,
    column_name,
    duckdb_columns,
    fields_text,
    parse_fields,
)


def test_field_list_is_canonical_and_complete() -> None:
    names = [f.name for f in ALL_FIELDS]
    assert len(names) >= 60 and len(set(names)) == len(names)
    assert [f.position for f in ALL_FIELDS] == list(range(1, len(ALL_FIELDS) + 1))
    assert names[:2] == ["timestamp", "c-ip"]
    # the canonical order of the fields we rely on
    for before, after in [
        ("c-ip", "time-to-first-byte"),
        ("time-to-first-byte", "sc-status"),
        ("sc-status", "sc-bytes"),
        ("cs-uri-stem", "cs-bytes"),
        ("cs-bytes", "x-edge-location"),
        ("x-edge-location", "time-taken"),
        ("time-taken", "c-ip-version"),
        ("c-ip-version", "cs-user-agent"),
        ("c-port", "c-country"),
        ("c-country", "asn"),
        ("asn", "cmcd-encoded-bitrate"),
        ("cmcd-version", "r-host"),
    ]:
        assert FIELDS_BY_NAME[before].position < FIELDS_BY_NAME[after].position, (before, after)
    assert sum(name.startswith("cmcd-") for name in names) == 18
    for f in ALL_FIELDS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", f.column) and f.column == column_name(f.name)
        assert f.sql_type in {"VARCHAR", "DOUBLE", "BIGINT", "INTEGER"} and f.description
        assert FIELDS_BY_COLUMN[f.column] is f


def test_types_of_the_fields_detection_reads() -> None:
    types = {f.name: f.sql_type for f in ALL_FIELDS}
    assert types["timestamp"] == "DOUBLE"
    assert types["time-taken"] == types["time-to-first-byte"] == "DOUBLE"
    assert types["sc-status"] == "INTEGER"
    assert types["sc-bytes"] == types["asn"] == "BIGINT"
    assert types["c-ip"] == types["cs-uri-stem"] == types["cs-user-agent"] == types["c-country"] == "VARCHAR"
    assert dict(athena_columns([FIELDS_BY_NAME["asn"], FIELDS_BY_NAME["c-ip"]])) == {"asn": "bigint", "c_ip": "string"}
    assert list(duckdb_columns(DETECTION_FIELDS))[:2] == ["timestamp", "c_ip"]


def test_detection_fields_are_a_canonical_subset() -> None:
    positions = [f.position for f in DETECTION_FIELDS]
    assert positions == sorted(positions)
    needed = {"timestamp", "c-ip", "sc-status", "sc-bytes", "cs-uri-stem", "time-taken", "c-ip-version",
              "cs-user-agent", "c-country", "asn", "x-edge-location"}  # fmt: skip
    assert needed <= {f.name for f in DETECTION_FIELDS}
    assert parse_fields(fields_text(DETECTION_FIELDS)) == list(DETECTION_FIELDS)


@pytest.mark.parametrize(
    "spec",
    [
        "timestamp,c-ip,sc-status",
        "timestamp, c-ip , sc-status\n",
        "# fields.txt\ntimestamp\nc-ip\n\nsc-status\n",
        "timestamp\tc-ip sc-status",
        ["timestamp", "c_ip", "sc-status"],
        [FIELDS_BY_NAME["timestamp"], "c-ip", "sc_status"],
    ],
)
def test_parse_fields_accepts_the_usual_shapes(spec) -> None:
    assert [f.name for f in parse_fields(spec)] == ["timestamp", "c-ip", "sc-status"]


def test_parse_fields_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "fields.txt"
    path.write_text("timestamp\nasn\n")
    assert [f.name for f in parse_fields(path)] == ["timestamp", "asn"]
    assert [f.name for f in parse_fields(str(path))] == ["timestamp", "asn"]


def test_unknown_fields_are_rejected_with_close_matches() -> None:
    with pytest.raises(SchemaError) as info:
        parse_fields("timestamp,c-ipp,cs-uri-stm,frobnicate")
    message = str(info.value)
    assert "'c-ipp' (did you mean c-ip" in message
    assert "'cs-uri-stm' (did you mean cs-uri-stem" in message
    assert "'frobnicate'" in message and "Known fields:" in message


def test_order_duplicates_and_empty_are_rejected() -> None:
    with pytest.raises(SchemaError, match="canonical order.*timestamp,c-ip,sc-status"):
        parse_fields("c-ip,timestamp,sc-status")
    with pytest.raises(SchemaError, match="twice"):
        parse_fields("timestamp,c-ip,c-ip")
    with pytest.raises(SchemaError, match="empty"):
        parse_fields("  \n# nothing\n")
    assert issubclass(SchemaError, ValueError)
