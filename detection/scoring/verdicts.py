"""The verdict model: what the policy decided about one session, and why.

A :class:`Verdict` carries the session id, the score, the action (``flag`` for review, ``revoke``, or ``monitor``:
would have been revoked in monitor mode), every :class:`Reason` that fired with the feature values and the
thresholds it compared them with, and the session's features. ``to_dict`` is the JSON shape of the ``detect``
contract; ``to_ledger`` is the record the ledger stores (``revocation.ledger.base.Verdict``: reasons as code and
detail).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from revocation.ledger.base import Reason as LedgerReason
from revocation.ledger.base import Verdict as LedgerVerdict
from revocation.ledger.base import plain_json

__all__ = ["ALLOW_LISTED", "MONITOR_MODE", "Action", "Reason", "Verdict"]

#: Reason codes of the mode adjustments the policy makes (allow-lists, monitor mode).
ALLOW_LISTED = "allow-listed"
MONITOR_MODE = "monitor-mode"


class Action(str, Enum):
    FLAG = "flag"  # for an operator to review; nothing happens at the edge
    REVOKE = "revoke"  # the session id goes on the revocation list
    MONITOR = "monitor"  # monitor mode: would have been revoked

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Reason:
    """One reason that fired: a stable code, a sentence, its weight, the values it saw and the thresholds."""

    code: str
    detail: str
    weight: float
    values: Mapping[str, Any] = field(default_factory=dict)
    thresholds: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "detail": self.detail,
            "weight": round(float(self.weight), 4),
            "values": plain_json(dict(self.values)),
            "thresholds": plain_json(dict(self.thresholds)),
        }


@dataclass(frozen=True)
class Verdict:
    """The policy's decision about one session over one window."""

    session_id: str
    score: float
    action: Action
    reasons: tuple[Reason, ...] = ()
    features: Mapping[str, Any] = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "score": round(float(self.score), 4),
            "action": self.action.value,
            "reasons": [r.to_dict() for r in self.reasons],
            "features": plain_json(dict(self.features)),
        }

    def to_ledger(self, run_id: str, decided_at: float) -> LedgerVerdict:
        """The ledger's record of this verdict (``revocation.ledger.base.Verdict``)."""
        return LedgerVerdict(
            session_id=self.session_id,
            run_id=run_id,
            score=float(self.score),
            reasons=tuple(LedgerReason(code=r.code, detail=r.detail[:2000]) for r in self.reasons),
            features=dict(self.features),  # the ledger's model makes them plain JSON
            action=self.action.value,
            decided_at=decided_at,
        )
