"""The revocation API Lambda, behind an IAM-authenticated function URL (or an HTTP API): manual revocations.

Thin on purpose: parse and validate the request, call :mod:`revocation.service`, turn the outcome into a response.
The caller's IAM identity (``requestContext.authorizer.iam.userArn``) is recorded as ``manual:<arn>``: the audit
trail cannot be set from the request body.

========================================  ==================================================================================
``POST /revocations``                     body ``{"session_id", "reason", "ttl_seconds" | "expires_at", ["force"]}``;
                                          201 revoked (new), 200 already revoked (kept or extended: never shortened),
                                          202 recorded in the ledger but not yet at the edge (the next run publishes)
``DELETE /revocations/{session_id}``      200 lifted (or already lifted), 202 lifted but not yet at the edge,
                                          404 never revoked
``GET /revocations``                      200 ``{"revocations": [...], "count"}`` (in force now)
``GET /flagged?since=EPOCH``              200 ``{"verdicts": [...], "count"}`` (default: the last 24 hours)
========================================  ==================================================================================

Errors are ``{"error": <code>, "message": ...}``: 400 (``invalid-request``, ``invalid-session-id``,
``invalid-reason``, ``invalid-expiry``, ``invalid-since``), 404 (``not-revoked``, ``not-found``), 409
(``allow-listed``: send ``"force": true`` to revoke an allow-listed session), 415, 500 (``misconfigured``,
``internal``), 503 (``ledger-unavailable``).

Configuration (environment, read once per execution environment): ``LEDGER_TABLE`` (the DynamoDB table; or
``sqlite:<path>`` for a local run), ``EDGE_STORE`` (KeyValueStore ARN or local ``.json``), ``ALLOW_SESSIONS``
(optional, comma-separated allow-listed session ids from the detection config), Powertools' ``POWERTOOLS_*``.

Metrics: ``ManualRevocations``, ``ManualLifts``, ``EdgeStoreUtilization`` (percent of 5 MB after publishing),
``EdgeStoreCapacityWarning`` (1 past the warning fraction), ``RevocationsNotPublished`` (skipped for lack of room),
``PublishFailures``, ``RevocationRequestsRejected``, ``RevocationReads``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from typing import Any, ClassVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from core.http_request import BadRequestBody, iam_caller, parse_json_body
from core.lambda_support import ConfigurationError, LambdaSettings, error_response, json_response, powertools
from edge.store import EdgeStore, open_store
from revocation.ledger import Ledger, LedgerError, open_ledger_setting
from revocation.publisher import PublishResult, publish_summary, store_metrics
from revocation.service import (
    InvalidRevocation,
    ManualResult,
    RevocationError,
    lift,
    list_flagged,
    list_revoked,
    revoke,
)

LEDGER_TABLE_ENV = "LEDGER_TABLE"
EDGE_STORE_ENV = "EDGE_STORE"
ALLOW_SESSIONS_ENV = "ALLOW_SESSIONS"
DEFAULT_SERVICE = "media-shield-revocation"

obs = powertools(DEFAULT_SERVICE)
SERVICE, logger, metrics = obs.service, obs.logger, obs.metrics
app = APIGatewayHttpResolver()


class RevocationSettings(LambdaSettings):
    """The revocation API's configuration, from the environment (see the module docstring for the variable names)."""

    describes: ClassVar[str] = "revocation API"

    ledger_table: str = Field(min_length=1, validation_alias=LEDGER_TABLE_ENV)
    edge_store: str = Field(min_length=1, validation_alias=EDGE_STORE_ENV)
    allow_sessions: str = Field("", validation_alias=ALLOW_SESSIONS_ENV)

    def allow_list(self) -> frozenset[str]:
        """The allow-listed session ids (comma-separated in the variable)."""
        return frozenset(s.strip() for s in self.allow_sessions.split(",") if s.strip())


@dataclass(frozen=True)
class RevocationRuntime:
    ledger: Ledger
    store: EdgeStore
    allow_sessions: frozenset[str]


@cache
def runtime() -> RevocationRuntime:
    """Ledger, edge store and allow-list, built once per execution environment (``runtime.cache_clear()`` resets)."""
    settings = RevocationSettings.from_env()
    try:
        ledger = open_ledger_setting(settings.ledger_table)
        store = open_store(settings.edge_store)
    except Exception as exc:  # noqa: BLE001 - any failure here is a configuration problem
        raise ConfigurationError(f"cannot set up the revocation API: {type(exc).__name__}: {exc}") from exc
    allow = settings.allow_list()
    logger.info(
        "revocation API configured", extra={"ledger": repr(ledger), "edge_store": repr(store), "allow_listed": len(allow)}
    )
    return RevocationRuntime(ledger=ledger, store=store, allow_sessions=allow)


# ---------------------------------------------------------------------------------------------------------------
# Requests.


class RevokeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    session_id: str
    reason: str
    ttl_seconds: StrictInt | None = None
    expires_at: StrictInt | None = None
    force: StrictBool = False


def _caller() -> str:
    """Who is asking: the IAM principal that signed the request (never a field of the body)."""
    return iam_caller(app.current_event.raw_event) or "api-caller"


# ---------------------------------------------------------------------------------------------------------------
# Routes.


