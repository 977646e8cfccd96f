"""How the HTTP functions (token issuer, revocation API) read a request: the JSON body (media type, base64, presence,
then Powertools' parser against the route's pydantic model; every refusal a :class:`BadRequestBody` naming the
status, a stable code and a message the caller can act on) and the IAM caller who signed it."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from aws_lambda_powertools.utilities.parser import parse
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class BadRequestBody(Exception):
    """The body is not one JSON object matching the route's model (400), or not JSON at all (415)."""

    def __init__(self, status: HTTPStatus, code: str, message: str, details: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def describe_error(error: Any) -> dict[str, str]:
    """One validation problem as ``{"field", "message"}`` (never the offending value)."""
    field = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return {"field": field, "message": message}


def parse_json_body(event: BaseProxyEvent, model: type[Model], *, required: str) -> Model:
    """The request body of ``event`` as ``model``; ``required`` says what an empty body should have held."""
    media_type = (event.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise BadRequestBody(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "send the request body as application/json"
        )
    try:
        body = event.decoded_body
    except ValueError:  # bad base64 (binascii.Error) or not UTF-8 (UnicodeDecodeError)
        raise BadRequestBody(HTTPStatus.BAD_REQUEST, "invalid-request", "the request body is not UTF-8 JSON") from None
    if not body or not body.strip():
        raise BadRequestBody(HTTPStatus.BAD_REQUEST, "invalid-request", f"the request body is required: {required}")
    try:
        return parse(event=body, model=model)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        details = [describe_error(error) for error in errors]
        if any(error["type"] == "json_invalid" for error in errors):
            message = "the request body is not valid JSON"
        else:
            message = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else d["message"] for d in details)
        raise BadRequestBody(HTTPStatus.BAD_REQUEST, "invalid-request", message, details) from None


def iam_caller(event: Mapping[str, Any]) -> str | None:
    """The IAM principal that signed the request (function URL or HTTP API with IAM auth), or None."""
    iam = ((event.get("requestContext") or {}).get("authorizer") or {}).get("iam") or {}
    who = iam.get("userArn") or iam.get("callerId")
    return str(who) if who else None
