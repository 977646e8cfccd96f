"""The scoring policy: per-session features (the small table of detection/scoring/sql/features.sql) -> explainable verdicts.

Each reason (:data:`detection.scoring.reasons.REASONS`) is a rule over a few features with thresholds from its
section of :class:`~detection.scoring.config.DetectionConfig`. A
session's score is the sum of the weights of the reasons that fired; at ``revoke_score`` it is revoked (``monitor``
in monitor mode), at ``flag_score`` flagged for review. Allow-listed sessions and sessions seen on an allow-listed
network are never revoked (flagged at most). Every verdict lists each reason that fired with the values it saw and
the thresholds it compared them with.

The rules are evaluated column-wise (numpy over Arrow); only flagged sessions get Python objects. Nothing here
loads raw log rows: the input is one row per session.

Reasons (codes), what they catch, what legit behaviour they are built to tolerate: see README "What each reason
catches and costs" and the docstrings of the config sections.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from detection.scoring.config import DetectionConfig
from detection.scoring.reasons import BY_CODE, REASONS, Evidence, Fired, Playback, SessionTable, playback
from revocation.ledger.base import Action, Reason, Verdict

__all__ = ["ALLOW_LISTED", "MONITOR_MODE", "SEQUENCE_ONLY", "PolicyResult", "decide", "score_sessions"]

#: Reason codes of the adjustments: an offender with a sequence as its only evidence, or on an allow-list, is
#: flagged; in monitor mode "monitored".
SEQUENCE_ONLY = "sequence-only"
ALLOW_LISTED = "allow-listed"
MONITOR_MODE = "monitor-mode"

#: Scalar features copied into each verdict (besides the derived ones).
VERDICT_FEATURES: tuple[str, ...] = (
    "requests",
    "bytes",
    "segments",
    "first_seen",
    "last_seen",
    "distinct_ips",
    "distinct_prefixes",
    "distinct_asns",
    "distinct_countries",
    "distinct_channels",
    "distinct_user_agents",
    "active_minutes",
    "max_ips_per_minute",
    "max_prefixes_per_minute",
    "max_asns_per_minute",
    "max_countries_per_minute",
    "max_renditions_at_once",
    "shared_segments",
    "max_cmcd_sessions_per_minute",
    "channels_apart_minutes",
    "main_channel",
)
LIST_FEATURES: dict[str, int] = {"asns": 50, "countries": 50, "channels": 20, "user_agents": 10, "ips": 20}

@dataclass
class PolicyResult:
    """Verdicts of the flagged sessions (highest score first, then by session id), and what the policy saw."""

    verdicts: list[Verdict]
    stats: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        """Sessions scored, flagged, and flagged per action and reason: the verdict part of a run's stats (detect's
        JSON, the workflow's score step)."""
        return {
            "sessions_scored": self.stats["sessions_scored"],
            "flagged": len(self.verdicts),
            "revoke": self.stats["revoked"],
            "flag": self.stats["flagged"],
            "monitor": self.stats["monitored"],
            "reasons": dict(self.stats["reasons"]),
            "network_registry": self.stats["network_registry"],
        }


def score_sessions(
    features: pa.Table, config: DetectionConfig | None = None, *, run_id: str, decided_at: float
) -> PolicyResult:
    """Score every session of the feature table (the window of run ``run_id``); return the verdicts of the sessions
    flagged or revoked, decided at ``decided_at``."""
    clock = time.perf_counter()
    config = config or DetectionConfig()
    networks = config.networks.registry
    table = SessionTable(features, networks)
    scored = table.numbers("requests") >= config.min_requests
    fired: dict[str, Fired] = {}
    for reason in REASONS:
        section = config.section(reason.code)
        if section.enabled:
            result = reason.fire(table, section, scored)
            result.mask = result.mask & scored
            fired[reason.code] = result
    _leave_out_listed_addresses(table, fired)
    score = np.zeros(table.rows, dtype=np.float64)
    for result in fired.values():
        score += np.where(result.mask, result.weight, 0.0)
    flagged_rows = np.flatnonzero(score >= config.flag_score)
    seen = playback(table, config.playback_rate)  # every verdict shows the session's pace, whatever fired
    records = features.take(pa.array(flagged_rows, type=pa.int64())).to_pylist() if len(flagged_rows) else []
    verdicts = sorted(
        (
            _verdict(record, int(row), float(score[row]), config, fired, seen, run_id, decided_at)
            for row, record in zip(flagged_rows, records, strict=True)
        ),
        key=lambda v: (-v.score, v.session_id),  # highest score first
    )
    known_pace = ~np.isnan(seen.channel_pace)
    stats = {
        "sessions": table.rows,
        "sessions_scored": int(scored.sum()),
        "flagged": sum(1 for v in verdicts if v.action is Action.FLAG),
        "revoked": sum(1 for v in verdicts if v.action is Action.REVOKE),
        "monitored": sum(1 for v in verdicts if v.action is Action.MONITOR),
        "reasons": {code: int(result.mask.sum()) for code, result in fired.items() if result.mask.any()},
        "channels_with_pace": int(np.unique(seen.channels[known_pace].astype(str)).size) if table.rows else 0,
        "network_registry": networks.version,
        "seconds": round(time.perf_counter() - clock, 4),
    }
    return PolicyResult(verdicts=verdicts, stats=stats)


