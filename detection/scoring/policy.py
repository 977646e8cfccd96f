"""The scoring policy: per-session features (the small table of detection/scoring/sql/features.sql) -> explainable verdicts.

Each reason is a rule over a few features with thresholds from :class:`~detection.scoring.config.DetectionConfig`. A
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detection.scoring.config import DetectionConfig
from detection.scoring.verdicts import ALLOW_LISTED, MONITOR_MODE, Action, Reason, Verdict

__all__ = [
    "REASONS",
    "PolicyResult",
    "capital_distance_km",
    "score_sessions",
]

#: Reason codes, in the order verdicts list them.
REASONS: tuple[str, ...] = (
    "countries_at_once",
    "networks_at_once",
    "addresses_at_once",
    "devices_at_once",
    "shared_segments",
    "renditions_at_once",
    "playback_rate",
    "impossible_travel",
    "rotating_addresses",
    "channels_at_once",
    "hosting_network",
    "tool_user_agent",
)

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
    "channels_apart_minutes",
    "main_channel",
)
LIST_FEATURES: dict[str, int] = {"asns": 50, "countries": 50, "channels": 20, "user_agents": 10, "ips": 20}

# Capital cities (lat, lon) by ISO 3166 code: a country's position for the travel rule.
_CAPITALS: dict[str, tuple[float, float]] = {
    "AD": (42.5, 1.5), "AE": (24.5, 54.4), "AF": (34.5, 69.2), "AL": (41.3, 19.8), "AM": (40.2, 44.5),
    "AO": (-8.8, 13.2), "AR": (-34.6, -58.4), "AT": (48.2, 16.4), "AU": (-35.3, 149.1), "AZ": (40.4, 49.9),
    "BA": (43.9, 18.4), "BD": (23.8, 90.4), "BE": (50.8, 4.4), "BG": (42.7, 23.3), "BH": (26.2, 50.6),
    "BO": (-16.5, -68.1), "BR": (-15.8, -47.9), "BY": (53.9, 27.6), "CA": (45.4, -75.7), "CH": (46.9, 7.4),
    "CL": (-33.4, -70.7), "CN": (39.9, 116.4), "CO": (4.7, -74.1), "CR": (9.9, -84.1), "CY": (35.2, 33.4),
    "CZ": (50.1, 14.4), "DE": (52.5, 13.4), "DK": (55.7, 12.6), "DO": (18.5, -69.9), "DZ": (36.8, 3.1),
    "EC": (-0.2, -78.5), "EE": (59.4, 24.7), "EG": (30.0, 31.2), "ES": (40.4, -3.7), "ET": (9.0, 38.7),
    "FI": (60.2, 24.9), "FR": (48.9, 2.4), "GB": (51.5, -0.1), "GE": (41.7, 44.8), "GH": (5.6, -0.2),
    "GR": (38.0, 23.7), "GT": (14.6, -90.5), "HK": (22.3, 114.2), "HR": (45.8, 16.0), "HU": (47.5, 19.0),
    "ID": (-6.2, 106.8), "IE": (53.3, -6.3), "IL": (31.8, 35.2), "IN": (28.6, 77.2), "IQ": (33.3, 44.4),
    "IR": (35.7, 51.4), "IS": (64.1, -21.9), "IT": (41.9, 12.5), "JM": (18.0, -76.8), "JO": (31.9, 35.9),
    "JP": (35.7, 139.7), "KE": (-1.3, 36.8), "KR": (37.6, 127.0), "KW": (29.4, 48.0), "KZ": (51.2, 71.4),
    "LB": (33.9, 35.5), "LI": (47.1, 9.5), "LK": (6.9, 79.9), "LT": (54.7, 25.3), "LU": (49.6, 6.1),
    "LV": (56.9, 24.1), "MA": (34.0, -6.8), "MC": (43.7, 7.4), "MD": (47.0, 28.9), "ME": (42.4, 19.3),
    "MK": (42.0, 21.4), "MT": (35.9, 14.5), "MX": (19.4, -99.1), "MY": (3.1, 101.7), "NG": (9.1, 7.5),
    "NL": (52.4, 4.9), "NO": (59.9, 10.8), "NZ": (-41.3, 174.8), "OM": (23.6, 58.4), "PA": (9.0, -79.5),
    "PE": (-12.0, -77.0), "PH": (14.6, 121.0), "PK": (33.7, 73.0), "PL": (52.2, 21.0), "PR": (18.5, -66.1),
    "PT": (38.7, -9.1), "PY": (-25.3, -57.6), "QA": (25.3, 51.5), "RO": (44.4, 26.1), "RS": (44.8, 20.5),
    "RU": (55.8, 37.6), "SA": (24.7, 46.7), "SE": (59.3, 18.1), "SG": (1.3, 103.8), "SI": (46.1, 14.5),
    "SK": (48.1, 17.1), "SM": (43.9, 12.4), "TH": (13.8, 100.5), "TN": (36.8, 10.2), "TR": (39.9, 32.9),
    "TW": (25.0, 121.5), "UA": (50.5, 30.5), "US": (38.9, -77.0), "UY": (-34.9, -56.2), "UZ": (41.3, 69.3),
    "VE": (10.5, -66.9), "VN": (21.0, 105.8), "ZA": (-25.7, 28.2),
}  # fmt: skip


def capital_distance_km(a: str, b: str) -> float | None:
    """Great-circle distance between two countries' capitals, or None for a country not in the table."""
    pa_, pb = _CAPITALS.get((a or "").upper()), _CAPITALS.get((b or "").upper())
    if pa_ is None or pb is None:
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (*pa_, *pb))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


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
        }


