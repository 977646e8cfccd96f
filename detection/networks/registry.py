"""The network registry: network classes the policy treats by design, keyed by ASN or by address prefix.

Why each class matters to the policy (README, "Networks the detection knows"):

* ``privacy_relay`` and ``secure_web_gateway`` are *shared egress*: one viewer's requests leave through several
  addresses (and, for iCloud Private Relay, several partner networks) at once or in turn, and one address carries
  many viewers. Their addresses count as one place and one network in the at-once reasons and in address rotation.
* ``inflight``, ``satellite``, ``secure_web_gateway``, ``mobile_carrier``, ``hosting`` and ``vpn`` are *location
  free*: where their addresses geolocate says where the provider's gateway is (a ground station, a gateway node, the
  home network of a roaming phone, a VPN exit), not where the viewer is. A move to or from them is no travel.
* ``hosting`` and ``vpn`` also add supporting weight (restreamers run there).
* ``mobile_carrier``: carrier-grade NAT pools hand one phone address after address: no rotation evidence.

An address the registry does not know is neutral: every reason treats it as the viewer's own.

The registry's ``version`` (the defaults' version, plus a digest of whatever an operator added or removed) is
recorded with every verdict, so that a verdict can always be traced to the knowledge it was made with.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "DEFAULTS_FILE",
    "NetworkClass",
    "NetworkEntry",
    "NetworkRegistry",
    "RegistryError",
    "default_registry",
    "load_registry_file",
]

DEFAULTS_FILE = Path(__file__).with_name("defaults.json")


class RegistryError(ValueError):
    """A registry file or override that cannot be used (the message says which entry and why)."""


class NetworkClass(StrEnum):
    PRIVACY_RELAY = "privacy_relay"
    SECURE_WEB_GATEWAY = "secure_web_gateway"
    INFLIGHT = "inflight"
    SATELLITE = "satellite"
    MOBILE_CARRIER = "mobile_carrier"
    HOSTING = "hosting"
    VPN = "vpn"

    @property
    def shared_egress(self) -> bool:
        """One viewer behind several addresses, many viewers behind one: its addresses are one place."""
        return self in (NetworkClass.PRIVACY_RELAY, NetworkClass.SECURE_WEB_GATEWAY)

    @property
    def location_free(self) -> bool:
        """Its addresses geolocate to the provider's gateway, not to the viewer."""
        return self not in (NetworkClass.PRIVACY_RELAY,)  # relays keep the viewer's region (Apple documents it)

    @property
    def address_pool(self) -> bool:
        """Hands one client address after address (NAT pools, relays, gateways): rotation is normal there."""
        return self in (NetworkClass.MOBILE_CARRIER, NetworkClass.PRIVACY_RELAY, NetworkClass.SECURE_WEB_GATEWAY)


