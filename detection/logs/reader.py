"""Open CloudFront real-time log input as a typed DuckDB view, columnar from file to result.

Input (the "real-time log input" contract): one file or a folder; tab-separated records, plain or gzip, in Firehose's
``YYYY/MM/DD/HH/`` folders, with the field list given by the caller or by a ``fields.txt`` at the folder root; or
Parquet files of the same columns. ``open_logs`` lists the files, prunes hour folders outside the time window, and
creates a temporary view (default ``logs``) with one snake_case column per field, ``-`` read as NULL, the user agent
left URL-encoded, and rows filtered to the window. Nothing is read until a query runs on the view; the reading is
DuckDB's ``read_csv``/``read_parquet`` (no per-line Python).

Bad input is never silently dropped. Lines DuckDB cannot parse (wrong field count, binary garbage, a line longer
than ``MAX_LINE_BYTES``, an unparsable number in a column the query reads) go to a rejects table and are counted per
kind; a gzip file DuckDB cannot finish (truncated, or a broken stream) is salvaged up to the damage by
``LogInput.run``, which retries the query once the file has been repaired, and the lost tail is counted (DuckDB does
not check gzip CRCs: bytes garbled inside a stream come out as bad lines, counted as such). A bare carriage return
inside a line (a CR not followed by LF) makes DuckDB's strict CSV parser give up on the whole file; such a file is
repaired the same way, into a plain copy in which the CR is kept in its field (see ``_repair_copy``), so that its
records are read and the line with the CR parses or is counted as the Firehose transformation would; the report
says which files were repaired. ``LogInput.report`` returns the ``InputReport`` for the run's stats and raises
``InputError`` when the input is unusable as a whole.

Typical use::

    with open_logs("logs/", window=(start, end)) as logs:
        table = logs.execute("SELECT count(*) AS n FROM logs")   # or logs.run(lambda con: ...)
        report = logs.report(records_read=table["n"][0].as_py())
"""

from __future__ import annotations

import calendar
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from detection.logs.schema import FIELDS_BY_COLUMN, MAX_LINE_BYTES, NUMBER_SPACE, Field, SchemaError, parse_fields

__all__ = [
    "DEFAULT_SLACK_SECONDS",
    "InputError",
    "InputReport",
    "LogFile",
    "LogInput",
    "MAX_LINE_BYTES",
    "SKIP_KINDS",
    "list_log_files",
    "sql_string",
    "open_logs",
    "partition_start",
]

T = TypeVar("T")

#: How far (seconds) a Firehose hour folder may be from the event times it holds. Firehose names the folder after the
#: arrival time of the oldest record in the object and buffers up to 900 s, and records arrive a little after the
#: request: a record of time t sits in a folder whose hour overlaps [t - 900 s, t + 900 s).
DEFAULT_SLACK_SECONDS = 900

#: Kinds of skipped records, in the order a line's first problem is classified.
SKIP_KINDS = (
    "binary",  # not UTF-8 text (binary garbage)
    "line_too_long",  # longer than MAX_LINE_BYTES
    "field_count",  # more or fewer tab-separated fields than the field list
    "bad_value",  # a value that does not parse as its column's type (e.g. a non-numeric sc-bytes)
    "truncated",  # the partial last line of a damaged gzip file, and whatever was lost after it
    "malformed",  # anything else DuckDB's reader rejected
)

_REJECT_KIND = {
    "INVALID ENCODING": "binary",
    "INVALID UNICODE": "binary",
    "LINE SIZE OVER MAXIMUM": "line_too_long",
    "MISSING COLUMNS": "field_count",
    "TOO MANY COLUMNS": "field_count",
    "CAST": "bad_value",
}
_KIND_RANK = {kind: rank for rank, kind in enumerate(SKIP_KINDS)}
# CloudFront URL-encodes what it logs: a control character in a line means binary data, whichever error DuckDB
# reported first for it (a garbage byte in a column the query does not read shows up as a field count error).
_BINARY_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ufffd]")

_METADATA_NAMES = {"fields.txt", "labels.csv", "labels.parquet", "summary.json", "manifest.json", "readme.md"}
_PARTITION_RE = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/")
_FIREHOSE_NAME_RE = re.compile(r"-(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-[0-9A-Fa-f]{8}-[0-9A-Fa-f-]{27}")
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"


