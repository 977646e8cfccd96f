"""The four rotation steps against Secrets Manager (moto) and the edge store's local twin, checked with the REAL
edge function (edge/viewer_request.js under node): no token that can still be valid is ever refused.

Each rotation is driven like Secrets Manager drives it: a fresh ClientRequestToken, then createSecret, setSecret,
testSecret, finishSecret. The issuer's side is the real key source (edge.key_source.SecretsManagerKeySource), which
reads AWSCURRENT.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from edge.binding import Viewer
from edge.key_source import SecretsManagerKeySource
from edge.keys import SigningKey, generate_key
from edge.node_runtime import EdgeFunctionRunner
from edge.store import EdgeStoreError, LocalEdgeStore
from edge.tokens import IssuedToken, TokenRequest, issue_token
from edge.verify import SKEW_SECONDS
from rotation.keyring import RotationPolicy, parse_secret_value
from rotation.secrets import AWSCURRENT, AWSPENDING, SecretsManagerSecret
from rotation.steps import STEPS, KeyRotation, NoPendingVersion, RotationAbandoned, SelfTestFailed
from tests.helpers import new_secret

HOUR = 3600
LIFETIME = HOUR
POLICY = RotationPolicy(max_token_lifetime=LIFETIME, margin=300, issuer_cache=60)
T0 = 1_767_225_600
ASSET = "/live/ch1/master.m3u8"


class FlakyClient:
    """The boto3 client, with chosen operations failing the next N times (a throttle, a network error, ...)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failures: dict[str, int] = {}
        self.fail_after: dict[str, int] = {}  # the call goes through, then the caller sees an error (lost reply)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            if self.failures.get(name, 0) > 0:
                self.failures[name] -= 1
                raise ClientError({"Error": {"Code": "InternalServiceError", "Message": "injected"}}, name)
            result = method(**kwargs)
            if self.fail_after.get(name, 0) > 0:
                self.fail_after[name] -= 1
                raise ClientError({"Error": {"Code": "InternalServiceError", "Message": "injected after"}}, name)
            return result

        return call


class FlakyStore(LocalEdgeStore):
    """The local store, with the next N writes failing (each write is all-or-nothing, so nothing is applied)."""

    failures = 0

    def _apply(self, etag, batch):  # type: ignore[no-untyped-def]
        if self.failures > 0:
            self.failures -= 1
            raise EdgeStoreError(f"{self!r}: injected UpdateKeys failure; nothing in this call was applied")
        return super()._apply(etag, batch)


@dataclass
class World:
    client: FlakyClient
    secret_id: str
    secret: SecretsManagerSecret
    store: FlakyStore
    rotation: KeyRotation
    runner: EdgeFunctionRunner
    tokens: list[IssuedToken] = field(default_factory=list)

    # -- Secrets Manager's side ---------------------------------------------------------------------------------

    def rotate(self, now: int, token: str | None = None) -> str:
        token = token or str(uuid.uuid4())
        for step in STEPS:
            self.rotation.run_step(step, token, now)
        return token

    def stages(self) -> dict[str, list[str]]:
        return self.client.describe_secret(SecretId=self.secret_id)["VersionIdsToStages"]

    def current_text(self) -> str:
        return self.client.get_secret_value(SecretId=self.secret_id, VersionStage=AWSCURRENT)["SecretString"]

    # -- the issuer's side --------------------------------------------------------------------------------------

    def issuer_key(self) -> SigningKey:
        return SecretsManagerKeySource(self.secret_id, client=self.client, cache_seconds=0).current()

    def issue(self, now: int, ttl: int = LIFETIME, key: SigningKey | None = None) -> IssuedToken:
        token = issue_token(TokenRequest(ttl_seconds=ttl, paths=("/live/",)), key or self.issuer_key(), now=now)
        self.tokens.append(token)
        return token

    # -- the edge's side ----------------------------------------------------------------------------------------

    def decide(self, token: IssuedToken, now: float):  # type: ignore[no-untyped-def]
        return self.runner.decide(token.url_for(ASSET), Viewer(ip="198.51.100.7"), now, store_path=self.store.path)

    def kids_in_store(self) -> set[str]:
        return {key.removeprefix("k:") for key in self.store.items("k:")}

    def assert_edge_accepts_every_live_token(self, now: float) -> None:
        """Every token the edge would not call expired is allowed; every token of a deleted key is unknown-kid."""
        kids = self.kids_in_store()
        for token in self.tokens:
            if token.claims["iat"] > now:
                continue  # not issued yet at this moment
            kid = _kid_of(token)
            decision = self.decide(token, now)
            if token.expires_at > now - SKEW_SECONDS:
                assert kid in kids, f"live token of kid {kid} expiring {token.expires_at} but key deleted at {now}"
                assert decision.allowed, (decision, kid, now)
            elif kid in kids:
                assert (decision.status, decision.reason) == (401, "expired")
            else:
                assert (decision.status, decision.reason) == (401, "unknown-kid"), decision

    def assert_consistent(self) -> None:
        """The secret's AWSCURRENT value and every key it still lists are in the store, and AWSPENDING (if any)
        is either on the current version or on a value that was planned from the current one."""
        current = parse_secret_value(self.current_text())
        assert current.current is not None
        assert set(current.kids) <= self.kids_in_store()
        assert self.store.get(current.current.store_key) == current.current.encoded