@app.post("/revocations")
def create_revocation() -> Response:
    rt = runtime()
    event = app.current_event
    request = parse_json_body(event, RevokeBody, required='{"session_id", "reason", "ttl_seconds" or "expires_at"}')
    by = _caller()
    result = revoke(
        rt.ledger,
        rt.store,
        request.session_id,
        request.reason,
        by=by,
        ttl=request.ttl_seconds,
        expires_at=request.expires_at,
        allow_sessions=rt.allow_sessions,
        force=request.force,
    )
    metrics.add_metric(name="ManualRevocations", unit=MetricUnit.Count, value=1)
    logger.warning(  # an operator decision that blocks a viewer: always visible in the logs
        "session revoked by hand",
        extra={
            "session_id": request.session_id,
            "reason": request.reason,
            "outcome": result.outcome,
            "expires_at": result.revocation.expires_at,
            "by": result.revocation.revoked_by,
            "forced": request.force,
            "published": result.published,
        },
    )
    created = result.outcome in ("created", "reactivated")
    return _manual_response(result, HTTPStatus.CREATED if created else HTTPStatus.OK)


@app.delete("/revocations/<session_id>")
def delete_revocation(session_id: str) -> Response:
    rt = runtime()
    result = lift(rt.ledger, rt.store, session_id, by=_caller())
    metrics.add_metric(name="ManualLifts", unit=MetricUnit.Count, value=1)
    logger.warning(
        "revocation lifted by hand",
        extra={
            "session_id": session_id,
            "outcome": result.outcome,
            "by": result.revocation.lifted_by,
            "published": result.published,
        },
    )
    return _manual_response(result, HTTPStatus.OK)


@app.get("/revocations")
def get_revocations() -> Response:
    revocations = list_revoked(runtime().ledger)
    metrics.add_metric(name="RevocationReads", unit=MetricUnit.Count, value=1)
    body = {"revocations": [r.model_dump() for r in revocations], "count": len(revocations)}
    return json_response(HTTPStatus.OK, body)


@app.get("/flagged")
def get_flagged() -> Response:
    raw = app.current_event.get_query_string_value(name="since", default_value=None)
    since: float | None = None
    if raw is not None:
        try:
            since = float(raw)
        except ValueError:
            since = math.nan
        if not math.isfinite(since) or since < 0:
            raise InvalidRevocation(f"since must be epoch seconds, not {raw!r}", code="invalid-since")
    verdicts = list_flagged(runtime().ledger, since=since)
    metrics.add_metric(name="RevocationReads", unit=MetricUnit.Count, value=1)
    body = {"verdicts": [v.model_dump(mode="json") for v in verdicts], "count": len(verdicts)}
    return json_response(HTTPStatus.OK, body)


# ---------------------------------------------------------------------------------------------------------------
# Responses.


def _manual_response(result: ManualResult, status: HTTPStatus) -> Response:
    if result.publish is not None:
        _publish_metrics(result.publish)
    if not result.published:
        metrics.add_metric(name="PublishFailures", unit=MetricUnit.Count, value=1)
        logger.error("change recorded but not published to the edge", extra={"error": result.publish_error})
        status = HTTPStatus.ACCEPTED
    return json_response(status, result.to_dict())


def _publish_metrics(result: PublishResult) -> None:
    for metric in store_metrics(publish_summary(result)):
        metrics.add_metric(name=metric.name, unit=MetricUnit(metric.unit), value=metric.value)
    if result.capacity_warning:
        logger.error(
            "edge store near or over capacity",
            extra={"fraction": result.fraction, "bytes": result.bytes, "skipped": list(result.skipped[:50])},
        )


def _error(status: HTTPStatus, code: str, message: str) -> Response:
    metrics.add_metric(name="RevocationRequestsRejected", unit=MetricUnit.Count, value=1)
    log = logger.error if status >= 500 else logger.info
    log("revocation request rejected", extra={"status": int(status), "error": code, "detail": message})
    return error_response(status, code, message)


_STATUS = {
    "allow-listed": HTTPStatus.CONFLICT,
    "not-revoked": HTTPStatus.NOT_FOUND,
}


@app.exception_handler(BadRequestBody)
def _bad_request(exc: BadRequestBody) -> Response:
    return _error(exc.status, exc.code, exc.message)


@app.exception_handler(RevocationError)
def _refused(exc: RevocationError) -> Response:
    return _error(_STATUS.get(exc.code, HTTPStatus.BAD_REQUEST), exc.code, str(exc))


@app.exception_handler(LedgerError)
def _ledger_unavailable(exc: LedgerError) -> Response:
    metrics.add_metric(name="RevocationRequestsRejected", unit=MetricUnit.Count, value=1)
    logger.error("ledger error", extra={"detail": str(exc)})
    return error_response(
        HTTPStatus.SERVICE_UNAVAILABLE, "ledger-unavailable", "the ledger cannot be reached; retry later"
    )


@app.exception_handler(ConfigurationError)
def _misconfigured(exc: ConfigurationError) -> Response:
    metrics.add_metric(name="RevocationRequestsRejected", unit=MetricUnit.Count, value=1)
    logger.error("misconfigured", extra={"detail": str(exc)})
    return error_response(
        HTTPStatus.INTERNAL_SERVER_ERROR, "misconfigured", "the revocation API is misconfigured; see its logs"
    )


@app.not_found
def _not_found(exc: NotFoundError) -> Response:
    return _error(
        HTTPStatus.NOT_FOUND,
        "not-found",
        "no such route: use POST /revocations, DELETE /revocations/{session_id}, GET /revocations, GET /flagged",
    )


@app.exception_handler(Exception)
def _internal(exc: Exception) -> Response:
    metrics.add_metric(name="RevocationRequestsRejected", unit=MetricUnit.Count, value=1)
    logger.exception("unexpected error")
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "unexpected error; see the logs")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
