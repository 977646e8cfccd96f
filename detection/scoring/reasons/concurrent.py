"""Reasons that see one session used in several places or by several players in the same minute."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from detection.scoring.reasons.base import Evidence, Fired, ReasonRule, Section, SessionTable, worst_minute
from revocation.ledger.base import Reason


class MinutesOverThreshold(ReasonRule):
    """A reason that fires when one per-minute value (``minute_field``) reaches a threshold (the section's
    ``threshold`` setting) in at least ``min_minutes`` minutes of the window."""

    minute_field: ClassVar[str]
    threshold: ClassVar[str]

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        minutes = table.minutes_where(table.per_minute(self.minute_field) >= getattr(section, self.threshold))
        return Fired(minutes >= section.min_minutes, section.weight, {"minutes": minutes})


class CountriesAtOnceSection(Section):
    """Served requests from several countries in the same minute: one session played in several countries at once
    (token sharing, two homes). Real viewers do not do that: privacy relays keep the viewer's country."""

    min_countries: int = Field(2, ge=2, description="Countries in one minute.")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window with that many countries.")
    many_countries: int = Field(3, ge=2, description="Countries in one minute that fire the reason in one minute.")


class CountriesAtOnce(ReasonRule):
    code = "countries_at_once"
    Section = CountriesAtOnceSection
    evidence = Evidence.CONCURRENT

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        countries = table.per_minute("countries")
        minutes = table.minutes_where(countries >= section.min_countries)
        crowded = table.minutes_where(countries >= section.many_countries)
        return Fired((minutes >= section.min_minutes) | (crowded >= 1), section.weight, {"minutes": minutes})

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        values = {"minutes": fired.value("minutes", row), "max_countries_per_minute": worst_minute(record, "countries"),
                  "countries": record.get("countries")}  # fmt: skip
        thresholds = {"min_countries": section.min_countries, "min_minutes": section.min_minutes,
                      "many_countries": section.many_countries}  # fmt: skip
        detail = (f"served in {values['max_countries_per_minute']} countries in the same minute, {values['minutes']} "
                  f"minutes with {section.min_countries}+ countries ({', '.join(record.get('countries') or [])})")
        return self.reason(detail, section.weight, values, thresholds)


class NetworksAtOnceSection(Section):
    """Many networks (ASNs) in the same minute: several players on several providers (token sharing, slow leaks).
    Dual stack, Wi-Fi to LTE and privacy relays stay at two (relays: up to three partner networks)."""

    min_asns: int = Field(3, ge=2, description="ASNs in one minute.")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window with that many ASNs.")


class NetworksAtOnce(MinutesOverThreshold):
    code = "networks_at_once"
    counts_places = True
    Section = NetworksAtOnceSection
    evidence = Evidence.CONCURRENT
    minute_field, threshold = "asns", "min_asns"

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        values = {"minutes": fired.value("minutes", row), "max_asns_per_minute": worst_minute(record, "asns"),
                  "asns": record.get("asns")}
        thresholds = {"min_asns": section.min_asns, "min_minutes": section.min_minutes}
        detail = (f"{values['max_asns_per_minute']} networks (ASNs) at once; {values['minutes']} minutes with "
                  f"{section.min_asns}+")
        return self.reason(detail, section.weight, values, thresholds)


class AddressesAtOnceSection(Section):
    """Many network prefixes (/24, /48) in the same minute: many players, or one player behind rotating proxies.
    Mobile handovers change address one after another; relays and corporate proxies spread one player over a few."""

    min_prefixes: int = Field(5, ge=2, description="Distinct /24 (IPv4) or /48 (IPv6) prefixes in one minute.")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window with that many prefixes.")