def _leave_out_listed_addresses(table: SessionTable, fired: Mapping[str, Fired]) -> None:
    """Clear the reasons that count places (:attr:`ReasonRule.counts_places`) for sessions whose every address is
    in a shared-egress or location-free *prefix* of the registry (networks known by ASN are handled where the
    places are counted: features.sql and the reasons). Only sessions such a reason fired for are looked at."""
    if not table.networks.has_prefixes:
        return
    placed = [code for code in fired if BY_CODE[code].counts_places]
    rows = np.flatnonzero(np.logical_or.reduce([fired[code].mask for code in placed])) if placed else []
    if not len(rows):
        return
    addresses = table.features["ips"].take(pa.array(rows)).to_pylist()
    distinct = table.numbers("distinct_ips")
    for row, ips in zip(rows, addresses, strict=True):
        if not ips or len(ips) < distinct[row]:  # the listed addresses are not all of them
            continue
        classes = [table.networks.classify_ip(ip) for ip in ips]
        if all(c is not None and (c.shared_egress or c.location_free) for c in classes):
            for code in placed:
                fired[code].mask[row] = False


def decide(
    score: float, codes: Sequence[str], session_id: str, asns: Iterable[int], config: DetectionConfig
) -> tuple[Action, list[Reason]]:
    """The action for a session's score and the reasons that fired, and the reasons that adjusted it.

    A score at ``revoke_score`` revokes only when a reason that fired is evidence of more than one player at once or
    of a non-player client (:class:`~detection.scoring.reasons.Evidence`): a sequence alone is flagged for review.
    Allow-listed sessions and networks are flagged rather than revoked; monitor mode monitors instead.
    """
    if score < config.revoke_score:
        return Action.FLAG, []
    if not any(BY_CODE[code].evidence.corroborates for code in codes):
        shown = ", ".join(code for code in codes if BY_CODE[code].evidence is Evidence.SEQUENTIAL) or "none"
        detail = (f"only sequential evidence ({shown}): flagged for review; revoking needs evidence of more than one "
                  "player at once or of a client that is no player")
        return Action.FLAG, [Reason(code=SEQUENCE_ONLY, detail=detail, values={"reasons": list(codes)})]
    allow_asns = sorted(set(asns) & set(config.allow_asns))
    if session_id in config.allow_sessions or allow_asns:
        detail = "session is allow-listed" if session_id in config.allow_sessions else (
            "used allow-listed network " + ", ".join(f"AS{a}" for a in allow_asns))
        return Action.FLAG, [Reason(code=ALLOW_LISTED, detail=detail, values={"asns": allow_asns})]
    if config.monitor:
        return Action.MONITOR, [Reason(code=MONITOR_MODE, detail="monitor mode: would have been revoked")]
    return Action.REVOKE, []


def _verdict(
    record: dict[str, Any], row: int, score: float, config: DetectionConfig, fired: Mapping[str, Fired],
    seen: Playback, run_id: str, decided_at: float,
) -> Verdict:
    session_id = record["session_id"]
    reasons: list[Reason] = [
        reason.explain(record, row, config.section(reason.code), fired[reason.code])
        for reason in REASONS
        if reason.code in fired and fired[reason.code].mask[row]
    ]
    action, adjustments = decide(score, [r.code for r in reasons], session_id, record.get("asns") or (), config)
    reasons.extend(adjustments)
    features: dict[str, Any] = {name: record.get(name) for name in VERDICT_FEATURES if name in record}
    for name, limit in LIST_FEATURES.items():
        if name in record and record[name] is not None:
            features[name] = list(record[name])[:limit]
    pace, realtime = float(seen.pace[row]), float(seen.channel_pace[row])
    features["segments_per_minute"] = None if math.isnan(pace) else round(pace, 2)
    features["realtime_segments_per_minute"] = None if math.isnan(realtime) else round(realtime, 2)
    features["realtime_speed"] = round(float(seen.speed[row]), 3)
    features["channel_sessions"] = int(seen.channel_sessions[row])
    features["network_registry"] = config.networks.registry.version
    if record.get("per_minute") is not None:
        features["per_minute"] = record["per_minute"]
    return Verdict(session_id=session_id, run_id=run_id, score=score, action=action, reasons=tuple(reasons),
                   features=features, decided_at=decided_at)
