"""The network registry: shipped defaults with sources, lookups, operator overrides, versions, and the import of
Apple's Private Relay egress list (in the geofeed format Apple publishes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detection.networks import NetworkClass, NetworkEntry, NetworkRegistry, RegistryError, default_registry
from detection.networks.private_relay import import_egress_csv, parse_egress_csv
from detection.scoring.config import ConfigError, DetectionConfig
from tools.detection_cli import main

#: A few lines as Apple's egress-ip-ranges.csv has them: prefix, country, region, city, postal code (RFC 8805).
APPLE_LINES = """172.224.224.0/27,GB,GB-EN,London,
172.224.224.32/27,DE,DE-BE,Berlin,
2a02:26f7:b3c0:4000::/64,US,US-CA,Los Angeles,
# a comment line

"""


def test_the_shipped_defaults_name_a_source_for_every_entry_and_cover_every_class() -> None:
    registry = default_registry()
    assert registry.version
    assert {e.network_class for e in registry.entries} == set(NetworkClass)
    assert all(e.source.startswith("https://") for e in registry.entries)
    asns = [e.asn for e in registry.entries if e.asn is not None]
    assert len(asns) == len(set(asns)), "an ASN is in one class only"
    # the partner networks Apple names for Private Relay egress
    assert {36183, 13335, 54113} <= registry.asns(lambda c: c is NetworkClass.PRIVACY_RELAY)


def test_classes_say_how_the_policy_treats_them() -> None:
    shared = {c for c in NetworkClass if c.shared_egress}
    assert shared == {NetworkClass.PRIVACY_RELAY, NetworkClass.SECURE_WEB_GATEWAY}
    assert not NetworkClass.PRIVACY_RELAY.location_free  # relays keep the viewer's region
    assert {NetworkClass.INFLIGHT, NetworkClass.SATELLITE, NetworkClass.MOBILE_CARRIER, NetworkClass.VPN} <= {
        c for c in NetworkClass if c.location_free
    }
    assert NetworkClass.MOBILE_CARRIER.address_pool and not NetworkClass.HOSTING.address_pool


def test_lookups_by_asn_and_by_address_and_unknown_is_none() -> None:
    entries = (
        NetworkEntry.model_validate({"class": "vpn", "asn": 64500, "name": "a", "source": "s"}),
        NetworkEntry.model_validate({"class": "privacy_relay", "prefix": "192.0.2.0/25", "name": "r", "source": "s"}),
        NetworkEntry.model_validate({"class": "inflight", "prefix": "2001:db8::/48", "name": "f", "source": "s"}),
    )
    registry = NetworkRegistry(version="t", entries=entries)
    assert registry.classify_asn(64500) is NetworkClass.VPN and registry.classify_asn(64501) is None
    assert registry.classify_ip("192.0.2.127") is NetworkClass.PRIVACY_RELAY
    assert registry.classify_ip("192.0.2.128") is None
    assert registry.classify_ip("2001:db8:0:ffff::1") is NetworkClass.INFLIGHT
    assert registry.classify_ip("not an address") is None and registry.classify_ip(None) is None
    assert registry.classify(64500, "192.0.2.1") is NetworkClass.PRIVACY_RELAY  # the prefix is more specific


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"class": "vpn", "name": "n", "source": "s"}, "exactly one of asn or prefix"),
        ({"class": "vpn", "asn": 1, "prefix": "192.0.2.0/24", "name": "n", "source": "s"}, "exactly one"),
        ({"class": "vpn", "prefix": "192.0.2.1/24", "name": "n", "source": "s"}, "not a network address"),
        ({"class": "teleport", "asn": 1, "name": "n", "source": "s"}, "class"),
        ({"class": "vpn", "asn": 1, "name": "n"}, "source"),
    ],
)
def test_a_bad_override_is_a_config_error_naming_it(entry: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        DetectionConfig.load({"networks": {"add": [entry]}})


def test_overrides_win_remove_and_change_the_version() -> None:
    shipped = DetectionConfig()
    assert shipped.networks.registry.version == default_registry().version
    mine = {"class": "secure_web_gateway", "asn": 16509, "name": "our gateway in AWS", "source": "our network team"}
    config = DetectionConfig.load({"networks": {"add": [mine], "remove_asns": [13335]}})
    registry = config.networks.registry
    assert registry.classify_asn(16509) is NetworkClass.SECURE_WEB_GATEWAY  # was hosting
    assert registry.classify_asn(13335) is None
    assert registry.version.startswith(default_registry().version + "+overrides.")
    other = DetectionConfig.load({"networks": {"remove_asns": [13335]}}).networks.registry.version
    assert other != registry.version
    assert config.query_parameters()["shared_egress_asns"].startswith(",16509,")
    assert ",13335," not in config.query_parameters()["shared_egress_asns"]
    empty = DetectionConfig.load({"networks": {"defaults": False}}).query_parameters()
    assert empty == {"shared_egress_asns": ",", "location_free_asns": ","}


def test_apple_egress_list_parses_as_apple_publishes_it() -> None:
    entries = parse_egress_csv(APPLE_LINES)
    assert [(e["prefix"], e["country"]) for e in entries] == [
        ("172.224.224.0/27", "GB"), ("172.224.224.32/27", "DE"), ("2a02:26f7:b3c0:4000::/64", "US")]  # fmt: skip
    assert {e["class"] for e in entries} == {"privacy_relay"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("172.224.224.0/27,GB\nbogus,DE\n", "line 2: 'bogus' is not an IP prefix"),
        ("172.224.224.1/27,GB\n", "line 1: .* is not an IP prefix"),  # host bits set: not how Apple writes it
        ("172.224.224.0/27,Germany\n", "line 1: 'Germany' is not an ISO 3166-1"),
        ("# only a comment\n\n", "holds no prefix"),
    ],
)
def test_a_malformed_egress_list_is_refused_with_its_line(text: str, problem: str) -> None:
    with pytest.raises(RegistryError, match=problem):
        parse_egress_csv(text)


def test_the_import_writes_a_registry_file_the_config_takes(tmp_path: Path) -> None:
    source = tmp_path / "egress-ip-ranges.csv"
    source.write_text(APPLE_LINES, encoding="utf-8")
    summary = import_egress_csv(source, tmp_path / "relay.json")
    assert (summary["prefixes"], summary["ipv4"], summary["ipv6"]) == (3, 2, 1)
    config = DetectionConfig.load({"networks": {"files": [str(tmp_path / "relay.json")]}})
    registry = config.networks.registry
    assert registry.classify_ip("172.224.224.33") is NetworkClass.PRIVACY_RELAY
    assert registry.version == f"{default_registry().version}+{summary['version']}"
    source.write_text(APPLE_LINES + "172.224.225.0/27,FR,FR-IDF,Paris,\n", encoding="utf-8")
    assert import_egress_csv(source, tmp_path / "relay2.json")["version"] != summary["version"]  # a new list


def test_the_networks_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "egress.csv"
    source.write_text(APPLE_LINES, encoding="utf-8")
    assert main(["networks", "import-private-relay", "--csv", str(source), "--out", str(tmp_path / "r.json")]) == 0
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"networks": {"files": [str(tmp_path / "r.json")]}}), encoding="utf-8")
    capsys.readouterr()
    assert main(["networks", "show", "--config", str(config), "--lookup", "AS54113", "--lookup", "172.224.224.3",
                 "--lookup", "198.51.100.1"]) == 0  # fmt: skip
    shown = json.loads(capsys.readouterr().out)
    assert shown["lookup"] == {"AS54113": "privacy_relay", "172.224.224.3": "privacy_relay", "198.51.100.1": None}
    assert shown["classes"]["privacy_relay"] == {"asns": 3, "prefixes": 3}
    # bad input: exit 2, one message, nothing written
    bad = tmp_path / "bad.csv"
    bad.write_text("nonsense\n", encoding="utf-8")
    assert main(["networks", "import-private-relay", "--csv", str(bad), "--out", str(tmp_path / "bad.json")]) == 2
    assert not (tmp_path / "bad.json").exists()
    assert main(["networks", "import-private-relay", "--csv", str(tmp_path / "missing.csv"),
                 "--out", str(tmp_path / "m.json")]) == 2  # fmt: skip
    assert main(["networks", "show", "--lookup", "example.com"]) == 2
    assert "error:" in capsys.readouterr().err