class AddressesAtOnce(MinutesOverThreshold):
    code = "addresses_at_once"
    counts_places = True
    Section = AddressesAtOnceSection
    evidence = Evidence.CONCURRENT
    minute_field, threshold = "prefixes", "min_prefixes"

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        values = {"minutes": fired.value("minutes", row), "max_prefixes_per_minute": worst_minute(record, "prefixes"),
                  "distinct_prefixes": record.get("distinct_prefixes")}
        thresholds = {"min_prefixes": section.min_prefixes, "min_minutes": section.min_minutes}
        detail = (f"{values['max_prefixes_per_minute']} address prefixes at once; {values['minutes']} minutes with "
                  f"{section.min_prefixes}+")
        return self.reason(detail, section.weight, values, thresholds)


class DevicesAtOnceSection(Section):
    """Several devices on several networks at once: addresses in different networks in the same minute, and the
    session played by several different user agents (a quiet leak: three or four players in two or three networks,
    each at its own position of a VOD title). One viewer's phone on Wi-Fi and LTE, dual stack or a relay stays at
    one or two user agents (an app and its player library)."""

    min_prefixes: int = Field(3, ge=2, description="Distinct /24 or /48 prefixes in one minute...")
    min_asns: int = Field(2, ge=2, description="...in at least this many networks (ASNs).")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window like that.")
    min_user_agents: int = Field(3, ge=2, description="User agents the session was played with.")


class DevicesAtOnce(ReasonRule):
    code = "devices_at_once"
    counts_places = True
    Section = DevicesAtOnceSection
    evidence = Evidence.CONCURRENT

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        spread = (table.per_minute("prefixes") >= section.min_prefixes) & (table.per_minute("asns") >= section.min_asns)
        minutes = table.minutes_where(spread)
        players = table.numbers("distinct_user_agents") >= section.min_user_agents
        return Fired((minutes >= section.min_minutes) & players, section.weight, {"minutes": minutes})

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        values = {"minutes": fired.value("minutes", row), "max_prefixes_per_minute": worst_minute(record, "prefixes"),
                  "max_asns_per_minute": worst_minute(record, "asns"),
                  "distinct_user_agents": record.get("distinct_user_agents")}
        thresholds = {"min_prefixes": section.min_prefixes, "min_asns": section.min_asns,
                      "min_minutes": section.min_minutes, "min_user_agents": section.min_user_agents}
        detail = (f"{values['distinct_user_agents']} different players (user agents) on {section.min_prefixes}+ "
                  f"addresses in {section.min_asns}+ networks at once, {values['minutes']} minutes")
        return self.reason(detail, section.weight, values, thresholds)


class SharedSegmentsSection(Section):
    """The same segments fetched from more than one address in the same minute: several players of one live
    channel. One player whose address changes (handover, dual stack, relay) fetches each segment once."""

    min_share: float = Field(
        0.3, gt=0, le=1, description="Fetches beyond one per segment, as a share of the minute's segment fetches."
    )
    min_segments: int = Field(4, ge=1, description="...and at least this many such fetches in the minute.")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window like that (a cast overlaps for seconds).")


class SharedSegments(ReasonRule):
    code = "shared_segments"
    Section = SharedSegmentsSection
    evidence = Evidence.CONCURRENT

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        shared, segments = table.per_minute("shared_segments"), table.per_minute("segments")
        minutes = table.minutes_where(
            (shared >= section.min_segments) & (shared >= section.min_share * np.maximum(segments, 1))
        )
        return Fired(minutes >= section.min_minutes, section.weight, {"minutes": minutes})

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        values = {"minutes": fired.value("minutes", row), "shared_segments": record.get("shared_segments"),
                  "segments": record.get("segments")}
        thresholds = {"min_share": section.min_share, "min_segments": section.min_segments,
                      "min_minutes": section.min_minutes}
        detail = (f"the same segments fetched from several addresses: {values['shared_segments']} extra fetches of "
                  f"{values['segments']}, {values['minutes']} minutes over {section.min_share:.0%} of the minute's "
                  f"segments")
        return self.reason(detail, section.weight, values, thresholds)


