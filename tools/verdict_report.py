"""The report for your own logs: ``python -m detection report --verdicts FILE --logs PATH --out report.html`` (and
``detect --report FILE``). One self-contained HTML file an operator reads first thing:

- what the run saw (window and times in ISO 8601 UTC, records, sessions scored, flagged by action), a table of
  contents, and the two charts (reasons, scores) sized for a 1400 px screen;
- a filter by reason and by action;
- every flagged session, highest score first: each reason with the values it saw and the thresholds it compared
  them with, its features, every user agent (three shown, the rest folded with their count), a timeline of its
  requests for the first :data:`TIMELINES` sessions, and for a revoked one the command that lifts it;
- past :data:`CARDS` sessions, the rest in one compact table, so that 10 000 flagged sessions make a page a browser
  opens at once.

Values from the logs are text (Jinja2's autoescape, nothing marked safe), as in :mod:`tools.report`, whose
figures and session loading it reuses.
"""

from __future__ import annotations

import json
import os
import shlex
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from core.files import replace_file
from detection.scoring.config import DetectionConfig
from tools.report import iso_utc as iso

#: Sessions drawn with a timeline of their requests (highest score first): each is an image of about 40 KB.
TIMELINES = 50
#: Sessions shown in full; the rest are rows of one table.
CARDS = 500
#: User agents shown before the rest are folded.
AGENTS_SHOWN = 3
#: Sessions listed as near misses.
NEAR_MISSES = 20
TEMPLATE = "verdicts.html.j2"
#: Values that are times (epoch seconds in the verdicts), shown as ISO 8601.
TIME_KEYS = frozenset({"at", "first_seen", "last_seen", "decided_at", "expires_at", "since", "until"})


class ReportInputError(ValueError):
    """A verdicts file that is not what detect writes."""


@dataclass
class VerdictReport:
    title: str
    summary: dict[str, Any]
    sessions: list[dict[str, Any]]
    rest: list[dict[str, Any]]
    reasons: list[str]
    actions: list[str]
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
    return document


def build_report(document: dict[str, Any], logs: str | os.PathLike[str] | None = None, *, fields: Any = None,
                 ledger: str = "LEDGER.sqlite", store: str = "STORE.json",
                 config: DetectionConfig | None = None, features: Any = None) -> VerdictReport:
    """The report of one detect run (its JSON), with the timelines read from ``logs`` when given, and the near
    misses when the run's feature table is (``features``)."""
    sessions = sorted(document["sessions"], key=lambda s: (-float(s.get("score") or 0), str(s.get("session_id"))))
    stats = document.get("stats") or {}
    span = stats.get("window") or {}
    window = [span.get("start"), span.get("end")] if isinstance(span, dict) else [None, None]
    by_action = Counter(str(s.get("action")) for s in sessions)
    reason_counts = Counter(r.get("code") for s in sessions for r in s.get("reasons") or [])
    summary = {
        "window_start": iso(window[0]), "window_end": iso(window[1]),
        "records": stats.get("records_read"), "skipped": stats.get("records_skipped_total"),
        "sessions_scored": stats.get("sessions_scored"), "flagged": len(sessions),
        "by_action": dict(sorted(by_action.items())), "network_registry": stats.get("network_registry"),
    }  # fmt: skip
    cards = [_card(s, ledger, store) for s in sessions[:CARDS]]
    rest = [{"session_id": s.get("session_id"), "action": s.get("action"), "score": s.get("score"),
             "reasons": [r.get("code") for r in s.get("reasons") or []]} for s in sessions[CARDS:]]
    report = VerdictReport(
        title="Flagged sessions", summary=summary, sessions=cards, rest=rest,
        reasons=sorted(c for c in reason_counts if c), actions=sorted(by_action), ledger=ledger, store=store,
    )  # fmt: skip
    if sessions:
        from tools.report import chart_reasons, chart_scores

        report.charts["reasons"] = chart_reasons({code: {"unknown": n} for code, n in reason_counts.items() if code})
        thresholds = config or DetectionConfig()  # detect's JSON does not carry the config's thresholds
        report.charts["scores"] = chart_scores({"unknown": [float(s.get("score") or 0) for s in sessions]},
                                               revoke_at=thresholds.revoke_score, flag_at=thresholds.flag_score)
    if logs is not None and cards:
        _timelines(report, logs, fields, window)
    if features is not None:
        report.near_misses = near_misses(features, {str(s.get("session_id")) for s in sessions}, config)
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


def _card(session: dict[str, Any], ledger: str, store: str) -> dict[str, Any]:
    features = dict(session.get("features") or {})
    agents = [unquote(str(a)) for a in features.pop("user_agents", None) or []]
    features.pop("per_minute", None)
    for name in ("first_seen", "last_seen"):
        if name in features:
            features[name] = iso(features[name])
    session_id = str(session.get("session_id"))
    lift = None
    if session.get("action") == "revoke":
        lift = (f"python -m detection unrevoke {shlex.quote(session_id)} --ledger {shlex.quote(ledger)} "
                f"--store {shlex.quote(store)} --by \"$USER\"")
    reasons = [{**r, "values": {k: iso(v) if k in TIME_KEYS else v for k, v in (r.get("values") or {}).items()}}
               for r in session.get("reasons") or []]
    return {
        "session_id": session_id, "action": str(session.get("action")), "score": session.get("score"),
        "reasons": reasons, "codes": [r.get("code") for r in session.get("reasons") or []],
        "features": features, "agents_shown": agents[:AGENTS_SHOWN], "agents_folded": agents[AGENTS_SHOWN:],
        "agents_total": max(len(agents), int(features.get("distinct_user_agents") or 0)),
        "agents_listed": len(agents), "decided_at": iso(session.get("decided_at")), "unrevoke": lift,
        "timeline": None, "timeline_note": "",
    }  # fmt: skip


def _timelines(report: VerdictReport, logs: str | os.PathLike[str], fields: Any, window: list[Any]) -> None:
    from tools.report import load_session_requests, session_slices, timeline_figure

    drawn = report.sessions[:TIMELINES]
    bounds = (float(window[0]), float(window[1])) if None not in window else None
    requests = load_session_requests(logs, [c["session_id"] for c in drawn], window=bounds, fields=fields)
    slices = session_slices(requests)
    for card in drawn:
        if card["session_id"] in slices:
            start, stop = slices[card["session_id"]]
            card["timeline"], card["timeline_note"] = timeline_figure(requests.slice(start, stop - start))


def render(report: VerdictReport) -> str:
    from tools.report import template_environment

    environment = template_environment()
    environment.filters["iso"] = iso
    return environment.get_template(TEMPLATE).render(report=report, generated=iso(datetime.now(UTC).timestamp()),
                                                     cards=len(report.sessions), card_limit=CARDS)


def write_report(path: str | os.PathLike[str], report: VerdictReport) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_file(target, render(report).encode("utf-8"), new_file_mode=0o644)
    return target
