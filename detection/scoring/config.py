"""The detection policy's configuration: every threshold in one typed, validated model with documented defaults.

Load it from JSON (a file, or the ``DETECTION_CONFIG`` JSON a Lambda gets) with :meth:`DetectionConfig.load`;
unknown keys are errors, so a typo cannot silently fall back to a default. Each reason has its own section with a
``weight`` (what it adds to a session's score) and ``enabled``; a session is revoked when its score reaches
``revoke_score`` and flagged for review when it reaches ``flag_score``.

The defaults were chosen for 10-minute windows against what real viewers do (README, "What each reason catches and
costs"): every reason that can revoke alone needs the odd behaviour to last at least two minutes of the window, so
a single odd minute (a handover, a cast, a duplicated log delivery) never revokes anyone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "DEFAULT_HOSTING_ASNS",
    "DEFAULT_TOOL_AGENTS",
    "ConfigError",
    "DetectionConfig",
]

#: Cloud and hosting networks where restreaming servers usually run (supporting evidence only: VPNs and some
#: legitimate set-top services egress there too).
DEFAULT_HOSTING_ASNS: tuple[int, ...] = (
    16509,  # Amazon
    14618,  # Amazon
    15169,  # Google
    396982,  # Google Cloud
    8075,  # Microsoft
    14061,  # DigitalOcean
    24940,  # Hetzner
    16276,  # OVH
    63949,  # Akamai Connected Cloud (Linode)
    20473,  # Vultr (Choopa)
    9009,  # M247
    60781,  # LeaseWeb
    51167,  # Contabo
    12876,  # Scaleway
    31898,  # Oracle Cloud
    45102,  # Alibaba Cloud
    132203,  # Tencent Cloud
)

#: User-agent fragments of download and restreaming tools (case-insensitive; supporting evidence only).
DEFAULT_TOOL_AGENTS: tuple[str, ...] = (
    "lavf/",  # ffmpeg's HTTP client
    "ffmpeg",
    "streamlink",
    "yt-dlp",
    "youtube-dl",
    "n_m3u8dl",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "aria2",
    "libvlc",
)


class ConfigError(ValueError):
    """The detection configuration is invalid (the message lists every problem)."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="Whether the reason is evaluated at all.")
    weight: float = Field(1.0, ge=0, le=10, description="What the reason adds to the score when it fires.")


class CountriesAtOnce(_Section):
    """Served requests from several countries in the same minute: one session played in several countries at once
    (token sharing, two homes). Real viewers do not do that: privacy relays keep the viewer's country."""

    min_countries: int = Field(2, ge=2, description="Countries in one minute.")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window with that many countries.")
    many_countries: int = Field(3, ge=2, description="Countries in one minute that fire the reason in one minute.")


class NetworksAtOnce(_Section):
    """Many networks (ASNs) in the same minute: several players on several providers (token sharing, slow leaks).
    Dual stack, Wi-Fi to LTE and privacy relays stay at two (relays: up to three partner networks)."""

    min_asns: int = Field(3, ge=2, description="ASNs in one minute.")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window with that many ASNs.")


class AddressesAtOnce(_Section):
    """Many network prefixes (/24, /48) in the same minute: many players, or one player behind rotating proxies.
    Mobile handovers change address one after another; relays and corporate proxies spread one player over a few."""

    min_prefixes: int = Field(5, ge=2, description="Distinct /24 (IPv4) or /48 (IPv6) prefixes in one minute.")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window with that many prefixes.")


class DevicesAtOnce(_Section):
    """Several devices on several networks at once: addresses in different networks in the same minute, and the
    session played by several different user agents (a quiet leak: three or four players in two or three networks,
    each at its own position of a VOD title). One viewer's phone on Wi-Fi and LTE, dual stack or a relay stays at
    one or two user agents (an app and its player library)."""

    min_prefixes: int = Field(3, ge=2, description="Distinct /24 or /48 prefixes in one minute...")
    min_asns: int = Field(2, ge=2, description="...in at least this many networks (ASNs).")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window like that.")
    min_user_agents: int = Field(3, ge=2, description="User agents the session was played with.")


