"""The detection policy's configuration: every threshold in one typed, validated model with documented defaults.

Load it from JSON (a file, or the ``DETECTION_CONFIG`` JSON a Lambda gets) with :meth:`DetectionConfig.load`;
unknown keys are errors, so a typo cannot silently fall back to a default. Each reason has its own section with a
``weight`` (what it adds to a session's score) and ``enabled``; a session is revoked when its score reaches
``revoke_score`` and flagged for review when it reaches ``flag_score``.

The defaults were chosen for 10-minute windows against what real viewers do (README, "What each reason catches and
costs"): every reason that can revoke alone needs the odd behaviour in at least two minutes of the window (or two
moves), except three or more countries in one minute. The ``networks`` section is the network registry
(:mod:`detection.networks`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from detection.networks.settings import NetworkSettings
from detection.scoring.reasons import REASONS, Section

__all__ = ["ConfigError", "DetectionConfig"]


class ConfigError(ValueError):
    """The detection configuration is invalid (the message lists every problem)."""


class PolicySettings(BaseModel):
    """The settings of the policy as a whole, and the loading and listing of a whole config; :class:`DetectionConfig`
    adds one section per reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    revoke_score: float = Field(1.0, gt=0, description="Score at or above which a session is revoked.")
    flag_score: float = Field(0.5, gt=0, description="Score at or above which a session is flagged for review.")
    monitor: bool = Field(False, description="Monitor mode: flag what would be revoked (action 'monitor').")
    allow_sessions: frozenset[str] = Field(frozenset(), description="Session ids never revoked (flagged at most).")
    allow_asns: frozenset[int] = Field(
        frozenset(), description="Networks whose sessions are never revoked (flagged at most): your own monitoring."
    )
    min_requests: int = Field(6, ge=1, description="Sessions with fewer served media requests are not scored.")
    networks: NetworkSettings = Field(NetworkSettings(), description="The network registry the policy uses.")

    @field_validator("flag_score")
    @classmethod
    def _flag_below_revoke(cls, value: float, info: Any) -> float:
        revoke = info.data.get("revoke_score")
        if revoke is not None and value > revoke:
            raise ValueError(f"flag_score ({value}) must not exceed revoke_score ({revoke})")
        return value

    def query_parameters(self) -> dict[str, str]:
        """The text parameters features.sql takes from this config: the registry's shared-egress and location-free
        ASNs."""
        return self.networks.query_parameters()

    def section(self, code: str) -> Section:
        """The settings of the reason ``code``."""
        return getattr(self, code)

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


#: Thresholds, weights, allow-lists and mode of the detection policy: the policy's settings and, named by its code,
#: the section of every registered reason (:data:`detection.scoring.reasons.REASONS`).
DetectionConfig = create_model(
    "DetectionConfig",
    __base__=PolicySettings,
    __doc__="Thresholds, weights, allow-lists and mode of the detection policy.",
    __module__=__name__,
    **{reason.code: (reason.Section, reason.Section()) for reason in REASONS},
)


def _plain(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value
