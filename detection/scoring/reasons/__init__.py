"""Every detection reason, registered once: its config section, its rule and its explanation (one
:class:`~detection.scoring.reasons.base.ReasonRule` each). The policy runs them in this order, which is also the
order a verdict lists them in; the config has one section per reason, named by its code."""

from __future__ import annotations

from detection.scoring.reasons.base import Evidence, Fired, ReasonRule, Section, SessionTable
from detection.scoring.reasons.concurrent import (
    AddressesAtOnce,
    ChannelsAtOnce,
    CmcdSessionsAtOnce,
    CountriesAtOnce,
    DevicesAtOnce,
    NetworksAtOnce,
    RenditionsAtOnce,
    SharedSegments,
)
from detection.scoring.reasons.movement import (
    ImpossibleTravel,
    RotatingAddresses,
    TravelBetweenDevices,
    capital_distance_km,
)
from detection.scoring.reasons.pace import Playback, PlaybackRate, playback
from detection.scoring.reasons.supporting import (
    DEFAULT_TOOL_AGENTS,
    HostingNetwork,
    ToolUserAgent,
)

REASONS: tuple[ReasonRule, ...] = (
    CountriesAtOnce(),
    NetworksAtOnce(),
    AddressesAtOnce(),
    DevicesAtOnce(),
    CmcdSessionsAtOnce(),
    SharedSegments(),
    RenditionsAtOnce(),
    PlaybackRate(),
    ImpossibleTravel(),
    TravelBetweenDevices(),
    RotatingAddresses(),
    ChannelsAtOnce(),
    HostingNetwork(),
    ToolUserAgent(),
)
CODES: tuple[str, ...] = tuple(reason.code for reason in REASONS)
BY_CODE: dict[str, ReasonRule] = {reason.code: reason for reason in REASONS}

__all__ = [
    "BY_CODE",
    "CODES",
    "DEFAULT_TOOL_AGENTS",
    "REASONS",
    "Evidence",
    "Fired",
    "Playback",
    "ReasonRule",
    "Section",
    "SessionTable",
    "capital_distance_km",
    "playback",
]