# -- column helpers --------------------------------------------------------------------------------------------------


def _numbers(table: pa.Table, name: str, fill: float = 0.0) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, fill, dtype=np.float64)
    column = pc.fill_null(table[name], fill) if table[name].null_count else table[name]
    return np.asarray(column.to_numpy(), dtype=np.float64)


def _minutes(table: pa.Table) -> tuple[np.ndarray, pa.StructArray | None]:
    """(parent row index of each per-minute entry, the per-minute struct entries)."""
    if "per_minute" not in table.column_names or table.num_rows == 0:
        return np.zeros(0, dtype=np.int64), None
    lists = table["per_minute"].combine_chunks()
    parents = np.asarray(pc.list_parent_indices(lists).to_numpy(), dtype=np.int64)
    return parents, lists.flatten()


def _field(entries: pa.StructArray | None, name: str, null: float = 0.0) -> np.ndarray:
    if entries is None:
        return np.zeros(0)
    values = entries.field(name)
    if values.null_count:
        values = pc.fill_null(values.cast(pa.float64()), null)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


def _count(parents: np.ndarray, mask: np.ndarray, rows: int) -> np.ndarray:
    return np.bincount(parents[mask], minlength=rows).astype(np.int64) if rows else np.zeros(0, np.int64)


def _any_listed(table: pa.Table, column: str, predicate: Any) -> np.ndarray:
    """Per row: does any element of the list column satisfy ``predicate(values) -> bool array``?"""
    rows = table.num_rows
    if column not in table.column_names or rows == 0:
        return np.zeros(rows, dtype=bool)
    lists = table[column].combine_chunks()
    values = lists.flatten()
    if len(values) == 0:
        return np.zeros(rows, dtype=bool)
    parents = np.asarray(pc.list_parent_indices(lists).to_numpy(), dtype=np.int64)
    hit = np.asarray(predicate(values), dtype=bool)
    return np.bincount(parents[hit], minlength=rows) > 0


# -- the policy ------------------------------------------------------------------------------------------------------


