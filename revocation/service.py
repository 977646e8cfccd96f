"""Revocation as the domain sees it: manual operations, automatic revocations of a run, and the policy mode.

Manual operations (:func:`revoke`, :func:`lift`, :func:`list_revoked`, :func:`list_flagged`) validate their input,
record the change in the ledger (a manual revoke is also a ``source="manual"`` verdict in the session's history, so
the audit trail says who decided what and when) and publish at once, so the change reaches the edge without waiting
for the next scheduled run. The ledger is written first: if publishing fails, the change is kept and the next
publish run applies it (:class:`ManualResult` says so).

:func:`revoke_run` records a run's verdicts and revokes its offenders until their tokens expire (the policy has
already applied the detection configuration's allow-lists and monitor mode: those verdicts are ``flag`` or
``monitor``, never ``revoke``). Manual revocations are explicit operator decisions: monitor mode does not hold
them back, but revoking an allow-listed session by hand needs ``force=True``.

No boto3 here: the ledger and the edge store come in as objects.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.store import EdgeStore
from edge.tokens import MAX_TTL_SECONDS
from revocation.ledger.base import (
    REASON_CODE_PATTERN,
    RUN_ID_PATTERN,
    SESSION_ID_PATTERN,
    Ledger,
    Reason,
    Revocation,
    RevokeOutcome,
    RevokeResult,
    Verdict,
    normalise_verdicts,
)
from revocation.publisher import PublishError, PublishResult, publish
from revocation.token_expiry import DEFAULT_MARGIN_SECONDS, expiry_for_session

__all__ = [
    "DEFAULT_MANUAL_TTL_SECONDS",
    "MAX_REVOCATION_SECONDS",
    "AllowListedError",
    "InvalidRevocation",
    "ManualResult",
    "NotRevokedError",
    "RevocationError",
    "RunRevocations",
    "lift",
    "list_flagged",
    "list_revoked",
    "manual_actor",
    "revoke",
    "revoke_run",
]

DEFAULT_MANUAL_TTL_SECONDS = 24 * 3600
"""A manual revocation without an explicit expiry lasts a day: the issuer's default longest token lifetime."""
MAX_REVOCATION_SECONDS = MAX_TTL_SECONDS + DEFAULT_MARGIN_SECONDS
"""No token lives longer than ``edge.tokens.MAX_TTL_SECONDS`` (7 days), so no revocation needs to either."""
_WHO = re.compile(r"^[\x21-\x7e]{1,256}\Z")


class RevocationError(ValueError):
    """A manual operation was refused; ``code`` is stable (API error codes), the message says why."""

    code = "invalid-request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class InvalidRevocation(RevocationError):
    """Bad input: session id, reason code, expiry, actor (HTTP 400, CLI exit 2)."""


class AllowListedError(RevocationError):
    """The session is allow-listed in the detection config; revoking it by hand needs ``force`` (HTTP 409)."""

    code = "allow-listed"


class NotRevokedError(RevocationError):
    """The session has never been revoked, so there is nothing to lift (HTTP 404)."""

    code = "not-revoked"


@dataclass(frozen=True)
class ManualResult:
    """A manual change: the ledger record, what happened to it, and how publishing went.

    ``published`` is false when the store could not be written: the ledger has the change, and the next publish run
    (every scheduled detection run publishes) brings the edge in line; ``publish_error`` says what went wrong.
    """

    revocation: Revocation
    outcome: str
    publish: PublishResult | None
    publish_error: str | None = None

    @property
    def published(self) -> bool:
        return self.publish_error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "revocation": self.revocation.model_dump(),
            "outcome": self.outcome,
            "published": self.published,
            "publish": self.publish.to_dict() if self.publish is not None else None,
            **({"publish_error": self.publish_error} if self.publish_error else {}),
        }


# ---------------------------------------------------------------------------------------------------------------
# Manual operations.


def manual_actor(by: str) -> str:
    """``manual:<who>`` for an operator name (or an already prefixed ``manual:<who>``)."""
    if not isinstance(by, str):
        raise InvalidRevocation("the operator name must be text")
    who = by.removeprefix("manual:")
    if by.startswith("auto:") or not _WHO.match(who):
        raise InvalidRevocation(
            f"{by!r} is not a valid operator name (1-256 printable characters without spaces; not auto:...)"
        )
    return f"manual:{who}"


