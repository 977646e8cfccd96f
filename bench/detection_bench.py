#!/usr/bin/env python3
"""Benchmark of the detection engine on generated CloudFront real-time logs (gzip TSV and Parquet).

    .venv/bin/python bench/detection_bench.py [--records 10000000] [--data out/detection-bench] [--repeat 1]
                                              [--threads 2] [--json]

Generates the corpus once (``python -m detection generate``'s generator, about 157 records per session over 10
minutes) and its Parquet conversion, then measures on each format, in the same run and on the same engine:

- ``bare scan``: DuckDB reading the same files through the same input layer and only grouping by session and
  counting distinct addresses - the engine's limit for anything that reads every record;
- ``read``: only reading (and decoding) the columns features.sql reads, with nothing computed: where reading ends;
- ``hot``: features.sql cut after its one big aggregation (``parts``, every record in, about one row in twenty
  out): the part of the query whose cost grows with the records, so how far the rest of the query can go;
- ``features SQL``: detection/scoring/sql/features.sql alone (every feature), as DuckDB runs it;
- ``baseline SQL``: the existing AWS solution's rule (detection/scoring/sql/baseline.sql);
- ``detect``: the whole run, end to end (open the input, features, policy, verdicts), over a window that covers
  every record; and ``detect (newest)``: the same with the default window (10 minutes ending at the newest
  record, which costs a scan of the newest files for TSV).

Each measurement runs in its own process, so its peak memory (max RSS) is its own. Prints a table (``--json``: the
numbers) with records per second, the ratio to the bare scan and the issue's targets: detect >= 0.7x the bare scan
on both formats, >= 1.0x the baseline rule, peak memory <= 1.5 GB. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECORDS_PER_SESSION = 157  # what the generator writes per session over 10 minutes, on average
MEASUREMENTS = ("bare", "read", "hot", "features", "baseline", "detect", "detect_newest")
LABELS = {
    "bare": "bare scan (limit)",
    "read": "read features' columns only",
    "hot": "features SQL to its big GROUP BY",
    "features": "features SQL",
    "baseline": "baseline SQL (AWS rule)",
    "detect": "detect, end to end",
    "detect_newest": "detect (newest-record window)",
}


# -- one measurement, in a child process -------------------------------------------------------------------------------


def _measure(kind: str, path: str, threads: int, start: float, end: float) -> dict[str, Any]:
    import duckdb

    from detection.detect import detect
    from detection.logs.reader import open_logs
    from detection.scoring.config import DetectionConfig
    from detection.scoring.query import BASELINE, FEATURES, load_query

    clock = time.perf_counter()
    records: int | None = None
    if kind.startswith("detect"):  # as the CLI runs it: its own connection, DuckDB's default threads (all cores)
        if kind == "detect":
            run = detect(path, now=end, window_minutes=(end - start) / 60.0, config=DetectionConfig())
        else:
            run = detect(path, config=DetectionConfig())
        records = run.stats["records_read"]
        extra = {"revoked": run.stats["revoke"], "timings": run.stats["timings"]}
    else:
        con = duckdb.connect(config={"threads": threads})
        con.execute("SET enable_progress_bar = false")
        with open_logs(path, con) as logs:
            logs.set_window((start, end))
            if kind in STAGES:
                query = load_query(FEATURES)
                sql = STAGES[kind](query.duckdb_sql(relation="logs"))
                logs.run(lambda c: c.execute(sql, stage_values(sql, query.values(start, end))).fetchall())
                extra = {}
            elif kind == "bare":
                sql = (
                    "SELECT split_part(split_part(cs_uri_stem, '/', 2), '.', 1) AS session_id, "
                    "count(DISTINCT c_ip) AS ips, count(*) AS records FROM logs GROUP BY 1"
                )
                table = logs.run(lambda c: c.sql(sql).to_arrow_table())
                records = int(sum(table["records"].to_pylist()))
                extra = {"sessions": table.num_rows}
            else:
                query = load_query(FEATURES if kind == "features" else BASELINE)
                table = logs.run(lambda c: query.run(c, (start, end)))
                if kind == "features":
                    records = int(sum(table["records"].to_pylist()))
                extra = {"sessions": table.num_rows}
    seconds = time.perf_counter() - clock
    return {"kind": kind, "seconds": seconds, "records": records, "peak_bytes": _peak_memory(), **extra}


def _read_only(sql: str) -> str:
    """A query reading every log column ``sql`` reads and computing nothing but the maximum of each."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    source = next(s for s in tree.find_all(exp.Select) if any(t.name == "logs" for t in _own(s, exp.Table)))
    where = source.args.get("where")
    columns = sorted({c.name for c in _own(source, exp.Column) if c.name != "*"})
    maxima = ", ".join(f'max("{c}")' for c in columns)
    return f"SELECT count(*), {maxima} FROM logs" + (f" {where.sql('duckdb')}" if where else "")


def _own(select: exp.Select, kind: type[exp.Expression]) -> list[exp.Expression]:
    """The ``kind`` nodes of ``select`` itself, not of the queries nested in it."""
    return [node for node in select.find_all(kind) if node.parent_select is select]


def _through(cte: str) -> Callable[[str], str]:
    """A query running ``sql``'s steps up to and including the step ``cte``, then only consuming each of its
    columns (the maximum), so that the engine prunes nothing the step computes."""

    def cut(sql: str) -> str:
        tree = sqlglot.parse_one(sql, read="duckdb")
        steps = tree.find(exp.With).expressions
        names = [step.alias for step in steps]
        kept = steps[: names.index(cte) + 1]
        return "WITH " + ", ".join(step.sql("duckdb") for step in kept) + f' SELECT max(COLUMNS(*)) FROM "{cte}"'

    return cut


