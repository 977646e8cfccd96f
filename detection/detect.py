"""One detection run, end to end: log input -> the feature SQL -> the policy -> verdicts and stats.

``detect(path)`` opens the input with :mod:`detection.logs.reader` (files, Firehose folders, Parquet; bad lines counted and
skipped), runs ``detection/scoring/sql/features.sql`` over the window on DuckDB, scores the per-session table with
:mod:`detection.scoring.policy` and returns a :class:`DetectRun`, whose ``to_dict()`` is the JSON of the ``detect``
contract::

    {"sessions": [{"session_id", "score", "action", "reasons": [...], "features": {...}}, ...],
     "stats": {"window": ..., "records_read": ..., "records_skipped": {...}, "sessions_scored": ..., ...}}

The window is ``window_minutes`` ending at ``now`` (end exclusive), or, without ``now``, ending just after the
newest record of the input. Raises ``InputError`` (from detection.logs.reader) when the input is unusable, ``QueryError``
when the field list lacks a field detection needs, ``ConfigError`` for a bad configuration.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from detection.logs.reader import InputError, LogInput, open_logs, sql_string
from detection.logs.schema import Field
from detection.scoring.config import DetectionConfig
from detection.scoring.policy import PolicyResult, score_sessions
from detection.scoring.query import FEATURES, QueryError, load_query, prepare_relation
from revocation.ledger.base import Verdict, run_id_for

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_WINDOW_MINUTES",
    "DetectRun",
    "InputError",
    "QueryError",
    "WindowRun",
    "detect",
    "run_window",
]

DEFAULT_WINDOW_MINUTES = 10.0
#: DuckDB's memory limit for a run on its own connection (the benchmark's target: 1.5 GB for the whole process).
DEFAULT_MEMORY_LIMIT = "1200MB"


@dataclass
class DetectRun:
    """The policy's result (the verdicts of the flagged sessions, highest score first), the run's stats and the
    feature table."""

    policy: PolicyResult
    stats: dict[str, Any]
    window: tuple[float, float]
    features: pa.Table | None = field(default=None, repr=False)

    @property
    def verdicts(self) -> list[Verdict]:
        return self.policy.verdicts

    def to_dict(self) -> dict[str, Any]:
        return {"sessions": [v.to_dict() for v in self.verdicts], "stats": self.stats}


class WindowRun(NamedTuple):
    """One window of an open input: the policy's result, the stats, the feature table, and the relation the
    queries read (the input's view, or a view over it adding the optional columns the field list lacks)."""

    policy: PolicyResult
    stats: dict[str, Any]
    features: pa.Table
    relation: str


def run_window(
    logs: LogInput,
    window: tuple[float, float],
    config: DetectionConfig,
    *,
    require_records: bool = True,
) -> WindowRun:
    """Features and verdicts for one window of an open input (the window's view is set here). Raises InputError
    for a window without any valid record unless ``require_records`` is false."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    logs.set_window(window)
    relation, missing = prepare_relation(logs.con, logs.view, f"{logs.view}__detect")
    query = load_query(FEATURES)
    table = logs.run(lambda con: query.run(con, window, relation=relation, extra=config.query_parameters()))
    timings["features_sql"] = time.perf_counter() - clock
    records = int(pc.sum(table["records"]).as_py() or 0) if table.num_rows else 0
    report = logs.report(records_read=records, require_records=require_records)
    clock = time.perf_counter()
    # the window's run, decided at its end: the same verdicts whenever the window is scored again
    result = score_sessions(table, config, run_id=run_id_for(window[1]), decided_at=window[1])
    timings["policy"] = time.perf_counter() - clock
    stats: dict[str, Any] = {
        "window": {"start": window[0], "end": window[1], "minutes": round((window[1] - window[0]) / 60.0, 3)},
        "records_read": records,
        "records_skipped": dict(report.records_skipped),
        "records_skipped_total": report.records_skipped_total,
        "sessions_seen": int(pc.sum(pc.is_valid(table["session_id"])).as_py() or 0) if table.num_rows else 0,
        **result.counts(),
        "missing_fields": [c.replace("_", "-") for c in missing],
        "input": report.to_dict(),
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
    return WindowRun(result, stats, table, relation)


def detect(
    logs: str | os.PathLike[str],
    *,
    fields: str | os.PathLike[str] | Iterable[str | Field] | None = None,
    window_minutes: float = DEFAULT_WINDOW_MINUTES,
    now: float | None = None,
    config: DetectionConfig | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    keep_features: bool = False,
    memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
) -> DetectRun:
    """Detect pirated sessions in the log input at ``logs`` (see the module docstring).

    Without ``con``, runs on its own in-memory DuckDB connection limited to ``memory_limit``, so a run over
    millions of records stays within a Lambda's or a laptop's memory: in memory first, and when that stops on the
    limit, once more spilling DuckDB's hash tables to a temporary folder."""
    started = time.perf_counter()
    config = config or DetectionConfig()
    if isinstance(window_minutes, bool) or not isinstance(window_minutes, (int, float)) or not window_minutes > 0:
        raise InputError(f"the window must be a positive number of minutes, not {window_minutes!r}")
    if now is not None and (isinstance(now, bool) or not isinstance(now, (int, float)) or not 0 <= now < 2**40):
        raise InputError(f"--now must be epoch seconds, not {now!r}")
    clock = time.perf_counter()
    own = con is None
    spill = None
    if own:
        # First without a temporary folder: DuckDB then gives each hash table the memory it needs within the limit.
        # With one, it budgets its hash tables far below the limit and aggregates "out of core" (partition by
        # partition) long before memory runs short, which took a third longer on the benchmark's ten million records
        # with nothing ever written. A run that does not fit in the limit stops with OutOfMemoryException and runs
        # again below, spilling to a temporary folder.
        settings = {"temp_directory": ""}
        if memory_limit:
            settings["memory_limit"] = memory_limit
        con = duckdb.connect(config=settings)
        con.execute("SET enable_progress_bar = false")
    try:
        logs_input = open_logs(logs, con, fields=fields)
        with logs_input:
            opened = time.perf_counter() - clock

            for spilling in (False, True):  # in memory first; once more spilling if that stops on the limit
                try:
                    clock = time.perf_counter()
                    newest = None
                    if now is None:
                        newest = logs_input.newest_timestamp()
                        if newest is None:
                            logs_input.report(records_read=0)  # raises InputError saying why (every line rejected)
                            raise InputError(f"no log record in {logs}")
                        end = newest + 0.001  # the newest record is inside the window (end exclusive)
                    else:
                        end = float(now)
                    located = time.perf_counter() - clock
                    window = (max(0.0, end - float(window_minutes) * 60.0), end)
                    policy, stats, table, _ = run_window(logs_input, window, config)
                    break
                except duckdb.OutOfMemoryException:
                    if spilling or not own or not memory_limit:
                        raise
                    spill = tempfile.TemporaryDirectory(prefix="detect-spill-")
                    con.execute(f"SET temp_directory = {sql_string(spill.name)}")
    finally:
        if own:
            con.close()
            if spill is not None:
                spill.cleanup()
    stats["window"]["newest_record"] = newest
    stats["timings"] = {
        "open": round(opened, 4),
        "newest_record": round(located, 4),
        **stats["timings"],
        "total": round(time.perf_counter() - started, 4),
    }
    records = stats["records_read"]
    total = stats["timings"]["total"]
    stats["records_per_second"] = round(records / total, 1) if total > 0 else None
    stats["mode"] = "monitor" if config.monitor else "enforce"
    # the window did not fit in the memory limit and ran again spilling to disk (about twice as slow): a sign to
    # shorten the window or raise memory_limit
    stats["spilled"] = spill is not None
    return DetectRun(policy=policy, stats=stats, window=window, features=table if keep_features else None)
