"""The scoring policy and its configuration, on hand-made per-session feature tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from detection.scoring.config import ConfigError, DetectionConfig, PolicySettings
from detection.scoring.policy import ALLOW_LISTED, MONITOR_MODE, SEQUENCE_ONLY, decide, score_sessions
from detection.scoring.reasons import CODES as REASONS
from detection.scoring.reasons import REASONS as RULES
from detection.scoring.reasons import Evidence, capital_distance_km
from revocation.ledger.base import REASON_CODE_PATTERN, Action
from revocation.ledger.base import Verdict as LedgerVerdict

RUN_ID, DECIDED_AT = "2026-01-01T00:10:00Z", 1767226200

M0 = 29_453_760  # the epoch minute of 2026-01-01T00:00Z


def minute(k: int, **values: Any) -> dict[str, Any]:
    row = {"minute": M0 + k, "segments": 15, "advance": 15, "ips": 1, "prefixes": 1, "asns": 1,
           "countries": 1, "renditions_at_once": 1.0, "shared_segments": 0, "channels_apart": False}  # fmt: skip
    row.update(values)
    return row


def session(session_id: str, minutes: list[dict[str, Any]] | None = None, **values: Any) -> dict[str, Any]:
    minutes = minutes if minutes is not None else [minute(k) for k in range(10)]
    row = {
        "session_id": session_id, "records": 300, "requests": 300, "bytes": 10**8,
        "segments": sum(m["segments"] for m in minutes), "first_seen": 1767225600.0, "last_seen": 1767226199.0,
        "segment_seconds": 599.0, "segment_rate": 0.25, "distinct_ips": 1, "distinct_prefixes": 1,
        "distinct_asns": 1, "distinct_countries": 1, "distinct_channels": 1, "distinct_user_agents": 1,
        "active_minutes": len(minutes), "max_ips_per_minute": 1, "max_prefixes_per_minute": 1,
        "max_asns_per_minute": 1, "max_countries_per_minute": 1, "max_renditions_at_once": 1.0,
        "shared_segments": 0, "channels_apart_minutes": 0, "main_channel": "ch01-news", "asns": [3320],
        "countries": ["DE"], "channels": ["ch01-news"], "user_agents": ["Mozilla/5.0"], "ips": ["198.51.100.7"],
        "country_cells": None, "per_minute": minutes,
    }  # fmt: skip
    row.update(values)
    return row


def crowd(n: int = 5) -> list[dict[str, Any]]:
    return [session(f"crowdsession{i:05d}") for i in range(n)]


def table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows)


def sharing(session_id: str = "sharingsession0001", **values: Any) -> dict[str, Any]:
    """Two countries at once in every minute: countries_at_once fires (weight 1)."""
    values = {"distinct_countries": 2, "countries": ["DE", "FR"], "asns": [3215, 3320], "distinct_asns": 2, **values}
    return session(session_id, [minute(k, countries=2, ips=2, prefixes=2, asns=2) for k in range(10)], **values)


def verdicts(rows: list[dict[str, Any]], config: DetectionConfig | None = None) -> dict[str, Any]:
    return {v.session_id: v for v in score_sessions(table(rows), config, run_id=RUN_ID, decided_at=DECIDED_AT).verdicts}


# -- configuration ----------------------------------------------------------------------------------------------------


def test_defaults_are_documented_and_loadable(tmp_path: Path) -> None:
    config = DetectionConfig()
    documented = config.documented()
    assert set(REASONS) <= set(documented)
    for name in REASONS:
        section = documented[name]
        assert section["about"] and section["weight"]["about"]
        assert all(v["about"] for k, v in section.items() if k != "about"), name
    assert DetectionConfig.load(None) == config
    assert DetectionConfig.load({"monitor": True}).monitor
    assert DetectionConfig.load('{"countries_at_once": {"min_minutes": 3}}').countries_at_once.min_minutes == 3
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"allow_asns": [64496], "hosting_network": {"weight": 0.2}}))
    loaded = DetectionConfig.load(path)
    assert loaded.allow_asns == frozenset({64496}) and loaded.hosting_network.weight == 0.2


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"countries_at_once": {"min_minuts": 3}}, "min_minuts"),
        ({"flag_score": 2.0, "revoke_score": 1.0}, "flag_score"),
        ({"networks_at_once": {"weight": -1}}, "weight"),
        ({"revoke_scor": 1}, "revoke_scor"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_config_is_rejected_with_the_key_named(data: Any, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        DetectionConfig.load(data)


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        DetectionConfig.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError):
        DetectionConfig.load(tmp_path / "bad.json")


# -- scoring --------------------------------------------------------------------------------------------------------


def test_ordinary_sessions_are_not_flagged_and_the_stats_say_so() -> None:
    result = score_sessions(table(crowd(8)), run_id=RUN_ID, decided_at=DECIDED_AT)
    assert result.verdicts == []
    assert result.stats["sessions_scored"] == 8 and result.stats["revoked"] == 0 and result.stats["reasons"] == {}


def test_empty_feature_table() -> None:
    rows = crowd(1)
    result = score_sessions(table(rows).slice(0, 0), run_id=RUN_ID, decided_at=DECIDED_AT)
    assert result.verdicts == [] and result.stats["sessions"] == 0


def test_score_is_the_sum_of_the_weights_and_decides_the_action() -> None:
    rows = crowd() + [sharing(), sharing("doublesession00001", distinct_prefixes=9, max_prefixes_per_minute=4)]
    v = verdicts(rows)
    assert v["sharingsession0001"].codes == ["countries_at_once"] and v["sharingsession0001"].score == 1.0
    double = v["doublesession00001"]
    assert double.codes == ["countries_at_once", "rotating_addresses"] and double.score == 2.0
    assert double.action is Action.REVOKE
    lighter = DetectionConfig.load({"countries_at_once": {"weight": 0.6}})
    assert verdicts(rows, lighter)["sharingsession0001"].action is Action.FLAG  # 0.6: flagged for review
    off = DetectionConfig.load({"countries_at_once": {"enabled": False}})
    assert "sharingsession0001" not in verdicts(rows, off)


def test_thresholds_are_inclusive_and_need_the_minutes() -> None:
    one = session("oneminutesession01", [minute(0, countries=2)] + [minute(k) for k in range(1, 10)])
    two = session("twominutesession01", [minute(0, countries=2), minute(5, countries=2), minute(1), minute(2)])
    three = session("threecountries0001", [minute(0, countries=3)] + [minute(k) for k in range(1, 5)])
    v = verdicts(crowd() + [one, two, three])
    assert "oneminutesession01" not in v  # one odd minute never revokes
    assert v["twominutesession01"].codes == ["countries_at_once"]
    assert v["threecountries0001"].codes == ["countries_at_once"]  # three countries in one minute
    reason = v["twominutesession01"].reasons[0]
    assert reason.values["minutes"] == 2 and reason.thresholds == {"min_countries": 2, "min_minutes": 2,
                                                                   "many_countries": 3}  # fmt: skip


def test_sessions_with_too_few_requests_are_not_scored() -> None:
    result = score_sessions(table(crowd() + [sharing(requests=5)]), run_id=RUN_ID, decided_at=DECIDED_AT)
    assert result.verdicts == [] and result.stats["sessions_scored"] == 5


def test_allow_lists_and_monitor_mode() -> None:
    rows = crowd() + [sharing(), sharing("partnersession0001", asns=[64496, 3320]), sharing("allowedsession0001")]
    config = DetectionConfig.load({"allow_sessions": ["allowedsession0001"], "allow_asns": [64496]})
    v = verdicts(rows, config)
    assert v["sharingsession0001"].action is Action.REVOKE
    for sid, detail in (("allowedsession0001", "session is allow-listed"), ("partnersession0001", "AS64496")):
        assert v[sid].action is Action.FLAG and v[sid].codes[-1] == ALLOW_LISTED and detail in v[sid].reasons[-1].detail
    monitored = verdicts(rows, config.model_copy(update={"monitor": True}))
    assert monitored["sharingsession0001"].action is Action.MONITOR
    assert monitored["sharingsession0001"].codes[-1] == MONITOR_MODE
    assert monitored["allowedsession0001"].action is Action.FLAG  # allow-listed stays flag in monitor mode too


def test_playback_rate_against_the_crowd_small_crowd_and_fallback() -> None:
    fast = [minute(k, segments=45, advance=45) for k in range(10)]  # 3x the crowd's 15 per minute
    rows = crowd(4) + [session("fastsession0000001", fast)]
    v = verdicts(rows)["fastsession0000001"]
    assert v.codes == ["playback_rate"]
    assert v.reasons[0].values["speed"] == pytest.approx(3.0) and v.reasons[0].values["channel_sessions"] == 4
    # a slow ripper: 1.3x, sustained, is enough with a crowd; 1.2x is not
    slow = [minute(k, segments=20, advance=20) for k in range(10)]
    assert verdicts(crowd(4) + [session("fastsession0000001", slow)])["fastsession0000001"].codes == ["playback_rate"]
    slower = [minute(k, segments=18, advance=18) for k in range(10)]
    assert verdicts(crowd(4) + [session("fastsession0000001", slower)]) == {}
    # pace is media advanced, not requests: retries and rendition switches at 3x the requests do not count
    retrying = [minute(k, segments=45, advance=15) for k in range(10)]
    assert verdicts(crowd(4) + [session("fastsession0000001", retrying)]) == {}
    # a buffer refill or a seek moves one minute, not the median of the interior minutes
    refill = [minute(k, segments=40, advance=40 if k in (1, 5) else 15) for k in range(10)]
    assert verdicts(crowd(4) + [session("fastsession0000001", refill)]) == {}
    # a cast or a restart refills a buffer in a minute or two: two fast interior minutes of three are not a download
    cast = [minute(k, segments=20 if k in (1, 2) else 15, advance=20 if k in (1, 2) else 15) for k in range(5)]
    assert verdicts(crowd(4) + [session("fastsession0000001", cast)]) == {}
    # ... while the same pace kept up in every interior minute is
    kept = [minute(k, segments=20, advance=20) for k in range(5)]
    rate = verdicts(crowd(4) + [session("fastsession0000001", kept)])["fastsession0000001"].reasons[0]
    assert (rate.values["fast_minutes"], rate.values["interior_minutes"]) == (3, 3)
    assert rate.values["seconds_ahead"] == pytest.approx(60.0) and rate.thresholds["min_share_of_minutes"] == 0.8
    # with one other session the bar is 1.5x higher (1.875): 30 per minute (2x) passes, 25 (1.67x) does not
    double = [minute(k, segments=30, advance=30) for k in range(10)]
    assert "fastsession0000001" in verdicts(crowd(1) + [session("fastsession0000001", double)])
    under = [minute(k, segments=25, advance=25) for k in range(10)]
    assert "fastsession0000001" not in verdicts(crowd(1) + [session("fastsession0000001", under)])
    # nobody else on the channel: one segment per 2 s assumed (30 per minute); 45 per minute is 1.5x: not flagged
    assert verdicts([session("fastsession0000001", fast)]) == {}
    # a paused crowd member does not make the others look fast: its reference is the minutes it was playing
    paused = session("pausedsession00001", [minute(0), minute(1), minute(2, segments=1, advance=1),
                                            minute(3, segments=1, advance=1), minute(4), minute(5)])  # fmt: skip
    assert verdicts([session("plainsession000001"), paused]) == {}
    # minutes without a pace (zapping, multi-view) are left out
    mixed = [minute(k, segments=45, advance=None) for k in range(10)]
    assert verdicts(crowd(4) + [session("multiviewsession01", mixed)]) == {}


def test_travel_needs_distance_speed_and_requests() -> None:
    def travel(sid: str, a: str, b: str, gap: float, requests: int = 20) -> dict[str, Any]:
        cells = [
            {"first_seen": 1767225600.0, "last_seen": 1767225800.0, "country": a, "requests": requests},
            {"first_seen": 1767225800.0 + gap, "last_seen": 1767226100.0, "country": b, "requests": 20},
        ]
        return session(sid, distinct_countries=2, countries=sorted({a, b}), country_cells=cells)

    rows = crowd() + [
        travel("deustravelsession1", "DE", "US", 60),
        travel("deattravelsession1", "DE", "AT", 60),  # neighbours (520 km): border areas, not travel
        travel("slowtravelsession1", "DE", "ES", 6 * 3600),  # 1870 km in six hours: possible
        travel("fewrequestssession", "DE", "US", 60, requests=1),  # one stray request is not a stay
        travel("unknowncountry0001", "DE", "XX", 60),
    ]
    v = verdicts(rows)
    assert set(v) == {"deustravelsession1"}
    move = v["deustravelsession1"].reasons[0].values
    assert (move["from"], move["to"], move["seconds"]) == ("DE", "US", 60.0)
    assert move["km"] == pytest.approx(6700, rel=0.05)


def test_capital_distances() -> None:
    assert capital_distance_km("DE", "FR") == pytest.approx(880, rel=0.05)
    assert capital_distance_km("de", "us") == pytest.approx(6700, rel=0.05)
    assert capital_distance_km("DE", "DE") == 0 and capital_distance_km("DE", "XX") is None


def test_verdicts_serialise_for_the_cli_and_the_ledger() -> None:
    v = verdicts(crowd() + [sharing()])["sharingsession0001"]
    document = json.loads(json.dumps(v.to_dict()))
    assert set(document) == {"session_id", "score", "action", "reasons", "features"}
    reason = document["reasons"][0]
    assert set(reason) == {"code", "detail", "weight", "values", "thresholds"}
    features = document["features"]
    assert features["asns"] == [3215, 3320] and features["distinct_asns"] == 2  # a list, and a count apart
    assert features["per_minute"][0]["countries"] == 2
    # one model: what detect prints is what the ledger stores, with the run and time it belongs to
    assert isinstance(v, LedgerVerdict) and (v.run_id, v.decided_at, v.action) == (RUN_ID, DECIDED_AT, "revoke")
    assert LedgerVerdict.model_validate(v.model_dump(mode="json")) == v
    assert all(REASON_CODE_PATTERN.match(code) for code in [*REASONS, ALLOW_LISTED, MONITOR_MODE])


def test_the_config_has_one_section_per_registered_reason_in_the_registry_order() -> None:
    sections = [name for name in DetectionConfig.model_fields if name not in PolicySettings.model_fields]
    assert sections == list(REASONS) == [rule.code for rule in RULES]
    config = DetectionConfig()
    for rule in RULES:
        assert type(config.section(rule.code)) is rule.Section


@pytest.mark.parametrize("rule", RULES, ids=[rule.code for rule in RULES])
def test_a_reason_revokes_on_its_own_only_when_it_is_evidence_of_players_at_once(rule) -> None:
    """Every reason, alone with a score far over ``revoke_score``: evidence of more than one player at once, or of a
    client that is no player, revokes; a sequence (or a supporting hint) only flags, saying why."""
    config = DetectionConfig()
    action, adjustments = decide(5.0, [rule.code], "sessionaaaaaaaaa01", [], config)
    if rule.evidence in (Evidence.CONCURRENT, Evidence.DEVICE):
        assert (action, adjustments) == (Action.REVOKE, [])
    else:
        assert action is Action.FLAG and [r.code for r in adjustments] == [SEQUENCE_ONLY]
        assert (rule.code in adjustments[0].detail) is (rule.evidence is Evidence.SEQUENTIAL)
    # corroborated by any evidence of players at once, the same reason revokes
    concurrent = next(r for r in RULES if r.evidence is Evidence.CONCURRENT)
    assert decide(5.0, [rule.code, concurrent.code], "sessionaaaaaaaaa01", [], config)[0] is Action.REVOKE


def test_the_evidence_classes_are_the_documented_ones() -> None:
    by_class = {e: sorted(r.code for r in RULES if r.evidence is e) for e in Evidence}
    assert by_class[Evidence.SEQUENTIAL] == ["impossible_travel", "rotating_addresses"]
    assert by_class[Evidence.SUPPORTING] == ["hosting_network", "tool_user_agent"]
    assert by_class[Evidence.DEVICE] == ["renditions_at_once"]


def test_allow_lists_and_monitor_mode_apply_to_what_would_be_revoked() -> None:
    code = "countries_at_once"
    listed = DetectionConfig(allow_sessions=frozenset({"sessionaaaaaaaaa01"}), monitor=True)
    action, (reason,) = decide(5.0, [code], "sessionaaaaaaaaa01", [], listed)
    assert (action, reason.code) == (Action.FLAG, ALLOW_LISTED)
    action, (reason,) = decide(5.0, [code], "sessionaaaaaaaaa02", [64500], listed)
    assert (action, reason.code) == (Action.MONITOR, MONITOR_MODE)
    assert decide(0.7, [code], "sessionaaaaaaaaa02", [], listed) == (Action.FLAG, [])
