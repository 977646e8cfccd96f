"""The four rotation steps Secrets Manager drives, for the signing key secret and the edge store.

=============  ===================================================================================================
createSecret   plan the rotation (``rotation.keyring.plan_rotation``) and store the pending value as AWSPENDING
setSecret      publish: one edge store update that puts ``k:<new kid>`` and deletes the keys whose tokens have all
               expired
testSecret     sign a token with the pending key and verify it with the edge's rules (``edge.verify``), reading the
               key back from the store
finishSecret   move AWSCURRENT to the pending version: from now on the issuer signs with the new key
=============  ===================================================================================================

Every step is idempotent (Secrets Manager retries them, and reattempts a failed rotation with the same token):
create does nothing if the token's pending value exists; set computes the same update from the same two values and
skips what is already in place; test only reads; finish does nothing if the token is already AWSCURRENT. Every step
does nothing once the token's version is AWSCURRENT.

A pending value that must not be promoted any more is *abandoned* by set, test or finish: when it is older than
``RotationPolicy.max_promotion_lag`` (a failed rotation reattempted much later; promoting it would start its
predecessor's retirement clock too early, see ``rotation.keyring``), or when it was not planned from the current
value (the secret changed during the rotation). Abandoning deletes the pending key from the store (it was never
AWSCURRENT, so no viewer token uses it), takes AWSPENDING off the version and raises :class:`RotationAbandoned`;
the next rotation starts afresh with a new token. The current key and its retired keys are untouched throughout, so
a failure at any point leaves every live token valid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.binding import Viewer
from edge.store import EdgeStore
from edge.tokens import TokenRequest, issue_token
from edge.verify import verify_request
from rotation.keyring import (
    InvalidSecretValue,
    KeyRing,
    RotationConflict,
    RotationPolicy,
    check_successor,
    is_stale,
    parse_secret_value,
    plan_rotation,
    promotion_deadline,
    self_test_session_id,
    store_changes,
)
from rotation.secrets import RotatableSecret

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
SELF_TEST_PATH = "/rotation-self-test"
SELF_TEST_TTL_SECONDS = 60


class RotationError(RuntimeError):
    """A step cannot complete; the message says why (never key material)."""


class NoPendingVersion(RotationError):
    """set/test/finish found no AWSPENDING value for the token (createSecret has not run for it)."""


class SelfTestFailed(RotationError):
    """testSecret: a token signed with the pending key is not accepted when verified against the store."""


class RotationAbandoned(RotationError):
    """The pending version was abandoned (too old, or not planned from the current value); rotate again."""


@dataclass(frozen=True)
class StepResult:
    """What a step did, for the log and the CLI. ``changed`` is False when the step found its work already done."""

    step: str
    token: str
    changed: bool
    kid: str | None = None
    published: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    note: str = ""

    def to_log(self) -> dict[str, object]:
        return {
            "step": self.step,
            "changed": self.changed,
            "kid": self.kid,
            "published_kids": list(self.published),
            "deleted_kids": list(self.deleted),
            "missing_kids": list(self.missing),
            "note": self.note,
        }


class KeyRotation:
    """The rotation of one signing secret into one edge store."""

    def __init__(
        self,
        secret: RotatableSecret,
        store: EdgeStore,
        policy: RotationPolicy,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.secret = secret
        self.store = store
        self.policy = policy
        self.clock = clock or time.time

    def __repr__(self) -> str:
        return f"KeyRotation({self.secret!r}, {self.store!r})"

    def run_step(self, step: str, token: str, now: int | None = None) -> StepResult:
        method = {
            "createSecret": self.create_secret,
            "setSecret": self.set_secret,
            "testSecret": self.test_secret,
            "finishSecret": self.finish_secret,
        }.get(step)
        if method is None:
            raise ValueError(f"unknown rotation step {step!r}; expected one of {', '.join(STEPS)}")
        return method(token, now)

    def rotate(self, token: str, now: int | None = None) -> list[StepResult]:
        """All four steps in order, as Secrets Manager runs them."""
        return [self.run_step(step, token, now) for step in STEPS]

    # -- the steps -------------------------------------------------------------------------------------------

    def create_secret(self, token: str, now: int | None = None) -> StepResult:
        now = self._now(now)
        done = self._already_current("createSecret", token)
        if done is not None:
            return done
        existing = self.secret.pending_value(token)
        if existing is not None:
            pending = parse_secret_value(existing)
            if pending.current is None:
                raise InvalidSecretValue(f"the AWSPENDING value of version {token!r} holds no signing key")
            return StepResult("createSecret", token, changed=False, kid=pending.current.kid,
                              note="pending value already exists")
        current = parse_secret_value(self.secret.current_value())
        plan = plan_rotation(current, now, self.policy)
        self.secret.put_pending(token, plan.pending.to_json())
        return StepResult("createSecret", token, changed=True, kid=plan.new_kid,
                          note="first key" if current.is_empty else "")

    def set_secret(self, token: str, now: int | None = None) -> StepResult:
        now = self._now(now)
        done = self._already_current("setSecret", token)
        if done is not None:
            return done
        current, pending = self._rings(token)
        self._guard(token, current, pending, now)
        changes = store_changes(current, pending)
        puts = {key: value for key, value in changes.puts.items() if self.store.get(key) != value}
        deletes = [key for key in changes.deletes if self.store.get(key) is not None]
        if puts or deletes:
            self.store.update(puts=puts, deletes=deletes)
        return StepResult(
            "setSecret",
            token,
            changed=bool(puts or deletes),
            kid=_kid(pending),
            published=tuple(key.removeprefix("k:") for key in puts),
            deleted=tuple(key.removeprefix("k:") for key in deletes),
        )

    def test_secret(self, token: str, now: int | None = None) -> StepResult:
        now = self._now(now)
        done = self._already_current("testSecret", token)
        if done is not None:
            return done
        current, pending = self._rings(token)
        self._guard(token, current, pending, now)
        assert pending.current is not None
        request = TokenRequest(
            session_id=self_test_session_id(), ttl_seconds=SELF_TEST_TTL_SECONDS, paths=(SELF_TEST_PATH,)
        )
        issued = issue_token(request, pending.current, now=now)
        decision = verify_request(issued.url_for(SELF_TEST_PATH), Viewer(), self.store, now)
        if not decision.allowed:
            raise SelfTestFailed(
                f"a token signed with the pending key {pending.current.kid!r} is refused against {self.store!r}:"
                f" {decision.status} {decision.reason}"
            )
        # Keys the pending value relies on that are not in the store: their tokens are refused already (someone
        # removed them); rotating does not make that worse, so it is reported, not fatal.
        missing = tuple(kid for kid in pending.kids[:-1] if self.store.get(f"k:{kid}") is None)
        return StepResult("testSecret", token, changed=False, kid=pending.current.kid, missing=missing,
                          note=f"self-test token {decision.decision} ({decision.reason})")

    def finish_secret(self, token: str, now: int | None = None) -> StepResult:
        now = self._now(now)
        done = self._already_current("finishSecret", token)
        if done is not None:
            return done
        current, pending = self._rings(token)
        self._guard(token, current, pending, now)
        changed = self.secret.promote(token)
        return StepResult("finishSecret", token, changed=changed, kid=_kid(pending))

    # -- helpers ---------------------------------------------------------------------------------------------

    def _now(self, now: int | None) -> int:
        return int(self.clock()) if now is None else int(now)

    def _already_current(self, step: str, token: str) -> StepResult | None:
        """The result of a step that finds the token's version already AWSCURRENT (nothing left to do)."""
        if not self.secret.describe().is_current(token):
            return None
        kid = _kid(parse_secret_value(self.secret.current_value()))
        return StepResult(step, token, changed=False, kid=kid, note="version is already AWSCURRENT")

    def _rings(self, token: str) -> tuple[KeyRing, KeyRing]:
        text = self.secret.pending_value(token)
        if text is None:
            raise NoPendingVersion(f"{self.secret!r} has no AWSPENDING value for version {token!r}")
        pending = parse_secret_value(text)
        if pending.current is None:
            raise InvalidSecretValue(f"the AWSPENDING value of version {token!r} holds no signing key")
        return parse_secret_value(self.secret.current_value()), pending

    def _guard(self, token: str, current: KeyRing, pending: KeyRing, now: int) -> None:
        try:
            check_successor(current, pending)
        except RotationConflict as exc:
            self._abandon(token, current, pending, str(exc))
        if is_stale(pending, now, self.policy):
            self._abandon(
                token,
                current,
                pending,
                f"the pending version was created at {pending.created} and may become AWSCURRENT only until"
                f" {promotion_deadline(pending, self.policy)} (now {now}): a later promotion would start the"
                " retirement clock of the current key too early",
            )

    def _abandon(self, token: str, current: KeyRing, pending: KeyRing, why: str) -> None:
        assert pending.current is not None
        key = pending.current.store_key
        if pending.current.kid not in current.kids and self.store.get(key) is not None:
            self.store.delete(key)  # never AWSCURRENT: no viewer token was signed with it
        self.secret.abandon(token)
        raise RotationAbandoned(f"abandoned version {token!r} (kid {pending.current.kid!r}): {why}; rotate again")


def _kid(ring: KeyRing) -> str | None:
    return ring.current.kid if ring.current else None
