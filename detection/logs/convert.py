"""Convert real-time log TSV (plain or gzip, Firehose layout) to Parquet of the same typed columns.

Each input file becomes one zstd Parquet file at the same relative path (``YYYY/MM/DD/HH/name.gz`` ->
``YYYY/MM/DD/HH/name.parquet``), read through ``detection.logs.reader`` exactly as detection reads it: the same columns and
types, the same counting of bad lines, the same salvage of damaged gzip files. This is the code a Firehose
transformation or an S3 compaction step would run. The folder's ``fields.txt`` (and labels of a generated corpus)
are copied along, so the Parquet folder is a drop-in replacement for the TSV one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from detection.logs.reader import InputError, InputReport, LogFile, open_logs, sql_string
from detection.logs.schema import Field, fields_text

__all__ = ["convert_to_parquet"]

_COPIED = ("labels.csv", "labels.parquet", "corpus.json")


def _target_name(relative: Path) -> Path:
    name = relative.name
    for suffix in (".gz", ".tsv", ".log", ".txt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return relative.with_name(name + ".parquet")


def convert_to_parquet(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    fields: str | os.PathLike[str] | Iterable[str | Field] | None = None,
    workers: int = 2,
    row_group_size: int = 122_880,
    compression_level: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> InputReport:
    """Convert the TSV log input at ``source`` (a file or a folder) into Parquet under ``destination`` (a folder;
    for a single input file, the Parquet file goes directly in it). Returns one ``InputReport`` for the whole
    input (files, records written, records skipped by kind, damaged files). ``progress(files_done, files_total)``
    is called as files complete. Raises ``InputError`` when the input is unusable (no files, no field list,
    unknown field, not one valid record)."""
    src, dst = Path(source), Path(destination)
    with open_logs(src, fields=fields, view="convert_probe") as probe:  # the field list, resolved once for every file
        parsed, files = probe.fields, probe.files
    tsv = [f for f in files if f.kind != "parquet"]
    if not tsv:
        raise InputError(f"no TSV log files under {src}")
    root = src if src.is_dir() else src.parent
    dst.mkdir(parents=True, exist_ok=True)

    def convert_one(item: LogFile) -> InputReport:
        target = dst / _target_name(item.path.relative_to(root))
        target.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        con.execute("SET threads = 1")  # gzip is read by one thread per file: parallelism comes from the pool
        with open_logs(item.path, con, fields=parsed, view="convert_file") as logs:
            copy = (
                f"COPY (SELECT * FROM convert_file) TO {sql_string(str(target))} "
                f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {int(compression_level)}, "
                f"ROW_GROUP_SIZE {int(row_group_size)})"
            )
            written = logs.run(lambda c: c.execute(copy).fetchone()[0])
            report = logs.report(int(written), require_records=False)
        con.close()
        if not written:
            target.unlink(missing_ok=True)
        return report

    reports: list[InputReport] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for report in pool.map(convert_one, tsv):
            reports.append(report)
            if progress:
                progress(len(reports), len(tsv))

    (dst / "fields.txt").write_text(fields_text(parsed), encoding="utf-8")
    if src.is_dir():
        for name in _COPIED:
            if (src / name).is_file():
                shutil.copyfile(src / name, dst / name)

    skipped: dict[str, int] = {}
    for r in reports:
        for kind, count in r.records_skipped.items():
            skipped[kind] = skipped.get(kind, 0) + count
    report = InputReport(
        path=str(src),
        fields=[f.name for f in parsed],
        formats=sorted({kind for r in reports for kind in r.formats}),
        window=None,
        files_found=len(files),
        files_read=sum(r.files_read for r in reports),  # a file left out as unreadable is not read
        files_pruned=0,
        bytes_read=sum(r.bytes_read for r in reports),
        records_read=sum(r.records_read or 0 for r in reports),
        records_skipped=skipped,
        files_damaged={path: why for r in reports for path, why in r.files_damaged.items()},
        files_repaired={path: why for r in reports for path, why in r.files_repaired.items()},
        examples=[e for r in reports for e in r.examples][:10],
    )
    if report.records_read == 0:
        detail = ", ".join(f"{n} {kind}" for kind, n in skipped.items()) or "the files are empty"
        raise InputError(f"no valid log record in {src} ({detail})")
    return report
