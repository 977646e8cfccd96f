"""Reasons that see one session move: between distant countries faster than a person travels (and between
different devices as it does), or through many addresses over the window, several of them in the same minutes.

A move to or from a network whose addresses say nothing about where the viewer is (in-flight, satellite, a
gateway, a roaming phone's home network, a VPN exit: the registry's location-free classes) is no travel; address
pools (carriers' NAT, relays, gateways) rotate addresses by design."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from detection.scoring.reasons.base import Evidence, Fired, ReasonRule, Section, SessionTable
from revocation.ledger.base import Reason

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


class ImpossibleTravelSection(Section):
    """A country change faster than a person can travel (resold sessions used in turn in distant countries).
    Countries within ``min_km`` (capital to capital) are ignored: border areas and geolocation noise. Addresses in
    location-free networks (registry) are left out: an in-flight or satellite gateway, a secure web gateway, a
    roaming phone's home network or a VPN exit is not where the viewer is."""

    max_speed_kmh: float = Field(1000, gt=0, description="Fastest plausible travel, airliner speed.")
    min_km: float = Field(800, ge=0, description="Ignore moves between countries closer than this.")
    min_requests: int = Field(3, ge=1, description="Served requests needed on each side of the move.")


def impossible_moves(
    cells: list[dict[str, Any]] | None, section: ImpossibleTravelSection, location_free: frozenset[int] = frozenset()
) -> list[dict[str, Any]]:
    """Every impossible move of a session from one country to another, fastest first.

    ``cells`` are (first_seen, last_seen, country, requests) of each address the session was served at (with at
    least ``min_requests``). A move is an address in one country whose service ended before an address in another
    country began: it took ``later.first_seen - earlier.last_seen`` seconds over the distance between the
    countries' capitals. Addresses served at the same time are two places at once, the countries_at_once rule's
    business, and are not moves; addresses in ``location_free`` networks are not places. Each move says whether
    the two addresses were played by different user agents (``devices_differ``: none in common)."""
    if not cells:
        return []
    spans = sorted(
        (c["first_seen"], c["last_seen"], c["country"], frozenset(filter(None, (c.get("ua_lo"), c.get("ua_hi")))))
        for c in cells
        if c.get("country") and (c.get("requests") or 0) >= section.min_requests
        and c.get("asn") not in location_free
    )
    moves: list[dict[str, Any]] = []
    for first_b, _last_b, b, agents_b in spans:
        for _first_a, last_a, a, agents_a in spans:
            if a == b or last_a > first_b:
                continue
            km = capital_distance_km(a, b)
            if km is None or km < section.min_km:
                continue
            gap = first_b - last_a
            kmh = km / max(gap, 1.0) * 3600.0
            if kmh > section.max_speed_kmh:
                moves.append({"from": a, "to": b, "km": round(km), "seconds": round(gap, 1), "speed_kmh": round(kmh),
                              "at": round(first_b, 3),
                              "devices_differ": bool(agents_a and agents_b and not agents_a & agents_b)})
    return sorted(moves, key=lambda m: -m["speed_kmh"])


def _moves_column(table: SessionTable, section: ImpossibleTravelSection, scored: np.ndarray) -> np.ndarray:
    """Per session: its impossible moves (an empty list for most: only sessions seen in several countries are
    looked at, in Python). Computed once per table and section (two reasons read it)."""

    def compute() -> np.ndarray:
        moves = np.empty(table.rows, dtype=object)
        moves[:] = [[] for _ in range(table.rows)]
        if "country_cells" in table.features.column_names:
            candidates = np.flatnonzero((table.numbers("distinct_countries") >= 2) & scored)
            if len(candidates):
                cells = table.features["country_cells"].take(pa.array(candidates)).to_pylist()
                free = table.networks.location_free_asns
                for row, session_cells in zip(candidates, cells, strict=True):
                    moves[row] = impossible_moves(session_cells, section, free)
        return moves

    key = ("moves", section.max_speed_kmh, section.min_km, section.min_requests, scored.tobytes())
    return table.memo(key, compute)  # one computation for both reasons when their travel settings agree