def revoke(
    ledger: Ledger,
    store: EdgeStore | None,
    session_id: str,
    reason: str,
    *,
    by: str,
    expires_at: int | None = None,
    ttl: int | None = None,
    now: float | None = None,
    allow_sessions: Collection[str] = (),
    force: bool = False,
) -> ManualResult:
    """Revoke ``session_id`` by hand until ``expires_at`` (or for ``ttl`` seconds; a day by default) and publish.

    Refused with :class:`InvalidRevocation` for a malformed session id or reason code, both or neither-valid expiry
    forms, an expiry not in the future or beyond :data:`MAX_REVOCATION_SECONDS`; with :class:`AllowListedError` for an
    allow-listed session unless ``force``. An already active revocation is kept if it lasts longer (never shortened).
    ``store=None`` records in the ledger only.
    """
    at = math.floor(time.time() if now is None else now)
    _check_session(session_id)
    if not isinstance(reason, str) or not REASON_CODE_PATTERN.match(reason):
        raise InvalidRevocation(
            f"{reason!r} is not a valid reason code: 1-64 of a-z 0-9 _ . - starting with a letter or digit"
            " (e.g. manual, restreaming, shared-credentials)",
            code="invalid-reason",
        )
    actor = manual_actor(by)
    until = _expiry(expires_at, ttl, at)
    if session_id in allow_sessions and not force:
        raise AllowListedError(
            f"session {session_id} is allow-listed in the detection config; revoke it anyway with force"
            " (--force / \"force\": true), or remove it from the allow-list first"
        )
    result = ledger.revoke(session_id, reason, until, actor, now=at)
    if result.changed:
        ledger.record_verdicts(
            _manual_run_id(at),
            [
                Verdict(
                    session_id=session_id,
                    run_id=_manual_run_id(at),
                    score=1.0,
                    reasons=(Reason(code=reason, detail=f"revoked by {actor} until {until}"),),
                    features={"forced": True} if force else {},
                    action="revoke",
                    decided_at=at,
                    source="manual",
                )
            ],
        )
    return _published(ledger, store, result.revocation, result.outcome.value, at)


def lift(ledger: Ledger, store: EdgeStore | None, session_id: str, *, by: str, now: float | None = None) -> ManualResult:
    """Lift the session's revocation and publish (the ``r:`` entry leaves the store at once).

    :class:`NotRevokedError` when the session was never revoked. Lifting twice is harmless (the first lift stays).
    A lifted session is not revoked again automatically while its old revocation would have lasted; add it to the
    allow-list to exempt it for good.
    """
    at = math.floor(time.time() if now is None else now)
    _check_session(session_id)
    actor = manual_actor(by)
    before = ledger.get(session_id).revocation
    record = ledger.lift(session_id, actor, now=at)
    if record is None:
        raise NotRevokedError(f"session {session_id} is not revoked (the ledger has no revocation for it)")
    outcome = "already-lifted" if before is not None and before.lifted_at is not None else "lifted"
    return _published(ledger, store, record, outcome, at)


def list_revoked(ledger: Ledger, now: float | None = None) -> list[Revocation]:
    """Revocations in force now, soonest expiry first."""
    return ledger.active_revocations(now)


def list_flagged(ledger: Ledger, since: float | None = None, until: float | None = None) -> list[Verdict]:
    """Verdicts (with their reasons and features) decided since ``since`` (default: the last 24 hours)."""
    end = time.time() if until is None else until
    start = end - 24 * 3600 if since is None else since
    if not isinstance(start, (int, float)) or isinstance(start, bool) or not math.isfinite(start) or start < 0:
        raise InvalidRevocation(f"since must be epoch seconds, not {since!r}", code="invalid-since")
    return ledger.flagged(start, end)


# ---------------------------------------------------------------------------------------------------------------
# Automatic revocations.


@dataclass(frozen=True)
class RunRevocations:
    """What :func:`revoke_run` did: verdicts recorded, and the revocations by outcome."""

    recorded: int
    unchanged_verdicts: int
    results: tuple[RevokeResult, ...] = field(default=())

    @property
    def revoked(self) -> list[Revocation]:
        return [r.revocation for r in self.results if r.changed]

    @property
    def suppressed(self) -> list[str]:
        return [r.revocation.session_id for r in self.results if r.outcome is RevokeOutcome.SUPPRESSED]

    @property
    def fresh(self) -> list[Revocation]:
        """Records to hand to :func:`revocation.publisher.publish` (``fresh=``) right after this run."""
        return [r.revocation for r in self.results]


