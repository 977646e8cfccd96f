"""The network registry in a detection run: shared-egress networks are one place in features.sql, Apple's relay
prefixes leave the place-counting reasons out, and every verdict names the registry it was made with."""

from __future__ import annotations

import json
from pathlib import Path

from detection.detect import detect
from detection.networks import default_registry
from detection.networks.private_relay import import_egress_csv
from detection.scoring.config import DetectionConfig
from tools.scenarios import Viewer, playback, write_firehose

T0 = 1_767_225_600
END = T0 + 600
SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"


def relay_user(session_id: str, egress: list[Viewer]) -> list[dict]:
    """One Safari player whose requests leave by egress after egress, one request each (parallel connections)."""
    requests = playback(session_id, egress[0], start=T0 + 20, duration=570, channel="ch02-sports", segment_seconds=2.0)
    return [{**r, "c_ip": v.ip, "asn": v.asn, "c_country": v.country}
            for r, v in zip(requests, egress * (len(requests) // len(egress) + 1), strict=False)]  # fmt: skip


def test_relay_prefixes_from_apples_list_leave_the_place_reasons_out(tmp_path: Path) -> None:
    # relay egress addresses in a network the registry does not know by ASN (Akamai's other network, say): six
    # prefixes at once look like six places, until Apple's list says they are relay egress
    egress = [Viewer(f"172.224.{224 + k}.{5 + k}", asn=20940, country="DE", user_agent=SAFARI) for k in range(6)]
    reqs = relay_user("relayuserAAAAAAAAAAAAA01", egress)
    for k in range(4):  # a crowd for the channel
        reqs += playback(f"crowdviewerAAAAAAAAAAA0{k}", Viewer(f"100.64.{k}.9", asn=3320, country="DE"),
                         start=T0 + 3 + k, duration=590 - k, channel="ch02-sports", segment_seconds=2.0)  # fmt: skip
    write_firehose(tmp_path / "logs", reqs, seed=1)
    without = {v.session_id: v for v in detect(tmp_path / "logs", now=END).verdicts}
    assert "addresses_at_once" in without["relayuserAAAAAAAAAAAAA01"].codes

    csv = tmp_path / "egress-ip-ranges.csv"
    csv.write_text("".join(f"172.224.{224 + k}.0/27,DE,DE-BE,Berlin,\n" for k in range(6)), encoding="utf-8")
    import_egress_csv(csv, tmp_path / "relay.json")
    config = DetectionConfig.load({"networks": {"files": [str(tmp_path / "relay.json")]}})
    run = detect(tmp_path / "logs", now=END, config=config)
    assert "relayuserAAAAAAAAAAAAA01" not in {v.session_id for v in run.verdicts}
    assert run.stats["network_registry"] == config.networks.registry.version


def test_partner_networks_of_a_relay_count_as_one_place_and_one_network(tmp_path: Path) -> None:
    egress = [Viewer("172.224.1.9", 36183, "DE", SAFARI), Viewer("104.28.7.1", 13335, "DE", SAFARI),
              Viewer("146.75.1.1", 54113, "DE", SAFARI), Viewer("172.225.4.2", 36183, "DE", SAFARI)]  # fmt: skip
    write_firehose(tmp_path / "logs", relay_user("relayuserAAAAAAAAAAAAA02", egress), seed=2)
    shipped = detect(tmp_path / "logs", now=END, keep_features=True)
    row = shipped.features.to_pylist()[0]
    assert row["max_asns_per_minute"] == 1 and row["distinct_prefixes"] == 1
    assert row["asns"] == [13335, 36183, 54113]  # the verdicts still show the real networks
    # without the registry's relays, the same records are three networks and four prefixes in a minute
    bare = DetectionConfig.load({"networks": {"defaults": False}})
    row = detect(tmp_path / "logs", now=END, config=bare, keep_features=True).features.to_pylist()[0]
    assert row["max_asns_per_minute"] == 3 and row["distinct_prefixes"] == 4


def test_every_verdict_names_the_registry_it_was_made_with(tmp_path: Path) -> None:
    reqs = []
    for k, country in enumerate(("DE", "FR", "US")):  # token sharing: three countries at once
        reqs += playback("sharedtokenAAAAAAAAAAA01", Viewer(f"100.{70 + k}.1.9", 3320 + k, country),
                         start=T0 + 20 + k, duration=560)  # fmt: skip
    write_firehose(tmp_path / "logs", reqs, seed=3)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"networks": {"remove_asns": [13335]}}), encoding="utf-8")
    for run_config, version in ((None, default_registry().version), (DetectionConfig.load(str(config)), None)):
        run = detect(tmp_path / "logs", now=END, config=run_config)
        expected = version or run_config.networks.registry.version
        assert run.verdicts and all(v.features["network_registry"] == expected for v in run.verdicts)


def test_a_location_free_network_is_no_place_for_countries_at_once(tmp_path: Path) -> None:
    # one Starlink dish, dual stack: its IPv4 (CGNAT) and IPv6 addresses geolocated to two points of presence
    dish = [Viewer("98.97.1.9", 14593, "DE"), Viewer("2a0d:3344:1:2::9", 14593, "NL")]
    requests = playback("starlinkdishAAAAAAAAAA01", dish[0], start=T0 + 20, duration=570)
    write_firehose(tmp_path / "logs", [{**r, "c_ip": v.ip, "c_country": v.country}
                                       for r, v in zip(requests, dish * len(requests), strict=False)], seed=4)
    assert detect(tmp_path / "logs", now=END).verdicts == []
    bare = DetectionConfig.load({"networks": {"defaults": False}})  # the registry left out: two countries at once
    (verdict,) = detect(tmp_path / "logs", now=END, config=bare).verdicts
    assert "countries_at_once" in verdict.codes