class ImpossibleTravel(ReasonRule):
    code = "impossible_travel"
    counts_places = True
    Section = ImpossibleTravelSection
    evidence = Evidence.SEQUENTIAL

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        moves = _moves_column(table, section, scored)
        return Fired(np.array([bool(m) for m in moves], dtype=bool), section.weight, {"moves": moves})

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        move = fired.shown["moves"][row][0]
        thresholds = {"max_speed_kmh": section.max_speed_kmh, "min_km": section.min_km,
                      "min_requests": section.min_requests}
        detail = (f"moved {move['from']} -> {move['to']} ({move['km']} km) in {move['seconds']} s: "
                  f"{move['speed_kmh']} km/h")
        return self.reason(detail, section.weight, dict(move), thresholds)


class TravelBetweenDevicesSection(ImpossibleTravelSection):
    """Impossible moves between *different devices*, again and again: the session hops between distant countries
    faster than anyone travels, and each time a device with none of the other side's user agents takes over. One
    viewer who switches a VPN, boards a plane or roams keeps their device; casting overlaps in time and stays in one
    place. Two devices in two distant places are two players, so this corroborates; one such move may be a cast
    from a phone on a VPN, so it takes ``min_moves`` (in the window, between at least three places in turn)."""

    min_moves: int = Field(2, ge=1, description="Impossible moves with a change of device.")


class TravelBetweenDevices(ReasonRule):
    code = "travel_between_devices"
    counts_places = True
    Section = TravelBetweenDevicesSection
    evidence = Evidence.CONCURRENT

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        moves = _moves_column(table, section, scored)
        # moves arriving at distinct times: the legs of a session in turn (one arrival may be reached from several)
        hops = np.array([len({m["at"] for m in row if m["devices_differ"]}) for row in moves], dtype=np.int64)
        return Fired(hops >= section.min_moves, section.weight, {"hops": hops, "moves": moves})

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        hops = int(fired.value("hops", row))
        moves = [m for m in fired.shown["moves"][row] if m["devices_differ"]]
        arrivals = {m["at"]: m for m in sorted(moves, key=lambda m: (m["at"], m["speed_kmh"]))}  # one per arrival
        ordered = [arrivals[at] for at in sorted(arrivals)]
        route = " -> ".join([ordered[0]["from"], *(m["to"] for m in ordered)][:8])
        values = {"moves": hops, "fastest_kmh": moves[0]["speed_kmh"], "route": route}
        thresholds = {"min_moves": section.min_moves, "max_speed_kmh": section.max_speed_kmh, "min_km": section.min_km}
        detail = f"{hops} impossible moves, each to another device ({route}); fastest {moves[0]['speed_kmh']} km/h"
        return self.reason(detail, section.weight, values, thresholds)


class RotatingAddressesSection(Section):
    """Many prefixes over the window, several of them in the same minutes: one player behind rotating
    residential proxies. A phone on the move changes address a few times, one after another; a session entirely
    in address pools (carriers' NAT, relays, gateways: registry) rotates by design and is left out."""

    min_prefixes: int = Field(8, ge=2, description="Distinct prefixes over the window.")
    min_prefixes_per_minute: int = Field(3, ge=1, description="...with this many in at least one minute.")
    single_network_weight: float = Field(
        0.5, ge=0, le=10, description="Weight when all those prefixes belong to one ASN (a carrier's NAT pool)."
    )


class RotatingAddresses(ReasonRule):
    code = "rotating_addresses"
    counts_places = True
    Section = RotatingAddressesSection
    evidence = Evidence.SEQUENTIAL

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        rotating = (table.numbers("distinct_prefixes") >= section.min_prefixes) & (
            table.numbers("max_prefixes_per_minute") >= section.min_prefixes_per_minute
        )
        several_networks = table.numbers("distinct_asns") >= 2
        outside_pools = table.any_asn(table.networks.address_pool_asns, inside=False)
        weight = np.where(several_networks, section.weight, section.single_network_weight)
        return Fired(rotating & outside_pools, weight)

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        single = (record.get("distinct_asns") or 0) < 2
        values = {"distinct_prefixes": record.get("distinct_prefixes"),
                  "max_prefixes_per_minute": record.get("max_prefixes_per_minute"),
                  "distinct_asns": record.get("distinct_asns")}  # fmt: skip
        thresholds = {"min_prefixes": section.min_prefixes,
                      "min_prefixes_per_minute": section.min_prefixes_per_minute}
        detail = (f"{values['distinct_prefixes']} address prefixes in {values['distinct_asns']} networks, up to "
                  f"{values['max_prefixes_per_minute']} in one minute"
                  + (" (one network: weight reduced)" if single else ""))
        weight = section.single_network_weight if single else section.weight
        return self.reason(detail, weight, values, thresholds)
