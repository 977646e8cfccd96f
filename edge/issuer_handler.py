"""The token-issuing Lambda: ``POST /tokens`` behind an IAM-authenticated function URL (or an HTTP API).

Thin on purpose: parse and validate the event (Powertools event handler + the pydantic model in
:mod:`edge.issuing`), call :func:`edge.issuing.issue`, turn the outcome into a response.

=====  ==========================================================================================================
201    ``{"url", "session_id", "expires_at", "kid"}`` (``expires_at`` in epoch seconds)
400    ``{"error": "invalid-request" | "missing-viewer-attribute" | "ttl-too-large" | ..., "message", ["details"]}``
401    ``{"error": "entitlement-missing" | "entitlement-invalid" | "entitlement-expired", ...}``: the issuer requires
       the backend's entitlement assertion (``X-Entitlement``) and got none, or none it accepts
403    ``{"error": "not-entitled" | "outside-entitlement" | "binding-required" | "ttl-over-entitlement", ...}``: the
       request asks for more than the entitlement allows
409    ``{"error": "revoked", ...}``: the session id is revoked (or was, and no operator lifted it); ask for a token
       without ``session_id``
415    the body is not ``application/json``
503    ``{"error": "key-unavailable" | "store-unavailable", ...}``: the signing key, the revocation list or the ledger
       cannot be read or written; retry later
500    ``{"error": "misconfigured" | "internal", ...}``: see the function's logs
=====  ==========================================================================================================

Configuration (environment, parsed once per execution environment by :class:`IssuerSettings`):
``SIGNING_SECRET_ARN`` or ``SIGNING_KEY_FILE`` (exactly one), ``SIGNING_KEY_CACHE_SECONDS`` (default 60),
``EDGE_STORE`` (KeyValueStore ARN or local ``.json`` store), ``DEFAULT_TTL_SECONDS`` (default 3600),
``MAX_TTL_SECONDS`` (default 86400), ``LEDGER_TABLE`` (the ledger: each token's expiry is recorded against its
session, and a session whose revocation no operator lifted is refused; unset: no ledger), ``ENTITLEMENT_SECRET_ARN``
or ``ENTITLEMENT_KEY_FILE`` (the backend's entitlement key: every request must then carry an assertion signed with it,
see :mod:`edge.entitlement`; unset: the caller is the backend itself, authorised by IAM), ``REQUIRE_PATH_SCOPE``
(``true``: every token names path prefixes) and ``REQUIRED_BINDINGS`` (comma-separated binding names every token
must carry), and Powertools' own ``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_LOG_LEVEL``, ...

Never logged or traced: key material, tokens, tokenized URLs (the handler's response is not captured by the tracer).
"""

import time
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from typing import Any, ClassVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field, model_validator

from core.http_request import BadRequestBody, iam_caller, parse_json_body
from core.lambda_support import ConfigurationError, LambdaSettings, error_response, json_response, powertools
from edge.entitlement import ASSERTION_HEADER, EntitlementError, verify_assertion
from edge.issuing import (
    InvalidIssueRequest,
    IssueLedger,
    IssuePolicy,
    IssueRequest,
    NotEntitled,
    RevocationCheckFailed,
    SessionRevoked,
    issue,
    viewer_from_request,
)
from edge.key_source import (
    CACHE_SECONDS_ENV,
    DEFAULT_CACHE_SECONDS,
    KEY_FILE_ENV,
    SECRET_ARN_ENV,
    KeySource,
    KeySourceError,
    key_source_from_config,
)
from edge.store import open_store
from edge.tokens import MAX_TTL_SECONDS
from edge.verify import KeyValueReader
from revocation.ledger import open_ledger_setting

EDGE_STORE_ENV = "EDGE_STORE"
DEFAULT_TTL_ENV = "DEFAULT_TTL_SECONDS"
MAX_TTL_ENV = "MAX_TTL_SECONDS"
LEDGER_TABLE_ENV = "LEDGER_TABLE"
ENTITLEMENT_SECRET_ENV = "ENTITLEMENT_SECRET_ARN"
ENTITLEMENT_FILE_ENV = "ENTITLEMENT_KEY_FILE"
REQUIRE_PATH_SCOPE_ENV = "REQUIRE_PATH_SCOPE"
REQUIRED_BINDINGS_ENV = "REQUIRED_BINDINGS"
DEFAULT_SERVICE = "media-shield"

obs = powertools(DEFAULT_SERVICE)
SERVICE, logger, metrics, tracer = obs.service, obs.logger, obs.metrics, obs.tracer
# Request bodies are validated by IssueRequest itself (core.http_request), not by the resolver's enable_validation:
# that one accepts a JSON array as its first element (form-data semantics), and a body must be one JSON object.
app = APIGatewayHttpResolver()


# ---------------------------------------------------------------------------------------------------------------
# Configuration.