def _paces(
    parents: np.ndarray, minute: np.ndarray, segments: np.ndarray, rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per session, over its interior minutes (not its first or last minute; minutes without a pace left out):
    the median segment fetches per minute (its pace), the most in one minute (its pace as a reference for others:
    pauses and stalls only lower a minute), and how many interior minutes there are."""
    pace = np.full(rows, np.nan)
    peak = np.full(rows, np.nan)
    interior = np.zeros(rows, dtype=np.int64)
    if len(parents) == 0:
        return pace, peak, interior
    first = np.full(rows, np.iinfo(np.int64).max)
    last = np.full(rows, np.iinfo(np.int64).min)
    minute = minute.astype(np.int64)
    np.minimum.at(first, parents, minute)
    np.maximum.at(last, parents, minute)
    inside = (minute > first[parents]) & (minute < last[parents]) & ~np.isnan(segments)
    frame = pd.DataFrame({"row": parents[inside], "segments": segments[inside]})
    grouped = frame.groupby("row", sort=False)["segments"].agg(["median", "max", "size"])
    index = grouped.index.to_numpy()
    pace[index] = grouped["median"].to_numpy()
    peak[index] = grouped["max"].to_numpy()
    interior[index] = grouped["size"].to_numpy()
    return pace, peak, interior


def _channel_paces(
    channel: np.ndarray, reference: np.ndarray, usable: np.ndarray, quantile: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per session: the real-time pace of its main channel - the ``quantile`` of the reference paces of the *other*
    sessions that play only that channel - and how many other sessions that is (NaN and 0 without any). A low
    quantile keeps the fast sessions of a channel (pirates cluster on popular content) from raising its pace."""
    rows = len(reference)
    result = np.full(rows, np.nan)
    others = np.zeros(rows, dtype=np.int64)
    frame = pd.DataFrame({"channel": channel, "pace": reference, "row": np.arange(rows)})[usable]
    lookup: dict[Any, tuple[float, int]] = {}
    for name, group in frame.groupby("channel", sort=False):
        idx = group["row"].to_numpy()
        values = group["pace"].to_numpy()
        n = len(values)
        lookup[name] = (float(np.quantile(values, quantile)), n)
        if n >= 20:  # one session more or less hardly moves a quantile of twenty
            result[idx] = lookup[name][0]
        elif n >= 2:  # leave the session itself out
            for i, row in enumerate(idx):
                result[row] = float(np.quantile(np.delete(values, i), quantile))
        others[idx] = n - 1
    # sessions that do not count themselves (several channels, too short) still get their main channel's pace
    for row in np.flatnonzero(~usable):
        found = lookup.get(channel[row])
        if found is not None:
            result[row], others[row] = found
    return result, others


def _travel(cells: list[dict[str, Any]] | None, config: DetectionConfig) -> dict[str, Any] | None:
    """The fastest impossible move of a session from one country to another, or None.

    ``cells`` are (first_seen, last_seen, country, requests) of each address the session was served at (with at
    least ``min_requests``). A move is an address in one country whose service ended before an address in another
    country began: it took ``later.first_seen - earlier.last_seen`` seconds over the distance between the
    countries' capitals. Addresses served at the same time are two places at once, the countries_at_once rule's
    business, and are not moves."""
    if not cells:
        return None
    rules = config.impossible_travel
    spans = sorted(
        (c["first_seen"], c["last_seen"], c["country"])
        for c in cells
        if c.get("country") and (c.get("requests") or 0) >= rules.min_requests
    )
    worst: dict[str, Any] | None = None
    for first_b, _last_b, b in spans:
        for _first_a, last_a, a in spans:
            if a == b or last_a > first_b:
                continue
            km = capital_distance_km(a, b)
            if km is None or km < rules.min_km:
                continue
            gap = first_b - last_a
            kmh = km / max(gap, 1.0) * 3600.0
            if kmh > rules.max_speed_kmh and (worst is None or kmh > worst["speed_kmh"]):
                worst = {"from": a, "to": b, "km": round(km), "seconds": round(gap, 1), "speed_kmh": round(kmh)}
    return worst


def score_sessions(features: pa.Table, config: DetectionConfig | None = None) -> PolicyResult:
    """Score every session of the feature table; return the verdicts of the sessions flagged or revoked."""
    clock = time.perf_counter()
    config = config or DetectionConfig()
    rows = features.num_rows
    num = {name: _numbers(features, name) for name in (
        "requests", "segments", "distinct_channels", "distinct_prefixes", "distinct_asns", "distinct_countries",
        "max_prefixes_per_minute", "channels_apart_minutes", "distinct_user_agents",
    )}  # fmt: skip
    scored = num["requests"] >= config.min_requests
    parents, minutes = _minutes(features)
    m_countries = _field(minutes, "countries")
    m_asns = _field(minutes, "asns")
    m_prefixes = _field(minutes, "prefixes")
    m_segments = _field(minutes, "segments")
    m_shared = _field(minutes, "shared_segments")
    m_renditions = _field(minutes, "renditions_at_once")

    fired: dict[str, np.ndarray] = {}
    weights: dict[str, np.ndarray] = {}
    values: dict[str, dict[str, np.ndarray]] = {}

    def rule(code: str, mask: np.ndarray, weight: float | np.ndarray, **shown: np.ndarray) -> None:
        section = getattr(config, code)
        if not section.enabled:
            return
        mask = mask & scored
        fired[code] = mask
        weights[code] = np.where(mask, weight, 0.0)
        values[code] = shown

    c = config.countries_at_once
    minutes_c = _count(parents, m_countries >= c.min_countries, rows)
    crowded = _count(parents, m_countries >= c.many_countries, rows)
    rule("countries_at_once", (minutes_c >= c.min_minutes) | (crowded >= 1), c.weight, minutes=minutes_c)

    c = config.networks_at_once
    minutes_n = _count(parents, m_asns >= c.min_asns, rows)
    rule("networks_at_once", minutes_n >= c.min_minutes, c.weight, minutes=minutes_n)

    c = config.addresses_at_once
    minutes_a = _count(parents, m_prefixes >= c.min_prefixes, rows)
    rule("addresses_at_once", minutes_a >= c.min_minutes, c.weight, minutes=minutes_a)

    c = config.devices_at_once
    minutes_d = _count(parents, (m_prefixes >= c.min_prefixes) & (m_asns >= c.min_asns), rows)
    rule("devices_at_once", (minutes_d >= c.min_minutes) & (num["distinct_user_agents"] >= c.min_user_agents),
         c.weight, minutes=minutes_d)

    c = config.shared_segments
    shared_minute = (m_shared >= c.min_segments) & (m_shared >= c.min_share * np.maximum(m_segments, 1))
    minutes_s = _count(parents, shared_minute, rows)
    rule("shared_segments", minutes_s >= c.min_minutes, c.weight, minutes=minutes_s)

    c = config.renditions_at_once
    minutes_r = _count(parents, m_renditions >= c.min_renditions, rows)
    rule("renditions_at_once", minutes_r >= c.min_minutes, c.weight, minutes=minutes_r)

    c = config.playback_rate
    channel_names = (
        np.asarray(features["main_channel"].to_pylist(), dtype=object)
        if "main_channel" in features.column_names
        else np.full(rows, None, dtype=object)
    )
    pace, peak, interior = _paces(parents, _field(minutes, "minute"), _field(minutes, "paced_segments", np.nan), rows)
    usable = (num["distinct_channels"] == 1) & (interior >= c.crowd_min_minutes) & pd.notna(channel_names)
    channel_pace, crowd = _channel_paces(channel_names, peak, usable, c.crowd_quantile)
    realtime_pace = np.where(
        np.isnan(channel_pace), 60.0 / c.fallback_segment_seconds, np.maximum(channel_pace, 60.0 / c.max_segment_seconds)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = np.where(realtime_pace > 0, np.nan_to_num(pace) / realtime_pace, 0.0)
    needed = np.where(crowd >= c.crowd_min_sessions, c.min_speed, c.min_speed * c.small_crowd_factor)
    rule("playback_rate", (speed >= needed) & (interior >= c.min_minutes), c.weight, speed=speed, needed=needed)

    c = config.rotating_addresses
    rotating = (num["distinct_prefixes"] >= c.min_prefixes) & (
        num["max_prefixes_per_minute"] >= c.min_prefixes_per_minute
    )
    rule(
        "rotating_addresses",
        rotating,
        np.where(num["distinct_asns"] >= 2, c.weight, c.single_network_weight),
    )

    c = config.channels_at_once
    rule("channels_at_once", num["channels_apart_minutes"] >= c.min_minutes, c.weight)

    c = config.hosting_network
    hosting_asns = np.asarray(sorted(c.asns), dtype=np.int64)
    hosting = _any_listed(
        features, "asns", lambda v: np.isin(np.asarray(pc.fill_null(v, -1).to_numpy(), dtype=np.int64), hosting_asns)
    )
    rule("hosting_network", hosting, c.weight)

    c = config.tool_user_agent
    fragments = c.fragments

    def is_tool(values: pa.Array) -> np.ndarray:
        encoded = pc.dictionary_encode(pc.fill_null(values, ""))  # user agents repeat: test each once
        unique = [ua.lower() for ua in encoded.dictionary.to_pylist()]
        tools = np.array([any(fragment in ua for fragment in fragments) for ua in unique], dtype=bool)
        return tools[np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]

    tools = _any_listed(features, "user_agents", is_tool) if fragments else np.zeros(rows, bool)
    rule("tool_user_agent", tools, c.weight)

    # travel: only sessions seen in several countries, in Python
    travel: dict[int, dict[str, Any]] = {}
    if config.impossible_travel.enabled and "country_cells" in features.column_names:
        candidates = np.flatnonzero((num["distinct_countries"] >= 2) & scored)
        if len(candidates):
            cells = features["country_cells"].take(pa.array(candidates)).to_pylist()
            for row, session_cells in zip(candidates, cells):
                worst = _travel(session_cells, config)
                if worst is not None:
                    travel[int(row)] = worst
        mask = np.zeros(rows, dtype=bool)
        mask[list(travel)] = True
        rule("impossible_travel", mask, config.impossible_travel.weight)

    score = np.zeros(rows, dtype=np.float64)
    for w in weights.values():
        score += w
    flagged_rows = np.flatnonzero(score >= config.flag_score)

    derived = {
        "speed": speed,
        "pace": pace,
        "realtime_pace": channel_pace,
        "channel_sessions": crowd,
    }
    records = features.take(pa.array(flagged_rows, type=pa.int64())).to_pylist() if len(flagged_rows) else []
    verdicts = sorted(
        (
            _verdict(record, int(row), float(score[row]), config, fired, values, derived, travel)
            for row, record in zip(flagged_rows, records)
        ),
        key=lambda v: (-v.score, v.session_id),  # highest score first
    )
    stats = {
        "sessions": rows,
        "sessions_scored": int(scored.sum()),
        "flagged": sum(1 for v in verdicts if v.action is Action.FLAG),
        "revoked": sum(1 for v in verdicts if v.action is Action.REVOKE),
        "monitored": sum(1 for v in verdicts if v.action is Action.MONITOR),
        "reasons": {code: int(mask.sum()) for code, mask in fired.items() if mask.any()},
        "channels_with_pace": int(np.unique(channel_names[~np.isnan(channel_pace)].astype(str)).size) if rows else 0,
        "seconds": round(time.perf_counter() - clock, 4),
    }
    return PolicyResult(verdicts=verdicts, stats=stats)


def _verdict(
    record: dict[str, Any],
    row: int,
    score: float,
    config: DetectionConfig,
    fired: Mapping[str, np.ndarray],
    values: Mapping[str, Mapping[str, np.ndarray]],
    derived: Mapping[str, np.ndarray],
    travel: Mapping[int, dict[str, Any]],
) -> Verdict:
    session_id = record["session_id"]
    f = record
    speed = float(derived["speed"][row])
    realtime = float(derived["realtime_pace"][row])
    pace = float(derived["pace"][row])
    reasons: list[Reason] = []
    for code in REASONS:
        if code not in fired or not fired[code][row]:
            continue
        reasons.append(_reason(code, row, f, config, values, derived, travel))
    asns = set(f.get("asns") or ())
    allow_asns = sorted(asns & set(config.allow_asns))
    if score >= config.revoke_score:
        action = Action.REVOKE
    else:
        action = Action.FLAG
    if action is Action.REVOKE and (session_id in config.allow_sessions or allow_asns):
        action = Action.FLAG
        detail = "session is allow-listed" if session_id in config.allow_sessions else (
            "used allow-listed network " + ", ".join(f"AS{a}" for a in allow_asns))
        reasons.append(Reason(ALLOW_LISTED, detail, 0.0, {"asns": allow_asns}, {}))
    elif action is Action.REVOKE and config.monitor:
        action = Action.MONITOR
        reasons.append(Reason(MONITOR_MODE, "monitor mode: would have been revoked", 0.0))
    feats: dict[str, Any] = {name: f.get(name) for name in VERDICT_FEATURES if name in f}
    for name, limit in LIST_FEATURES.items():
        if name in f and f[name] is not None:
            items = list(f[name])
            feats[name] = items[:limit]
    feats["segments_per_minute"] = None if math.isnan(pace) else round(pace, 2)
    feats["realtime_segments_per_minute"] = None if math.isnan(realtime) else round(realtime, 2)
    feats["realtime_speed"] = round(speed, 3)
    feats["channel_sessions"] = int(derived["channel_sessions"][row])
    if f.get("per_minute") is not None:
        feats["per_minute"] = f["per_minute"]
    return Verdict(session_id=session_id, score=score, action=action, reasons=tuple(reasons), features=feats)


def _reason(
    code: str,
    row: int,
    f: Mapping[str, Any],
    config: DetectionConfig,
    values: Mapping[str, Mapping[str, np.ndarray]],
    derived: Mapping[str, np.ndarray],
    travel: Mapping[int, dict[str, Any]],
) -> Reason:
    section = getattr(config, code)
    shown = {k: (v[row].item() if hasattr(v[row], "item") else v[row]) for k, v in values.get(code, {}).items()}
    per_minute = f.get("per_minute") or []

    def worst(key: str) -> Any:
        return max((m.get(key) or 0 for m in per_minute), default=0)

    weight = section.weight
    if code == "countries_at_once":
        vals = {"minutes": shown["minutes"], "max_countries_per_minute": worst("countries"),
                "countries": f.get("countries")}  # fmt: skip
        th = {"min_countries": section.min_countries, "min_minutes": section.min_minutes,
              "many_countries": section.many_countries}  # fmt: skip
        detail = (f"served in {vals['max_countries_per_minute']} countries in the same minute, {vals['minutes']} "
                  f"minutes with {section.min_countries}+ countries ({', '.join(f.get('countries') or [])})")
    elif code == "networks_at_once":
        vals = {"minutes": shown["minutes"], "max_asns_per_minute": worst("asns"), "asns": f.get("asns")}
        th = {"min_asns": section.min_asns, "min_minutes": section.min_minutes}
        detail = (f"{vals['max_asns_per_minute']} networks (ASNs) at once; {vals['minutes']} minutes with "
                  f"{section.min_asns}+")
    elif code == "addresses_at_once":
        vals = {"minutes": shown["minutes"], "max_prefixes_per_minute": worst("prefixes"),
                "distinct_prefixes": f.get("distinct_prefixes")}
        th = {"min_prefixes": section.min_prefixes, "min_minutes": section.min_minutes}
        detail = (f"{vals['max_prefixes_per_minute']} address prefixes at once; {vals['minutes']} minutes with "
                  f"{section.min_prefixes}+")
    elif code == "devices_at_once":
        vals = {"minutes": shown["minutes"], "max_prefixes_per_minute": worst("prefixes"),
                "max_asns_per_minute": worst("asns"), "distinct_user_agents": f.get("distinct_user_agents")}
        th = {"min_prefixes": section.min_prefixes, "min_asns": section.min_asns, "min_minutes": section.min_minutes,
              "min_user_agents": section.min_user_agents}  # fmt: skip
        detail = (f"{vals['distinct_user_agents']} different players (user agents) on {section.min_prefixes}+ "
                  f"addresses in {section.min_asns}+ networks at once, {vals['minutes']} minutes")
    elif code == "shared_segments":
        vals = {"minutes": shown["minutes"], "shared_segments": f.get("shared_segments"), "segments": f.get("segments")}
        th = {"min_share": section.min_share, "min_segments": section.min_segments, "min_minutes": section.min_minutes}
        detail = (f"the same segments fetched from several addresses: {vals['shared_segments']} extra fetches of "
                  f"{vals['segments']}, {vals['minutes']} minutes over {section.min_share:.0%} of the minute's "
                  f"segments")
    elif code == "renditions_at_once":
        vals = {"minutes": shown["minutes"], "max_renditions_at_once": round(float(worst("renditions_at_once")), 2)}
        th = {"min_renditions": section.min_renditions, "min_minutes": section.min_minutes}
        detail = (f"one address fetched each segment in {vals['max_renditions_at_once']} renditions; "
                  f"{vals['minutes']} minutes with {section.min_renditions}+")
    elif code == "playback_rate":
        realtime = float(derived["realtime_pace"][row])
        known = not math.isnan(realtime)
        vals = {"speed": round(float(shown["speed"]), 2), "segments_per_minute": round(float(derived["pace"][row]), 2),
                "realtime_segments_per_minute": round(realtime, 2) if known else None,
                "channel_sessions": int(derived["channel_sessions"][row]), "channel": f.get("main_channel")}
        th = {"min_speed": round(float(shown["needed"]), 3), "min_minutes": section.min_minutes}
        if not known:
            th["fallback_segment_seconds"] = section.fallback_segment_seconds
        basis = (f"the {vals['realtime_segments_per_minute']} of real-time playback of {vals['channel']} (from "
                 f"{vals['channel_sessions']} other session(s))" if known else
                 f"{60 / section.fallback_segment_seconds:g} assumed (nobody else plays {vals['channel']})")
        detail = (f"{vals['speed']}x real-time playback: {vals['segments_per_minute']} segments per minute against "
                  f"{basis}")
    elif code == "impossible_travel":
        move = travel[row]
        vals = dict(move)
        th = {"max_speed_kmh": section.max_speed_kmh, "min_km": section.min_km, "min_requests": section.min_requests}
        detail = (f"moved {move['from']} -> {move['to']} ({move['km']} km) in {move['seconds']} s: "
                  f"{move['speed_kmh']} km/h")
    elif code == "rotating_addresses":
        single = (f.get("distinct_asns") or 0) < 2
        weight = section.single_network_weight if single else section.weight
        vals = {"distinct_prefixes": f.get("distinct_prefixes"),
                "max_prefixes_per_minute": f.get("max_prefixes_per_minute"),
                "distinct_asns": f.get("distinct_asns")}  # fmt: skip
        th = {"min_prefixes": section.min_prefixes, "min_prefixes_per_minute": section.min_prefixes_per_minute}
        detail = (f"{vals['distinct_prefixes']} address prefixes in {vals['distinct_asns']} networks, up to "
                  f"{vals['max_prefixes_per_minute']} in one minute"
                  + (" (one network: weight reduced)" if single else ""))
    elif code == "channels_at_once":
        vals = {"minutes": f.get("channels_apart_minutes"), "channels": f.get("channels")}
        th = {"min_minutes": section.min_minutes}
        detail = (f"different channels played at once from different places in {vals['minutes']} minutes "
                  f"({', '.join(f.get('channels') or [])})")
    elif code == "hosting_network":
        listed = sorted(set(f.get("asns") or ()) & set(section.asns))
        vals = {"asns": listed}
        th = {}
        detail = "served to a hosting/cloud network " + ", ".join(f"AS{a}" for a in listed)
    elif code == "tool_user_agent":
        agents = [ua for ua in (f.get("user_agents") or []) if any(x in ua.lower() for x in section.fragments)]
        vals = {"user_agents": agents[:5]}
        th = {}
        detail = "download/restream tool user agent: " + "; ".join(a[:80] for a in agents[:3])
    else:  # pragma: no cover - REASONS and this function move together
        raise KeyError(code)
    return Reason(code=code, detail=detail, weight=weight, values=vals, thresholds=th)