class NetworkEntry(BaseModel):
    """One network: an ASN or an address prefix, its class, a name and the public source that says so."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    network_class: NetworkClass = Field(alias="class")
    name: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500, description="Where the classification is documented.")
    asn: int | None = Field(None, ge=1, le=4_294_967_295)
    prefix: str | None = None
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="Where the provider says the prefix is.")

    @model_validator(mode="after")
    def _one_key(self) -> NetworkEntry:
        if (self.asn is None) == (self.prefix is None):
            raise ValueError("an entry names exactly one of asn or prefix")
        if self.prefix is not None:
            try:
                network = ipaddress.ip_network(self.prefix, strict=True)
            except ValueError as exc:
                raise ValueError(f"prefix {self.prefix!r} is not a network address: {exc}") from None
            object.__setattr__(self, "prefix", str(network))
        return self

    def plain(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


@dataclass(frozen=True)
class _Ranges:
    """Sorted, non-overlapping integer ranges of one IP version, for bisecting addresses."""

    starts: list[int]
    ends: list[int]
    classes: list[NetworkClass]

    @classmethod
    def build(cls, entries: Iterable[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, NetworkClass]]) -> _Ranges:
        spans = sorted((int(n.network_address), int(n.broadcast_address), c) for n, c in entries)
        starts: list[int] = []
        ends: list[int] = []
        classes: list[NetworkClass] = []
        for start, end, network_class in spans:
            if ends and start <= ends[-1]:  # nested or overlapping: the wider one already covers it
                continue
            starts.append(start)
            ends.append(end)
            classes.append(network_class)
        return cls(starts, ends, classes)

    def find(self, number: int) -> NetworkClass | None:
        index = bisect.bisect_right(self.starts, number) - 1
        if index >= 0 and number <= self.ends[index]:
            return self.classes[index]
        return None


@dataclass(frozen=True)
class NetworkRegistry:
    """Entries by ASN and by prefix. Later entries win for one ASN (an operator's override beats the default)."""

    version: str
    entries: tuple[NetworkEntry, ...] = ()
    _by_asn: dict[int, NetworkEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_asn: dict[int, NetworkEntry] = {}
        for entry in self.entries:
            if entry.asn is not None:
                by_asn[entry.asn] = entry
        object.__setattr__(self, "_by_asn", by_asn)

    def __hash__(self) -> int:
        return hash(self.version)

    # -- lookups ---------------------------------------------------------------------------------------------------

    def classify_asn(self, asn: int | None) -> NetworkClass | None:
        entry = self._by_asn.get(asn) if asn is not None else None
        return entry.network_class if entry else None

    def classify_ip(self, address: str | None) -> NetworkClass | None:
        """The class of the prefix entry holding ``address`` (None for an unknown or malformed address)."""
        if not address:
            return None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        ranges = self._ranges[ip.version]
        return ranges.find(int(ip)) if ranges.starts else None

    def classify(self, asn: int | None, address: str | None = None) -> NetworkClass | None:
        """An address's class: its prefix entry first (the more specific), then its network's."""
        return self.classify_ip(address) or self.classify_asn(asn)

    def asns(self, predicate: Any) -> frozenset[int]:
        """The ASNs whose class satisfies ``predicate(NetworkClass) -> bool``."""
        return frozenset(asn for asn, e in self._by_asn.items() if predicate(e.network_class))

    @cached_property
    def shared_egress_asns(self) -> frozenset[int]:
        return self.asns(lambda c: c.shared_egress)

    @cached_property
    def location_free_asns(self) -> frozenset[int]:
        return self.asns(lambda c: c.location_free)

    @cached_property
    def address_pool_asns(self) -> frozenset[int]:
        return self.asns(lambda c: c.address_pool)

    @cached_property
    def has_prefixes(self) -> bool:
        return any(e.prefix is not None for e in self.entries)

    @cached_property
    def _ranges(self) -> dict[int, _Ranges]:
        networks = [(ipaddress.ip_network(e.prefix), e.network_class) for e in self.entries if e.prefix is not None]
        return {version: _Ranges.build((n, c) for n, c in networks if n.version == version) for version in (4, 6)}

    # -- building --------------------------------------------------------------------------------------------------

    def with_overrides(
        self, add: Iterable[NetworkEntry] = (), remove_asns: Iterable[int] = (), label: str = "overrides"
    ) -> NetworkRegistry:
        """This registry with ``add`` appended (winning for their ASNs) and ``remove_asns`` taken out; the version
        gains a digest of the change, so two different overrides never share a version."""
        add, removed = tuple(add), frozenset(remove_asns)
        if not add and not removed:
            return self
        kept = tuple(e for e in self.entries if e.asn is None or e.asn not in removed)
        change = json.dumps({"add": [e.plain() for e in add], "remove": sorted(removed)}, sort_keys=True)
        digest = hashlib.sha256(change.encode()).hexdigest()[:10]
        return NetworkRegistry(version=f"{self.version}+{label}.{digest}", entries=kept + add)

    def counts(self) -> dict[str, dict[str, int]]:
        """Entries per class, by ASN and by prefix (for ``networks show`` and the stats)."""
        out: dict[str, dict[str, int]] = {}
        for entry in self.entries:
            row = out.setdefault(entry.network_class.value, {"asns": 0, "prefixes": 0})
            row["asns" if entry.asn is not None else "prefixes"] += 1
        return out


def parse_entries(items: Any, where: str) -> tuple[NetworkEntry, ...]:
    """Entries from a JSON list (``where`` names the file or setting for the error)."""
    if not isinstance(items, list):
        raise RegistryError(f"{where}: 'entries' must be a list")
    entries = []
    for index, item in enumerate(items):
        try:
            entries.append(NetworkEntry.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise RegistryError(f"{where}: entry {index + 1}: {problems}") from None
    return tuple(entries)


def _read(path: Path) -> tuple[str, tuple[NetworkEntry, ...]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(f"cannot read the network registry {path}: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("version"), str) or not data["version"]:
        raise RegistryError(f"{path}: a registry file is a JSON object with a 'version' and 'entries'")
    return data["version"], parse_entries(data.get("entries"), str(path))


def load_registry_file(path: str | Path) -> NetworkRegistry:
    """A registry file (the shipped defaults, or one ``networks import-private-relay`` wrote)."""
    version, entries = _read(Path(path))
    return NetworkRegistry(version=version, entries=entries)


@cache
def default_registry() -> NetworkRegistry:
    """The shipped defaults (``detection/networks/defaults.json``), read once."""
    return load_registry_file(DEFAULTS_FILE)
