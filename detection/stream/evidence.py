"""What one real-time log record adds to its session's minute, and what a session's minutes amount to.

The stream consumer cannot run features.sql: it sees a few records at a time, spread over shards. So each served
media request is reduced to what the concurrent reasons count (the same classification as features.sql: the URL
contract, served media only, the /24 and /48 prefixes, the registry's shared-egress and location-free networks), and
kept per session and minute as *sets*: the addresses, prefixes, networks, countries, user agents, segment fetches
(channel, address, sequence number), CMCD playback sessions (by second), the request ids and the tokens' ``exp``.

Sets make every update idempotent: a batch retried after a failure, or a record CloudFront delivered twice, adds
nothing it added before. The price is that repeats count once: one address fetching a segment twice (a retry, a
rendition switch) is one fetch, never "shared". That only makes the fast path more careful.

:func:`minute_row` and :func:`session_features` turn the sets into the columns of features.sql the concurrent
reasons read, so the stream runs the policy's own rules on them (:mod:`detection.stream.scoring`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from detection.networks import NetworkRegistry
from revocation.token_expiry import token_expiry

#: File names of media the way features.sql tells them: playlists, and segments.
PLAYLIST = (".m3u8", ".mpd")
SEGMENT = (".ts", ".m4s", ".mp4", ".aac", ".m4a", ".m4v", ".cmfv", ".cmfa", ".mp3")
SEQUENCE = re.compile(r"(\d+)\.[0-9A-Za-z]+$")
SHARED_EGRESS = "shared-egress"
SEP = "\t"  # inside set members: never in an address, a channel name from a URL path, or a CMCD session id


@dataclass(frozen=True)
class Sighting:
    """One served media request, reduced to what its session's minute keeps."""

    session_id: str
    minute: int
    timestamp: float
    request: str
    address: str | None
    prefix: str | None
    network: str | None
    country: str | None
    user_agent: str | None
    fetch: str | None  # channel \t address \t sequence number, for a segment with a number
    cmcd: str | None  # CMCD session id \t channel \t second of the minute
    exp: int | None


@dataclass
class MinuteState:
    """One session's minute: the sets of what its served media requests showed (see the module docstring)."""

    session_id: str
    minute: int
    sets: dict[str, set[str]] = field(default_factory=dict)
    exps: set[int] = field(default_factory=set)
    first_seen: float | None = None  # the earliest record the first batch of this minute had

    #: The set names, each one letter in the state table.
    NAMES = {"requests": "q", "addresses": "a", "prefixes": "p", "networks": "n", "countries": "c",
             "user_agents": "u", "fetches": "f", "cmcd": "m"}  # fmt: skip

    def values(self, name: str) -> set[str]:
        return self.sets.get(name, set())

    def add(self, sighting: Sighting) -> None:
        for name, value in _members(sighting):
            self.sets.setdefault(name, set()).add(value)
        if sighting.exp is not None:
            self.exps.add(sighting.exp)
        if self.first_seen is None or sighting.timestamp < self.first_seen:
            self.first_seen = sighting.timestamp

    def places(self) -> frozenset[tuple[str, str]]:
        """What the minute shows of places and players (addresses, prefixes, networks, countries, user agents, CMCD
        sessions): the members a later record must add for the minute to tell the reasons anything new, as long
        as it is not :meth:`plural` (a fetch or a request of a viewer alone counts towards nothing)."""
        found = {(name, value) for name in ("addresses", "prefixes", "networks", "countries", "user_agents")
                 for value in self.values(name)}
        return frozenset(found | {("cmcd", member.split(SEP, 1)[0]) for member in self.values("cmcd")})

    def plural(self) -> bool:
        """Whether the minute shows more than one of anything the concurrent reasons count (addresses, prefixes,
        networks, countries, CMCD sessions). Each of their thresholds is at least two (their config's bounds), so a
        minute that is not plural cannot make one fire."""
        if any(len(self.values(name)) > 1 for name in ("addresses", "prefixes", "networks", "countries")):
            return True
        return len({member.split(SEP, 1)[0] for member in self.values("cmcd")}) > 1

    def item_bytes(self) -> int:
        """The size DynamoDB bills this minute's item at (attribute names and values, UTF-8; a number as its digits):
        what one update of it costs, in 1 KB write units, for the cost estimates."""
        size = len("session_id") + len(self.session_id) + len("minute") + 8 + len("expires_at") + 11
        size += 0 if self.first_seen is None else len("first_seen") + 15
        for values in self.sets.values():
            size += 1 + sum(len(v.encode()) for v in values)
        return size + (1 + sum(len(str(e)) for e in self.exps) if self.exps else 0)

    def copy(self) -> MinuteState:
        return MinuteState(self.session_id, self.minute, {k: set(v) for k, v in self.sets.items()}, set(self.exps),
                           self.first_seen)

    def merge(self, other: MinuteState) -> None:
        for name, values in other.sets.items():
            self.sets.setdefault(name, set()).update(values)
        self.exps.update(other.exps)
        if self.first_seen is None:  # kept from the first batch, as DynamoDB's if_not_exists keeps it
            self.first_seen = other.first_seen


