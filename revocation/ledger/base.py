"""The ledger of verdicts and revocations: domain models, the rules every backend shares, and the interface.

The ledger is the truth about who is revoked; the edge store is a projection of it that the publisher
(:mod:`revocation.publisher`) keeps in step. Two backends implement :class:`Ledger` with the same behaviour (one
parametrized contract suite checks both): DynamoDB in AWS (:mod:`revocation.ledger.dynamodb`) and SQLite locally
(:mod:`revocation.ledger.sqlite`).

Rules (the contract):

* :meth:`Ledger.record_verdicts` is idempotent per (session, run): the first record of a session in a run wins, so a
  re-run of the same window changes nothing.
* :meth:`Ledger.revoke` is idempotent and never shortens a revocation: revoking an active revocation again keeps the
  later expiry. An expired revocation is replaced by the new one. A revocation that an operator lifted is not revoked
  again *automatically* while it would still have been in force (the operator judged the session legitimate; the
  detection window that flagged it is likely to flag it again on the next run); a manual revoke always applies.
  :func:`plan_revoke` holds this decision, so both backends make it the same way.
* :meth:`Ledger.lift` marks a revocation lifted (idempotent: lifting twice keeps the first lift).
* :meth:`Ledger.record_issue` keeps, per session, the latest token expiry the issuer ever signed, and refuses a
  session whose revocation no operator lifted (in force or not): a revoked session gets no new token, ever, unless
  an operator lifts it. :meth:`Ledger.revoke` makes a revocation last at least until that expiry plus
  ``margin`` (:func:`plan_revoke`), so no token of the session outlives it, used in the detection window or not.
* Times are whole epoch seconds; a revocation is active while ``lifted_at is None and expires_at > now``, the same
  comparison the edge makes (:func:`edge.verify.revocation_active`).

No boto3 here.
"""

from __future__ import annotations

import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from core.session_ids import SESSION_ID

__all__ = [
    "ACTOR_PATTERN",
    "REASON_CODE_PATTERN",
    "RUN_ID_PATTERN",
    "ISSUED_MARGIN_SECONDS",
    "SESSION_ID_PATTERN",
    "Action",
    "Ledger",
    "LedgerConflictError",
    "LedgerError",
    "Reason",
    "RecordResult",
    "Revocation",
    "RevokeOutcome",
    "RevokeResult",
    "SessionHistory",
    "SessionRefused",
    "Verdict",
    "is_manual",
    "normalise_verdicts",
    "plain_json",
    "plan_revoke",
    "refuses_issue",
    "run_id_for",
]

#: How long after the latest token issued for a session its revocation lasts at least (the edge accepts a token
#: until 30 s after its exp; revocation.token_expiry uses the same default margin for the tokens seen in logs).
ISSUED_MARGIN_SECONDS = 300

SESSION_ID_PATTERN = SESSION_ID
REASON_CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")
"""A reason code: lower-case letters, digits, ``_ . -``; no ``|`` (it separates expiry and reason in the store)."""
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
"""A detection run (window) id, e.g. a Step Functions execution name or ``2026-01-01T12:05Z``."""


