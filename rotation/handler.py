"""The Secrets Manager rotation Lambda for the signing key secret.

Thin on purpose: validate the event ``{"SecretId", "ClientRequestToken", "Step"}``, check the secret's state the way
AWS's rotation templates do, run the step (``rotation.steps.KeyRotation``), log and count what it did. A step that
fails raises, so Secrets Manager records the rotation as failed and the version stays AWSPENDING for the next attempt.

Configuration (environment, read once per execution environment):

=============================  ==================================================================================
``EDGE_STORE``                 the KeyValueStore ARN (or a local ``.json`` store, for tests)
``MAX_TOKEN_LIFETIME_SECONDS`` the longest a token may live: the issuer's ``MAX_TTL_SECONDS`` (default 604800, the
                               most any token of this library can live)
``ROTATION_MARGIN_SECONDS``    issuer key cache + edge clock skew + the time a rotation may take (default 300)
``SIGNING_KEY_CACHE_SECONDS``  the issuer's key cache, as configured on the issuer (default 60)
=============================  ==================================================================================

Never logged: key material and secret values (only key ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, Literal

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.lambda_support import ConfigurationError, LambdaSettings, powertools
from edge.store import EdgeStore, open_store
from edge.tokens import MAX_TTL_SECONDS
from rotation.keyring import DEFAULT_ISSUER_CACHE_SECONDS, DEFAULT_MARGIN_SECONDS, RotationPolicy
from rotation.secrets import AWSCURRENT, AWSPENDING, SecretsManagerSecret
from rotation.steps import STEPS, KeyRotation, RotationAbandoned, StepResult

EDGE_STORE_ENV = "EDGE_STORE"
MAX_LIFETIME_ENV = "MAX_TOKEN_LIFETIME_SECONDS"
MARGIN_ENV = "ROTATION_MARGIN_SECONDS"
ISSUER_CACHE_ENV = "SIGNING_KEY_CACHE_SECONDS"
DEFAULT_SERVICE = "media-shield"

obs = powertools(DEFAULT_SERVICE)
SERVICE, logger, metrics = obs.service, obs.logger, obs.metrics


class RotationRefused(Exception):
    """The secret is not in a state this step may run in (rotation disabled, unknown or non-pending version)."""


class RotationEvent(BaseModel):
    """What Secrets Manager sends each step."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    secret_id: str = Field(alias="SecretId", min_length=1)
    token: str = Field(alias="ClientRequestToken", min_length=1)
    step: Literal["createSecret", "setSecret", "testSecret", "finishSecret"] = Field(alias="Step")


class RotationSettings(LambdaSettings):
    """The rotation's configuration, from the environment (see the module docstring for the variable names)."""

    describes: ClassVar[str] = "rotation"

    edge_store: str = Field(min_length=1, validation_alias=EDGE_STORE_ENV)
    max_token_lifetime_seconds: int = Field(MAX_TTL_SECONDS, ge=1, validation_alias=MAX_LIFETIME_ENV)
    rotation_margin_seconds: int = Field(DEFAULT_MARGIN_SECONDS, ge=0, validation_alias=MARGIN_ENV)
    signing_key_cache_seconds: int = Field(DEFAULT_ISSUER_CACHE_SECONDS, ge=0, validation_alias=ISSUER_CACHE_ENV)

    @model_validator(mode="after")
    def _consistent(self) -> "RotationSettings":
        self.policy()  # raises ValueError naming the problem
        return self

    def policy(self) -> RotationPolicy:
        return RotationPolicy(
            max_token_lifetime=self.max_token_lifetime_seconds,
            margin=self.rotation_margin_seconds,
            issuer_cache=self.signing_key_cache_seconds,
        )


@dataclass(frozen=True)
class RotationRuntime:
    settings: RotationSettings
    policy: RotationPolicy
    store: EdgeStore


@cache
def runtime() -> RotationRuntime:
    """Settings and edge store, built on the first invocation; ``runtime.cache_clear()`` resets (tests)."""
    settings = RotationSettings.from_env()
    try:
        store = open_store(settings.edge_store)
    except Exception as exc:  # noqa: BLE001 - any failure here is a configuration problem
        raise ConfigurationError(f"cannot open the edge store: {type(exc).__name__}: {exc}") from exc
    logger.info(
        "rotation configured",
        extra={
            "edge_store": repr(store),
            "max_token_lifetime_seconds": settings.max_token_lifetime_seconds,
            "rotation_margin_seconds": settings.rotation_margin_seconds,
        },
    )
    return RotationRuntime(settings=settings, policy=settings.policy(), store=store)


def secret_for(secret_id: str) -> SecretsManagerSecret:
    """The adapter for the event's secret (a seam for tests)."""
    return SecretsManagerSecret(secret_id)


def run(event: Mapping[str, Any]) -> StepResult | None:
    """Validate, guard and run one step; ``None`` when the version is already AWSCURRENT (nothing to do)."""
    request = parse(event=event, model=RotationEvent)
    logger.append_keys(step=request.step, version_id=request.token)
    rt = runtime()
    secret = secret_for(request.secret_id)
    state = secret.describe()
    if not state.rotation_enabled:
        raise RotationRefused(f"secret {request.secret_id!r} is not enabled for rotation")
    stages = state.stages(request.token)
    if stages is None:
        raise RotationRefused(f"secret {request.secret_id!r} has no version {request.token!r} to rotate to")
    if AWSCURRENT in stages:
        logger.info("version is already AWSCURRENT; nothing to do")
        return None
    if AWSPENDING not in stages:
        raise RotationRefused(
            f"version {request.token!r} of secret {request.secret_id!r} is not AWSPENDING (stages: {list(stages)})"
        )
    return KeyRotation(secret, rt.store, rt.policy).run_step(request.step, request.token)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    step = event.get("Step") if isinstance(event, dict) else None
    metrics.add_dimension(name="step", value=step if step in STEPS else "invalid")
    try:
        result = run(event)
    except RotationAbandoned as exc:
        metrics.add_metric(name="RotationsAbandoned", unit=MetricUnit.Count, value=1)
        logger.warning("rotation abandoned", extra={"detail": str(exc)})
        raise
    except Exception as exc:
        metrics.add_metric(name="RotationStepsFailed", unit=MetricUnit.Count, value=1)
        logger.exception("rotation step failed", extra={"error": type(exc).__name__})
        raise
    metrics.add_metric(name="RotationStepsSucceeded", unit=MetricUnit.Count, value=1)
    if result is None:
        return
    if result.published:
        metrics.add_metric(name="KeysPublished", unit=MetricUnit.Count, value=len(result.published))
    if result.deleted:
        metrics.add_metric(name="KeysDeleted", unit=MetricUnit.Count, value=len(result.deleted))
    if result.missing:
        logger.warning("keys the secret still lists are missing from the edge store", extra=result.to_log())
    logger.info("rotation step done", extra=result.to_log())
