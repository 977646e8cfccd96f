import gzip
from pathlib import Path

import pytest

from detection.logs.convert import convert_to_parquet
from detection.logs.reader import InputError, list_log_files, open_logs
from detection.logs.schema import DETECTION_FIELDS, fields_text
from tools.generate import generate_corpus

ORDER = "ORDER BY x_edge_request_id"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root, sessions=120, minutes=3, seed=5)
    return root


def test_round_trip_equals_the_tsv_read(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "pq"
    report = convert_to_parquet(corpus, out)
    tsv_files, _ = list_log_files(corpus)
    pq_files, _ = list_log_files(out)
    # same layout, one Parquet file per object
    assert sorted(f.path.relative_to(corpus).with_suffix("").as_posix() for f in tsv_files) == sorted(
        f.path.relative_to(out).with_suffix("").as_posix() for f in pq_files
    )
    assert {f.kind for f in pq_files} == {"parquet"}
    assert (out / "fields.txt").read_text() == fields_text(DETECTION_FIELDS)
    assert (out / "labels.csv").is_file()
    with open_logs(corpus) as tsv, open_logs(out) as pq:
        a = tsv.execute(f"SELECT * FROM logs {ORDER}")
        b = pq.execute(f"SELECT * FROM logs {ORDER}")
        assert b.schema == a.schema
        assert a.equals(b)
        assert report.records_read == a.num_rows and not report.records_skipped
        assert pq.report(b.num_rows).formats == ["parquet"]


def source_folder(tmp_path: Path, corpus: Path) -> tuple[Path, list[bytes]]:
    """An empty log folder (its fields.txt and one hour folder) and the lines of one file of the corpus."""
    src = tmp_path / "src"
    (src / "2026/01/01/00").mkdir(parents=True)
    (src / "fields.txt").write_text(fields_text(DETECTION_FIELDS))
    one = sorted((corpus / "2026/01/01/00").glob("*.gz"))[0]
    return src, gzip.decompress(one.read_bytes()).splitlines(keepends=True)


def test_bad_lines_and_damaged_files_are_reported(tmp_path: Path, corpus: Path) -> None:
    src, lines = source_folder(tmp_path, corpus)
    (src / "2026/01/01/00/a.gz").write_bytes(gzip.compress(b"".join(lines[:50]) + b"oops\n" + b"".join(lines[50:100])))
    whole = gzip.compress(b"".join(lines[:400]))
    (src / "2026/01/01/00/b.gz").write_bytes(whole[: len(whole) // 2])
    report = convert_to_parquet(src, tmp_path / "out", workers=1)
    assert report.records_skipped["field_count"] == 1 and report.records_skipped["truncated"] == 1
    assert list(report.files_damaged) == [str(src / "2026/01/01/00/b.gz")]
    with open_logs(tmp_path / "out") as logs:
        assert logs.count_records() == report.records_read
    assert 100 < report.records_read < 500


def test_a_repaired_file_is_reported(tmp_path: Path, corpus: Path) -> None:
    src, lines = source_folder(tmp_path, corpus)
    path = src / "2026/01/01/00/a.gz"
    path.write_bytes(gzip.compress(b"".join(lines[:50]) + b"abc\rdef\n" + b"".join(lines[50:100])))
    report = convert_to_parquet(src, tmp_path / "out", workers=1)
    assert list(report.files_repaired) == [str(path)] and not report.files_damaged
    assert (report.files_found, report.files_read, report.records_read) == (1, 1, 100)


def test_unusable_input(tmp_path: Path) -> None:
    (tmp_path / "x.tsv").write_text("nothing\tuseful\n")
    with pytest.raises(InputError, match="no field list"):
        convert_to_parquet(tmp_path / "x.tsv", tmp_path / "out")
    with pytest.raises(InputError, match="no valid log record"):
        convert_to_parquet(tmp_path / "x.tsv", tmp_path / "out", fields="timestamp,c-ip,asn")
    with pytest.raises(InputError, match="did you mean"):
        convert_to_parquet(tmp_path / "x.tsv", tmp_path / "out", fields="timestamp,cip")
