"""``python -m detection demo``: the whole pipeline locally, on generated traffic with planted pirates.

1. **Traffic**: :func:`tools.generate.generate_corpus` writes a labelled corpus of CloudFront real-time logs
   (Firehose folders of gzip TSV, ``labels.csv``) under ``<out>/corpus``. Every session carries a real HS256 token
   signed with the generator's synthetic key (the defaults of :func:`tools.scenarios.session_token`).
2. **Edge store**: that key is published as ``k:<kid>`` in the local edge store ``<out>/edge-store.json``, so the
   edge function accepts the logged tokens as the viewers' own.
3. **Workflow**: :func:`detection.workflow.steps.run_local` runs the detection workflow's steps on the embedded default
   (the Athena SQL on DuckDB, the policy, the SQLite ledger ``<out>/ledger.sqlite``, publish into the edge store).
4. **Evaluation**: the revocations against the generator's labels (precision, recall).
5. **Edge replay**: one logged request of every revoked pirate session and of a sample of legit sessions is sent
   again through the real CloudFront Function (``edge/viewer_request.js`` under node) with the viewer's address,
   user agent and country header, just after the run: revoked pirates must get ``403 revoked``, legit viewers 200.
6. **Report**: ``<out>/report.html`` (:mod:`tools.report`), and ``<out>/summary.json``.

Exit 0 when every replay got what it should, 1 otherwise (a legit viewer denied, a revoked pirate allowed).
The output folder is the demo's own: a second run into it replaces what the first wrote (a folder that was not made
by the demo and is not empty is refused).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "DEFAULT_LEGIT_SAMPLE",
    "DEFAULT_MINUTES",
    "DEFAULT_OUT",
    "DEFAULT_SEED",
    "DEFAULT_SESSIONS",
    "DemoError",
    "DemoResult",
    "add_arguments",
    "corpus_signing_key",
    "main",
    "run_demo",
]

DEFAULT_OUT = "out/demo"
DEFAULT_SESSIONS = 1500
DEFAULT_MINUTES = 10.0
DEFAULT_SEED = 2026
DEFAULT_LEGIT_SAMPLE = 200
#: The replayed requests are sent this long after the run's window end (the "next request" after the publish).
REPLAY_DELAY_SECONDS = 30.0
#: The file that marks a folder as the demo's: the next run replaces everything in it.
MARKER = ".media-shield-demo"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class DemoError(ValueError):
    """The demo cannot run with these arguments (printed as ``error: ...``, exit 2)."""


# -- arguments -----------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}; replaced on re-runs)")
    add("--sessions", type=int, default=DEFAULT_SESSIONS, help=f"sessions to generate (default {DEFAULT_SESSIONS})")
    add("--minutes", type=float, default=DEFAULT_MINUTES,
        help=f"minutes of traffic, also the detection window (default {DEFAULT_MINUTES:g})")  # fmt: skip
    add("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    add("--legit-sample", type=int, default=DEFAULT_LEGIT_SAMPLE,
        help=f"legit sessions replayed through the edge function (default {DEFAULT_LEGIT_SAMPLE})")  # fmt: skip
    add("--pirate-share", type=float, help="fraction of pirate sessions (default: the generator's)")


def main(args: argparse.Namespace) -> int:
    """The ``demo`` subcommand."""
    try:
        result = run_demo(
            args.out,
            sessions=args.sessions,
            minutes=args.minutes,
            seed=args.seed,
            legit_sample=args.legit_sample,
            pirate_share=args.pirate_share,
        )
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK if result.passed else EXIT_FAILED


# -- progress ------------------------------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    note: str = ""


class Progress:
    """One line per step: ``[i/n] name ... <elapsed> s  <note>``; on a terminal the line is updated while the step
    runs (``tick``)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.steps: list[Step] = []
        self.live = bool(getattr(stream, "isatty", lambda: False)())
        self._label = ""
        self._started = 0.0

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        step = Step(name)
        self._label = f"[{len(self.steps) + 1}/{self.total}] {name:<36}"
        self._started = time.perf_counter()
        if self.live:
            self.stream.write(self._label + " ...")
            self.stream.flush()
        try:
            yield step
        finally:
            step.seconds = time.perf_counter() - self._started
            self.steps.append(step)
            self._write(f"{self._label} {step.seconds:6.2f} s  {step.note}", end="\n")

    def tick(self, text: str) -> None:
        if self.live:
            self._write(f"{self._label} {time.perf_counter() - self._started:6.2f} s  {text}", end="")

    def _write(self, text: str, end: str) -> None:
        prefix = "\r\033[K" if self.live else ""
        self.stream.write(prefix + text + end)
        self.stream.flush()


