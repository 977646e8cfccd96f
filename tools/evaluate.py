"""Evaluate the detection on a labelled corpus, side by side with the existing AWS solution's rule.

``evaluate_corpus(dir)`` reads the corpus's ``labels.csv`` (``session_id, label, kind``, and ``requests_2xx``), cuts
the corpus's time span (``corpus.json``, or the records' own span) into consecutive windows of ``window_minutes``
ending at its end, and runs, on each window, the detection (features SQL + policy) and the baseline rule
(``detection/scoring/sql/baseline.sql``) on the same DuckDB connection and input. A session counts as detected when a
window revokes it (``revoke``, or ``monitor`` in monitor mode) - what would block a viewer; sessions only
flagged for review are counted apart. The baseline detects a session when it flags it (score above 2.2).

Only sessions with at least one served request in the corpus are judged (``requests_2xx > 0``); a session the
policy did not score (too few requests) counts as not detected.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.compute as pc

from detection.detect import DEFAULT_MEMORY_LIMIT, DEFAULT_WINDOW_MINUTES, run_window
from detection.logs.reader import InputError, open_logs
from detection.scoring.config import DetectionConfig
from detection.scoring.query import BASELINE, load_query
from revocation.ledger.base import Action

__all__ = ["Evaluation", "KindResult", "Metrics", "evaluate_corpus", "format_table", "kind_rows", "targets_line"]


@dataclass
class Metrics:
    """Confusion counts over the judged sessions, and the rates derived from them."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def false_positive_rate(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "precision": round(self.precision, 5),
            "recall": round(self.recall, 5),
            "false_positive_rate": round(self.false_positive_rate, 6),
        }


@dataclass
class KindResult:
    kind: str
    label: str
    sessions: int
    detected: int  # revoked by the policy (or monitor)
    flagged_only: int  # flagged for review, not revoked
    baseline: int  # flagged by the baseline rule

    @property
    def rate(self) -> float:
        """Revoked by the policy, of the kind's sessions: the recall of a pirate kind, the false-positive rate of a
        legit one."""
        return self.detected / self.sessions if self.sessions else 0.0

    @property
    def baseline_rate(self) -> float:
        return self.baseline / self.sessions if self.sessions else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": round(self.rate, 6), "baseline_rate": round(self.baseline_rate, 6)}


@dataclass
class Evaluation:
    corpus: str
    windows: list[tuple[float, float]]
    sessions: int
    legit: int
    pirates: int
    policy: Metrics
    baseline: Metrics
    flagged_only: dict[str, int]  # label -> sessions flagged for review but not revoked
    kinds: list[KindResult]
    records_read: int
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)

    def targets(self) -> dict[str, bool]:
        """The issue's targets: recall >= 0.98, FPR <= 0.1 % of legit sessions, strictly better than the baseline
        on both."""
        return {
            "recall_at_least_0.98": self.policy.recall >= 0.98,
            "fpr_at_most_0.1pct": self.policy.false_positive_rate <= 0.001,
            "recall_better_than_baseline": self.policy.recall > self.baseline.recall,
            "fpr_better_than_baseline": self.policy.false_positive_rate < self.baseline.false_positive_rate,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus,
            "windows": [list(w) for w in self.windows],
            "sessions": self.sessions,
            "legit": self.legit,
            "pirates": self.pirates,
            "policy": self.policy.to_dict(),
            "baseline": self.baseline.to_dict(),
            "flagged_only": dict(self.flagged_only),
            "kinds": [k.to_dict() for k in self.kinds],
            "targets": self.targets(),
            "records_read": self.records_read,
            "seconds": round(self.seconds, 3),
            "stats": self.stats,
        }


def _span(root: Path, logs: Any) -> tuple[float, float]:
    summary = root / "corpus.json"
    if summary.is_file():
        data = json.loads(summary.read_text(encoding="utf-8"))
        if "start_epoch" in data and "end_epoch" in data:
            return float(data["start_epoch"]), float(data["end_epoch"])
    newest = logs.newest_timestamp()
    if newest is None:
        raise InputError(f"no log record in {root}")
    oldest = logs.con.execute(f"SELECT min(timestamp) FROM {logs.view}").fetchone()[0]
    return float(oldest), newest + 0.001


def _windows(start: float, end: float, minutes: float) -> list[tuple[float, float]]:
    length = minutes * 60.0
    count = max(1, math.ceil((end - start) / length - 1e-9))
    return [(end - (i + 1) * length, end - i * length) for i in reversed(range(count))]


def _metrics(truth: pd.Series, decided: pd.Series) -> Metrics:
    pirate = truth == "pirate"
    return Metrics(
        tp=int((pirate & decided).sum()),
        fp=int((~pirate & decided).sum()),
        fn=int((pirate & ~decided).sum()),
        tn=int((~pirate & ~decided).sum()),
    )


