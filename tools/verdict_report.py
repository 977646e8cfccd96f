"""The report for your own logs: ``python -m detection report --verdicts FILE --logs PATH --out report.html`` (and
``detect --report FILE``). One self-contained HTML file an operator reads first thing:

- what the run saw (window and times in ISO 8601 UTC, records, sessions scored, flagged by action), a table of
  contents, and the two charts (reasons, scores) sized for a 1400 px screen;
- the flagged sessions as :mod:`tools.session_cards` draws them (an index filtered by reason and action, the first
  500 in full with the command that lifts a revocation, timelines for the first 50), so that 10 000 flagged
  sessions make a page a browser opens at once;
- the near misses: sessions not flagged that one minute less of evidence would have.

Values from the logs are text (Jinja2's autoescape, nothing marked safe), as in :mod:`tools.report`, whose
figures and session loading it reuses.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detection.scoring.config import DetectionConfig
from tools.report import iso_utc as iso
from tools.session_cards import TIMELINES, FlaggedSessions, draw_timelines, flagged_sessions

#: Sessions listed as near misses.
NEAR_MISSES = 20
TEMPLATE = "verdicts.html.j2"


class ReportInputError(ValueError):
    """A verdicts file that is not what detect writes."""


@dataclass
class VerdictReport:
    title: str
    summary: dict[str, Any]
    flagged: FlaggedSessions
    charts: dict[str, str] = field(default_factory=dict)
    near_misses: list[dict[str, Any]] | None = None  # None: not computed (no feature table at hand)
    ledger: str = "LEDGER.sqlite"
    store: str = "STORE.json"


def read_verdicts(path: str | os.PathLike[str]) -> dict[str, Any]:
    """detect's JSON (``{"sessions": [...], "stats": {...}}``), or :class:`ReportInputError` saying what is wrong."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportInputError(f"cannot read the verdicts {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ReportInputError(f"{path} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("sessions"), list):
        raise ReportInputError(f"{path} is not what detect writes: no \"sessions\" list")
    for n, session in enumerate(document["sessions"]):
        if not (isinstance(session, dict) and session.get("session_id")
                and isinstance(session.get("reasons", []), list)
                and isinstance(session.get("score", 0), (int, float)) and not isinstance(session.get("score"), bool)):
            raise ReportInputError(f"{path}: session {n} is not a verdict as detect writes it (session_id, score, "
                                   "reasons)")
    return document


def build_report(document: dict[str, Any], logs: str | os.PathLike[str] | None = None, *, fields: Any = None,
                 ledger: str = "LEDGER.sqlite", store: str = "STORE.json", revocations: dict[str, str] | None = None,
                 config: DetectionConfig | None = None, features: Any = None) -> VerdictReport:
    """The report of one detect run (its JSON), with the timelines read from ``logs`` when given, the edge store's
    ``revocations`` (``r:`` values by session id) when known, and the near misses when the run's feature table is
    (``features``)."""
    sessions = document["sessions"]
    stats = document.get("stats") or {}
    span = stats.get("window") or {}
    window = [span.get("start"), span.get("end")] if isinstance(span, dict) else [None, None]
    flagged = flagged_sessions(sessions, ledger=ledger, store=store, revocations=revocations)
    summary = {
        "window_start": iso(window[0]), "window_end": iso(window[1]),
        "records": stats.get("records_read"), "skipped": stats.get("records_skipped_total"),
        "sessions_scored": stats.get("sessions_scored"), "flagged": len(sessions),
        "by_action": dict(sorted(Counter(r["action"] for r in flagged.rows).items())),
        "network_registry": stats.get("network_registry"),
    }  # fmt: skip
    report = VerdictReport(title="Flagged sessions", summary=summary, flagged=flagged, ledger=ledger, store=store)
    if flagged.rows:
        from tools.report import chart_reasons, chart_scores

        report.charts["reasons"] = chart_reasons({code: {"unknown": n} for code, n in flagged.reason_counts.items()})
        thresholds = config or DetectionConfig()  # detect's JSON does not carry the config's thresholds
        report.charts["scores"] = chart_scores({"unknown": [float(r["score"] or 0) for r in flagged.rows]},
                                               revoke_at=thresholds.revoke_score, flag_at=thresholds.flag_score)
    if logs is not None and flagged.cards:
        from tools.report import load_session_requests

        bounds = (float(window[0]), float(window[1])) if None not in window else None
        drawn = [c["session_id"] for c in flagged.cards[:TIMELINES]]
        draw_timelines(flagged, load_session_requests(logs, drawn, window=bounds, fields=fields))
    if features is not None:
        report.near_misses = near_misses(features, {r["session_id"] for r in flagged.rows}, config)
    return report


def near_misses(features: Any, flagged: set[str], config: DetectionConfig | None = None, *,
                limit: int = NEAR_MISSES) -> list[dict[str, Any]]:
    """The sessions not ``flagged`` that one minute less of evidence would have flagged: the policy run again with
    every reason's ``min_minutes`` one lower (at least 1), highest score first, each with the reasons that would
    have fired."""
    from detection.scoring.policy import score_sessions
    from detection.scoring.reasons import REASONS

    config = config or DetectionConfig()
    update: dict[str, Any] = {}
    for reason in REASONS:
        section = config.section(reason.code)
        if "min_minutes" in type(section).model_fields and section.min_minutes > 1:
            update[reason.code] = section.model_copy(update={"min_minutes": section.min_minutes - 1})
    relaxed = score_sessions(features, config.model_copy(update=update), run_id="report-relaxed", decided_at=0)
    return [
        {"session_id": v.session_id, "score": v.score,
         "reasons": [{"code": r.code, "detail": r.detail} for r in v.reasons if r.code in update]}
        for v in relaxed.verdicts if v.session_id not in flagged and any(r.code in update for r in v.reasons)
    ][:limit]


def render(report: VerdictReport) -> str:
    from tools.report import template_environment

    return template_environment().get_template(TEMPLATE).render(report=report,
                                                                generated=iso(datetime.now(UTC).timestamp()))


def write_report(path: str | os.PathLike[str], report: VerdictReport) -> Path:
    from tools.report import write_html

    return write_html(path, render(report))
