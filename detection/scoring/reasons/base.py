"""What every detection reason is made of: its config section, the rule that fires over the whole feature table at
once, and the explanation of one flagged session; and the table the rules read.

A rule works column-wise (numpy over Arrow) on one row per session; only flagged sessions are explained, one Python
record each. The policy (:mod:`detection.scoring.policy`) runs every registered reason
(:data:`detection.scoring.reasons.REASONS`) and adds up the weights of those that fired.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from detection.networks import NetworkRegistry, default_registry
from revocation.ledger.base import MAX_REASON_DETAIL, Reason

T = TypeVar("T")


class Evidence(StrEnum):
    """What a reason shows. Sharing is simultaneous use, so only evidence of more than one player at once, or of a
    client that is no player, may revoke; a sequence alone (a country change, a series of addresses) may only flag
    for review: one traveller, a relay or an in-flight network produces sequences too."""

    CONCURRENT = "concurrent"  # more than one player at the same time: two places, one segment twice, too fast
    DEVICE = "device"  # a client that is not a player (fetching every rendition of each segment)
    SEQUENTIAL = "sequential"  # one place after another: never revokes on its own
    SUPPORTING = "supporting"  # a weak hint (a hosting network, a tool's user agent): weight only

    @property
    def corroborates(self) -> bool:
        """Whether the evidence can carry a revocation (with a score that reaches ``revoke_score``)."""
        return self in (Evidence.CONCURRENT, Evidence.DEVICE)


class Section(BaseModel):
    """A reason's settings: ``enabled`` and ``weight`` (what it adds to a session's score), plus its thresholds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="Whether the reason is evaluated at all.")
    weight: float = Field(1.0, ge=0, le=10, description="What the reason adds to the score when it fires.")


@dataclass
class Fired:
    """Where a rule fired (one bool per session), what it adds there, the per-session values it compared, and what
    it compared them with for the whole table (``context``)."""

    mask: np.ndarray
    weight: float | np.ndarray
    shown: dict[str, np.ndarray] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    def value(self, name: str, row: int) -> Any:
        value = self.shown[name][row]
        return value.item() if hasattr(value, "item") else value


class SessionTable:
    """The feature table of one window, as the rules read it: numeric columns, the per-minute entries flattened
    with the row each belongs to, and list columns tested element-wise; and the network registry the rules
    classify addresses with."""

    def __init__(self, features: pa.Table, networks: NetworkRegistry | None = None) -> None:
        self.features = features
        self.networks = networks or default_registry()
        self.rows = features.num_rows
        self._memo: dict[Hashable, Any] = {}

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, once per key for this table: what several reasons and the verdicts read."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def numbers(self, name: str, fill: float = 0.0) -> np.ndarray:
        """A numeric column as float64 (``fill`` for nulls, and for every row when the column is absent)."""
        if name not in self.features.column_names:
            return np.full(self.rows, fill, dtype=np.float64)
        column = self.features[name]
        column = pc.fill_null(column, fill) if column.null_count else column
        return np.asarray(column.to_numpy(), dtype=np.float64)

    def objects(self, name: str) -> np.ndarray:
        """A column as Python objects (None for every row when it is absent)."""
        if name not in self.features.column_names:
            return np.full(self.rows, None, dtype=object)
        return np.asarray(self.features[name].to_pylist(), dtype=object)

    @cached_property
    def _minutes(self) -> tuple[np.ndarray, pa.StructArray | None]:
        if "per_minute" not in self.features.column_names or self.rows == 0:
            return np.zeros(0, dtype=np.int64), None
        lists = self.features["per_minute"].combine_chunks()
        parents = np.asarray(pc.list_parent_indices(lists).to_numpy(), dtype=np.int64)
        return parents, lists.flatten()

    @property
    def minute_rows(self) -> np.ndarray:
        """The session (row) of each per-minute entry."""
        return self._minutes[0]

    def per_minute(self, name: str, null: float = 0.0) -> np.ndarray:
        """One field of every per-minute entry, as float64 (``null`` for nulls, and for every entry of a table
        written before the field existed)."""
        entries = self._minutes[1]
        if entries is None:
            return np.zeros(0)
        if entries.type.get_field_index(name) < 0:
            return np.full(len(entries), null, dtype=np.float64)
        values = entries.field(name)
        if values.null_count:
            values = pc.fill_null(values.cast(pa.float64()), null)
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)

    def minutes_where(self, mask: np.ndarray) -> np.ndarray:
        """Per session: how many of its per-minute entries ``mask`` (one bool per entry) holds for."""
        if not self.rows:
            return np.zeros(0, np.int64)
        return np.bincount(self.minute_rows[mask], minlength=self.rows).astype(np.int64)

    def any_asn(self, asns: Iterable[int], *, inside: bool = True) -> np.ndarray:
        """Per session: was any of its networks (``asns`` column) in ``asns`` (``inside=False``: outside them)?"""
        listed = np.asarray(sorted(asns), dtype=np.int64)

        def test(values: pa.Array) -> np.ndarray:
            found = np.isin(np.asarray(pc.fill_null(values, -1).to_numpy(), dtype=np.int64), listed)
            return found if inside else ~found

        return self.any_listed("asns", test)

    def any_listed(self, column: str, predicate: Callable[[pa.Array], np.ndarray]) -> np.ndarray:
        """Per session: does any element of the list column satisfy ``predicate(values) -> bool array``?"""
        if column not in self.features.column_names or self.rows == 0:
            return np.zeros(self.rows, dtype=bool)
        lists = self.features[column].combine_chunks()
        values = lists.flatten()
        if len(values) == 0:
            return np.zeros(self.rows, dtype=bool)
        parents = np.asarray(pc.list_parent_indices(lists).to_numpy(), dtype=np.int64)
        hit = np.asarray(predicate(values), dtype=bool)
        return np.bincount(parents[hit], minlength=self.rows) > 0


def worst_minute(record: Mapping[str, Any], key: str) -> Any:
    """The highest value of ``key`` over a session's per-minute entries (0 without any)."""
    return max((m.get(key) or 0 for m in record.get("per_minute") or []), default=0)


class ReasonRule(ABC):
    """One detection reason. Subclasses name their ``code`` and ``Section`` and write the rule and the explanation;
    :data:`detection.scoring.reasons.REASONS` registers each once, in the order verdicts list them."""

    code: ClassVar[str]
    Section: ClassVar[type[Section]]
    evidence: ClassVar[Evidence]
    #: Whether the reason reads addresses and networks as places: it does not fire for a session whose every
    #: address is in a shared-egress or location-free prefix of the registry (Apple's relay list, say).
    counts_places: ClassVar[bool] = False

    @abstractmethod
    def fire(self, table: SessionTable, section: Any, scored: np.ndarray) -> Fired:
        """Where the reason fires over the whole table (``scored``: the sessions with enough requests to judge)."""

    @abstractmethod
    def explain(self, record: Mapping[str, Any], row: int, section: Any, fired: Fired) -> Reason:
        """Why it fired for one session: a sentence, the values it saw and the thresholds it compared them with."""

    def reason(self, detail: str, weight: float, values: Mapping[str, Any], thresholds: Mapping[str, Any]) -> Reason:
        """This reason's :class:`Reason` (a detail longer than the ledger keeps is cut)."""
        return Reason(code=self.code, detail=detail[:MAX_REASON_DETAIL], weight=weight, values=dict(values),
                      thresholds=dict(thresholds))