def _kid_of(token: IssuedToken) -> str:
    import jwt

    return jwt.get_unverified_header(token.jwt)["kid"]


@pytest.fixture
def world(secretsmanager: Any, tmp_path: Path, edge_runner: EdgeFunctionRunner) -> World:
    # What CloudFormation's GenerateSecretString leaves: a random string that is not a key.
    _, arn = new_secret(secretsmanager, "kR3vQ8pLx2Zt7Wm9Nc4Hs6Jd1Fy5Gb0A")
    client = FlakyClient(secretsmanager)
    secret = SecretsManagerSecret(arn, client=client)
    store = FlakyStore(tmp_path / "edge-store.json")
    return World(client, arn, secret, store, KeyRotation(secret, store, POLICY), edge_runner)


@pytest.fixture
def bootstrapped(world: World) -> World:
    """The first rotation after deploy (RotateImmediatelyOnUpdate) made the first key and published it."""
    world.rotate(T0)
    world.assert_consistent()
    return world


# ---------------------------------------------------------------------------------------------------------------


def test_first_rotation_turns_the_generated_value_into_a_published_key(world: World) -> None:
    with pytest.raises(Exception, match="not JSON"):
        world.issuer_key()  # the issuer answers 503 until the first rotation
    token = world.rotate(T0)
    key = world.issuer_key()
    assert world.store.get(key.store_key) == key.encoded
    assert AWSCURRENT in world.stages()[token]
    doc = parse_secret_value(world.current_text())
    assert doc.created == T0 and doc.retired == ()
    assert world.decide(world.issue(T0), T0).allowed


def test_three_rotations_never_refuse_a_live_token(bootstrapped: World) -> None:
    w = bootstrapped
    rotations = [T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 5 * HOUR + 10 * 60]
    kids_before = [w.issuer_key().kid]
    w.issue(T0 + 60)  # a full-lifetime token early on
    for n, at in enumerate(rotations, start=1):
        # Tokens signed right before the rotation: full lifetime and short.
        w.issue(at - 1)
        w.issue(at - 1, ttl=300)
        w.rotate(at)
        if n == 2:
            assert kids_before[0] in w.kids_in_store(), "its tokens signed at T0+2h+60s live until T0+3h01m30s"
        new = w.issuer_key()
        assert new.kid not in kids_before, "each rotation makes a new kid"
        # The issuer's cache may keep signing with the previous key for up to a minute after the promotion.
        w.issue(at + POLICY.issuer_cache, key=SigningKey(kids_before[-1], _secret_of(w, kids_before[-1])))
        kids_before.append(new.kid)
        w.assert_consistent()
        for check_at in (at, at + 1, at + LIFETIME, at + LIFETIME + 90, at + LIFETIME + 300):
            w.assert_edge_accepts_every_live_token(check_at)
        w.issue(at + 2)  # and the new key works at the edge at once
        assert w.decide(w.tokens[-1], at + 2).allowed, n

    # Rotation 2 (T0+3h) still kept the first key (retired at T0+2h, tokens up to T0+3h01m+30s). By rotation 3
    # (T0+5h10m) the tokens of the first two keys have all expired: only the key rotation 3 retired and the new
    # current key remain.
    kids = w.kids_in_store()
    assert kids_before[0] not in kids and kids_before[1] not in kids
    assert kids == set(kids_before[2:])
    first_key_token = w.tokens[0]
    decision = w.decide(first_key_token, rotations[-1])
    assert (decision.status, decision.reason) == (401, "unknown-kid")
    retired = [r.kid for r in parse_secret_value(w.current_text()).retired]
    assert retired == [kids_before[2]]


