import gzip
import json
from pathlib import Path

import duckdb
import pytest

from detection.logs.reader import InputError, list_log_files, open_logs, partition_start
from detection.logs.schema import DETECTION_FIELDS, fields_text
from tests.helpers import firehose_parse
from tools.scenarios import Viewer, playback, records, write_firehose, write_log

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
SID = "abcdefghijklmnop01"
HOME = Viewer("198.51.100.7", asn=3320, country="DE", user_agent="ExampleTV/5.1 (iPhone; iOS 17.4)")


def good_lines(n_seconds: int = 40, start: float = T0) -> list[str]:
    return records(playback(SID, HOME, start=start, duration=n_seconds))


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fields.txt").write_text(fields_text(DETECTION_FIELDS))
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def text(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def test_typed_view_over_plain_gzip_and_parquet(tmp_path: Path) -> None:
    lines = good_lines()
    write_folder(tmp_path / "tsv", {"a.tsv": text(lines[:10]), "b.gz": gzip.compress(text(lines[10:]))})
    with open_logs(tmp_path / "tsv") as logs:
        types = dict(logs.con.execute("SELECT column_name, column_type FROM (DESCRIBE logs)").fetchall())
        assert types == {f.column: f.sql_type for f in DETECTION_FIELDS}
        rows = logs.execute("SELECT * FROM logs ORDER BY timestamp").to_pylist()
        report = logs.report(len(rows))
    assert len(rows) == len(lines) and report.records_read == len(lines)
    assert report.formats == ["tsv", "tsv.gz"] and report.files_read == 2 and not report.records_skipped
    first = rows[0]
    assert first["timestamp"] == pytest.approx(T0, abs=1e-6)
    assert first["c_ip"] == "198.51.100.7" and first["asn"] == 3320 and first["sc_status"] == 200
    assert first["cs_user_agent"] == "ExampleTV/5.1%20(iPhone;%20iOS%2017.4)"  # left URL-encoded
    assert first["cs_referer"] is None and first["sc_range_start"] is None  # "-" reads as NULL
    assert first["cs_uri_stem"].startswith(f"/{SID}.ey")

    # the same rows from Parquet, fields taken from the file
    with open_logs(tmp_path / "tsv") as logs:
        logs.con.execute(f"COPY (SELECT * FROM logs) TO '{tmp_path}/one.parquet' (FORMAT parquet)")
    with open_logs(tmp_path / "one.parquet") as logs:
        assert [f.name for f in logs.fields] == [f.name for f in DETECTION_FIELDS]
        assert logs.execute("SELECT * FROM logs ORDER BY timestamp").to_pylist() == rows


def test_a_single_file_with_fields_given_or_found_above_it(tmp_path: Path) -> None:
    lines = good_lines()
    path = write_log(tmp_path / "2026/01/01/00/x.gz", playback(SID, HOME, start=T0, duration=40))
    with pytest.raises(InputError, match="no field list"):
        open_logs(path)
    with open_logs(path, fields=",".join(f.name for f in DETECTION_FIELDS)) as logs:
        assert logs.count_records() == len(lines)
    (tmp_path / "fields.txt").write_text(fields_text(DETECTION_FIELDS))
    with open_logs(path) as logs:  # the fields.txt at the layout's root
        assert logs.count_records() == len(lines)


def test_window_prunes_hour_folders_and_filters_rows(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    reqs = []
    for hour in range(4):  # a viewer active for a minute and a half at the start of each of four hours
        reqs += playback(SID, HOME, start=T0 + hour * 3600 + 30, duration=90)
    write_firehose(root, reqs)
    # a damaged file in hour 0: it must never be opened when the window leaves hour 0 out
    bad = root / "2026/01/01/00/cf-realtime-logs-1-2026-01-01-00-59-00-00000000-0000-0000-0000-000000000000.gz"
    bad.write_bytes(gzip.compress(text(good_lines()))[:50])
    found, _ = list_log_files(root)
    assert {f.partition for f in found} == {T0 + h * 3600 for h in range(4)}

    window = (T0 + 2 * 3600 + 60, T0 + 2 * 3600 + 90)
    with open_logs(root, window=window) as logs:
        # the window's hour, and the previous one: Firehose may file a record up to the slack (900 s) away
        assert {f.partition for f in logs.files} == {T0 + 1 * 3600, T0 + 2 * 3600}
        assert {f.partition for f in logs.pruned} == {T0, T0 + 3 * 3600}
        times = logs.execute("SELECT min(timestamp) lo, max(timestamp) hi, count(*) n FROM logs").to_pylist()[0]
        report = logs.report(times["n"])
    assert window[0] <= times["lo"] and times["hi"] < window[1]
    assert report.files_pruned == len(logs.pruned) and report.files_read == len(found) - len(logs.pruned)
    assert report.window == window and not report.files_damaged
    assert report.bytes_read == sum(f.size for f in found if f.partition in (T0 + 3600, T0 + 7200))

    with open_logs(root, window=window, slack=0) as logs:  # no slack: only the hour folder of the window
        assert {f.partition for f in logs.files} == {T0 + 2 * 3600}
    with pytest.raises(InputError, match="no log record .* in the window"):
        with open_logs(root, window=(T0 + 10 * 3600, T0 + 10 * 3600 + 60)) as logs:
            logs.report()


def test_partition_start() -> None:
    assert partition_start("2026/01/01/05/x.gz") == T0 + 5 * 3600
    assert partition_start("logs/2026/01/01/05/x.gz") == T0 + 5 * 3600
    assert partition_start("x.gz") is None and partition_start("2026/13/01/05/x.gz") is None


def test_bad_lines_are_counted_by_kind_and_good_lines_kept(tmp_path: Path) -> None:
    lines = good_lines(60)
    good = lines[5]
    cols = good.split("\t")
    bad_number = "\t".join(cols[:4] + ["12x4"] + cols[5:])  # sc-bytes not a number
    bad_ts = "\t".join(["yesterday"] + cols[1:])
    content = (
        text(lines[:5])
        + text(["\t".join(cols[:7])])  # too few fields
        + text([good + "\textra"])  # too many
        + b"\x00\xff\xfe\x01garbage\x80\tbinary\n"  # binary
        + text(["\t".join(cols[:7] + ["A" * (1 << 20)] + cols[8:])])  # a 1 MB line
        + text([bad_number, bad_ts])
        + text(lines[5:])
    )
    truncated = gzip.compress(text(lines))
    write_folder(tmp_path, {"2026/01/01/00/a.tsv": content, "2026/01/01/00/b.gz": truncated[: len(truncated) // 2]})
    with open_logs(tmp_path) as logs:
        # (a value that does not parse counts as bad when the query reads its column)
        n = logs.execute("SELECT count(*) n FROM logs WHERE timestamp > 0 AND sc_bytes >= 0").to_pylist()[0]["n"]
        # a second scan of the same files does not count the same lines twice
        logs.execute("SELECT count(*), sum(sc_bytes) FROM logs")
        report = logs.report(n)
    salvaged = n - len(lines)
    assert 0 < salvaged < len(lines)  # the complete lines before the damage were kept
    assert report.records_skipped == {"binary": 1, "line_too_long": 1, "field_count": 2, "bad_value": 2,
                                      "truncated": 1}  # fmt: skip
    assert list(report.files_damaged) == [str(tmp_path / "2026/01/01/00/b.gz")]
    assert "truncated" in report.files_damaged[str(tmp_path / "2026/01/01/00/b.gz")]
    kinds = {e["kind"] for e in report.examples}
    assert {"binary", "line_too_long", "field_count", "bad_value"} <= kinds
    json.dumps(report.to_dict())  # serialisable for the run's stats


def test_an_unreadable_parquet_file_is_left_out_and_reported(tmp_path: Path) -> None:
    write_folder(tmp_path / "tsv", {"a.tsv": text(good_lines(40))})
    (tmp_path / "pq").mkdir()
    with open_logs(tmp_path / "tsv") as logs:
        logs.con.execute(f"COPY (SELECT * FROM logs) TO '{tmp_path}/pq/a.parquet' (FORMAT parquet)")
        expected = logs.count_records()
    good = (tmp_path / "pq/a.parquet").read_bytes()
    (tmp_path / "pq/b.parquet").write_bytes(good[: len(good) // 2])  # truncated: no footer
    with open_logs(tmp_path / "pq") as logs:
        n = logs.count_records()
        report = logs.report(n)
    assert n == expected and report.files_read == 1 and report.files_found == 2
    assert list(report.files_damaged) == [str(tmp_path / "pq/b.parquet")]
    (tmp_path / "pq/a.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="no readable Parquet"):
        open_logs(tmp_path / "pq")


def test_unusable_input_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        open_logs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no log files"):
        open_logs(tmp_path / "empty")
    write_folder(tmp_path / "junk", {"a.tsv": b"\x00\x01\x02\n" * 10 + b"1\t2\t3\n" * 10})
    with open_logs(tmp_path / "junk") as logs, pytest.raises(InputError, match="every line was rejected"):
        logs.report(logs.count_records())
    with pytest.raises(InputError, match=r"did you mean c-ip"):
        open_logs(tmp_path / "junk", fields="timestamp,c-ipp")
    write_folder(tmp_path / "wrong", {"a.tsv": text(good_lines())})
    with open_logs(tmp_path / "wrong", fields="timestamp,c-ip,sc-status") as logs:
        with pytest.raises(InputError, match="Check the field list"):
            logs.report()


def test_newest_timestamp_and_set_window(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    write_firehose(root, playback(SID, HOME, start=T0 + 100, duration=300))
    with open_logs(root) as logs:
        newest = logs.newest_timestamp()
        assert newest == pytest.approx(logs.execute("SELECT max(timestamp) m FROM logs").to_pylist()[0]["m"])
        logs.set_window((newest - 60, newest + 0.001))
        assert logs.execute("SELECT min(timestamp) m FROM logs").to_pylist()[0]["m"] >= newest - 60
    with pytest.raises(InputError, match="empty time window"):
        open_logs(root, window=(T0, T0))


def test_two_inputs_on_one_connection(tmp_path: Path) -> None:
    write_folder(tmp_path / "a", {"x.tsv": text(good_lines(20))})
    write_folder(tmp_path / "b", {"x.tsv": text(good_lines(40)) + b"broken\n"})
    con = duckdb.connect()
    with open_logs(tmp_path / "a", con, view="a") as a, open_logs(tmp_path / "b", con, view="b") as b:
        na = con.execute("SELECT count(*) FROM a").fetchall()[0][0]
        nb = con.execute("SELECT count(*) FROM b").fetchall()[0][0]
        assert a.report(na).records_skipped == {} and b.report(nb).records_skipped == {"field_count": 1}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    "junk",
    [b"abc\rdef\n", bytes(range(256)) + b"\n"],
    ids=["bare-carriage-return", "every-byte"],
)
def test_carriage_returns_never_hide_a_file(tmp_path: Path, junk: bytes, gz: bool) -> None:
    """A CR in one line once made DuckDB's strict parser drop the whole file with nothing reported."""
    lines = good_lines()
    data = text(lines) + junk + text(lines)
    path = tmp_path / ("mixed.gz" if gz else "mixed.tsv")
    path.write_bytes(gzip.compress(data) if gz else data)
    with open_logs(path, fields=DETECTION_FIELDS) as logs:
        count = logs.count_records()
        report = logs.report(count, require_records=False)
    assert count == 2 * len(lines)
    assert sum(report.records_skipped.values()) >= 1, "the bad line must be counted, not vanish"
    assert list(report.files_repaired) == [str(path)] and "carriage return" in report.files_repaired[str(path)]
    assert not report.files_damaged  # nothing was lost


def test_a_carriage_return_in_a_record_is_read_as_the_firehose_transformation_reads_it(tmp_path: Path) -> None:
    lines = good_lines(60)
    columns = [f.column for f in DETECTION_FIELDS]
    cols = lines[7].split("\t")

    def record(**values: str) -> str:
        return "\t".join(values.get(c, v) for c, v in zip(columns, cols))

    odd = [
        record(cs_user_agent="Mozilla%20X\rY"),  # in text: kept
        record(cs_user_agent="-\r"),  # not the NULL marker
        record(sc_bytes="1234\r"),  # around a number: the cast trims it
        record(sc_bytes="12\r34"),  # inside a number: bad value
        record(sc_bytes="-\r"),  # not the NULL marker, not a number: bad value
        "\t".join(cols[:5]) + "\rx",  # too few fields
        record(cs_referer="https://a.example/\x1a\r"),  # the first marker byte is taken: another one is used
    ]
    data = (
        text(lines[:20]) + text(odd) + text(["\t".join(cols[:7])])  # a wrong field count without a CR, too
        + text(lines[20:30]).replace(b"\n", b"\r\n") + text(lines[30:])  # and CRLF line ends among LF ones
    )
    path = tmp_path / "2026/01/01/00/cr.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(data))
    with open_logs(path, fields=DETECTION_FIELDS) as logs:
        rows = logs.execute("SELECT * FROM logs").to_pylist()
        report = logs.report(len(rows))
    expected, kinds = firehose_parse(data.split(b"\n"), DETECTION_FIELDS)  # the AWS path, line by line
    assert len(rows) == len(lines) + 4
    assert sorted(rows, key=repr) == sorted(expected, key=repr)
    assert report.records_skipped == kinds == {"bad_value": 2, "field_count": 2}
    assert "7 line(s) with a bare carriage return and 10 CRLF line end(s)" in report.files_repaired[str(path)]
    assert not report.files_damaged
    by_agent = {r["cs_user_agent"]: r for r in rows}
    assert "Mozilla%20X\rY" in by_agent and "-\r" in by_agent and {r["sc_bytes"] for r in rows} >= {1234}
    assert "https://a.example/\x1a\r" in {r["cs_referer"] for r in rows}
    assert any(e["text"].startswith("\\t".join(cols[:4])) and "\\r" in e["text"] for e in report.examples)


def test_a_truncated_gzip_file_with_a_carriage_return_is_salvaged_and_repaired(tmp_path: Path) -> None:
    lines = good_lines(60)
    blob = gzip.compress(text(lines[:10]) + b"x\ry\n" + text(lines[10:]))
    write_folder(tmp_path, {"2026/01/01/00/a.gz": blob[: len(blob) * 2 // 3]})
    with open_logs(tmp_path) as logs:
        n = logs.count_records()
        report = logs.report(n)
    assert 10 < n < len(lines)
    assert report.records_skipped == {"field_count": 1, "truncated": 1}
    path = str(tmp_path / "2026/01/01/00/a.gz")
    assert "truncated" in report.files_damaged[path] and "carriage return" in report.files_repaired[path]


def test_crlf_line_endings_keep_every_record(tmp_path: Path) -> None:
    lines = good_lines()
    path = tmp_path / "crlf.tsv"
    path.write_bytes(text(lines).replace(b"\n", b"\r\n"))
    with open_logs(path, fields=DETECTION_FIELDS) as logs:
        assert logs.count_records() == len(lines)
