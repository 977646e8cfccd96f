"""Supporting evidence: signs of a restreaming set-up that legitimate viewers also show now and then (a VPN exit in
a cloud, a command-line player). Weighted low, so they never revoke on their own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from detection.networks import NetworkClass
from detection.scoring.reasons.base import Evidence, Fired, ReasonRule, Section, SessionTable
from revocation.ledger.base import Reason

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


class HostingNetworkSection(Section):
    """Served from a cloud, hosting or VPN network (supporting evidence: restreamers usually run there). The
    networks are the registry's ``hosting`` and ``vpn`` classes, plus ``asns``."""

    weight: float = Field(0.3, ge=0, le=10, description="What the reason adds to the score (supporting evidence).")
    asns: frozenset[int] = Field(frozenset(), description="Hosting ASNs besides the registry's hosting and vpn.")


def hosting_asns(table: SessionTable, section: HostingNetworkSection) -> frozenset[int]:
    return table.networks.asns(lambda c: c in (NetworkClass.HOSTING, NetworkClass.VPN)) | section.asns


class HostingNetwork(ReasonRule):
    code = "hosting_network"
    Section = HostingNetworkSection
    evidence = Evidence.SUPPORTING

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        networks = hosting_asns(table, section)
        return Fired(table.any_asn(networks), section.weight, context={"asns": networks})

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        listed = sorted(set(record.get("asns") or ()) & fired.context["asns"])
        detail = "served to a hosting/cloud network " + ", ".join(f"AS{a}" for a in listed)
        return self.reason(detail, section.weight, {"asns": listed}, {})


class ToolUserAgentSection(Section):
    """A download or restreaming tool's user agent (supporting evidence: user agents are trivial to fake)."""

    weight: float = Field(0.3, ge=0, le=10, description="What the reason adds to the score (supporting evidence).")
    fragments: tuple[str, ...] = Field(DEFAULT_TOOL_AGENTS, description="Case-insensitive user-agent fragments.")

    @field_validator("fragments")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.lower() for v in value if v)


class ToolUserAgent(ReasonRule):
    code = "tool_user_agent"
    Section = ToolUserAgentSection
    evidence = Evidence.SUPPORTING

    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        fragments = section.fragments

        def is_tool(values: pa.Array) -> np.ndarray:
            encoded = pc.dictionary_encode(pc.fill_null(values, ""))  # user agents repeat: test each once
            unique = [ua.lower() for ua in encoded.dictionary.to_pylist()]
            tools = np.array([any(fragment in ua for fragment in fragments) for ua in unique], dtype=bool)
            return tools[np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]

        tools = table.any_listed("user_agents", is_tool) if fragments else np.zeros(table.rows, bool)
        return Fired(tools, section.weight)

    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        agents = [ua for ua in (record.get("user_agents") or []) if any(x in ua.lower() for x in section.fragments)]
        detail = "download/restream tool user agent: " + "; ".join(a[:80] for a in agents[:3])
        return self.reason(detail, section.weight, {"user_agents": agents[:5]}, {})
