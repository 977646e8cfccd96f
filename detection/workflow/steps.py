"""The detection workflow's steps, free of AWS: what each state of ``statemachine/detection.asl.json`` does.

===================  =======================================================================================
``plan_run``         the window (``window_minutes`` ending at the scheduled time), the run id (the window's end,
                     so a re-run of the same window is the same run and changes nothing), and the Athena
                     statement: ``detection/scoring/sql/features.sql`` wrapped in ``UNLOAD ... WITH (format='PARQUET')``
                     so the per-session table (arrays and rows included) comes back as Parquet, not CSV, with
                     the window bound through ``ExecutionParameters`` (never spliced into the text).
``score_features``   the policy over the per-session table, the verdicts cut into pages (a page is what one
                     Map iteration records), and for each flagged session the ``exp`` of every token it was
                     served with (read from the logged ``<sid>.<jwt>`` segments without verifying them).
``record_page``      one page into the ledger: verdicts recorded, offenders revoked until their tokens expire
                     (:func:`revocation.service.revoke_run`; conditional writes, idempotent).
``publish``          the ledger into the edge store (:func:`revocation.publisher.publish`); ``publish_summary`` is
                     its output in the workflow.
``run_metrics``      what the run reports to CloudWatch.
===================  =======================================================================================

The Lambda handlers (:mod:`detection.workflow.handlers`) move these between S3, the ledger and the edge store; the
local pipeline (:func:`run_local`, used by ``python -m detection demo``) runs the same steps on DuckDB, the SQLite
ledger and the JSON edge store.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from detection.scoring.config import DetectionConfig
from detection.scoring.query import FEATURES, load_query
from edge.store import EdgeStore
from edge.tokens import MAX_TTL_SECONDS
from revocation.ledger.base import Ledger, Revocation, Verdict, run_id_for
from revocation.publisher import Metric, PublishResult, publish, publish_summary, store_metrics
from revocation.service import RunRevocations, revoke_run
from revocation.token_expiry import token_expiry

if TYPE_CHECKING:  # pandas, numpy and pyarrow are imported by the score step only, not by every function's start
    import pyarrow as pa

    from detection.scoring.policy import PolicyResult

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_WINDOW_MINUTES",
    "MAX_TOKENS_PER_SESSION",
    "LocalRun",
    "Metric",
    "PageOutcome",
    "RunPlan",
    "ScoreOutcome",
    "WorkflowInputError",
    "plan_run",
    "page_verdicts",
    "publish_summary",
    "record_page",
    "run_local",
    "run_metrics",
    "run_time",
    "score_features",
]

DEFAULT_WINDOW_MINUTES = 10.0
#: Verdicts per page: a page travels through S3 and one Map iteration records it (ledger writes, ~0.1 s each).
DEFAULT_PAGE_SIZE = 200
#: features.sql lists at most this many tokens per session: a full list means there may be more (see token_exps).
MAX_TOKENS_PER_SESSION = 16
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*\Z")


class WorkflowInputError(ValueError):
    """The workflow was started with input it cannot use (a bad time, window or table name)."""


# -- plan --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPlan:
    """One run: its id, window ``[start, end)`` (epoch seconds), and the Athena statement to execute."""

    run_id: str
    now: float
    window_start: float
    window_end: float
    query: str
    parameters: tuple[str, ...]
    destination: str
    pages: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "now": self.now,
            "window": {"start": self.window_start, "end": self.window_end},
            "query": self.query,
            "parameters": list(self.parameters),
            "destination": self.destination,
            "pages": self.pages,
        }


def run_time(event: Mapping[str, Any], started: str | None = None) -> float:
    """The time a run is for: ``now`` (epoch seconds) or ``scheduled_time`` (ISO 8601, what EventBridge Scheduler
    passes) from the input, else the execution's start time ``started`` (ISO 8601)."""
    if event.get("now") is not None:
        now = event["now"]
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now) or not 0 < now < 2**40:
            raise WorkflowInputError(f"now must be epoch seconds, not {now!r}")
        return float(now)
    text = event.get("scheduled_time") or started
    if not isinstance(text, str) or not text:
        raise WorkflowInputError("the input needs now (epoch seconds) or scheduled_time (ISO 8601)")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise WorkflowInputError(f"{text!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _window_minutes(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WorkflowInputError(f"window_minutes must be a number of minutes, not {value!r}")
    if not 1 <= value <= 24 * 60:
        raise WorkflowInputError(f"window_minutes must be between 1 and 1440, not {value!r}")
    return float(value)


def plan_run(
    now: float,
    *,
    window_minutes: float = DEFAULT_WINDOW_MINUTES,
    table: str,
    results_uri: str,
    execution: str,
    query_parameters: Mapping[str, str] | None = None,
) -> RunPlan:
    """The run for the window of ``window_minutes`` ending at ``now``. ``table`` is the Glue ``database.table`` of
    the real-time logs. Each execution gets a folder of its own under ``results_uri`` (``s3://bucket/prefix/``;
    UNLOAD wants an empty destination): ``features/`` for the unloaded per-session table, ``pages/`` for the
    verdict pages. ``query_parameters``: features.sql's text parameters (``NetworkSettings.query_parameters``; the
    shipped registry's without)."""
    minutes = _window_minutes(window_minutes)
    if not _TABLE_NAME.match(table):
        raise WorkflowInputError(f"table must be database.table of plain identifiers, not {table!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,80}", execution):
        raise WorkflowInputError(f"execution name {execution!r} is not usable in an S3 key")
    if not results_uri.startswith("s3://") and "://" in results_uri:
        raise WorkflowInputError(f"results must go to s3://bucket/prefix/, not {results_uri!r}")
    end = math.floor(float(now))
    start = end - minutes * 60.0
    run_id = run_id_for(end)
    compact = datetime.fromtimestamp(end, UTC).strftime("%Y%m%dT%H%M%SZ")
    root = f"{results_uri.rstrip('/')}/runs/{compact}/{execution.replace(':', '-')}/"
    destination = root + "features/"
    if "'" in destination:
        raise WorkflowInputError(f"results location {results_uri!r} must not contain quotes")
    query = load_query(FEATURES)
    statement = (
        f"UNLOAD (\n{query.athena_sql(table)}\n)\nTO '{destination}'\nWITH (format = 'PARQUET', compression = 'SNAPPY')"
    )
    return RunPlan(
        run_id=run_id,
        now=float(end),
        window_start=start,
        window_end=float(end),
        query=statement,
        parameters=tuple(query.athena_parameters(start, float(end), query_parameters)),
        destination=destination,
        pages=root + "pages/",
    )


# -- score -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreOutcome:
    """The policy's verdicts for one window and the pages the workflow records them in."""

    verdicts: list[Verdict]
    pages: list[list[dict[str, Any]]]
    stats: dict[str, Any]

    @property
    def flagged(self) -> int:
        return len(self.verdicts)


def token_exps(tokens: Sequence[str] | None, now: float) -> list[int | None]:
    """The ``exp`` of each logged token (``None`` when unreadable). A full list (:data:`MAX_TOKENS_PER_SESSION`)
    may hide later tokens: the longest token lifetime from ``now`` is added, so a revocation never ends early."""
    values = [token_expiry(t) for t in tokens or ()]
    if len(values) >= MAX_TOKENS_PER_SESSION:
        values.append(math.ceil(now) + MAX_TTL_SECONDS)
    return values


def score_features(
    features: pa.Table,
    config: DetectionConfig,
    *,
    run_id: str,
    now: float,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> ScoreOutcome:
    """Score the per-session table of one window and cut the verdicts into pages (:func:`page_verdicts`)."""
    from detection.scoring.policy import score_sessions  # pandas: the score step's alone (see page_verdicts)

    result = score_sessions(features, config, run_id=run_id, decided_at=now)
    return page_verdicts(result, features, run_id=run_id, now=now, page_size=page_size)


def page_verdicts(
    result: PolicyResult,
    features: pa.Table,
    *,
    run_id: str,
    now: float,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> ScoreOutcome:
    """The verdicts of a scored window in pages of ``page_size`` items, each ``{"verdict": <ledger verdict>,
    "token_exps": [...]}`` (highest score first), the tokens read from the flagged sessions' rows only."""
    # pyarrow only here and in score_features: the four other steps share this module and start without it
    import pyarrow as pa
    import pyarrow.compute as pc

    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    verdicts = result.verdicts
    tokens: dict[str, list[str]] = {}
    if verdicts and "tokens" in features.column_names:
        flagged = pa.array([v.session_id for v in verdicts], pa.string())
        rows = features.select(["session_id", "tokens"]).filter(pc.is_in(features["session_id"], value_set=flagged))
        for session_id, listed in zip(rows["session_id"].to_pylist(), rows["tokens"].to_pylist(), strict=True):
            tokens[session_id] = list(listed or ())
    items = [
        {
            "verdict": v.model_dump(mode="json"),
            "token_exps": token_exps(tokens.get(v.session_id), now),
        }
        for v in verdicts
    ]
    pages = [items[i : i + page_size] for i in range(0, len(items), page_size)]
    return ScoreOutcome(verdicts=verdicts, pages=pages, stats=result.counts())


# -- record ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageOutcome:
    """What recording one page did: verdicts recorded, sessions revoked, and the records to publish."""

    recorded: int
    unchanged: int
    revoked: list[str]
    suppressed: list[str]
    fresh: list[Revocation]

    def to_dict(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "unchanged": self.unchanged,
            "revoked": len(self.revoked),
            "suppressed": len(self.suppressed),
        }


def record_page(ledger: Ledger, run_id: str, items: Iterable[Mapping[str, Any]], *, now: float) -> PageOutcome:
    """Record one page of :func:`score_features` in the ledger and revoke its offenders (idempotent)."""
    verdicts: list[Mapping[str, Any]] = []
    exps: dict[str, list[float | None]] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("verdict"), Mapping):
            raise WorkflowInputError(f"a page item must be {{'verdict': {{...}}, 'token_exps': [...]}}, not {item!r}")
        verdict = item["verdict"]
        verdicts.append(verdict)
        exps.setdefault(str(verdict.get("session_id")), []).extend(item.get("token_exps") or ())
    run: RunRevocations = revoke_run(ledger, run_id, verdicts, exps, now=now)
    return PageOutcome(
        recorded=run.recorded,
        unchanged=run.unchanged_verdicts,
        revoked=[r.session_id for r in run.revoked],
        suppressed=run.suppressed,
        fresh=run.fresh,
    )


# -- metrics -----------------------------------------------------------------------------------------------------


def run_metrics(
    score: Mapping[str, Any],
    pages: Iterable[Mapping[str, Any]],
    published: Mapping[str, Any] | None,
) -> list[Metric]:
    """The metrics of a finished run, from the score summary, the page outcomes and :func:`publish_summary` (all
    as the JSON the workflow passes between states)."""
    revoked = sum(int(p.get("revoked", 0)) for p in pages)
    metrics = [
        Metric("SessionsScored", float(score.get("sessions_scored", 0))),
        Metric("SessionsFlagged", float(score.get("flagged", 0))),
        Metric("SessionsRevoked", float(revoked)),
    ]
    for reason, count in sorted((score.get("reasons") or {}).items()):
        metrics.append(Metric("SessionsFlaggedByReason", float(count), dimensions={"Reason": str(reason)}))
    if published:
        metrics += store_metrics(published)
    return metrics


# -- the whole pipeline on the embedded default ------------------------------------------------------------------


@dataclass
class LocalRun:
    """One local run of the workflow: the window, the verdicts, what was recorded and published."""

    run_id: str
    window: tuple[float, float]
    score: ScoreOutcome
    pages: list[PageOutcome]
    published: PublishResult
    detect_stats: dict[str, Any]
    features: pa.Table | None = None

    @property
    def metrics(self) -> list[Metric]:
        return run_metrics(self.score.stats, [p.to_dict() for p in self.pages], publish_summary(self.published))


def run_local(
    logs: str | os.PathLike[str],
    ledger: Ledger,
    store: EdgeStore,
    *,
    config: DetectionConfig | None = None,
    now: float | None = None,
    window_minutes: float = DEFAULT_WINDOW_MINUTES,
    fields: Any = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> LocalRun:
    """The workflow's steps on the embedded default: the same SQL on DuckDB (:func:`detection.detect.detect`) over
    the local log input, then score, record page by page, and publish to ``store``."""
    from detection.detect import detect  # DuckDB: imported only for local runs

    config = config or DetectionConfig()
    run = detect(logs, fields=fields, window_minutes=window_minutes, now=now, config=config, keep_features=True)
    start, end = run.window
    run_id = run_id_for(end)
    assert run.features is not None
    score = page_verdicts(run.policy, run.features, run_id=run_id, now=end, page_size=page_size)  # detect scored it
    pages = [record_page(ledger, run_id, page, now=end) for page in score.pages]
    fresh = [r for p in pages for r in p.fresh]
    published = publish(ledger, store, now=end, fresh=fresh)
    return LocalRun(
        run_id=run_id,
        window=(start, end),
        score=score,
        pages=pages,
        published=published,
        detect_stats=run.stats,
        features=run.features,
    )
