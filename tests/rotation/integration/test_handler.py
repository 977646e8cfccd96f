"""The rotation Lambda, invoked the way Secrets Manager invokes it: one event per step, after RotateSecret has made
an empty AWSPENDING version for the token (emulated on moto's backend exactly as moto's own rotate_secret does).

Logs and EMF metrics go to stdout, so they are read back from it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from pydantic import ValidationError

from edge.store import LocalEdgeStore
from rotation.keyring import parse_secret_value
from rotation.secrets import AWSCURRENT, AWSPENDING
from tests.helpers import (
    REGION,
    FakeLambdaContext,
    imported_handler,
    metric_names,
    new_secret,
    powertools_env,
    set_environment,
)

POWERTOOLS_ENV = powertools_env("key-rotation-test")
CONTEXT = FakeLambdaContext("key-rotation", remaining_ms=60_000)


@pytest.fixture(scope="module")
def handler_module() -> Iterator[Any]:
    with imported_handler("rotation.handler", POWERTOOLS_ENV) as module:
        yield module


@dataclass
class Rotator:
    module: Any
    client: Any
    arn: str
    name: str
    store: LocalEdgeStore

    def start_rotation(self, enabled: bool = True) -> str:
        """What RotateSecret does before it invokes the function: an empty version carrying AWSPENDING."""
        from moto.secretsmanager.models import secretsmanager_backends

        secret = secretsmanager_backends[DEFAULT_ACCOUNT_ID][REGION].secrets[self.name]
        secret.rotation_requested = True
        secret.rotation_enabled = enabled
        secret.rotation_lambda_arn = CONTEXT.invoked_function_arn
        token = str(uuid.uuid4())
        secret.remove_version_stages_from_old_versions([AWSPENDING])
        secret.versions[token] = {"createdate": int(time.time()), "version_id": token, "version_stages": [AWSPENDING]}
        return token

    def invoke(self, step: str, token: str, secret_id: str | None = None) -> Any:
        event = {"SecretId": secret_id or self.arn, "ClientRequestToken": token, "Step": step}
        return self.module.handler(event, CONTEXT)

    def rotate(self) -> str:
        token = self.start_rotation()
        for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
            self.invoke(step, token)
        return token

    def stages(self) -> dict[str, list[str]]:
        return self.client.describe_secret(SecretId=self.arn)["VersionIdsToStages"]

    def current(self):  # type: ignore[no-untyped-def]
        text = self.client.get_secret_value(SecretId=self.arn, VersionStage=AWSCURRENT)["SecretString"]
        return parse_secret_value(text)


@pytest.fixture
def rotator(
    handler_module: Any, secretsmanager: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rotator]:
    store = LocalEdgeStore(tmp_path / "edge-store.json")
    set_environment(
        monkeypatch,
        {
            **POWERTOOLS_ENV,
            "EDGE_STORE": str(store.path),
            "MAX_TOKEN_LIFETIME_SECONDS": "3600",
            "ROTATION_MARGIN_SECONDS": None,
            "SIGNING_KEY_CACHE_SECONDS": None,
        },
    )
    name, arn = new_secret(secretsmanager, "generated-by-cloudformation-0123")
    handler_module.runtime.cache_clear()
    yield Rotator(handler_module, secretsmanager, arn, name, store)
    handler_module.runtime.cache_clear()


# ---------------------------------------------------------------------------------------------------------------


def test_a_full_rotation_through_the_handler(rotator: Rotator, output: Any) -> None:
    first = rotator.rotate()
    key = rotator.current().current
    assert AWSCURRENT in rotator.stages()[first]
    assert rotator.store.get(key.store_key) == key.encoded
    written = output()
    assert metric_names(written.emf).count("RotationStepsSucceeded") == 4
    assert "KeysPublished" in metric_names(written.emf)
    assert [blob.get("step") for blob in written.emf] == ["createSecret", "setSecret", "testSecret", "finishSecret"]
    assert key.encoded not in written.text, "key material must never be logged"
    done = [r for r in written.logs if r.get("message") == "rotation step done"]
    assert [r["kid"] for r in done] == [key.kid] * 4

    rotator.rotate()
    again = rotator.current()
    assert [r.kid for r in again.retired] == [key.kid]
    assert {k.removeprefix("k:") for k in rotator.store.items("k:")} == {key.kid, again.current.kid}


def test_a_version_already_current_is_left_alone(rotator: Rotator, output: Any) -> None:
    token = rotator.rotate()
    before = (rotator.store.path.read_bytes(), rotator.stages())
    output()
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        assert rotator.invoke(step, token) is None
    assert (rotator.store.path.read_bytes(), rotator.stages()) == before
    assert any(r.get("message") == "version is already AWSCURRENT; nothing to do" for r in output().logs)


def test_rotation_must_be_enabled(rotator: Rotator) -> None:
    token = rotator.start_rotation(enabled=False)
    with pytest.raises(rotator.module.RotationRefused, match="not enabled for rotation"):
        rotator.invoke("createSecret", token)
    assert rotator.store.items() == {}


def test_unknown_version_is_refused(rotator: Rotator) -> None:
    rotator.start_rotation()
    with pytest.raises(rotator.module.RotationRefused, match="no version"):
        rotator.invoke("createSecret", str(uuid.uuid4()))


def test_version_that_is_not_pending_is_refused(rotator: Rotator) -> None:
    rotator.rotate()
    rotator.rotate()
    previous = next(v for v, s in rotator.stages().items() if "AWSPREVIOUS" in s)
    rotator.start_rotation()
    with pytest.raises(rotator.module.RotationRefused, match="not AWSPENDING"):
        rotator.invoke("setSecret", previous)


def test_steps_out_of_order_fail_without_side_effects(rotator: Rotator, output: Any) -> None:
    rotator.rotate()
    token = rotator.start_rotation()
    before = rotator.store.path.read_bytes()
    with pytest.raises(Exception, match="no AWSPENDING value"):
        rotator.invoke("setSecret", token)  # createSecret has not run: the pending version is still empty
    assert rotator.store.path.read_bytes() == before
    assert "RotationStepsFailed" in metric_names(output().emf)


@pytest.mark.parametrize(
    "event",
    [
        {"SecretId": "x", "ClientRequestToken": "t"},
        {"SecretId": "x", "ClientRequestToken": "t", "Step": "rotateEverything"},
        {"SecretId": "", "ClientRequestToken": "t", "Step": "createSecret"},
        {"ClientRequestToken": "t", "Step": "createSecret"},
    ],
)
def test_malformed_events_are_rejected(rotator: Rotator, event: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        rotator.module.handler(event, CONTEXT)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"EDGE_STORE": ""}, "EDGE_STORE"),
        ({"MAX_TOKEN_LIFETIME_SECONDS": "soon"}, "MAX_TOKEN_LIFETIME_SECONDS"),
        ({"MAX_TOKEN_LIFETIME_SECONDS": "0"}, "MAX_TOKEN_LIFETIME_SECONDS"),
        ({"ROTATION_MARGIN_SECONDS": "30"}, "must cover"),
        ({"EDGE_STORE": "/tmp/not-a-store.txt"}, "cannot open the edge store"),
    ],
)
def test_bad_configuration_fails_loudly(
    rotator: Rotator, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rotator.module.runtime.cache_clear()
    token = rotator.start_rotation()
    with pytest.raises(rotator.module.ConfigurationError, match=message):
        rotator.invoke("createSecret", token)


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from rotation.handler import RotationSettings

    set_environment(monkeypatch, {
        "MAX_TOKEN_LIFETIME_SECONDS": None, "ROTATION_MARGIN_SECONDS": None, "SIGNING_KEY_CACHE_SECONDS": None,
        "EDGE_STORE": "s.json",
    })  # fmt: skip
    settings = RotationSettings.from_env()
    policy = settings.policy()
    assert (policy.max_token_lifetime, policy.margin, policy.issuer_cache) == (604800, 300, 60)


def test_an_abandoned_rotation_is_counted_and_the_next_one_completes(
    rotator: Rotator, output: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotator.rotate()
    old = rotator.current().current
    token = rotator.start_rotation()
    rotator.invoke("createSecret", token)
    rotator.invoke("setSecret", token)
    output()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # Secrets Manager reattempts an hour later
    with pytest.raises(Exception, match="abandoned"):
        rotator.invoke("finishSecret", token)
    assert "RotationsAbandoned" in metric_names(output().emf)
    assert rotator.current().current == old
    assert AWSPENDING not in rotator.stages()[token]
    monkeypatch.setattr(time, "time", real_time)
    rotator.rotate()
    assert rotator.current().current != old