#: Which field of a sighting goes into which set of its minute.
SET_OF_FIELD = {"request": "requests", "address": "addresses", "prefix": "prefixes", "network": "networks",
                "country": "countries", "user_agent": "user_agents", "fetch": "fetches", "cmcd": "cmcd"}


def _members(sighting: Sighting) -> Iterable[tuple[str, str]]:
    for name, set_name in SET_OF_FIELD.items():
        value = getattr(sighting, name)
        if value is not None:
            yield set_name, value


# -- one record ------------------------------------------------------------------------------------------------


def _decoded(text: str) -> str:
    """A path part the way features.sql classifies it: percent-decoded when it holds a %, as it came otherwise."""
    if "%" not in text:
        return text
    try:
        return unquote_plus(text, errors="strict")
    except UnicodeDecodeError:
        return text


@lru_cache(maxsize=65536)
def network_prefix(address: str) -> str | None:
    """/24 of an IPv4 address, /48 of an IPv6 one, spelled as features.sql spells them (``203.0.113.0/24``,
    ``2001:db8:1::/48``); None for no address."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if parsed.version == 4:
        return ".".join(address.strip().split(".")[:3]) + ".0/24"
    groups = parsed.exploded.split(":")[:3]
    return ":".join(format(int(g, 16), "x") for g in groups) + "::/48"


#: A session's records carry the same token over and over: its exp is read once.
_token_expiry = lru_cache(maxsize=65536)(token_expiry)


def session_of(uri: str | None) -> str | None:
    """The session id of a request path (/<session id>.<jwt>/...): a plain split, as detection reads it."""
    parts = (uri or "").split("/", 2)
    return parts[1].split(".", 1)[0] if len(parts) > 1 and parts[1] else None


def sighting(row: Mapping[str, Any], registry: NetworkRegistry) -> Sighting | None:
    """The sighting of one parsed record (columns of the log schema), or None when it is no served media request
    (a denied request carries a session id anyone can type: it never counts)."""
    status, uri, ts = row.get("sc_status"), row.get("cs_uri_stem"), row.get("timestamp")
    if status is None or not 200 <= status <= 299 or not uri or ts is None or not math.isfinite(ts):
        return None
    path = uri.split("/")
    if len(path) < 4:
        return None
    token, channel, file = path[1], _decoded(path[2]), _decoded(path[-1])
    is_segment = file.endswith(SEGMENT)
    if not (is_segment or file.endswith(PLAYLIST)):
        return None
    session_id = token.split(".", 1)[0]
    if not session_id:
        return None
    address = row.get("c_ip")
    asn = row.get("asn")
    kind = registry.classify_asn(asn)
    shared = kind is not None and kind.shared_egress
    minute = math.floor(ts / 60)
    second = int(ts - minute * 60)
    sequence = SEQUENCE.search(file) if is_segment else None
    cmcd_sid = row.get("cmcd_session_id")
    request_id = row.get("x_edge_request_id") or f"{ts}{SEP}{address}{SEP}{uri}"
    return Sighting(
        session_id=session_id,
        minute=minute,
        timestamp=float(ts),
        request=hashlib.blake2b(request_id.encode(), digest_size=8).hexdigest(),
        address=address,
        prefix=(SHARED_EGRESS if shared else network_prefix(address)) if address else None,
        network=None if asn is None else ("-1" if shared else str(asn)),
        country=None if kind is not None and kind.location_free else row.get("c_country"),
        user_agent=row.get("cs_user_agent"),
        fetch=f"{channel}{SEP}{address}{SEP}{int(sequence.group(1))}" if sequence and address else None,
        cmcd=f"{cmcd_sid}{SEP}{channel}{SEP}{second}" if cmcd_sid else None,
        exp=_token_expiry(token),
    )


# -- a session's minutes -> the feature columns ---------------------------------------------------------------


def minute_row(state: MinuteState) -> dict[str, Any]:
    """The per-minute entry of features.sql (``per_minute``) the concurrent reasons read, from one minute's sets."""
    fetches = [f.split(SEP) for f in state.values("fetches")]
    channels_by_address: dict[str, set[str]] = {}
    numbers: list[int] = []
    for channel, address, number in fetches:
        channels_by_address.setdefault(address, set()).add(channel)
        numbers.append(int(number))
    channels = set().union(*channels_by_address.values()) if channels_by_address else set()
    one_channel = len(channels) == 1  # every address that fetched segments fetched one and the same channel
    shared = 0
    if one_channel and len(channels_by_address) > 1:
        shared = max(len(fetches) - (max(numbers) - min(numbers) + 1), 0)
    sessions, overlap = _cmcd(state.values("cmcd"), next(iter(channels)) if one_channel else None)
    return {
        "minute": state.minute,
        "segments": len(fetches),
        "advance": None,
        "ips": len(state.values("addresses")),
        "prefixes": len(state.values("prefixes")),
        "asns": len(state.values("networks")),
        "countries": len(state.values("countries")),
        "renditions_at_once": 0.0,
        "shared_segments": shared,
        "channels_apart": False,
        "cmcd_sessions": sessions,
        "cmcd_overlap": overlap,
        "playback_rate": None,
    }