def evaluate_corpus(
    corpus: str | os.PathLike[str],
    *,
    window_minutes: float = DEFAULT_WINDOW_MINUTES,
    config: DetectionConfig | None = None,
    logs: str | os.PathLike[str] | None = None,
) -> Evaluation:
    """Evaluate the policy and the baseline on the labelled corpus at ``corpus`` (``logs``: the log folder when it
    is not the corpus folder itself, e.g. its Parquet conversion)."""
    started = time.perf_counter()
    root = Path(corpus)
    labels_path = root / "labels.csv"
    if not labels_path.is_file():
        raise InputError(f"{root} has no labels.csv: not a labelled corpus (python -m detection generate makes one)")
    labels = pd.read_csv(labels_path, dtype={"session_id": str})
    for column in ("session_id", "label", "kind"):
        if column not in labels.columns:
            raise InputError(f"{labels_path} lacks the column {column!r}")
    if "requests_2xx" in labels.columns:
        labels = labels[labels["requests_2xx"] > 0]
    config = config or DetectionConfig()
    revoked: set[str] = set()
    flagged: set[str] = set()
    baseline: set[str] = set()
    records = 0
    timings = {"features_sql": 0.0, "policy": 0.0, "baseline_sql": 0.0}
    spill = tempfile.TemporaryDirectory(prefix="evaluate-spill-")
    con = duckdb.connect(config={"memory_limit": DEFAULT_MEMORY_LIMIT, "temp_directory": spill.name})
    con.execute("SET enable_progress_bar = false")
    try:
        with open_logs(logs or root, con) as log_input:
            windows = _windows(*_span(root, log_input), window_minutes)
            query = load_query(BASELINE)
            for window in windows:
                policy, stats, _, relation = run_window(log_input, window, config, require_records=False)
                records += stats["records_read"]
                for key in ("features_sql", "policy"):
                    timings[key] += stats["timings"][key]
                for verdict in policy.verdicts:
                    if verdict.action in (Action.REVOKE, Action.MONITOR):
                        revoked.add(verdict.session_id)
                    else:
                        flagged.add(verdict.session_id)
                clock = time.perf_counter()
                table = log_input.run(lambda c: query.run(c, window, relation=relation))
                timings["baseline_sql"] += time.perf_counter() - clock
                hits = table.filter(pc.fill_null(table["flagged"], False))["session_id"].to_pylist()
                baseline.update(hits)
    finally:
        con.close()
        spill.cleanup()
    flagged -= revoked
    truth = labels["label"]
    detected = labels["session_id"].isin(revoked)
    by_baseline = labels["session_id"].isin(baseline)
    only = labels["session_id"].isin(flagged)
    kinds = []
    for kind, group in labels.groupby("kind", sort=False):
        idx = group.index
        kinds.append(
            KindResult(
                kind=str(kind),
                label=str(group["label"].iloc[0]),
                sessions=len(group),
                detected=int(detected[idx].sum()),
                flagged_only=int(only[idx].sum()),
                baseline=int(by_baseline[idx].sum()),
            )
        )
    kinds.sort(key=lambda k: (k.label != "legit", k.kind))
    return Evaluation(
        corpus=str(root),
        windows=windows,
        sessions=len(labels),
        legit=int((truth == "legit").sum()),
        pirates=int((truth == "pirate").sum()),
        policy=_metrics(truth, detected),
        baseline=_metrics(truth, by_baseline),
        flagged_only={
            "legit": int((only & (truth == "legit")).sum()),
            "pirate": int((only & (truth == "pirate")).sum()),
        },
        kinds=kinds,
        records_read=records,
        seconds=time.perf_counter() - started,
        stats={"timings": {k: round(v, 3) for k, v in timings.items()}},
    )


def _pct(value: float) -> str:
    return f"{value * 100:.2f} %"


def format_table(evaluation: Evaluation) -> str:
    """The evaluation as a plain-text table (the README's format)."""
    p, b = evaluation.policy, evaluation.baseline
    lines = [
        f"corpus {evaluation.corpus}: {evaluation.sessions} sessions ({evaluation.legit} legit, "
        f"{evaluation.pirates} pirates), {evaluation.records_read} records, {len(evaluation.windows)} window(s)",
        "",
        f"{'':24s} {'detection':>12s} {'baseline rule':>14s}",
        f"{'precision':24s} {p.precision:>12.4f} {b.precision:>14.4f}",
        f"{'recall':24s} {p.recall:>12.4f} {b.recall:>14.4f}",
        f"{'false-positive rate':24s} {_pct(p.false_positive_rate):>12s} {_pct(b.false_positive_rate):>14s}",
        f"{'true positives':24s} {p.tp:>12d} {b.tp:>14d}",
        f"{'false positives':24s} {p.fp:>12d} {b.fp:>14d}",
        f"{'missed pirates':24s} {p.fn:>12d} {b.fn:>14d}",
        "",
        *kind_rows(evaluation.kinds),
        "",
        targets_line(evaluation.targets()),
    ]
    return "\n".join(lines)


def kind_rows(kinds: Iterable[KindResult]) -> list[str]:
    """The per-kind table: sessions, revoked by the detection, flagged for review only, flagged by the rule, and the
    rates (revoked of the kind's sessions: recall for a pirate kind, false-positive rate for a legit one)."""
    rows = [f"{'kind':18s} {'label':7s} {'sessions':>8s} {'detected':>9s} {'flag only':>9s} {'baseline':>9s} "
            f"{'rate':>8s} {'baseline rate':>13s}"]
    rows += [f"{k.kind:18s} {k.label:7s} {k.sessions:>8d} {k.detected:>9d} {k.flagged_only:>9d} {k.baseline:>9d} "
             f"{k.rate:>8.2%} {k.baseline_rate:>13.2%}" for k in kinds]
    rows.append("rate: revoked of the kind's sessions (a pirate kind: recall; a legit kind: false-positive rate)")
    return rows


def targets_line(targets: Mapping[str, bool]) -> str:
    return "targets: " + ", ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in targets.items())
