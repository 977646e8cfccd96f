"""The signing key ring and the rotation plan: pure functions, no AWS, no clock (``now`` is always an input).

The signing secret (Secrets Manager and the local secret file alike) holds one JSON object::

    {"kid": "...", "key": "<base64url>", "created": <epoch>, "retired": [{"kid": "...", "retired_at": <epoch>}, ...]}

``kid``/``key`` at the top level are the key the issuer signs with (so ``edge.keys.parse_key_text`` and
``python -m edge sign --key-file`` read the secret unchanged); ``retired`` lists earlier keys that are still in the
edge store because tokens they signed may not have expired yet (only their ids: the store holds the key material).

Why a retired key may be deleted at ``retired_at + max_token_lifetime + margin``:

* ``retired_at`` is when the rotation that retired the key began (its createSecret step). The key stays AWSCURRENT
  until that rotation's finishSecret, which the steps allow at most :meth:`RotationPolicy.max_promotion_lag` later
  (a later finish abandons the rotation instead, see ``rotation.steps``);
* the issuer caches AWSCURRENT for up to ``issuer_cache`` seconds, so it signs with the key until at most
  ``retired_at + max_promotion_lag + issuer_cache``;
* a token lives at most ``max_token_lifetime`` seconds, and the edge accepts it for ``SKEW_SECONDS`` more.

``margin = issuer_cache + SKEW_SECONDS + max_promotion_lag``, so once ``retired_at + max_token_lifetime + margin``
has passed, every token the key signed is rejected as ``expired`` anyway and the key can go.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.keys import MIN_KEY_BYTES, InvalidKeyError, SigningKey, decode_key, generate_key, new_kid
from edge.verify import SKEW_SECONDS

DEFAULT_MARGIN_SECONDS = 300
DEFAULT_ISSUER_CACHE_SECONDS = 60  # edge.key_source.DEFAULT_CACHE_SECONDS, the issuer's default
NEW_KEY_BYTES = MIN_KEY_BYTES


class InvalidSecretValue(ValueError):
    """A secret value that holds a key but whose rotation metadata is unusable (never contains key material)."""


class RotationConflict(RuntimeError):
    """The pending value was not planned from the current one (the secret changed during the rotation)."""


@dataclass(frozen=True)
class RetiredKey:
    kid: str
    retired_at: int

    def expires_at(self, policy: "RotationPolicy") -> int:
        """The moment every token this key signed has certainly expired at the edge."""
        return self.retired_at + policy.max_token_lifetime + policy.margin

    def to_dict(self) -> dict[str, Any]:
        return {"kid": self.kid, "retired_at": self.retired_at}


@dataclass(frozen=True)
class KeyRing:
    """What one secret value says: the key to sign with (``None``: no usable key yet) and the retired key ids."""

    current: SigningKey | None = None
    created: int | None = None
    retired: tuple[RetiredKey, ...] = ()

    @property
    def is_empty(self) -> bool:
        return self.current is None

    @property
    def kids(self) -> tuple[str, ...]:
        """Every key id this value keeps in the edge store: the retired ones (oldest first), then the current one."""
        return tuple(r.kid for r in self.retired) + ((self.current.kid,) if self.current else ())

    def to_json(self) -> str:
        if self.current is None:
            raise ValueError("an empty key ring has no secret value")
        doc: dict[str, Any] = {"kid": self.current.kid, "key": self.current.encoded}
        if self.created is not None:
            doc["created"] = self.created
        doc["retired"] = [r.to_dict() for r in self.retired]
        return json.dumps(doc)

    def __repr__(self) -> str:  # never print key material
        return f"KeyRing(current={self.current!r}, created={self.created}, retired={[r.kid for r in self.retired]})"


@dataclass(frozen=True)
class RotationPolicy:
    """How long keys stay published.

    ``max_token_lifetime``: the longest a token may live (the issuer's maximum TTL). ``margin``: issuer key cache +
    edge clock skew + the longest a rotation may take from createSecret to finishSecret. ``issuer_cache``: how long
    the issuer may keep signing with the previous AWSCURRENT after the rotation promoted a new one.
    """

    max_token_lifetime: int
    margin: int = DEFAULT_MARGIN_SECONDS
    issuer_cache: int = DEFAULT_ISSUER_CACHE_SECONDS

    def __post_init__(self) -> None:
        for name in ("max_token_lifetime", "margin", "issuer_cache"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be a whole number of seconds, not {value!r}")
        if self.max_token_lifetime < 1:
            raise ValueError(f"max_token_lifetime must be at least 1 second, not {self.max_token_lifetime}")
        if self.issuer_cache < 0:
            raise ValueError(f"issuer_cache must not be negative, not {self.issuer_cache}")
        floor = self.issuer_cache + SKEW_SECONDS
        if self.margin < floor:
            raise ValueError(
                f"margin ({self.margin} s) must cover at least the issuer's key cache ({self.issuer_cache} s)"
                f" and the edge's clock skew ({SKEW_SECONDS} s): {floor} s"
            )

    @property
    def max_promotion_lag(self) -> int:
        """How long after createSecret the new version may still become AWSCURRENT (the rest of the margin)."""
        return self.margin - self.issuer_cache - SKEW_SECONDS


@dataclass(frozen=True)
class StoreChanges:
    """One all-or-nothing edge store update: the new key's entry, and the entries of keys that have expired."""

    puts: Mapping[str, str] = field(default_factory=dict)
    deletes: tuple[str, ...] = ()

    @property
    def deleted_kids(self) -> tuple[str, ...]:
        return tuple(key.removeprefix("k:") for key in self.deletes)


@dataclass(frozen=True)
class RotationPlan:
    pending: KeyRing
    changes: StoreChanges

    @property
    def new_kid(self) -> str:
        assert self.pending.current is not None
        return self.pending.current.kid


# ---------------------------------------------------------------------------------------------------------------
# Reading a secret value.


def parse_secret_value(text: str | None) -> KeyRing:
    """The key ring a secret value describes.

    A value without a usable key (missing, empty, not JSON, no ``kid``/``key``, a key under 32 bytes, e.g. the random
    string CloudFormation generates when it creates the secret) is an empty ring: the first rotation creates the
    first key. A value *with* a usable key but unreadable rotation metadata raises :class:`InvalidSecretValue`:
    guessing would risk deleting keys that still sign live tokens.
    """
    if text is None or not text.strip().startswith("{"):
        return KeyRing()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return KeyRing()
    if not isinstance(doc, dict) or not isinstance(doc.get("kid"), str) or not isinstance(doc.get("key"), str):
        return KeyRing()
    try:
        current = decode_key(doc["key"], doc["kid"])
    except InvalidKeyError:
        return KeyRing()
    created = doc.get("created")
    if created is not None and not _is_epoch(created):
        raise InvalidSecretValue(f"'created' of the secret for kid {current.kid!r} must be epoch seconds")
    raw_retired = doc.get("retired", [])
    if not isinstance(raw_retired, list):
        raise InvalidSecretValue("'retired' must be a list of {\"kid\", \"retired_at\"}")
    retired: list[RetiredKey] = []
    seen = {current.kid}
    for index, item in enumerate(raw_retired):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("kid"), str)
            and _is_epoch(item.get("retired_at"))
        ):
            raise InvalidSecretValue(f"retired[{index}] must be {{\"kid\": \"...\", \"retired_at\": <epoch>}}")
        try:
            SigningKey(kid=item["kid"], secret=bytes(MIN_KEY_BYTES))  # validates the kid's shape only
        except InvalidKeyError as exc:
            raise InvalidSecretValue(f"retired[{index}]: {exc}") from None
        if item["kid"] in seen:
            raise InvalidSecretValue(f"kid {item['kid']!r} appears more than once in the secret")
        seen.add(item["kid"])
        retired.append(RetiredKey(item["kid"], int(item["retired_at"])))
    return KeyRing(current=current, created=None if created is None else int(created), retired=tuple(retired))