class InputError(ValueError):
    """The log input is unusable as a whole (no files, no valid record, unknown field...). The CLI exits 2."""


@dataclass
class InputReport:
    """What was read, what was skipped and why: the input part of a run's stats."""

    path: str
    fields: list[str]
    formats: list[str]  # "tsv", "tsv.gz", "parquet" as present
    window: tuple[float, float] | None
    files_found: int  # log files under the path
    files_read: int  # files opened (inside the window's partitions)
    files_pruned: int  # files not opened because their hour folder is outside the window
    bytes_read: int  # on-disk bytes of the files opened
    records_read: int | None  # valid records (inside the window, when there is one)
    records_skipped: dict[str, int]  # by kind, see SKIP_KINDS
    files_damaged: dict[str, str] = field(default_factory=dict)  # path -> what was wrong (salvaged up to the damage)
    files_repaired: dict[str, str] = field(default_factory=dict)  # path -> what was repaired (nothing lost)
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few skipped lines: file, line, kind, message

    @property
    def records_skipped_total(self) -> int:
        return sum(self.records_skipped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "fields": list(self.fields),
            "formats": list(self.formats),
            "window": list(self.window) if self.window else None,
            "files_found": self.files_found,
            "files_read": self.files_read,
            "files_pruned": self.files_pruned,
            "bytes_read": self.bytes_read,
            "records_read": self.records_read,
            "records_skipped": dict(self.records_skipped),
            "records_skipped_total": self.records_skipped_total,
            "files_damaged": dict(self.files_damaged),
            "files_repaired": dict(self.files_repaired),
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class LogFile:
    path: Path
    size: int
    kind: str  # "tsv", "tsv.gz" or "parquet"
    partition: int | None  # epoch of the YYYY/MM/DD/HH folder it sits in, if any
    delivered: int | None = None  # arrival time of its oldest record, from a Firehose object name, if any


def partition_start(relative_path: str) -> int | None:
    """Epoch seconds (UTC) of the ``YYYY/MM/DD/HH/`` folder a path sits in, or None."""
    match = None
    for match in _PARTITION_RE.finditer(relative_path.replace(os.sep, "/")):
        pass
    if match is None:
        return None
    year, month, day, hour = (int(g) for g in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23):
        return None
    try:
        return calendar.timegm((year, month, day, hour, 0, 0))
    except (ValueError, OverflowError):
        return None


def _firehose_time(name: str) -> int | None:
    match = _FIREHOSE_NAME_RE.search(name)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    try:
        return calendar.timegm((year, month, day, hour, minute, second))
    except (ValueError, OverflowError):
        return None


def _sniff(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(4)
    if head[:2] == _GZIP_MAGIC:
        return "tsv.gz"
    if head == _PARQUET_MAGIC or path.suffix == ".parquet":
        return "parquet"
    return "tsv"


def _is_metadata(path: Path) -> bool:
    name = path.name.lower()
    return name.startswith(".") or name.startswith("_") or name in _METADATA_NAMES or name.endswith((".json", ".md"))


def list_log_files(
    path: str | os.PathLike[str],
    window: tuple[float, float] | None = None,
    slack: float = DEFAULT_SLACK_SECONDS,
) -> tuple[list[LogFile], list[LogFile]]:
    """The log files under ``path`` as ``(selected, pruned)``.

    A folder with ``YYYY/MM/DD/HH`` sub-folders contributes only the files inside them; a flat folder contributes
    every file except metadata (``fields.txt``, labels, hidden files, JSON/Markdown). With a window, files in hour
    folders that cannot hold a record of the window (see ``DEFAULT_SLACK_SECONDS``) are pruned: never opened.
    Files outside any hour folder are always selected. Empty files are skipped.
    """
    root = Path(path)
    if root.is_file():
        candidates = [root]
    elif root.is_dir():
        candidates = sorted(p for p in root.rglob("*") if p.is_file() and not _is_metadata(p))
        hours = {p: partition_start(p.relative_to(root).as_posix()) for p in candidates}
        if any(hour is not None for hour in hours.values()):
            candidates = [p for p in candidates if hours[p] is not None]
    else:
        raise InputError(f"log input not found: {root}")

    selected: list[LogFile] = []
    pruned: list[LogFile] = []
    for p in candidates:
        size = p.stat().st_size
        if size == 0:
            continue
        hour = hours.get(p) if root.is_dir() else partition_start(root.name)
        item = LogFile(path=p, size=size, kind=_sniff(p), partition=hour, delivered=_firehose_time(p.name))
        (pruned if window is not None and _outside(item, window, slack) else selected).append(item)
    return selected, pruned


def _outside(item: LogFile, window: tuple[float, float], slack: float) -> bool:
    """Whether the file's hour folder cannot hold a record of ``window`` (a file outside hour folders can)."""
    if item.partition is None:
        return False
    start, end = window
    return item.partition + 3600 <= start - slack or item.partition >= end + slack


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal (for the paths and names DuckDB takes only as literals)."""
    return "'" + value.replace("'", "''") + "'"


def _sql_list(paths: Iterable[str]) -> str:
    return "[" + ", ".join(sql_string(p) for p in paths) + "]"


def _float(value: float) -> str:
    return repr(float(value))


def _fields_from_folder(root: Path) -> list[Field] | None:
    """The fields.txt at the root of a log folder; for a single file, the nearest one in the folders above it
    (a file deep in ``YYYY/MM/DD/HH/`` finds the one at the layout's root)."""
    candidates = [root / "fields.txt"] if root.is_dir() else [p / "fields.txt" for p in list(root.parents)[:5]]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return parse_fields(candidate.read_text(encoding="utf-8"))
            except SchemaError as exc:
                raise InputError(f"{candidate}: {exc}") from exc
    return None


class LogInput:
    """A typed view over log files, plus the bookkeeping that makes its ``InputReport``. Made by ``open_logs``."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        path: Path,
        fields: list[Field] | None,
        view: str,
        window: tuple[float, float] | None,
        slack: float,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", view):
            raise ValueError(f"view name must be a plain SQL identifier: {view!r}")
        self.con = con
        self.path = path
        self.view = view
        self.slack = slack
        self._rejects = f"{view}__rejects"
        self._reject_scans = f"{view}__reject_scans"
        self._workdir: Path | None = None
        self._repaired: dict[Path, _Repair] = {}  # original -> its repaired plain copy
        self._excluded: set[Path] = set()  # unreadable files left out (recorded in files_damaged)
        self.files_damaged: dict[str, str] = {}
        self.files_repaired: dict[str, str] = {}
        self.window: tuple[float, float] | None = None
        self.files: list[LogFile] = []  # files the view reads
        self.pruned: list[LogFile] = []  # files left out by the window
        self._all_files, _ = list_log_files(path, None, slack)
        if not self._all_files:
            raise InputError(f"no log files under {path}")
        parquet = sum(1 for f in self._all_files if f.kind == "parquet")
        if 0 < parquet < len(self._all_files):  # one folder, two formats: most likely the same records twice
            raise InputError(
                f"{path} holds both Parquet ({parquet} files) and TSV logs ({len(self._all_files) - parquet} files), "
                "most likely the same records twice (a conversion into the input folder?); point --logs at one "
                "format"
            )
        self.fields: list[Field] = fields if fields is not None else self._default_fields()
        self.set_window(window)

    # -- view -----------------------------------------------------------------------------------------------------

    def set_window(self, window: tuple[float, float] | None) -> None:
        """(Re)create the view for ``[start, end)`` epoch seconds (None: everything), pruning hour folders."""
        if window is not None:
            start, end = float(window[0]), float(window[1])
            if not end > start:
                raise InputError(f"empty time window: start {start} is not before end {end}")
            if "timestamp" not in {f.column for f in self.fields}:
                raise InputError("a time window needs the timestamp field in the field list")
            window = (start, end)
            # the files listed when the input was opened, not a second walk of the folder
            self.files = [f for f in self._all_files if not _outside(f, window, self.slack)]
            self.pruned = [f for f in self._all_files if _outside(f, window, self.slack)]
        else:
            self.files, self.pruned = list(self._all_files), []
        self.window = window
        self._create_view(self.view, self.files, window)

    def _default_fields(self) -> list[Field]:
        from_folder = _fields_from_folder(self.path)
        if from_folder is not None:
            return from_folder
        parquet = [f for f in self._all_files if f.kind == "parquet"]
        if parquet and len(parquet) == len(self._all_files):
            names = ", ".join(sql_string(c) for c in FIELDS_BY_COLUMN)
            for item in parquet:  # the first readable file's columns
                try:
                    columns = [
                        row[0]
                        for row in self.con.execute(
                            f"SELECT name FROM parquet_schema({sql_string(str(item.path))}) WHERE name IN ({names})"
                        ).fetchall()
                    ]
                except duckdb.Error:
                    continue
                if not columns:
                    raise InputError(f"{item.path}: no CloudFront real-time log column in this Parquet file")
                return sorted((FIELDS_BY_COLUMN[c] for c in columns), key=lambda f: f.position)
            raise InputError(f"no readable Parquet file under {self.path}")
        raise InputError(
            f"no field list for {self.path}: pass --fields (e.g. --fields timestamp,c-ip,...) or put a fields.txt "
            f"(one CloudFront field name per line, canonical order) at the root of the log folder"
        )

    def _csv_options(self) -> str:
        columns = "{" + ", ".join(f"{sql_string(f.column)}: {sql_string(f.sql_type)}" for f in self.fields) + "}"
        return (
            f"columns={columns}, delim='\\t', quote='', escape='', header=false, nullstr='-', auto_detect=false, "
            f"max_line_size={MAX_LINE_BYTES}, store_rejects=true, rejects_table={sql_string(self._rejects)}, "
            f"rejects_scan={sql_string(self._reject_scans)}"
        )

    def _describe_parquet(self, paths: list[str]) -> dict[str, str]:
        return {
            row[0]: row[1]
            for row in self.con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({_sql_list(paths)}, union_by_name=true)"
            ).fetchall()
        }

    def _parquet_source(self, paths: list[str]) -> str | None:
        try:
            described = self._describe_parquet(paths)
        except duckdb.Error:  # find the unreadable file(s), leave them out, say so
            readable = []
            for path in paths:
                try:
                    self._describe_parquet([path])
                    readable.append(path)
                except duckdb.Error as exc:
                    self._exclude(Path(path), f"unreadable Parquet file ({str(exc).splitlines()[0]})")
            if not readable:
                return None
            paths = readable
            described = self._describe_parquet(paths)
        missing = [f.name for f in self.fields if f.column not in described]
        if missing:
            raise InputError(f"Parquet input lacks the column(s) of field(s): {', '.join(missing)}")
        select = []
        for f in self.fields:
            if described[f.column] == f.sql_type:
                select.append(f.column)
            else:  # a foreign writer's type: cast; an unparsable value becomes NULL
                select.append(f"TRY_CAST({f.column} AS {f.sql_type}) AS {f.column}")
        return f"SELECT {', '.join(select)} FROM read_parquet({_sql_list(paths)}, union_by_name=true)"

    def _view_sql(self, files: Sequence[LogFile], window: tuple[float, float] | None) -> str:
        columns = ", ".join(f.column for f in self.fields)
        gz, plain, parquet, marked = [], [], [], []
        for item in files:
            if item.path in self._excluded:
                continue
            repair = self._repaired.get(item.path)
            if repair is not None and repair.marker:
                marked.append(repair)
            elif repair is not None:
                plain.append(str(repair.copy))
            elif item.kind == "tsv.gz":
                gz.append(str(item.path))
            elif item.kind == "tsv":
                plain.append(str(item.path))
            else:
                parquet.append(str(item.path))
        parts = []
        if gz:
            parts.append(f"SELECT {columns} FROM read_csv({_sql_list(gz)}, {self._csv_options()}, compression='gzip')")
        if plain:
            parts.append(
                f"SELECT {columns} FROM read_csv({_sql_list(plain)}, {self._csv_options()}, compression='none')"
            )
        for repair in marked:  # in text fields, the copy's marker byte stands for a carriage return
            select = ", ".join(
                f"replace({f.column}, chr({ord(repair.marker)}), chr(13)) AS {f.column}" if f.sql_type == "VARCHAR"
                else f.column
                for f in self.fields
            )
            parts.append(
                f"SELECT {select} FROM read_csv({_sql_list([str(repair.copy)])}, {self._csv_options()}, "
                f"compression='none')"
            )
        if parquet:
            source = self._parquet_source(parquet)
            if source is not None:
                parts.append(source)
        if not parts:  # every file pruned: an empty view with the right columns
            parts.append(
                "SELECT " + ", ".join(f"CAST(NULL AS {f.sql_type}) AS {f.column}" for f in self.fields) + " WHERE false"
            )
        body = parts[0] if len(parts) == 1 else " UNION ALL ".join(f"({p})" for p in parts)
        where = ""
        if window is not None:
            where = f" WHERE timestamp >= {_float(window[0])} AND timestamp < {_float(window[1])}"
        return f"SELECT {columns} FROM ({body}){where}"

    def _create_view(self, view: str, files: Sequence[LogFile], window: tuple[float, float] | None) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {self._view_sql(files, window)}")

    # -- running queries ------------------------------------------------------------------------------------------

    def run(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Call ``fn(con)``, which queries the view. When DuckDB stops on a damaged gzip file, salvage that file up
        to the damage, recreate the view and call ``fn`` again (each damaged file is repaired once)."""
        return self._run(fn, lambda: self._create_view(self.view, self.files, self.window))

    def _run(self, fn: Callable[[duckdb.DuckDBPyConnection], T], rebuild: Callable[[], None]) -> T:
        while True:
            try:
                return fn(self.con)
            except (duckdb.IOException, duckdb.InvalidInputException) as exc:
                damaged = self._damaged_file(str(exc))
                if damaged is None:
                    raise
                if damaged.kind == "parquet" or damaged.path in self._repaired or not self._repair(damaged, str(exc)):
                    self._exclude(damaged.path, f"unreadable file ({str(exc).splitlines()[0]})")
                rebuild()

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Any:
        """Run ``sql`` (through ``run``) and return the result as a pyarrow Table."""
        return self.run(lambda con: con.sql(sql, params=list(parameters) if parameters else None).to_arrow_table())

    def count_records(self) -> int:
        """Valid records in the view. A full scan for TSV input: prefer counting inside your own query."""
        return int(self.run(lambda con: con.execute(f"SELECT count(*) FROM {self.view}").fetchall()[0][0]))

    def newest_timestamp(self) -> float | None:
        """Timestamp of the newest record (ignoring the window), reading only the files that can hold it: with
        Firehose object names, those delivered within ``slack`` of the newest object; else the newest hour folder
        and those within an hour plus twice the slack before it; else every file. Parquet answers from its
        statistics; TSV costs a scan of those files (count on about 3/4 of a full scan's time)."""
        if "timestamp" not in {f.column for f in self.fields}:
            raise InputError("the field list has no timestamp field")
        files = self._all_files
        if all(f.kind == "parquet" for f in files):  # no scan: the newest of the footers' maxima
            try:
                row = self.con.execute(
                    f"SELECT max(TRY_CAST(stats_max AS DOUBLE)), count(*), count(stats_max) "
                    f"FROM parquet_metadata({_sql_list(str(f.path) for f in files)}) WHERE path_in_schema = 'timestamp'"
                ).fetchone()
            except duckdb.Error:
                row = None
            if row and row[0] is not None and row[1] == row[2]:
                return float(row[0])
        hours = [f.partition for f in files if f.partition is not None]
        delivered = [f.delivered for f in files if f.delivered is not None]
        if delivered and len(delivered) == len(files):
            newest = max(delivered)
            files = [f for f in files if f.delivered is not None and f.delivered >= newest - self.slack]
        elif hours and len(hours) == len(files):
            newest = max(hours)
            files = [f for f in files if f.partition is not None and f.partition > newest - 3600 - 2 * self.slack]
        probe = f"{self.view}__newest"
        rebuild = lambda: self._create_view(probe, files, None)  # noqa: E731
        rebuild()
        try:
            value = self._run(lambda con: con.execute(f"SELECT max(timestamp) FROM {probe}").fetchall()[0][0], rebuild)
        finally:
            self.con.execute(f"DROP VIEW IF EXISTS {probe}")
        if self._repaired:
            self._create_view(self.view, self.files, self.window)
        return None if value is None else float(value)

    # -- damaged files ----------------------------------------------------------------------------------------------

    def _damaged_file(self, message: str) -> LogFile | None:
        """The file of ours an error message names (longest match), unless already repaired or left out."""
        copies = {str(repair.copy): original for original, repair in self._repaired.items()}
        hits = [f for f in self._all_files if f.path not in self._excluded and str(f.path) in message]
        hits = [f for f in hits if f.path not in self._repaired]
        for copy, original in copies.items():  # an error inside a repaired copy: leave the file out
            if copy in message and original not in self._excluded:
                hits.append(next(f for f in self._all_files if f.path == original))
        return max(hits, key=lambda f: len(str(f.path))) if hits else None

    def _exclude(self, path: Path, reason: str) -> None:
        self._excluded.add(path)
        self.files_damaged[str(path)] = reason

    def _repair(self, item: LogFile, message: str) -> bool:
        """Make a plain copy of a TSV file DuckDB stopped on: a gzip file up to its damage, and in any TSV file the
        lines with a bare carriage return made readable. False when there is nothing to repair (a plain file without
        a bare CR: the caller leaves it out)."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="cf-logs-salvage-"))
        target = self._workdir / f"{len(self._repaired)}-{item.path.name}.tsv"
        numeric = frozenset(i for i, f in enumerate(self.fields) if f.is_numeric)
        repair = _repair_copy(item.path, target, gz=item.kind == "tsv.gz", fields=len(self.fields), numeric=numeric)
        repaired = []
        if repair.carriage_returns:
            repaired.append(f"{repair.carriage_returns} line(s) with a bare carriage return")
        if repair.line_ends:
            repaired.append(f"{repair.line_ends} CRLF line end(s) among LF ones")
        if item.kind != "tsv.gz" and not repaired:  # not what DuckDB stopped on
            target.unlink(missing_ok=True)
            return False
        self._repaired[item.path] = repair
        if repair.problem or not repaired:
            self.files_damaged[str(item.path)] = repair.problem or message.splitlines()[0]
        if repaired:
            self.files_repaired[str(item.path)] = (
                f"{' and '.join(repaired)}, which DuckDB's strict CSV reader stops on: read from a repaired copy "
                f"that keeps each CR in its field"
            )
        return True

    # -- report ---------------------------------------------------------------------------------------------------

    def _rejected(self) -> tuple[dict[str, int], list[dict[str, Any]]]:
        counts = dict.fromkeys(SKIP_KINDS, 0)
        examples: list[dict[str, Any]] = []
        exists = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?", [self._rejects]
        ).fetchone()[0]
        if exists:
            rows = self.con.execute(
                f"SELECT s.file_path, e.line, e.error_type, e.error_message, e.csv_line "
                f"FROM {self._rejects} e JOIN {self._reject_scans} s USING (scan_id, file_id)"
            ).fetchall()
            back = {str(repair.copy): str(original) for original, repair in self._repaired.items()}
            markers = {str(repair.copy): repair.marker for repair in self._repaired.values() if repair.marker}
            lines: dict[tuple[str, int], tuple[str, str, str]] = {}
            for file_path, line, error_type, message, csv_line in rows:
                # A line can raise several errors, and several scans can reject the same line: count it once,
                # under its first problem.
                kind = _REJECT_KIND.get(error_type, "malformed")
                text = csv_line
                if csv_line and file_path in markers:  # a repaired line's CR is not binary garbage
                    text = csv_line.replace(markers[file_path].decode("ascii"), "")
                    csv_line = csv_line.replace(markers[file_path].decode("ascii"), "\r")  # as it is in the file
                if text and _BINARY_RE.search(text):
                    kind = "binary"
                key = (back.get(file_path, file_path), int(line))
                previous = lines.get(key)
                if previous is None or _KIND_RANK[kind] < _KIND_RANK[previous[0]]:
                    lines[key] = (kind, message or "", csv_line or "")
            for (file_path, line), (kind, message, csv_line) in sorted(lines.items()):
                counts[kind] += 1
                if len(examples) < 10:
                    preview = csv_line[:120].encode("unicode_escape").decode("ascii")
                    examples.append(
                        {"file": file_path, "line": line, "kind": kind, "message": message[:200], "text": preview}
                    )
        counts["truncated"] += sum(repair.lost_lines for repair in self._repaired.values())
        return {k: v for k, v in counts.items() if v}, examples

    def report(self, records_read: int | None = None, *, require_records: bool = True) -> InputReport:
        """The ``InputReport``, once the queries have run. Consume query results completely first
        (``fetchall``, Arrow, ``execute``): DuckDB writes a scan's rejected lines when its result is done with;
        a result read with ``fetchone`` alone has not reported its rejects yet.

        ``records_read``: the valid records the caller's query saw (count them there: it is free); None counts them
        with an extra scan. Raises ``InputError`` when ``require_records`` and there was no valid record: every line
        rejected, or nothing in the window.
        """
        if records_read is None:
            records_read = self.count_records()
        skipped, examples = self._rejected()
        read = [f for f in self.files if f.path not in self._excluded]
        report = InputReport(
            path=str(self.path),
            fields=[f.name for f in self.fields],
            formats=sorted({f.kind for f in read}),
            window=self.window,
            files_found=len(self._all_files),
            files_read=len(read),
            files_pruned=len(self.pruned),
            bytes_read=sum(f.size for f in read),
            records_read=records_read,
            records_skipped=skipped,
            files_damaged=dict(self.files_damaged),
            files_repaired=dict(self.files_repaired),
            examples=examples,
        )
        if require_records and records_read == 0:
            if skipped:
                detail = ", ".join(f"{n} {kind}" for kind, n in skipped.items())
                hint = ""
                if set(skipped) <= {"field_count", "bad_value"}:
                    hint = (
                        f" Check the field list ({len(self.fields)} fields: {','.join(report.fields)}) against the "
                        f"real-time log configuration that wrote these files."
                    )
                raise InputError(f"no valid log record in {self.path}: every line was rejected ({detail}).{hint}")
            if self.window is not None:
                raise InputError(
                    f"no log record in {self.path} in the window [{self.window[0]:.3f}, {self.window[1]:.3f}) "
                    f"({len(self.files)} file(s) read, {len(self.pruned)} outside the window)"
                )
            raise InputError(f"no log record in {self.path}")
        return report

    # -- lifetime -------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the view and the rejects tables; delete salvaged copies."""
        for statement in (
            f"DROP VIEW IF EXISTS {self.view}",
            f"DROP TABLE IF EXISTS {self._rejects}",
            f"DROP TABLE IF EXISTS {self._reject_scans}",
        ):
            try:
                self.con.execute(statement)
            except duckdb.Error:
                pass
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> LogInput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: Bytes that stand for a carriage return in the text fields of a repaired copy: control characters CloudFront never
#: writes (it URL-encodes what it logs); the first one the file does not contain is used.
_CR_MARKERS = (b"\x1a", b"\x1c", b"\x1d", b"\x1e", b"\x1f", b"\x0e", b"\x0f", b"\x10", b"\x11", b"\x12")
#: What DuckDB's casts trim around a number (the carriage return among them).
_NUMBER_SPACE = NUMBER_SPACE.encode()


@dataclass(frozen=True)
class _Repair:
    """A readable plain copy of a TSV file DuckDB stopped on."""

    copy: Path
    lost_lines: int = 0  # records lost at a gzip file's damage that can be counted: the partial last line (0 or 1)
    problem: str | None = None  # what was wrong with the gzip stream, if anything
    carriage_returns: int = 0  # lines with a bare carriage return
    line_ends: int = 0  # CRLF line ends in a file of LF line ends (DuckDB reads one or the other)
    marker: bytes | None = None  # the byte standing for a carriage return in the copy's text fields


def _chunks(source: Path, gz: bool, state: dict[str, Any]) -> Iterator[bytes]:
    """The bytes of ``source``, decompressed when ``gz`` up to the first damage (``state['problem']`` says what)."""
    with source.open("rb") as raw:
        if not gz:
            while data := raw.read(1 << 20):
                yield data
            return
        in_member = False
        decomp = zlib.decompressobj(wbits=31)
        pending = b""
        while True:
            data = pending or raw.read(1 << 20)
            pending = b""
            if not data:
                break
            in_member = True
            try:
                chunk = decomp.decompress(data)
            except zlib.error as exc:
                state["problem"] = f"corrupt gzip stream ({exc})"
                return
            if chunk:
                yield chunk
            if decomp.eof:  # end of a gzip member; another may follow
                pending = decomp.unused_data
                decomp = zlib.decompressobj(wbits=31)
                in_member = False
        if in_member:
            state["problem"] = "truncated gzip file (unexpected end of stream)"


def _carriage_returns(
    block: bytes, marker: bytes, fields: int, numeric: frozenset[int], counts: dict[str, int]
) -> bytes:
    """``block`` (whole lines) with CRLF line ends made LF and every other carriage return made readable: around a
    number it is dropped (DuckDB's cast trims it anyway), anywhere else it becomes ``marker``, which the view turns
    back into a CR in text fields (and which makes a number fail its cast, as the CR would)."""
    lines = block.split(b"\n")
    for i, line in enumerate(lines):
        if b"\r" not in line:
            continue
        if line.endswith(b"\r"):
            line = line[:-1]
            counts["line_ends"] += 1
        if b"\r" in line:
            counts["carriage_returns"] += 1
            values = line.split(b"\t")
            if len(values) == fields:
                for k, value in enumerate(values):
                    if k in numeric and b"\r" in value:
                        stripped = value.strip(_NUMBER_SPACE)
                        if b"\r" not in stripped and stripped not in (b"", b"-"):
                            values[k] = stripped
                line = b"\t".join(values)
            if b"\r" in line:
                counts["marked"] += 1
                line = line.replace(b"\r", marker)
        lines[i] = line
    return b"\n".join(lines)


def _repair_copy(source: Path, target: Path, *, gz: bool, fields: int, numeric: frozenset[int]) -> _Repair:
    """Write a plain copy of the TSV file ``source`` that DuckDB's strict reader can read: a gzip file decompressed up
    to its first damage (complete lines only), carriage returns other than CRLF line ends made readable (see
    ``_carriage_returns``). ``fields``: the field count; ``numeric``: positions of the non-text fields."""
    marker = _CR_MARKERS[0]
    while True:
        state: dict[str, Any] = {}
        counts = {"line_ends": 0, "carriage_returns": 0, "marked": 0}
        present: set[bytes] = set()
        tail = b""
        with target.open("wb") as out:
            for chunk in _chunks(source, gz, state):
                chunk = tail + chunk
                cut = chunk.rfind(b"\n") + 1
                block, tail = chunk[:cut], chunk[cut:]
                present.update(m for m in _CR_MARKERS if m in block)
                if b"\r" in block:
                    block = _carriage_returns(block, marker, fields, numeric, counts)
                out.write(block)
            if "problem" not in state and tail:  # a complete last line without its line break
                present.update(m for m in _CR_MARKERS if m in tail)
                out.write(_carriage_returns(tail + b"\n", marker, fields, numeric, counts))
                tail = b""
        if not counts["marked"] or marker not in present:
            break
        unused = [m for m in _CR_MARKERS if m not in present]
        if not unused:  # every marker is in the file (binary garbage): a carriage return makes its line invalid
            unused = [b"\xff"]
        if marker == unused[0]:
            break
        marker = unused[0]
    return _Repair(
        copy=target,
        lost_lines=1 if tail.strip() else 0,
        problem=state.get("problem"),
        carriage_returns=counts["carriage_returns"],
        line_ends=counts["line_ends"],
        marker=marker if counts["marked"] and marker != b"\xff" else None,
    )


def open_logs(
    path: str | os.PathLike[str],
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    fields: str | os.PathLike[str] | Iterable[str | Field] | None = None,
    window: tuple[float, float] | None = None,
    view: str = "logs",
    slack: float = DEFAULT_SLACK_SECONDS,
) -> LogInput:
    """Open CloudFront real-time log input as the temp view ``view`` on ``con`` (a new in-memory connection when
    None; use ``LogInput.con``).

    ``fields``: the configuration's field list (names, ``a,b,c`` text, or a fields.txt path); default: the
    ``fields.txt`` at the folder root (or next to a single file), or the columns of Parquet input. ``window``:
    ``(start, end)`` epoch seconds, end exclusive; hour folders that cannot hold a record of it are not opened.
    Raises ``InputError`` for a missing path, no files, an unknown field, or no field list.
    """
    if con is None:
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
    parsed: list[Field] | None = None
    if fields is not None:
        try:
            parsed = parse_fields(fields)
        except SchemaError as exc:
            raise InputError(str(exc)) from exc
    return LogInput(con, Path(path), parsed, view, window, slack)