class SharedSegments(_Section):
    """The same segments fetched from more than one address in the same minute: several players of one live
    channel. One player whose address changes (handover, dual stack, relay) fetches each segment once."""

    min_share: float = Field(
        0.3, gt=0, le=1, description="Fetches beyond one per segment, as a share of the minute's segment fetches."
    )
    min_segments: int = Field(4, ge=1, description="...and at least this many such fetches in the minute.")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window like that (a cast overlaps for seconds).")


class RenditionsAtOnce(_Section):
    """One address fetching each segment in several renditions: a restreamer re-serving the whole ABR ladder. A
    player fetches one rendition at a time (two where audio and video are separate renditions)."""

    min_renditions: float = Field(2.5, gt=1, description="Segment fetches per sequence number by one address.")
    min_minutes: int = Field(2, ge=1, description="Minutes of the window like that.")


class PlaybackRate(_Section):
    """More segments per minute than real-time playback of the channel: several players on one session, or a
    download faster than real time. A session's pace is the median of its segment fetches per minute over its
    interior minutes (not the first or last minute it was seen: startup bursts and partial minutes). A channel's
    real-time pace comes from the other sessions that play only that channel: a low quantile (``crowd_quantile``) of
    their busiest interior minute (pauses, stalls and partial minutes only ever lower a minute; a low quantile keeps
    the channel's fast sessions - pirates cluster on popular content - from raising it). With fewer than
    ``crowd_min_sessions`` others the speed must reach ``min_speed * small_crowd_factor``; with none, one segment
    per ``fallback_segment_seconds`` is assumed. A crowd pace is never taken below one segment per
    ``max_segment_seconds``: a paused crowd is not real time."""

    min_speed: float = Field(2.0, gt=1, description="Session pace over the channel's real-time pace.")
    min_minutes: int = Field(2, ge=1, description="Interior minutes needed to judge the pace.")
    crowd_min_sessions: int = Field(3, ge=1, description="Other sessions of the channel for the plain threshold.")
    crowd_min_minutes: int = Field(2, ge=1, description="Interior minutes a session needs to count in the crowd.")
    crowd_quantile: float = Field(0.25, ge=0, le=0.5, description="Quantile of the crowd's busiest minutes.")
    small_crowd_factor: float = Field(1.5, ge=1, description="Threshold factor with fewer other sessions.")
    fallback_segment_seconds: float = Field(
        2.0,
        gt=0,
        description="Segment duration assumed for a channel nobody else plays: the shortest in common use, so the "
        "speed is never overestimated.",
    )
    max_segment_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest segment duration in common use (HLS target durations are 2-10 s): real-time playback "
        "fetches at least 60 / this many segments a minute, so a crowd pace below that is a paused or stalled crowd "
        "and is raised to it (one paused viewer must not make everyone else look fast).",
    )


class ImpossibleTravel(_Section):
    """A country change faster than a person can travel (resold sessions used in turn in distant countries).
    Countries within ``min_km`` (capital to capital) are ignored: border areas and geolocation noise."""

    max_speed_kmh: float = Field(1000, gt=0, description="Fastest plausible travel, airliner speed.")
    min_km: float = Field(800, ge=0, description="Ignore moves between countries closer than this.")
    min_requests: int = Field(3, ge=1, description="Served requests needed on each side of the move.")


class RotatingAddresses(_Section):
    """Many prefixes over the window, several of them in the same minutes: one player behind rotating
    residential proxies. A phone on the move changes address a few times, one after another."""

    min_prefixes: int = Field(8, ge=2, description="Distinct prefixes over the window.")
    min_prefixes_per_minute: int = Field(3, ge=1, description="...with this many in at least one minute.")
    single_network_weight: float = Field(
        0.5, ge=0, le=10, description="Weight when all those prefixes belong to one ASN (a carrier's NAT pool)."
    )


class ChannelsAtOnce(_Section):
    """Different channels played at once from different places (addresses that fetch one channel only). Channel
    zapping is one place, one channel after another; multi-view at home is one place."""

    min_minutes: int = Field(2, ge=1, description="Minutes of the window like that.")