def _is_epoch(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# ---------------------------------------------------------------------------------------------------------------
# The plan.


def fresh_key(taken: Iterable[str]) -> SigningKey:
    """A new random key (>= 32 bytes) whose kid is not one of ``taken``."""
    taken = set(taken)
    while True:
        kid = new_kid()
        if kid not in taken:
            return generate_key(kid, NEW_KEY_BYTES)


def plan_rotation(current: KeyRing, now: int, policy: RotationPolicy, new_key: SigningKey | None = None) -> RotationPlan:
    """The pending value and the edge store changes of one rotation started at ``now``.

    * a new key (``new_key`` or a random one) becomes the pending value's key, created ``now``;
    * the current key (if any) joins ``retired`` with ``retired_at = now``;
    * every retired key whose tokens have all expired (:meth:`RetiredKey.expires_at` ``<= now``) leaves ``retired``
      and is deleted from the store; the current key and the other retired keys stay.
    """
    if new_key is None:
        new_key = fresh_key(current.kids)
    elif new_key.kid in current.kids:
        raise ValueError(f"the new key's kid {new_key.kid!r} is already in use")
    retired = list(current.retired)
    if current.current is not None:
        retired.append(RetiredKey(current.current.kid, now))
    kept = tuple(r for r in retired if r.expires_at(policy) > now)
    pending = KeyRing(current=new_key, created=now, retired=kept)
    return RotationPlan(pending=pending, changes=store_changes(current, pending))


def store_changes(current: KeyRing, pending: KeyRing) -> StoreChanges:
    """What publishing ``pending`` does to the store, given the value it was planned from.

    Put the pending key; delete every key the current value keeps that the pending value no longer does. A pure
    function of the two values, so the setSecret step computes the same update however often it runs. Never deletes
    the current key: it signs tokens until the pending value is promoted. The current key is put too (its material
    is in the current value): a no-op normally, it heals a store that lost it.
    """
    if pending.current is None:
        raise ValueError("the pending value has no key")
    keep = set(pending.kids)
    puts = {pending.current.store_key: pending.current.encoded}
    if current.current is not None:
        keep.add(current.current.kid)
        puts[current.current.store_key] = current.current.encoded
    deletes = tuple(f"k:{kid}" for kid in current.kids if kid not in keep)
    return StoreChanges(puts=puts, deletes=deletes)


def check_successor(current: KeyRing, pending: KeyRing) -> None:
    """Raise :class:`RotationConflict` unless ``pending`` was planned from ``current``.

    If the current value changed after createSecret (someone put a new AWSCURRENT by hand), promoting the pending
    value would forget the current key while tokens signed with it are still live.
    """
    if pending.current is None:
        raise RotationConflict("the pending value holds no key")
    if current.current is None:
        return
    pending_kids = set(pending.kids)
    if current.current.kid not in pending_kids:
        raise RotationConflict(
            f"the pending value (kid {pending.current.kid!r}) was not planned from the current value"
            f" (kid {current.current.kid!r}): the secret changed during the rotation"
        )


def promotion_deadline(pending: KeyRing, policy: RotationPolicy) -> int | None:
    """The last moment ``pending`` may become AWSCURRENT (``None``: no ``created``, so no limit can be computed)."""
    if pending.created is None:
        return None
    return pending.created + policy.max_promotion_lag


def is_stale(pending: KeyRing, now: int, policy: RotationPolicy) -> bool:
    deadline = promotion_deadline(pending, policy)
    return deadline is not None and now > deadline


def self_test_session_id() -> str:
    """A session id for the rotation's self-test token (never used by a viewer)."""
    return "rotation-test-" + secrets.token_urlsafe(9)