def _cmcd(members: set[str], channel: str | None) -> tuple[int, float]:
    """CMCD playback sessions of the minute's one channel, and the seconds they played together beyond the span
    they were seen in together (features.sql's ``cmcd_sessions`` and ``cmcd_overlap``). None for ``channel``: the
    minute fetched no segments, or segments of several channels (zapping, multi-view), which features.sql leaves
    out."""
    if channel is None or not members:
        return 0, 0.0
    seconds: dict[str, list[int]] = {}
    for member in members:
        sid, played, second = member.split(SEP)
        if played == channel:
            seconds.setdefault(sid, []).append(int(second))
    if not seconds:
        return 0, 0.0
    spans = sum(max(s) - min(s) for s in seconds.values())
    together = max(max(s) for s in seconds.values()) - min(min(s) for s in seconds.values())
    return len(seconds), float(spans - together)


def session_features(session_id: str, minutes: Iterable[MinuteState]) -> dict[str, Any]:
    """One row of the feature table (the columns the concurrent reasons and the verdicts read) from a session's
    minutes in the window."""
    ordered = sorted(minutes, key=lambda m: m.minute)
    union = MinuteState(session_id, 0)  # the window's minutes as one
    for state in ordered:
        union.merge(state)
    rows = [minute_row(state) for state in ordered]
    networks = sorted(int(n) for n in union.values("networks") if n != "-1")
    return {
        "session_id": session_id,
        "requests": len(union.values("requests")),
        "segments": len(union.values("fetches")),
        "first_seen": None,
        "last_seen": None,
        "distinct_ips": len(union.values("addresses")),
        "distinct_prefixes": len(union.values("prefixes")),
        "distinct_asns": len(networks),
        "distinct_countries": len(union.values("countries")),
        "distinct_user_agents": len(union.values("user_agents")),
        "active_minutes": len(rows),
        "max_ips_per_minute": max((r["ips"] for r in rows), default=0),
        "max_prefixes_per_minute": max((r["prefixes"] for r in rows), default=0),
        "max_asns_per_minute": max((r["asns"] for r in rows), default=0),
        "max_countries_per_minute": max((r["countries"] for r in rows), default=0),
        "shared_segments": sum(r["shared_segments"] for r in rows),
        "max_cmcd_sessions_per_minute": max((r["cmcd_sessions"] for r in rows), default=0),
        "asns": networks,
        "countries": sorted(union.values("countries")),
        "user_agents": sorted(union.values("user_agents"))[:10],
        "ips": sorted(union.values("addresses"))[:50],
        "per_minute": rows,
        "token_exps": sorted(union.exps),
    }