class HostingNetwork(_Section):
    """Served from a cloud or hosting network (supporting evidence: restreamers usually run there)."""

    weight: float = Field(0.3, ge=0, le=10, description="What the reason adds to the score (supporting evidence).")
    asns: frozenset[int] = Field(frozenset(DEFAULT_HOSTING_ASNS), description="Hosting ASNs.")


class ToolUserAgent(_Section):
    """A download or restreaming tool's user agent (supporting evidence: user agents are trivial to fake)."""

    weight: float = Field(0.3, ge=0, le=10, description="What the reason adds to the score (supporting evidence).")
    fragments: tuple[str, ...] = Field(DEFAULT_TOOL_AGENTS, description="Case-insensitive user-agent fragments.")

    @field_validator("fragments")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.lower() for v in value if v)


class DetectionConfig(BaseModel):
    """Thresholds, weights, allow-lists and mode of the detection policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    revoke_score: float = Field(1.0, gt=0, description="Score at or above which a session is revoked.")
    flag_score: float = Field(0.5, gt=0, description="Score at or above which a session is flagged for review.")
    monitor: bool = Field(False, description="Monitor mode: flag what would be revoked (action 'monitor').")
    allow_sessions: frozenset[str] = Field(frozenset(), description="Session ids never revoked (flagged at most).")
    allow_asns: frozenset[int] = Field(
        frozenset(), description="Networks whose sessions are never revoked (flagged at most): your own monitoring."
    )
    min_requests: int = Field(6, ge=1, description="Sessions with fewer served media requests are not scored.")

    countries_at_once: CountriesAtOnce = CountriesAtOnce()
    networks_at_once: NetworksAtOnce = NetworksAtOnce()
    addresses_at_once: AddressesAtOnce = AddressesAtOnce()
    devices_at_once: DevicesAtOnce = DevicesAtOnce()
    shared_segments: SharedSegments = SharedSegments()
    renditions_at_once: RenditionsAtOnce = RenditionsAtOnce()
    playback_rate: PlaybackRate = PlaybackRate()
    impossible_travel: ImpossibleTravel = ImpossibleTravel()
    rotating_addresses: RotatingAddresses = RotatingAddresses()
    channels_at_once: ChannelsAtOnce = ChannelsAtOnce()
    hosting_network: HostingNetwork = HostingNetwork()
    tool_user_agent: ToolUserAgent = ToolUserAgent()

    @field_validator("flag_score")
    @classmethod
    def _flag_below_revoke(cls, value: float, info: Any) -> float:
        revoke = info.data.get("revoke_score")
        if revoke is not None and value > revoke:
            raise ValueError(f"flag_score ({value}) must not exceed revoke_score ({revoke})")
        return value

    @classmethod
    def load(cls, source: str | os.PathLike[str] | dict[str, Any] | None = None) -> DetectionConfig:
        """From a dict, a JSON file, or JSON text; None gives the defaults. Raises :class:`ConfigError`."""
        if source is None:
            return cls()
        try:
            if isinstance(source, (dict, list)):
                data = source
            elif isinstance(source, os.PathLike) or (isinstance(source, str) and not source.lstrip().startswith("{")):
                data = json.loads(Path(source).read_text(encoding="utf-8"))
            elif isinstance(source, str):
                data = json.loads(source)
            else:
                raise ConfigError(f"the detection config must be a JSON object, not {type(source).__name__}")
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the detection config: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("the detection config must be a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid detection config: {problems}") from exc

    def documented(self) -> dict[str, Any]:
        """Every setting with its value and description (for the README and ``--help``-style listings)."""
        out: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, BaseModel):
                section: dict[str, Any] = {"about": (type(value).__doc__ or "").strip()}
                for key, sub in type(value).model_fields.items():
                    section[key] = {"default": _plain(getattr(value, key)), "about": sub.description or ""}
                out[name] = section
            else:
                out[name] = {"default": _plain(value), "about": info.description or ""}
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value