def stage_values(sql: str, values: dict[str, Any]) -> dict[str, Any]:
    """The parameter values a stage's text still uses (a cut query may have lost the later parameters)."""
    return {name: value for name, value in values.items() if f"${name}" in sql}


STAGES: dict[str, Callable[[str], str]] = {"read": _read_only, "hot": _through("parts")}


def _peak_memory() -> int:
    """This process's peak resident memory in bytes (VmHWM: unlike ru_maxrss, not inherited across fork/exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(kind: str, path: Path, threads: int, start: float, end: float) -> dict[str, Any]:
    command = [sys.executable, __file__, "--measure", kind, "--path", str(path), "--threads", str(threads),
               "--start", repr(start), "--end", repr(end)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} on {path} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- data --------------------------------------------------------------------------------------------------------------


def prepare(data: Path, records: int, seed: int) -> tuple[Path, Path, dict[str, Any]]:
    from detection.logs.convert import convert_to_parquet
    from tools.generate import generate_corpus
    from tools.progress import progress_bar

    tsv, parquet = data / "tsv", data / "parquet"
    summary_path = tsv / "corpus.json"
    wanted = max(1, records // RECORDS_PER_SESSION)
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    if summary is None or summary.get("sessions") != wanted or summary.get("seed") != seed:
        with progress_bar("generating", "records", scale=True, always=True) as bar:
            generate_corpus(tsv, wanted, 10, seed, progress=bar)
        summary = json.loads(summary_path.read_text())
        if parquet.exists():
            import shutil

            shutil.rmtree(parquet)
    if not (parquet / "corpus.json").is_file():
        with progress_bar("converting to Parquet", "files", always=True) as bar:
            convert_to_parquet(tsv, parquet, progress=bar)
    return tsv, parquet, summary


# -- report ------------------------------------------------------------------------------------------------------------


def report(results: dict[str, dict[str, dict[str, Any]]], summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"{summary['records']:,} records ({summary['sessions']:,} sessions, {summary['files']} gzip files, "
        f"{summary['bytes'] / 2**20:,.0f} MiB gz), DuckDB threads {meta['threads']}, {meta['cpus']} CPUs, "
        f"load average {meta['load_before'][0]:.2f} before / {meta['load_after'][0]:.2f} after",
        "",
        f"{'format':8s} {'measurement':30s} {'seconds':>8s} {'records/s':>12s} {'x bare':>7s} {'peak MiB':>9s}",
    ]
    for fmt, rows in results.items():
        bare = rows["bare"]["seconds"]
        for kind in MEASUREMENTS:
            row = rows.get(kind)
            if row is None:
                continue
            rate = summary["records"] / row["seconds"]
            lines.append(
                f"{fmt:8s} {LABELS[kind]:30s} {row['seconds']:8.2f} {rate:12,.0f} {bare / row['seconds']:7.2f} "
                f"{row['peak_bytes'] / 2**20:9,.0f}"
            )
    lines.append("")
    for name, ok in targets(results).items():
        lines.append(f"target {name}: {'met' if ok else 'NOT met'}")
    return "\n".join(lines)


def targets(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for fmt, rows in results.items():
        out[f"{fmt}: detect >= 0.7x bare scan"] = rows["bare"]["seconds"] / rows["detect"]["seconds"] >= 0.7
        out[f"{fmt}: detect >= 1.0x baseline rule"] = rows["baseline"]["seconds"] / rows["detect"]["seconds"] >= 1.0
        out[f"{fmt}: detect peak memory <= 1.5 GB"] = rows["detect"]["peak_bytes"] <= 1.5 * 10**9
    return out


def main(argv: list[str] | None = None) -> int:
    from tools.progress import progress_bar

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000, help="records to generate (10 M)")
    parser.add_argument("--data", default=str(ROOT / "out" / "detection-bench"), help="corpus folder (reused)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (the fastest is kept)")
    parser.add_argument("--formats", default="tsv,parquet")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--measure", choices=MEASUREMENTS, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--end", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:  # child process
        print(json.dumps(_measure(args.measure, args.path, args.threads, args.start, args.end)))
        return 0

    meta: dict[str, Any] = {"threads": args.threads, "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    tsv, parquet, summary = prepare(Path(args.data), args.records, args.seed)
    start, end = float(summary["start_epoch"]), float(summary["end_epoch"])
    paths = {"gz TSV": tsv, "Parquet": parquet}
    formats = {"tsv": "gz TSV", "parquet": "Parquet"}
    chosen = [formats[f.strip()] for f in args.formats.split(",") if f.strip()]
    results: dict[str, dict[str, dict[str, Any]]] = {fmt: {} for fmt in chosen}
    steps = [(fmt, kind) for _ in range(args.repeat) for fmt in chosen for kind in MEASUREMENTS]
    with progress_bar("measuring", "runs", always=True) as bar:
        for done, (fmt, kind) in enumerate(steps, start=1):
            row = measure(kind, paths[fmt], args.threads, start, end)
            best = results[fmt].get(kind)
            if best is None or row["seconds"] < best["seconds"]:
                results[fmt][kind] = row
            bar(done, len(steps))
    meta["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps({"summary": summary, "meta": meta, "results": results, "targets": targets(results)}, indent=2))
    else:
        print(report(results, summary, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