def revoke_run(
    ledger: Ledger,
    run_id: str,
    verdicts: Iterable[Verdict | Mapping[str, Any]],
    token_exps: Mapping[str, Iterable[float | None]],
    *,
    now: float | None = None,
    margin: int = DEFAULT_MARGIN_SECONDS,
    reason: str = "auto",
) -> RunRevocations:
    """Record a run's verdicts and revoke those whose action is ``revoke``, each
    until the latest ``exp`` seen for its session (``token_exps[session_id]``) plus ``margin``.

    A session whose tokens (those seen, and the latest the issuer recorded) all expired before ``now`` is left
    unrevoked: no token of it works any more. Idempotent: a re-run of the same window records nothing new, and with
    the same token expiries leaves the revocations as they are (a revocation is never shortened). A session whose
    revocation an operator lifted is not revoked again while that revocation would have lasted (outcome
    ``suppressed``).
    """
    if not RUN_ID_PATTERN.match(run_id):
        raise InvalidRevocation(f"{run_id!r} is not a valid run id ({RUN_ID_PATTERN.pattern})")
    at = math.floor(time.time() if now is None else now)
    rows = normalise_verdicts(run_id, verdicts)
    recorded = ledger.record_verdicts(run_id, rows)
    results = []
    seen: set[str] = set()
    for verdict in rows:
        if verdict.action != "revoke" or verdict.session_id in seen:
            continue
        seen.add(verdict.session_id)
        until = expiry_for_session(token_exps.get(verdict.session_id, ()), now=at, margin=margin)
        if until <= at and not ledger.get(verdict.session_id).issued_until:
            continue  # every token the session was seen with is dead already, and the issuer signed none later
        results.append(ledger.revoke(verdict.session_id, reason, until, f"auto:{run_id}", now=at))
    return RunRevocations(recorded=recorded.recorded, unchanged_verdicts=recorded.unchanged, results=tuple(results))


# ---------------------------------------------------------------------------------------------------------------


def _check_session(session_id: str) -> None:
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.match(session_id):
        raise InvalidRevocation(
            f"{session_id!r} is not a valid session id: 16-32 characters of A-Z a-z 0-9 _ -",
            code="invalid-session-id",
        )


def _expiry(expires_at: int | None, ttl: int | None, now: int) -> int:
    if expires_at is not None and ttl is not None:
        raise InvalidRevocation("give either an expiry time or a ttl, not both", code="invalid-expiry")
    for name, value in (("expires_at", expires_at), ("ttl", ttl)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidRevocation(f"{name} must be whole seconds, not {value!r}", code="invalid-expiry")
    until = expires_at if expires_at is not None else now + (DEFAULT_MANUAL_TTL_SECONDS if ttl is None else ttl)
    if until <= now:
        raise InvalidRevocation(
            f"the revocation would end at {until}, which is not in the future (now {now})", code="invalid-expiry"
        )
    if until > now + MAX_REVOCATION_SECONDS:
        raise InvalidRevocation(
            f"the revocation would end at {until}, more than {MAX_REVOCATION_SECONDS} s from now: no token lives"
            f" longer than {MAX_TTL_SECONDS} s, so no revocation needs to",
            code="invalid-expiry",
        )
    return until


def _manual_run_id(now: int) -> str:
    return f"manual-{now}"


def _published(ledger: Ledger, store: EdgeStore | None, record: Revocation, outcome: str, now: int) -> ManualResult:
    if store is None:
        return ManualResult(revocation=record, outcome=outcome, publish=None, publish_error="no edge store given")
    try:
        published = publish(ledger, store, now=now, fresh=[record])
    except PublishError as exc:
        return ManualResult(revocation=record, outcome=outcome, publish=exc.result, publish_error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the ledger has the change; any store failure is reported, not fatal
        return ManualResult(revocation=record, outcome=outcome, publish=None, publish_error=f"{type(exc).__name__}: {exc}")
    return ManualResult(revocation=record, outcome=outcome, publish=published)
