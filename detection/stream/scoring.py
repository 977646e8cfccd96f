"""The policy's concurrent reasons, run by the stream on the sets it keeps.

The fast path revokes on evidence of several players at once only, with the policy's own rules, thresholds and
network registry (:func:`detection.scoring.policy.score_sessions` with every other reason switched off). The reasons
it cannot see from a few minutes of sets stay with the scheduled workflow: playback faster than real time needs the
crowd's pace of each title, travel needs the order of places over the window, channels at once and renditions at
once need per-address detail, and the sequential and supporting reasons never revoke on their own anyway.

Two passes per batch, both with the same rules:

1. :func:`could_fire`: every (session, minute) the batch touched, as if it were a session of one minute, with each
   reason's ``min_minutes`` at 1. A minute with nothing odd in it cannot make a reason fire that did not fire
   before, so only the sessions that pass are read over their window.
2. :func:`judge`: those sessions over their window, with the configuration as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from detection.scoring.config import DetectionConfig
from detection.scoring.policy import score_sessions
from detection.scoring.reasons import BY_CODE, Evidence
from detection.stream.evidence import MinuteState, session_features
from revocation.ledger.base import Action, Verdict

#: The reasons the fast path runs: each evidence of more than one player at once.
STREAM_REASONS: tuple[str, ...] = (
    "countries_at_once",
    "networks_at_once",
    "addresses_at_once",
    "devices_at_once",
    "cmcd_sessions_at_once",
    "shared_segments",
)
assert all(BY_CODE[code].evidence is Evidence.CONCURRENT for code in STREAM_REASONS)

PER_MINUTE = pa.struct([
    ("minute", pa.int64()), ("segments", pa.int64()), ("advance", pa.int64()), ("ips", pa.int64()),
    ("prefixes", pa.int64()), ("asns", pa.int64()), ("countries", pa.int64()),
    ("renditions_at_once", pa.float64()), ("shared_segments", pa.int64()), ("channels_apart", pa.bool_()),
    ("cmcd_sessions", pa.int64()), ("cmcd_overlap", pa.float64()), ("playback_rate", pa.float64()),
])  # fmt: skip
#: The feature table's column types where they are not int64.
COLUMN_TYPES = {"session_id": pa.string(), "first_seen": pa.float64(), "last_seen": pa.float64(),
                "per_minute": pa.list_(PER_MINUTE), "asns": pa.list_(pa.int64()), "countries": pa.list_(pa.string()),
                "user_agents": pa.list_(pa.string()), "ips": pa.list_(pa.string()),
                "token_exps": pa.list_(pa.int64())}  # fmt: skip


def stream_config(config: DetectionConfig) -> DetectionConfig:
    """``config`` with every reason the fast path does not run switched off."""
    update: dict[str, Any] = {
        code: config.section(code).model_copy(update={"enabled": False}) for code in BY_CODE if code not in STREAM_REASONS
    }
    return config.model_copy(update=update)


def precheck_config(config: DetectionConfig) -> DetectionConfig:
    """The stream's config for one minute: each reason needs that minute only, and any number of requests."""
    # every reason that fires makes a verdict: the flag score as low as it goes
    update: dict[str, Any] = {"min_requests": 1, "flag_score": min(1e-9, config.revoke_score)}
    for code in STREAM_REASONS:
        section = config.section(code)
        changes = {"min_minutes": 1} if "min_minutes" in type(section).model_fields else {}
        if code == "devices_at_once":  # user agents count over the window, which pass 2 reads: none asked here
            changes["min_user_agents"] = 0
        update[code] = section.model_copy(update=changes)
    return stream_config(config).model_copy(update=update)


def feature_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """The rows of :func:`detection.stream.evidence.session_features` as the feature table the policy reads."""
    names = list(rows[0]) if rows else []
    return pa.table({name: pa.array([row[name] for row in rows], type=COLUMN_TYPES.get(name, pa.int64()))
                     for name in names})


def could_fire(minutes: Iterable[MinuteState], config: DetectionConfig) -> set[str]:
    """The sessions one of whose touched minutes alone would make a concurrent reason fire (pass 1)."""
    rows = [session_features(state.session_id, [state]) for state in minutes if state.plural()]
    if not rows:
        return set()
    result = score_sessions(feature_table(rows), precheck_config(config), run_id="stream-precheck", decided_at=0)
    return {verdict.session_id for verdict in result.verdicts}


def judge(
    windows: dict[str, list[MinuteState]], config: DetectionConfig, *, run_id: str, now: float
) -> list[tuple[Verdict, list[int]]]:
    """The sessions the concurrent reasons revoke over their window (pass 2), each with the ``exp`` of every token
    it was seen with."""
    rows = [session_features(session_id, minutes) for session_id, minutes in windows.items() if minutes]
    if not rows:
        return []
    exps = {row["session_id"]: row["token_exps"] for row in rows}
    result = score_sessions(feature_table(rows), stream_config(config), run_id=run_id, decided_at=now)
    return [(v, exps[v.session_id]) for v in result.verdicts if v.action is Action.REVOKE]