class IssuerSettings(LambdaSettings):
    """The issuer's configuration, from the environment (see the module docstring for the variable names)."""

    describes: ClassVar[str] = "issuer"

    signing_secret_arn: str | None = Field(None, validation_alias=SECRET_ARN_ENV)
    signing_key_file: str | None = Field(None, validation_alias=KEY_FILE_ENV)
    signing_key_cache_seconds: float = Field(DEFAULT_CACHE_SECONDS, ge=0, validation_alias=CACHE_SECONDS_ENV)
    edge_store: str = Field(min_length=1, validation_alias=EDGE_STORE_ENV)
    default_ttl_seconds: int = Field(3600, ge=1, le=MAX_TTL_SECONDS, validation_alias=DEFAULT_TTL_ENV)
    max_ttl_seconds: int = Field(86400, ge=1, le=MAX_TTL_SECONDS, validation_alias=MAX_TTL_ENV)
    ledger_table: str | None = Field(None, min_length=1, validation_alias=LEDGER_TABLE_ENV)
    entitlement_secret_arn: str | None = Field(None, validation_alias=ENTITLEMENT_SECRET_ENV)
    entitlement_key_file: str | None = Field(None, validation_alias=ENTITLEMENT_FILE_ENV)
    require_path_scope: bool = Field(False, validation_alias=REQUIRE_PATH_SCOPE_ENV)
    required_bindings: str = Field("", validation_alias=REQUIRED_BINDINGS_ENV, pattern=r"^[A-Za-z0-9:, -]*$")

    @model_validator(mode="after")
    def _consistent(self) -> "IssuerSettings":
        if bool(self.signing_secret_arn) == bool(self.signing_key_file):
            raise ValueError(f"set exactly one of {SECRET_ARN_ENV} (Secrets Manager) and {KEY_FILE_ENV} (local file)")
        if self.entitlement_secret_arn and self.entitlement_key_file:
            raise ValueError(f"set at most one of {ENTITLEMENT_SECRET_ENV} and {ENTITLEMENT_FILE_ENV}")
        if self.default_ttl_seconds > self.max_ttl_seconds:
            raise ValueError(
                f"{DEFAULT_TTL_ENV} ({self.default_ttl_seconds}) must not exceed {MAX_TTL_ENV} ({self.max_ttl_seconds})"
            )
        return self

    def policy(self) -> IssuePolicy:
        bindings = tuple(name.strip() for name in self.required_bindings.split(",") if name.strip())
        return IssuePolicy(default_ttl_seconds=self.default_ttl_seconds, max_ttl_seconds=self.max_ttl_seconds,
                           require_path_scope=self.require_path_scope, required_bindings=bindings)

    def entitlement_keys(self) -> KeySource | None:
        """The backend's entitlement key, when the issuer requires entitlement assertions (else None: the caller is
        the backend itself, authorised by IAM)."""
        if not (self.entitlement_secret_arn or self.entitlement_key_file):
            return None
        return key_source_from_config(secret_arn=self.entitlement_secret_arn or None,
                                      key_file=self.entitlement_key_file or None,
                                      cache_seconds=self.signing_key_cache_seconds)

    def key_source(self) -> KeySource:
        return key_source_from_config(
            secret_arn=self.signing_secret_arn,
            key_file=self.signing_key_file,
            cache_seconds=self.signing_key_cache_seconds,
        )


@dataclass(frozen=True)
class IssuerRuntime:
    """What one execution environment keeps between invocations."""

    settings: IssuerSettings
    policy: IssuePolicy
    keys: KeySource
    store: KeyValueReader
    ledger: IssueLedger | None = None
    entitlement_keys: KeySource | None = None


@cache
def runtime() -> IssuerRuntime:
    """Settings, key source and edge store, built once (on the first invocation); ``runtime.cache_clear()`` resets.

    A failure is not cached: the next invocation tries again.
    """
    settings = IssuerSettings.from_env()
    try:
        store = open_store(settings.edge_store)
        keys = settings.key_source()
        ledger = open_ledger_setting(settings.ledger_table) if settings.ledger_table else None
        entitlement_keys = settings.entitlement_keys()
    except Exception as exc:  # noqa: BLE001 - any failure to build the runtime is a configuration problem
        raise ConfigurationError(f"cannot set up the issuer: {type(exc).__name__}: {exc}") from exc
    logger.info(
        "issuer configured",
        extra={
            "key_source": repr(keys),
            "edge_store": repr(store),
            "ledger": repr(ledger),
            "entitlement_keys": repr(entitlement_keys),
            "require_path_scope": settings.require_path_scope,
            "required_bindings": settings.required_bindings,
            "default_ttl_seconds": settings.default_ttl_seconds,
            "max_ttl_seconds": settings.max_ttl_seconds,
        },
    )
    return IssuerRuntime(settings=settings, policy=settings.policy(), keys=keys, store=store, ledger=ledger,
                         entitlement_keys=entitlement_keys)