def _secret_of(w: World, kid: str) -> bytes:
    from core.b64 import b64url_decode

    value = w.store.get(f"k:{kid}")
    assert value is not None
    return b64url_decode(value)


def test_every_step_is_idempotent(bootstrapped: World) -> None:
    w = bootstrapped
    token, now = str(uuid.uuid4()), T0 + 2 * HOUR
    for step in STEPS:
        first = w.rotation.run_step(step, token, now)
        snapshot = (w.store.path.read_bytes(), w.stages(), w.current_text())
        again = w.rotation.run_step(step, token, now + 5)
        assert (w.store.path.read_bytes(), w.stages(), w.current_text()) == snapshot, step
        assert again.kid == first.kid
        assert not again.changed, step
    # And every step after the rotation completed does nothing (Secrets Manager may retry finishSecret).
    snapshot = (w.store.path.read_bytes(), w.stages(), w.current_text())
    for step in STEPS:
        assert not w.rotation.run_step(step, token, now + 10).changed
    assert (w.store.path.read_bytes(), w.stages(), w.current_text()) == snapshot


def test_put_secret_value_failing_leaves_everything_as_it_was(bootstrapped: World) -> None:
    w = bootstrapped
    before = (w.store.path.read_bytes(), w.current_text())
    w.issue(T0 + 100)
    token = str(uuid.uuid4())
    w.client.failures["put_secret_value"] = 1
    with pytest.raises(Exception, match="PutSecretValue.*injected"):
        w.rotation.create_secret(token, T0 + HOUR)
    assert (w.store.path.read_bytes(), w.current_text()) == before
    assert token not in w.stages()
    with pytest.raises(NoPendingVersion):
        w.rotation.set_secret(token, T0 + HOUR)
    w.assert_edge_accepts_every_live_token(T0 + HOUR)
    w.rotate(T0 + HOUR, token)  # the next attempt completes
    assert AWSCURRENT in w.stages()[token]
    w.assert_consistent()
    w.assert_edge_accepts_every_live_token(T0 + HOUR)


def test_store_update_failing_leaves_the_store_and_the_secret_consistent(bootstrapped: World) -> None:
    w = bootstrapped
    w.issue(T0 + 100)
    old_kid, store_before = w.issuer_key().kid, w.store.path.read_bytes()
    token, now = str(uuid.uuid4()), T0 + 2 * HOUR
    w.rotation.create_secret(token, now)
    w.store.failures = 100  # more than the retry policy's attempts
    with pytest.raises(EdgeStoreError, match="injected"):
        w.rotation.set_secret(token, now)
    assert w.store.path.read_bytes() == store_before
    with pytest.raises(SelfTestFailed, match="unknown-kid"):
        w.rotation.test_secret(token, now)  # the pending key is not published: it must not be promoted
    assert w.issuer_key().kid == old_kid and w.stages()[token] == [AWSPENDING]
    w.assert_consistent()
    w.assert_edge_accepts_every_live_token(now)
    w.store.failures = 0
    w.rotate(now, token)  # Secrets Manager reattempts with the same token: completes
    assert w.issuer_key().kid != old_kid
    w.assert_consistent()
    w.assert_edge_accepts_every_live_token(now)


def test_self_test_failing_blocks_promotion_until_the_store_is_right(bootstrapped: World) -> None:
    w = bootstrapped
    token, now = str(uuid.uuid4()), T0 + 2 * HOUR
    w.rotation.create_secret(token, now)
    w.rotation.set_secret(token, now)
    pending = parse_secret_value(w.secret.pending_value(token))
    # The store lost the new key (or holds a wrong value for it): the self-test reads it back and refuses.
    w.store.put(pending.current.store_key, generate_key().encoded)
    with pytest.raises(SelfTestFailed, match="bad-signature"):
        w.rotation.test_secret(token, now)
    w.store.delete(pending.current.store_key)
    with pytest.raises(SelfTestFailed, match="unknown-kid"):
        w.rotation.test_secret(token, now)
    assert w.stages()[token] == [AWSPENDING]
    w.assert_consistent()
    w.rotate(now + 30, token)  # the reattempt republishes, tests and promotes
    assert w.issuer_key().kid == pending.current.kid
    w.assert_consistent()