class RenditionsAtOnceSection(Section):
    """One address fetching each segment in several renditions: a restreamer re-serving the whole ABR ladder. A
    player fetches one rendition at a time (two where audio and video are separate renditions)."""

    min_renditions: float = Field(2.5, gt=1, description="Segment fetches per sequence number by one address.")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window like that.")


class RenditionsAtOnce(MinutesOverThreshold):
    code = "renditions_at_once"
    Section = RenditionsAtOnceSection
    evidence = Evidence.DEVICE
    minute_field, threshold = "renditions_at_once", "min_renditions"

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        values = {"minutes": fired.value("minutes", row),
                  "max_renditions_at_once": round(float(worst_minute(record, "renditions_at_once")), 2)}
        thresholds = {"min_renditions": section.min_renditions, "min_minutes": section.min_minutes}
        detail = (f"one address fetched each segment in {values['max_renditions_at_once']} renditions; "
                  f"{values['minutes']} minutes with {section.min_renditions}+")
        return self.reason(detail, section.weight, values, thresholds)


class ChannelsAtOnceSection(Section):
    """Different channels played at once from different places (addresses that fetch one channel only). Channel
    zapping is one place, one channel after another; multi-view at home is one place."""

    min_minutes: int = Field(2, ge=1, description="Minutes of the window like that.")


class ChannelsAtOnce(ReasonRule):
    code = "channels_at_once"
    Section = ChannelsAtOnceSection
    evidence = Evidence.CONCURRENT

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        return Fired(table.numbers("channels_apart_minutes") >= section.min_minutes, section.weight)

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        values = {"minutes": record.get("channels_apart_minutes"), "channels": record.get("channels")}
        detail = (f"different channels played at once from different places in {values['minutes']} minutes "
                  f"({', '.join(record.get('channels') or [])})")
        return self.reason(detail, section.weight, values, {"min_minutes": section.min_minutes})


class CmcdSessionsAtOnceSection(Section):
    """Several CMCD playback sessions (CTA-5004 ``sid``: one per player instance) playing one channel together on one
    token, for most of a minute: several players, whatever addresses they are behind (CGNAT, a relay, a moving
    phone). Players that send no CMCD give no evidence either way. A player restarting, or handing playback over to
    a cast device, overlaps with its successor for seconds; a minute counts only when the sessions played together
    for ``min_overlap_seconds``. Several players of several channels (multi-view) are left out."""

    min_sessions: int = Field(2, ge=2, description="CMCD playback sessions of one channel in one minute.")
    min_overlap_seconds: float = Field(30.0, ge=0, le=60, description="...playing together at least this long.")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window like that.")


class CmcdSessionsAtOnce(ReasonRule):
    code = "cmcd_sessions_at_once"
    Section = CmcdSessionsAtOnceSection
    evidence = Evidence.CONCURRENT

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        together = (table.per_minute("cmcd_sessions") >= section.min_sessions) & (
            table.per_minute("cmcd_overlap") >= section.min_overlap_seconds
        )
        minutes = table.minutes_where(together)
        return Fired(minutes >= section.min_minutes, section.weight, {"minutes": minutes})

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        values = {"minutes": fired.value("minutes", row),
                  "max_cmcd_sessions_per_minute": worst_minute(record, "cmcd_sessions"),
                  "max_seconds_together": round(float(worst_minute(record, "cmcd_overlap")), 1)}
        thresholds = {"min_sessions": section.min_sessions, "min_overlap_seconds": section.min_overlap_seconds,
                      "min_minutes": section.min_minutes}
        detail = (f"{values['max_cmcd_sessions_per_minute']} players (CMCD playback sessions) of one channel at once, "
                  f"{values['minutes']} minutes with {section.min_sessions}+ playing together "
                  f"{section.min_overlap_seconds:g}+ s")
        return self.reason(detail, section.weight, values, thresholds)