# ---------------------------------------------------------------------------------------------------------------
# The route.


@app.post("/tokens")
def create_token() -> Response:
    # Not wrapped in tracer.capture_method: rejections are exceptions here, and that decorator logs each one with a
    # traceback at ERROR level. The handler's segment carries the outcome as an annotation; the boto3 calls (secret,
    # KeyValueStore) get their own subsegments from the tracer's automatic patching.
    rt = runtime()
    event = app.current_event
    request = parse_json_body(event, IssueRequest, required="a JSON object with asset_url")
    viewer = viewer_from_request(event.headers, event.request_context.http.source_ip)
    entitlement = None
    if rt.entitlement_keys is not None:  # the backend vouches for this viewer, in a signed assertion
        entitlement = verify_assertion(event.headers.get(ASSERTION_HEADER), rt.entitlement_keys.current(),
                                       int(time.time()))
    issued = issue(request, viewer, rt.keys, rt.store, rt.policy, ledger=rt.ledger, entitlement=entitlement)
    metrics.add_metric(name="TokensIssued", unit=MetricUnit.Count, value=1)
    tracer.put_annotation(key="outcome", value="issued")
    logger.info(
        "token issued",
        extra={
            "session_id": issued.session_id,
            "session_id_chosen_by_caller": request.session_id is not None,
            "account": entitlement.account if entitlement else None,
            "kid": issued.kid,
            "expires_at": issued.expires_at,
            "bind": request.bind,
            "caller": iam_caller(event.raw_event),
        },
    )
    return json_response(HTTPStatus.CREATED, issued.to_dict())


# ---------------------------------------------------------------------------------------------------------------
# Outcomes other than 201.


def _reject(status: HTTPStatus, reason: str, message: str, *, detail: str | None = None, **extra: Any) -> Response:
    """Count, annotate and log a refusal, and answer ``{"error": reason, "message": message, **extra}``.

    ``detail`` is what the operator needs (logged, not returned); ``message`` is what the caller is told.
    """
    metrics.add_dimension(name="reason", value=reason)
    metrics.add_metric(name="TokenRequestsRejected", unit=MetricUnit.Count, value=1)
    tracer.put_annotation(key="outcome", value=reason)
    log = logger.error if status >= 500 else logger.warning if status == HTTPStatus.CONFLICT else logger.info
    log("token request rejected", extra={"status": int(status), "reason": reason, "detail": detail or message})
    return error_response(status, reason, message, **extra)


@app.exception_handler(BadRequestBody)
def _bad_body(exc: BadRequestBody) -> Response:
    extra = {"details": exc.details} if exc.details else {}
    return _reject(exc.status, exc.code, exc.message, **extra)


@app.exception_handler(InvalidIssueRequest)
def _invalid_request(exc: InvalidIssueRequest) -> Response:
    return _reject(HTTPStatus.BAD_REQUEST, exc.reason, exc.message)


@app.exception_handler(EntitlementError)
def _no_entitlement(exc: EntitlementError) -> Response:
    return _reject(HTTPStatus.UNAUTHORIZED, exc.reason, str(exc))


@app.exception_handler(NotEntitled)
def _not_entitled(exc: NotEntitled) -> Response:
    return _reject(HTTPStatus.FORBIDDEN, exc.reason, exc.message)


@app.exception_handler(SessionRevoked)
def _revoked(exc: SessionRevoked) -> Response:
    return _reject(HTTPStatus.CONFLICT, exc.reason, exc.message)


@app.exception_handler(RevocationCheckFailed)
def _store_unavailable(exc: RevocationCheckFailed) -> Response:
    return _reject(
        HTTPStatus.SERVICE_UNAVAILABLE,
        exc.reason,
        "the revocation list or the ledger cannot be reached; retry later",
        detail=exc.message,
    )


@app.exception_handler(KeySourceError)
def _key_unavailable(exc: KeySourceError) -> Response:
    return _reject(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "key-unavailable",
        "the signing key cannot be read; retry later",
        detail=f"signing key {exc.reason}: {exc}",
    )


@app.exception_handler(ConfigurationError)
def _misconfigured(exc: ConfigurationError) -> Response:
    return _reject(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "misconfigured",
        "the token issuer is misconfigured; see its logs",
        detail=str(exc),
    )


@app.not_found
def _not_found(exc: NotFoundError) -> Response:
    return _reject(HTTPStatus.NOT_FOUND, "not-found", "no such route: use POST /tokens")


@app.exception_handler(Exception)
def _internal(exc: Exception) -> Response:
    logger.exception("unexpected error")
    return _reject(HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "unexpected error; see the issuer's logs")


# ---------------------------------------------------------------------------------------------------------------
# The Lambda entry point.


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