def test_finish_failing_and_a_lost_reply_are_both_recovered(bootstrapped: World) -> None:
    w = bootstrapped
    old_kid = w.issuer_key().kid
    token, now = str(uuid.uuid4()), T0 + 2 * HOUR
    for step in STEPS[:3]:
        w.rotation.run_step(step, token, now)
    w.client.failures["update_secret_version_stage"] = 1
    with pytest.raises(Exception, match="UpdateSecretVersionStage.*injected"):
        w.rotation.finish_secret(token, now)
    assert w.issuer_key().kid == old_kid
    w.assert_consistent()
    # The stage move happens, but the reply is lost: the retry finds the version AWSCURRENT and does nothing.
    w.client.fail_after["update_secret_version_stage"] = 1
    with pytest.raises(Exception, match="injected after"):
        w.rotation.finish_secret(token, now + 5)
    assert w.issuer_key().kid != old_kid
    assert not w.rotation.finish_secret(token, now + 10).changed
    w.assert_consistent()


def test_a_reattempt_after_the_promotion_deadline_is_abandoned_and_the_next_rotation_completes(
    bootstrapped: World,
) -> None:
    w = bootstrapped
    old = w.issuer_key()
    w.issue(T0 + 100)
    token, now = str(uuid.uuid4()), T0 + 2 * HOUR
    w.rotation.create_secret(token, now)
    w.rotation.set_secret(token, now)
    w.rotation.test_secret(token, now)
    pending_kid = parse_secret_value(w.secret.pending_value(token)).current.kid
    late = now + POLICY.max_promotion_lag + 1
    with pytest.raises(RotationAbandoned, match="may become AWSCURRENT only until"):
        w.rotation.finish_secret(token, late)
    assert w.issuer_key() == old  # not promoted
    assert AWSPENDING not in w.stages()[token]  # the next RotateSecret starts afresh
    assert pending_kid not in w.kids_in_store()  # never current: its key is withdrawn
    w.assert_consistent()
    w.assert_edge_accepts_every_live_token(late)
    with pytest.raises(NoPendingVersion):
        w.rotation.finish_secret(token, late)
    w.rotate(late + 60)
    assert w.issuer_key().kid not in (old.kid, pending_kid)
    w.assert_consistent()
    w.assert_edge_accepts_every_live_token(late + 60)


def test_a_secret_changed_during_the_rotation_is_not_overwritten(bootstrapped: World) -> None:
    w = bootstrapped
    token, now = str(uuid.uuid4()), T0 + 2 * HOUR
    w.rotation.create_secret(token, now)
    # An operator puts a new AWSCURRENT by hand (and publishes it) while the rotation is in flight.
    manual = generate_key("manual-key")
    w.store.put(manual.store_key, manual.encoded)
    current_version = next(v for v, stages in w.stages().items() if AWSCURRENT in stages)
    manual_version = str(uuid.uuid4())
    w.client.put_secret_value(SecretId=w.secret_id, ClientRequestToken=manual_version,
                              SecretString=manual.to_secret_json(), VersionStages=["MANUAL"])
    w.client.update_secret_version_stage(SecretId=w.secret_id, VersionStage=AWSCURRENT,
                                         MoveToVersionId=manual_version, RemoveFromVersionId=current_version)
    with pytest.raises(RotationAbandoned, match="not planned from the current value"):
        w.rotation.set_secret(token, now)
    assert w.issuer_key() == manual and manual.kid in w.kids_in_store()
    w.rotate(now + 10)  # the next rotation retires the manual key properly
    doc = parse_secret_value(w.current_text())
    assert [r.kid for r in doc.retired] == ["manual-key"]
    w.assert_consistent()


def test_a_store_that_lost_the_current_key_is_healed_by_the_next_rotation(bootstrapped: World) -> None:
    w = bootstrapped
    lost = w.issuer_key()
    token = w.issue(T0 + 100)
    w.store.delete(lost.store_key)
    assert w.decide(token, T0 + 200).reason == "unknown-kid"
    result = w.rotation.set_secret(w.rotation.create_secret(str(uuid.uuid4()), T0 + 300).token, T0 + 300)
    assert lost.kid in result.published
    assert w.decide(token, T0 + 300).allowed


def test_pending_value_read_with_an_explicit_stage(bootstrapped: World) -> None:
    """Reading the token's version without its stage is not enough: a version that is not AWSPENDING is no
    pending value (moto and Secrets Manager both answer with the version's value if the stage is not asked for)."""
    w = bootstrapped
    w.rotate(T0 + 10)
    previous_version = next(v for v, s in w.stages().items() if "AWSPREVIOUS" in s)
    assert w.secret.pending_value(previous_version) is None
    assert w.secret.pending_value(str(uuid.uuid4())) is None
    assert parse_secret_value(w.secret.current_value()).current is not None
