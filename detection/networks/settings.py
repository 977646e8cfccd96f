"""The ``networks`` section of the detection config: which registry the policy and features.sql use.

Light on purpose (pydantic and the registry only): the workflow's prepare step reads it to give features.sql its
shared-egress networks without loading the policy.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from detection.networks.registry import (
    NetworkEntry,
    NetworkRegistry,
    RegistryError,
    default_registry,
    load_registry_file,
)

__all__ = ["NetworkSettings"]


class NetworkSettings(BaseModel):
    """The network registry the policy uses (README, "Networks the detection knows"): the shipped defaults, then
    registry files (for example Apple's Private Relay egress list, imported with ``python -m detection networks
    import-private-relay``), then the operator's own entries, which win for their ASN; ``remove_asns`` takes ASNs
    out. A network in none of them is neutral."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    defaults: bool = Field(True, description="Start from the shipped defaults (detection/networks/defaults.json).")
    files: tuple[str, ...] = Field((), description="Registry files to add, in order (paths).")
    add: tuple[NetworkEntry, ...] = Field(
        (), description="The operator's own entries (class, asn or prefix, name, source)."
    )
    remove_asns: frozenset[int] = Field(frozenset(), description="ASNs to take out of the registry.")
    _registry: NetworkRegistry = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> NetworkSettings:
        try:
            base = default_registry() if self.defaults else NetworkRegistry(version="empty")
            for path in self.files:
                extra = load_registry_file(path)
                base = NetworkRegistry(version=f"{base.version}+{extra.version}", entries=base.entries + extra.entries)
        except RegistryError as exc:
            raise ValueError(str(exc)) from None
        self._registry = base.with_overrides(self.add, self.remove_asns)
        return self

    @property
    def registry(self) -> NetworkRegistry:
        return self._registry

    def query_parameters(self) -> dict[str, str]:
        """The text parameters features.sql takes from the registry: its shared-egress and its location-free ASNs,
        each between commas."""
        registry = self.registry
        return {"shared_egress_asns": _listed(registry.shared_egress_asns),
                "location_free_asns": _listed(registry.location_free_asns)}


def _listed(asns: frozenset[int]) -> str:
    return "," + "".join(f"{asn}," for asn in sorted(asns))
