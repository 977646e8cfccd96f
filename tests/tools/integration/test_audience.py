"""The audience-v2 mix writes what each documented behaviour looks like in real-time logs, read back from the
records (not from the detection): in-flight gateways, relay partners, gateways, Starlink, roaming, speed watchers
reporting CMCD pr, slow rippers pulling one rendition at 1.3-1.8x."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from detection.logs.reader import open_logs
from tools.audience import AUDIENCE_SHARES, GATEWAYS, INFLIGHT_PROVIDERS, RELAY_PARTNERS, ROAMERS, STARLINK
from tools.generate import DEFAULT_MIX, KINDS, MIXES, generate_corpus

SID_SQL = "split_part(split_part(cs_uri_stem, '/', 2), '.', 1)"


@pytest.fixture(scope="module")
def audience(tmp_path_factory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("audience")
    generate_corpus(root, sessions=2500, minutes=8, seed=21, mix="audience-v2")
    labels = pd.read_csv(root / "labels.csv", keep_default_na=False).set_index("session_id")
    with open_logs(root) as logs:
        records = logs.execute(
            f"SELECT {SID_SQL} AS sid, timestamp, c_ip, asn, c_country, cs_user_agent, cs_uri_stem, "
            "cmcd_session_id, cmcd_playback_rate FROM logs WHERE sc_status BETWEEN 200 AND 299"
        ).to_pandas()
    records["kind"] = records["sid"].map(labels["kind"])
    return root, labels, records


def of(records: pd.DataFrame, kind: str) -> pd.DataFrame:
    rows = records[records["kind"] == kind]
    assert len(rows), f"no {kind} records"
    return rows


def test_the_mixes() -> None:
    assert not set(AUDIENCE_SHARES) & set(MIXES[DEFAULT_MIX])  # generator-v1 stays what it was
    assert set(MIXES["audience-v2"]) == set(MIXES[DEFAULT_MIX]) | set(AUDIENCE_SHARES)
    assert {KINDS[k].label for k in AUDIENCE_SHARES} == {"legit", "pirate"}
    with pytest.raises(ValueError, match="unknown mix"):
        generate_corpus("/nonexistent-never-written", sessions=10, minutes=1, seed=1, mix="audience-v9")


def test_every_audience_kind_is_in_the_corpus(audience) -> None:
    _, labels, _ = audience
    assert set(AUDIENCE_SHARES) <= set(labels["kind"])


def test_inflight_addresses_are_the_providers_gateway_country(audience) -> None:
    _, labels, records = audience
    flights = of(records, "inflight")
    providers = dict(INFLIGHT_PROVIDERS)
    on_board = flights[flights["asn"].isin(providers)]
    assert (on_board["c_country"] == on_board["asn"].map(providers)).all()
    assert on_board["sid"].nunique() == labels[labels["kind"] == "inflight"].index.size  # every one flies
    assert (labels.loc[labels["kind"] == "inflight", "n_ips"] <= 2).all()  # one address at a time, a gate before


def test_relay_egress_is_apples_partners_in_the_users_country(audience) -> None:
    _, labels, records = audience
    relay = of(records, "relay_rotation")
    assert set(relay["asn"]) <= set(RELAY_PARTNERS)
    assert (relay.groupby("sid")["c_country"].nunique() == 1).all()
    assert relay["cs_user_agent"].str.startswith("AppleCoreMedia").all()  # Safari plays HLS with the system player
    assert relay["cmcd_session_id"].isna().all()
    assert (labels.loc[labels["kind"] == "relay_rotation", "n_ips"] >= 2).mean() > 0.8  # rotation or parallel


def test_gateways_satellite_and_roaming(audience) -> None:
    _, labels, records = audience
    assert set(of(records, "gateway_failover")["asn"]) <= set(GATEWAYS)
    starlink = of(records, "satellite")
    assert set(starlink["asn"]) == {STARLINK} and starlink["c_ip"].str.contains(":").any()
    roaming = of(records, "roaming")
    first = roaming.sort_values("timestamp").groupby("sid").first()
    assert set(zip(first["c_country"], first["asn"], strict=True)) <= set(ROAMERS)  # home-routed first
    assert (labels.loc[labels["kind"] == "roaming", "countries"].str.count(";") == 1).all()


def test_speed_watchers_report_their_rate_when_their_player_speaks_cmcd(audience) -> None:
    _, _, records = audience
    watchers = of(records, "speed_watcher")
    assert watchers["cs_uri_stem"].str.contains("/vod-").all()
    sends = watchers[watchers["cmcd_session_id"].notna()]
    assert len(sends) and sends["cmcd_playback_rate"].between(1.25, 2.0).all()
    assert watchers.loc[watchers["cmcd_session_id"].isna(), "cmcd_playback_rate"].isna().all()
    # nobody else reports a rate: CTA-5004 asks players to send pr only when it is not 1
    assert records.loc[records["kind"] != "speed_watcher", "cmcd_playback_rate"].isna().all()


def test_slow_rippers_pull_one_rendition_at_1_3_to_1_8_times_real_time(audience) -> None:
    _, _, records = audience
    rippers = of(records, "slow_ripper")
    segments = rippers[rippers["cs_uri_stem"].str.endswith(".ts")].copy()
    assert segments["cmcd_session_id"].isna().all()
    parts = segments["cs_uri_stem"].str.extract(r"/(?P<title>vod-\d+)/(?P<rendition>\w+)/seg_(?P<seq>\d+)\.ts$")
    segments = segments.join(parts)
    assert (segments.groupby("sid")["rendition"].nunique() == 1).all()
    assert (segments["rendition"] == "1080p").all()
    seconds = {4.0, 6.0}  # the generated titles' segment durations
    for _sid, session in segments.groupby("sid"):
        session = session.sort_values("timestamp")
        if len(session) < 20:
            continue
        span = session["timestamp"].iloc[-1] - session["timestamp"].iloc[0]
        media = (session["seq"].astype(int).iloc[-1] - session["seq"].astype(int).iloc[0])
        speeds = [media * d / span for d in seconds]
        assert any(1.25 <= s <= 1.9 for s in speeds), speeds