def run_id_for(window_end: float) -> str:
    """The run id of the window ending at ``window_end``: its end, to the second, in UTC."""
    return datetime.fromtimestamp(math.floor(window_end), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
ACTOR_PATTERN = re.compile(r"^(auto|manual):[\x21-\x7e]{1,256}\Z")
"""Who revoked or lifted: ``auto:<run id>`` (the pipeline) or ``manual:<who>`` (an operator; IAM ARN, user name)."""

MAX_SCORE_MAGNITUDE = 1e12
MAX_REASON_DETAIL = 2000


class LedgerError(Exception):
    """The ledger cannot be read or written; the message says which ledger and why."""


class SessionRefused(LedgerError):
    """The session has a revocation no operator lifted: the issuer signs nothing more for it."""

    refused = True  # what edge.issuing.issue looks for (edge/ does not import revocation/)


class LedgerConflictError(LedgerError):
    """A conditional write kept losing to concurrent writers; retrying the operation later is safe."""


def _epoch(value: Any) -> Any:
    """Whole epoch seconds: finite non-negative numbers, fractions rounded down; other input left to pydantic."""
    if isinstance(value, bool):
        raise ValueError("a time must be epoch seconds, not a boolean")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a time must be a finite number of epoch seconds")
        return math.floor(value)
    return value


Epoch = Annotated[int, BeforeValidator(_epoch), Field(ge=0, le=2**53)]


def _pattern(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, str) and not pattern.match(value):
            raise ValueError(f"{value!r} is not a valid {what} ({pattern.pattern})")
        return value

    return BeforeValidator(check)


SessionId = Annotated[str, _pattern(SESSION_ID_PATTERN, "session id (16-32 of A-Z a-z 0-9 _ -)")]
ReasonCode = Annotated[str, _pattern(REASON_CODE_PATTERN, "reason code")]
RunId = Annotated[str, _pattern(RUN_ID_PATTERN, "run id")]
Actor = Annotated[str, _pattern(ACTOR_PATTERN, "actor (auto:<run id> or manual:<who>)")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Action(StrEnum):
    FLAG = "flag"  # for an operator to review; nothing happens at the edge
    REVOKE = "revoke"  # the session id goes on the revocation list
    MONITOR = "monitor"  # monitor mode: would have been revoked


class Reason(_Model):
    """Why a session was flagged: a stable code (for metrics and filters), a human-readable detail, and for the
    policy's reasons what it added to the score, the values it saw and the thresholds it compared them with."""

    code: str = Field(min_length=1, max_length=64)
    detail: str = Field("", max_length=MAX_REASON_DETAIL)
    weight: float = 0.0
    values: dict[str, Any] = Field(default_factory=dict)
    thresholds: dict[str, Any] = Field(default_factory=dict)

    @field_validator("values", "thresholds", mode="before")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        return plain_json(value) if isinstance(value, Mapping) else value

    def to_dict(self) -> dict[str, Any]:
        """The reason in ``detect``'s JSON."""
        return {"code": self.code, "detail": self.detail, "weight": round(float(self.weight), 4),
                "values": self.values, "thresholds": self.thresholds}


class Verdict(_Model):
    """What the policy decided about one session in one detection run (or what an operator decided by hand), as
    ``detect`` prints it, the workflow pages it and the ledger stores it."""

    session_id: SessionId
    run_id: RunId
    score: float
    reasons: tuple[Reason, ...] = ()
    features: dict[str, Any] = Field(default_factory=dict)
    action: Action
    decided_at: Epoch
    source: Literal["auto", "manual"] = "auto"

    @field_validator("score", mode="before")
    @classmethod
    def _finite_score(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("score must be a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            return value  # pydantic reports it
        if not math.isfinite(number) or abs(number) > MAX_SCORE_MAGNITUDE:
            raise ValueError("score must be a finite number")
        return number

    @field_validator("features", mode="before")
    @classmethod
    def _plain_features(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        return {str(k): plain_json(v) for k, v in value.items()}

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def to_dict(self) -> dict[str, Any]:
        """The verdict in ``detect``'s JSON (the CLI contract): without the run and time it belongs to."""
        return {
            "session_id": self.session_id,
            "score": round(float(self.score), 4),
            "action": self.action.value,
            "reasons": [r.to_dict() for r in self.reasons],
            "features": self.features,
        }


class Revocation(_Model):
    """A session's revocation: what the edge store shows as ``r:<session_id>`` → ``<expires_at>|<reason>``."""

    session_id: SessionId
    reason: ReasonCode
    expires_at: Epoch
    revoked_by: Actor
    created_at: Epoch
    updated_at: Epoch
    lifted_at: Epoch | None = None
    lifted_by: Actor | None = None

    def is_active(self, now: float) -> bool:
        return self.lifted_at is None and self.expires_at > now

    @property
    def is_manual(self) -> bool:
        return is_manual(self.revoked_by)

    @property
    def store_key(self) -> str:
        return f"r:{self.session_id}"

    @property
    def store_value(self) -> str:
        return f"{self.expires_at}|{self.reason}"


class RevokeOutcome(str, Enum):
    CREATED = "created"  # no revocation before
    EXTENDED = "extended"  # active before; the new expiry is later
    UNCHANGED = "unchanged"  # active before with the same or a later expiry
    REACTIVATED = "reactivated"  # expired before, or lifted and revoked again by hand
    SUPPRESSED = "suppressed"  # lifted by an operator: an automatic revoke does not override that


class RevokeResult(_Model):
    revocation: Revocation
    outcome: RevokeOutcome

    @property
    def changed(self) -> bool:
        return self.outcome not in (RevokeOutcome.UNCHANGED, RevokeOutcome.SUPPRESSED)


class RecordResult(_Model):
    recorded: int = 0  # new verdicts written
    unchanged: int = 0  # already in the ledger for that (session, run), or repeated in the input


class SessionHistory(_Model):
    session_id: SessionId
    verdicts: tuple[Verdict, ...] = ()  # oldest first
    revocation: Revocation | None = None
    issued_until: Epoch | None = None  # the latest token expiry the issuer signed for the session

    @property
    def known(self) -> bool:
        return bool(self.verdicts) or self.revocation is not None or self.issued_until is not None


def refuses_issue(revocation: Revocation | None) -> bool:
    """Whether the issuer must refuse the session: it has a revocation that no operator lifted (in force or not)."""
    return revocation is not None and revocation.lifted_at is None


# ---------------------------------------------------------------------------------------------------------------
# Shared rules.


def is_manual(actor: str) -> bool:
    return actor.startswith("manual:")


def plan_revoke(
    current: Revocation | None,
    *,
    session_id: str,
    reason: str,
    expires_at: int,
    by: str,
    now: int,
    issued_until: int | None = None,
    margin: int = 0,
) -> tuple[RevokeOutcome, Revocation]:
    """Decide what a revoke does to the session's current revocation; return the outcome and the record to store.
    The revocation lasts at least until ``issued_until + margin``: the latest token the issuer signed for the
    session expires before it ends.

    For ``UNCHANGED`` and ``SUPPRESSED`` the returned record is ``current`` (nothing to write).
    """
    if issued_until is not None:
        expires_at = max(expires_at, issued_until + margin)
    fresh = Revocation(
        session_id=session_id,
        reason=reason,
        expires_at=expires_at,
        revoked_by=by,
        created_at=now,
        updated_at=now,
    )
    if fresh.expires_at <= now:
        raise ValueError(f"a revocation must expire in the future: expires_at {expires_at} <= now {now}")
    if current is None:
        return RevokeOutcome.CREATED, fresh
    if current.lifted_at is not None:
        if not is_manual(by) and current.expires_at > now:
            return RevokeOutcome.SUPPRESSED, current
        return RevokeOutcome.REACTIVATED, fresh
    if current.expires_at <= now:
        return RevokeOutcome.REACTIVATED, fresh
    if fresh.expires_at > current.expires_at:
        # The decision that sets the (later) expiry is the one the edge shows; when it was first revoked stays.
        return RevokeOutcome.EXTENDED, current.model_copy(
            update={"expires_at": fresh.expires_at, "reason": reason, "revoked_by": by, "updated_at": now}
        )
    return RevokeOutcome.UNCHANGED, current


def normalise_verdicts(run_id: str, verdicts: Iterable[Verdict | Mapping[str, Any]]) -> list[Verdict]:
    """Validate ``verdicts`` as :class:`Verdict` records of run ``run_id`` (filled in where missing)."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise ValueError(f"{run_id!r} is not a valid run id ({RUN_ID_PATTERN.pattern})")
    out = []
    for item in verdicts:
        verdict = item if isinstance(item, Verdict) else Verdict.model_validate({"run_id": run_id, **dict(item)})
        if verdict.run_id != run_id:
            raise ValueError(f"verdict for {verdict.session_id} belongs to run {verdict.run_id!r}, not {run_id!r}")
        out.append(verdict)
    return out


def plain_json(value: Any) -> Any:
    """Plain JSON values (numpy/pandas scalars unwrapped, tuples and sets as lists, NaN/inf as None): a verdict's
    features as every ledger backend stores and returns them, and the verdicts' own JSON."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [plain_json(v) for v in items]
    item = getattr(value, "item", None)  # numpy / pandas scalars
    if callable(item):
        try:
            return plain_json(item())
        except (TypeError, ValueError):
            pass
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        return plain_json(tolist())
    return str(value)


def now_epoch(now: float | None = None) -> int:
    return math.floor(time.time() if now is None else now)


# ---------------------------------------------------------------------------------------------------------------
# The interface.


class Ledger(ABC):
    """Verdicts and revocations, keyed by session id. See the module docstring for the rules."""

    @abstractmethod
    def record_verdicts(self, run_id: str, verdicts: Iterable[Verdict | Mapping[str, Any]]) -> RecordResult:
        """Record a run's verdicts; those already recorded for (session, run) are left as they are."""

    @abstractmethod
    def revoke(
        self, session_id: str, reason: str, expires_at: int, by: str, *, now: float | None = None,
        margin: int = ISSUED_MARGIN_SECONDS,
    ) -> RevokeResult:
        """Revoke ``session_id`` until ``expires_at``, or until the latest token issued for it expires plus
        ``margin`` if that is later (see :func:`plan_revoke` for what happens to an existing one)."""

    @abstractmethod
    def record_issue(self, session_id: str, expires_at: int, *, now: float | None = None) -> int:
        """Record that a token for ``session_id`` expiring at ``expires_at`` is being issued; return the latest expiry
        ever issued for it. Raises :class:`SessionRefused` when the session has a revocation no operator lifted."""

    @abstractmethod
    def lift(self, session_id: str, by: str, *, now: float | None = None) -> Revocation | None:
        """Lift the session's revocation; the (lifted) record, or ``None`` when the session was never revoked."""

    @abstractmethod
    def active_revocations(self, now: float | None = None) -> list[Revocation]:
        """Revocations in force at ``now`` (not lifted, expiring later), ordered by expiry then session id."""

    @abstractmethod
    def flagged(self, since: float, until: float | None = None) -> list[Verdict]:
        """Verdicts decided in ``[since, until]`` (``until`` defaults to now), oldest first."""

    @abstractmethod
    def get(self, session_id: str) -> SessionHistory:
        """Everything the ledger knows about one session."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (no-op by default)."""

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.match(session_id):
        raise ValueError(f"{session_id!r} is not a valid session id (16-32 characters of A-Z a-z 0-9 _ -)")
    return session_id


def check_actor(by: str) -> str:
    if not isinstance(by, str) or not ACTOR_PATTERN.match(by):
        raise ValueError(f"{by!r} is not a valid actor: use auto:<run id> or manual:<who> (no spaces)")
    return by


def verdict_sort_key(verdict: Verdict) -> tuple[int, str, str]:
    return (verdict.decided_at, verdict.session_id, verdict.run_id)


def revocation_sort_key(revocation: Revocation) -> tuple[int, str]:
    return (revocation.expires_at, revocation.session_id)