# -- the pieces ----------------------------------------------------------------------------------------------------


def corpus_signing_key() -> Any:
    """The key the corpus generator signs its tokens with, as an :class:`edge.keys.SigningKey`."""
    from edge.keys import SigningKey
    from tools.scenarios import DEFAULT_KEY, DEFAULT_KID

    return SigningKey(kid=DEFAULT_KID, secret=DEFAULT_KEY)


def _read_labels(corpus: Path) -> dict[str, dict[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(corpus / "labels.parquet", columns=["session_id", "label", "kind", "requests_2xx"])
    return {row["session_id"]: row for row in table.to_pylist()}


def _evaluate(labels: dict[str, dict[str, Any]], revoked: set[str]) -> dict[str, Any]:
    """Revocations against the labels, over the sessions with at least one served request (as ``evaluate`` does)."""
    from tools.evaluate import Metrics

    metrics = Metrics()
    missed = []
    for sid, row in labels.items():
        if not row["requests_2xx"]:
            continue
        pirate, hit = row["label"] == "pirate", sid in revoked
        if pirate and hit:
            metrics.tp += 1
        elif pirate:
            metrics.fn += 1
            missed.append({"session_id": sid, "kind": row["kind"]})
        elif hit:
            metrics.fp += 1
        else:
            metrics.tn += 1
    return {**metrics.to_dict(), "missed": sorted(missed, key=lambda m: m["session_id"])}


def _replay_choice(labels: dict[str, dict[str, Any]], revoked: set[str], sample: int, seed: int) -> dict[str, str]:
    """``session_id -> group``: every revoked pirate session ("pirate"), and legit sessions ("legit"): a seeded
    sample of ``sample`` of them, plus every legit session that was revoked (a false positive: a viewer the demo
    must show being denied)."""
    import numpy as np

    chosen = {sid: "pirate" for sid in sorted(revoked) if labels.get(sid, {}).get("label") == "pirate"}
    legit = sorted(sid for sid, row in labels.items() if row["label"] == "legit" and row["requests_2xx"])
    rng = np.random.default_rng([seed, 7])
    picked = rng.choice(len(legit), size=min(sample, len(legit)), replace=False) if legit and sample > 0 else []
    for index in sorted(int(i) for i in picked):
        chosen[legit[index]] = "legit"
    for sid in sorted(revoked):
        if labels.get(sid, {}).get("label") == "legit":
            chosen[sid] = "legit"
    return chosen


def _replay(
    requests: Any,
    slices: dict[str, tuple[int, int]],
    chosen: dict[str, str],
    labels: dict[str, dict[str, Any]],
    revoked: set[str],
    *,
    store_path: Path,
    at: float,
    tick: Callable[[str], None],
) -> list[Any]:
    """Replay the last served request of each chosen session through the real edge function at ``at`` (or, if the
    token has expired by then, at the request's own time)."""
    from urllib.parse import unquote

    from edge.binding import Viewer
    from edge.node_runtime import EdgeFunctionRunner
    from revocation.token_expiry import token_expiry
    from tools.report import ReplayRow

    status = requests["sc_status"].to_pylist()
    rows: list[ReplayRow] = []
    with EdgeFunctionRunner() as runner:
        for n, (sid, group) in enumerate(chosen.items(), 1):
            if sid not in slices:
                continue
            start, stop = slices[sid]
            served = [i for i in range(start, stop) if status[i] is not None and 200 <= status[i] < 300]
            if not served:
                continue
            i = served[-1]
            record = {name: requests[name][i].as_py() for name in requests.column_names}
            uri = record["cs_uri_stem"]
            exp = token_expiry(uri)
            when = at if exp is None or at < exp else float(record["timestamp"])
            user_agent = unquote(record["cs_user_agent"] or "")
            headers = {"user-agent": user_agent}
            if record["c_country"]:
                headers["cloudfront-viewer-country"] = record["c_country"]
            decision = runner.decide(uri, Viewer.of(record["c_ip"], headers), when, store_path=store_path)
            rows.append(
                ReplayRow(
                    session_id=sid,
                    group=group,
                    kind=str(labels.get(sid, {}).get("kind", "?")),
                    revoked=sid in revoked,
                    uri=uri,
                    ip=record["c_ip"] or "",
                    country=record["c_country"] or "",
                    user_agent=user_agent,
                    at=when,
                    status=decision.status,
                    reason=decision.reason,
                    expected="403 revoked" if group == "pirate" else "200",
                )
            )
            if n % 25 == 0:
                tick(f"{n}/{len(chosen)} requests")
    return rows


# -- the demo ------------------------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What a demo run did; ``passed`` when every replayed request got the expected answer."""

    out: Path
    report: Path
    summary: dict[str, Any]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def run_demo(
    out: str | os.PathLike[str] = DEFAULT_OUT,
    *,
    sessions: int = DEFAULT_SESSIONS,
    minutes: float = DEFAULT_MINUTES,
    seed: int = DEFAULT_SEED,
    legit_sample: int = DEFAULT_LEGIT_SAMPLE,
    pirate_share: float | None = None,
    stream: TextIO | None = None,
) -> DemoResult:
    """Run the demo into ``out`` (see the module docstring), printing progress and the summary to ``stream``."""
    stream = stream or sys.stdout
    if sessions < 1:
        raise DemoError("--sessions must be at least 1")
    if not math.isfinite(minutes) or not 1 <= minutes <= 24 * 60:
        raise DemoError("--minutes must be between 1 and 1440")
    if legit_sample < 0:
        raise DemoError("--legit-sample must not be negative")
    if pirate_share is not None and not 0 <= pirate_share <= 1:
        raise DemoError("--pirate-share must be between 0 and 1")
    from tools.output_paths import OutputPathError, output_folder

    try:  # a folder the demo made is emptied of its earlier run; any other non-empty folder is refused
        root = output_folder(out, marker=MARKER, command="python -m detection demo")
    except OutputPathError as exc:
        raise DemoError(str(exc)) from None
    corpus, ledger_path, store_path = root / "corpus", root / "ledger.sqlite", root / "edge-store.json"
    started = time.perf_counter()
    progress = Progress(6, stream)
    print(f"media shield demo: {sessions} sessions x {minutes:g} min, seed {seed} -> {root}", file=stream)

    from tools.generate import generate_corpus

    with progress.step("generate traffic") as step:
        summary = generate_corpus(
            corpus, sessions, minutes, seed, pirate_share=pirate_share,
            progress=lambda done, total: progress.tick(f"{done}/{total} records"),
        )  # fmt: skip
        step.note = f"{summary.records} records in {summary.files} files, {summary.pirates} pirates planted"

    from detection.scoring.config import DetectionConfig
    from detection.workflow.steps import run_local
    from edge.store import open_store
    from revocation.ledger import open_ledger

    with progress.step("publish the signing key") as step:
        key = corpus_signing_key()
        store = open_store(store_path)
        store.put(key.store_key, key.encoded)
        step.note = f"{key.store_key} (the generator's key) -> {store_path}"

    config = DetectionConfig()
    with progress.step("detect, record, publish (run_local)") as step:
        with open_ledger(ledger_path) as ledger:
            run = run_local(corpus, ledger, store, config=config, window_minutes=minutes)
        revoked = {sid for page in run.pages for sid in page.revoked}
        step.note = (
            f"{run.score.stats['sessions_scored']} scored, {run.score.flagged} flagged, {len(revoked)} revoked, "
            f"{run.published.puts} published"
        )

    labels = _read_labels(corpus)
    evaluation = _evaluate(labels, revoked)
    chosen = _replay_choice(labels, revoked, legit_sample, seed)
    flagged_ids = [v.session_id for v in run.score.verdicts]

    from tools.report import load_session_requests, session_slices

    with progress.step("read the sessions' log records") as step:
        requests = load_session_requests(corpus, set(flagged_ids) | set(chosen), window=run.window)
        slices = session_slices(requests)
        step.note = f"{requests.num_rows} records of {len(set(flagged_ids) | set(chosen))} sessions (DuckDB)"

    replay_at = run.window[1] + REPLAY_DELAY_SECONDS
    with progress.step("replay through the edge function") as step:
        replays = _replay(
            requests, slices, chosen, labels, revoked, store_path=store_path, at=replay_at, tick=progress.tick
        )
        step.note = f"{len(replays)} requests through edge/viewer_request.js (node)"

    groups = {g: [r for r in replays if r.group == g] for g in ("pirate", "legit")}
    failures = [
        f"{r.group} session {r.session_id} ({r.kind}) got {r.status} {r.reason}, expected {r.expected}"
        for r in replays
        if not r.ok
    ]
    pirates_revoked = sum(1 for sid in revoked if labels.get(sid, {}).get("label") == "pirate")
    if len(groups["pirate"]) != pirates_revoked:
        failures.append(f"only {len(groups['pirate'])} of {pirates_revoked} revoked pirate sessions were replayed")

    run_info = {
        "run_id": run.run_id,
        "window_start": run.window[0],
        "window_end": run.window[1],
        "window_minutes": round((run.window[1] - run.window[0]) / 60.0, 3),
        "records": run.detect_stats["records_read"],
        "records_skipped": run.detect_stats["records_skipped_total"],
        "sessions": summary.sessions,
        "pirates": summary.pirates,
        "sessions_scored": run.score.stats["sessions_scored"],
        "flagged": run.score.flagged,
        "revoke": run.score.stats["revoke"],
        "flag": run.score.stats["flag"],
        "monitor": run.score.stats["monitor"],
        "revoked": len(revoked),
        "published": run.published.published,
    }

    with progress.step("write the report") as step:
        report_path = _report(root / "report.html", run, config, labels, requests, replays, evaluation, run_info,
                              store.items("r:"), progress)  # fmt: skip
        step.note = f"{report_path} ({report_path.stat().st_size // 1024} KiB)"

    total = time.perf_counter() - started
    result_summary = {
        **run_info,
        "seed": seed,
        "evaluation": evaluation,
        "replay": {g: {"total": len(rows), "ok": sum(r.ok for r in rows)} for g, rows in groups.items()},
        "replays": [r.to_dict() for r in replays],
        "revoked_sessions": sorted(revoked),
        "flagged_sessions": flagged_ids,
        "steps": [{"name": s.name, "seconds": round(s.seconds, 3), "note": s.note} for s in progress.steps],
        "seconds": round(total, 3),
        "report": str(report_path),
        "failures": failures,
    }
    (root / "summary.json").write_text(json.dumps(result_summary, indent=2) + "\n", encoding="utf-8")
    _print_summary(result_summary, stream)
    return DemoResult(out=root, report=report_path, summary=result_summary, failures=failures)


def _report(
    path: Path,
    run: Any,
    config: Any,
    labels: dict[str, dict[str, Any]],
    requests: Any,
    replays: list[Any],
    evaluation: dict[str, Any],
    run_info: dict[str, Any],
    revocation_items: dict[str, str],
    progress: Progress,
) -> Path:
    from tools.report import ReportData, chart_reasons, chart_scores, write_report
    from tools.session_cards import draw_timelines, flagged_sessions

    flagged = flagged_sessions(
        [v.to_dict() for v in run.score.verdicts], ledger=str(path.parent / "ledger.sqlite"),
        store=str(path.parent / "edge-store.json"), labels=labels, replays={r.session_id: r for r in replays},
        revocations={key[2:]: value for key, value in revocation_items.items()},
    )  # fmt: skip
    draw_timelines(flagged, requests, run_at=run.window[1], tick=progress.tick)
    reason_counts: dict[str, dict[str, int]] = {}
    scores: dict[str, list[float]] = {}
    for row in flagged.rows:
        scores.setdefault(row["label"], []).append(float(row["score"]))
        for code in row["codes"]:
            bucket = reason_counts.setdefault(code, {})
            bucket[row["label"]] = bucket.get(row["label"], 0) + 1
    charts = {}
    if flagged.rows:
        charts["scores"] = chart_scores(scores, revoke_at=config.revoke_score, flag_at=config.flag_score)
        charts["reasons"] = chart_reasons(reason_counts)
    steps = [{"name": s.name, "seconds": s.seconds, "note": s.note} for s in progress.steps]
    data = ReportData(
        title="media shield: local pipeline demo",
        run=run_info,
        steps=steps,
        evaluation=evaluation,
        flagged=flagged,
        replays=replays,
        charts=charts,
        detect_timings={k: float(v) for k, v in run.detect_stats.get("timings", {}).items()},
        notes=[
            "Traffic is synthetic (python -m detection generate); labels are the generator's ground truth.",
            "Replayed requests are sent "
            f"{REPLAY_DELAY_SECONDS:g} s after the window's end, with the token the session was served with.",
        ],
    )
    return write_report(path, data)


def _print_summary(summary: dict[str, Any], stream: TextIO) -> None:
    e = summary["evaluation"]
    replay = summary["replay"]
    width = 34

    def line(label: str, value: str) -> None:
        print(f"  {label:<{width}} {value}", file=stream)

    print("\nsummary", file=stream)
    records, minutes = summary["records"], summary["window_minutes"]
    line("sessions", f"{summary['sessions']} ({records} log records, window {minutes:g} min)")
    line("pirates planted", str(summary["pirates"]))
    line("flagged", f"{summary['flagged']} ({summary['revoke']} revoke, {summary['flag']} flag, "
                    f"{summary['monitor']} monitor)")  # fmt: skip
    line("revoked (ledger) / published", f"{summary['revoked']} / {summary['published']}")
    line("precision / recall", f"{e['precision']:.3f} / {e['recall']:.3f} (TP {e['tp']}, FP {e['fp']}, FN {e['fn']})")
    p, g = replay["pirate"], replay["legit"]
    line("edge replay: revoked pirates", f"403 revoked {p['ok']}/{p['total']}")
    line("edge replay: legit viewers", f"200 {g['ok']}/{g['total']}")
    for index, step in enumerate(summary["steps"]):
        line("timings" if index == 0 else "", f"{step['seconds']:6.2f} s  {step['name']}")
    line("total", f"{summary['seconds']:6.2f} s")
    print(f"\nreport: {summary['report']}", file=stream)
    if summary["failures"]:
        print(f"demo FAILED ({len(summary['failures'])}):", file=stream)
        for failure in summary["failures"][:20]:
            print(f"  {failure}", file=stream)
    else:
        print("demo passed", file=stream)
    stream.flush()
