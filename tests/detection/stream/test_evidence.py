"""What one record adds to its session's minute, and what the minutes amount to (detection/stream/evidence.py)."""

from __future__ import annotations

import pytest

from detection.networks import default_registry
from detection.stream.evidence import MinuteState, minute_row, network_prefix, session_features, sighting
from tests.detection.stream.records import EXP, MINUTE, row, token

REGISTRY = default_registry()
RELAY_ASN = 36183  # Akamai, an Apple Private Relay egress partner: shared egress
INFLIGHT_ASN = min(REGISTRY.location_free_asns - REGISTRY.shared_egress_asns)


def minute_of(*rows: dict) -> MinuteState:
    seen = [sighting(r, REGISTRY) for r in rows]
    state = MinuteState(seen[0].session_id, seen[0].minute)
    for s in seen:
        state.add(s)
    return state


def test_a_served_segment_becomes_a_sighting_of_its_session_and_minute() -> None:
    seen = sighting(row("sess_evidence_000001", MINUTE + 61.5, "198.51.100.7", seq=42), REGISTRY)
    assert (seen.session_id, seen.minute, seen.prefix, seen.network, seen.country) == (
        "sess_evidence_000001", MINUTE // 60 + 1, "198.51.100.0/24", "3320", "DE")
    assert seen.fetch == "live-ch1\t198.51.100.7\t42" and seen.exp == EXP


@pytest.mark.parametrize(("changes", "why"), [
    ({"status": 403}, "denied by the edge: anyone can type a session id"),
    ({"status": 304}, "not served"),
    ({"file": "poster.jpg"}, "not media"),
])
def test_what_is_no_served_media_request_is_no_sighting(changes: dict, why: str) -> None:
    assert sighting(row("sess_evidence_000002", MINUTE, "198.51.100.7", **changes), REGISTRY) is None, why


def test_a_percent_encoded_name_is_classified_decoded_like_features_sql() -> None:
    values = row("sess_evidence_000003", MINUTE, "198.51.100.7", file="seg_00042.t%73")
    assert sighting(values, REGISTRY).fetch.endswith("\t42")


def test_networks_of_the_registry_change_what_counts() -> None:
    relay = sighting(row("sess_evidence_000004", MINUTE, "172.224.226.1", asn=RELAY_ASN), REGISTRY)
    assert (relay.prefix, relay.network) == ("shared-egress", "-1")  # one place and one network, as features.sql
    flying = sighting(row("sess_evidence_000004", MINUTE, "192.0.2.1", asn=INFLIGHT_ASN, country="US"), REGISTRY)
    assert flying.country is None  # location-free: where the gateway is, not the viewer


@pytest.mark.parametrize(("address", "prefix"), [
    ("203.0.113.77", "203.0.113.0/24"),
    ("2001:db8:0001:ffff::1", "2001:db8:1::/48"),
    ("2001:db8::1", "2001:db8:0::/48"),
    ("not an address", None),
])
def test_prefixes_are_spelled_as_features_sql_spells_them(address: str, prefix: str | None) -> None:
    assert network_prefix(address) == prefix


def test_adding_the_same_record_twice_changes_nothing() -> None:
    values = row("sess_evidence_000005", MINUTE + 3, "198.51.100.7")
    once, twice = minute_of(values), minute_of(values, dict(values))
    assert once.sets == twice.sets and minute_row(twice)["segments"] == 1


def test_the_same_segments_from_two_addresses_are_shared_one_address_repeating_is_not() -> None:
    two = minute_of(*[row("sess_evidence_000006", MINUTE + s, ip, seq=10 + s // 6)
                      for s in range(0, 60, 6) for ip in ("198.51.100.7", "203.0.113.9")])
    assert minute_row(two)["shared_segments"] == 10  # 20 fetches of 10 numbers
    retries = minute_of(*[row("sess_evidence_000007", MINUTE + s, "198.51.100.7", seq=10 + s // 12,
                              request_id=f"r{s}") for s in range(0, 60, 6)])
    assert minute_row(retries)["shared_segments"] == 0 and minute_row(retries)["segments"] == 5


def test_cmcd_players_of_one_channel_count_with_the_seconds_they_played_together() -> None:
    rows = [row("sess_evidence_000008", MINUTE + s, "198.51.100.7", seq=s, cmcd_sid=sid, request_id=f"{sid}{s}")
            for s in range(0, 60, 5) for sid in ("player-a", "player-b")]
    entry = minute_row(minute_of(*rows))
    assert entry["cmcd_sessions"] == 2 and entry["cmcd_overlap"] == 55.0
    handover = [row("sess_evidence_000009", MINUTE + s, "198.51.100.7", seq=s, request_id=f"h{s}",
                    cmcd_sid="phone" if s < 30 else "tv") for s in range(0, 60, 5)]
    entry = minute_row(minute_of(*handover))
    assert entry["cmcd_sessions"] == 2 and entry["cmcd_overlap"] < 0  # one after the other, never together


def test_a_minute_is_plural_only_with_more_than_one_of_something_counted() -> None:
    assert not minute_of(row("sess_evidence_000010", MINUTE, "198.51.100.7")).plural()
    assert minute_of(row("sess_evidence_000010", MINUTE, "198.51.100.7"),
                     row("sess_evidence_000010", MINUTE + 1, "198.51.100.8", seq=2)).plural()


def test_session_features_add_up_the_minutes() -> None:
    first = minute_of(row("sess_evidence_000011", MINUTE + 1, "198.51.100.7"),
                      row("sess_evidence_000011", MINUTE + 2, "203.0.113.9", country="FR", asn=3215, seq=2))
    second = minute_of(row("sess_evidence_000011", MINUTE + 61, "198.51.100.7", seq=3))
    features = session_features("sess_evidence_000011", [second, first])
    assert [m["countries"] for m in features["per_minute"]] == [2, 1]  # oldest first
    assert features["requests"] == 3 and features["distinct_countries"] == 2 and features["asns"] == [3215, 3320]
    assert features["token_exps"] == [EXP] and token("x").startswith("x.")
