"""What every Lambda function of this project sets up the same way: configuration, observability, JSON answers.

- :class:`LambdaSettings`: a function's configuration, one field per environment variable (the field's
  ``validation_alias`` is the variable's name), read with pydantic-settings; :meth:`LambdaSettings.from_env` turns
  a bad or missing variable into a :class:`ConfigurationError` that names it.
- :func:`powertools`: the Powertools Logger, Metrics and Tracer for a function, named by ``POWERTOOLS_SERVICE_NAME``
  and ``POWERTOOLS_METRICS_NAMESPACE`` when set.
- :func:`json_response` and :func:`error_response`: API answers (``{"error": code, "message": ...}`` for errors),
  not cacheable by default.

A handler module uses them like this::

    obs = powertools("media-shield-example")
    logger, metrics = obs.logger, obs.metrics

    class ExampleSettings(LambdaSettings):
        describes: ClassVar[str] = "example"
        edge_store: str = Field(min_length=1, validation_alias="EDGE_STORE")

    settings = ExampleSettings.from_env()  # ConfigurationError("invalid example configuration: EDGE_STORE: ...")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, ClassVar, Self

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

__all__ = [
    "DEFAULT_NAMESPACE",
    "NO_STORE",
    "ConfigurationError",
    "LambdaSettings",
    "Observability",
    "error_response",
    "json_response",
    "powertools",
    "settings_problems",
]

DEFAULT_NAMESPACE = "MediaShield"
NO_STORE: Mapping[str, str] = MappingProxyType({"Cache-Control": "no-store"})


# ---------------------------------------------------------------------------------------------------------------
# Configuration.


class ConfigurationError(Exception):
    """The function's environment does not describe a usable function (an API answers 500 and logs it)."""


class LambdaSettings(BaseSettings):
    """Base for a function's settings: declare one field per environment variable, named by ``validation_alias``.

    Variable names are case-sensitive; variables that are unset, empty or only white space leave the field at its
    default (or missing, when it has none); values are stripped; other variables are ignored. Only the process
    environment is read (and keyword arguments, which win): no ``.env`` file, no secrets directory. Set
    ``describes`` to say whose configuration it is in error messages.
    """

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, str_strip_whitespace=True)

    describes: ClassVar[str] = "function"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if not (isinstance(value, str) and not value.strip())}
        return data

    @classmethod
    def from_env(cls) -> Self:
        """The settings from the environment; :class:`ConfigurationError` naming each bad or missing variable."""
        try:
            return cls()
        except ValidationError as exc:
            raise ConfigurationError(f"invalid {cls.describes} configuration: {settings_problems(exc)}") from None
        except SettingsError as exc:
            raise ConfigurationError(f"invalid {cls.describes} configuration: {exc}") from None


def settings_problems(exc: ValidationError) -> str:
    """``"VARIABLE: what is wrong; ..."`` for a settings validation error (``settings`` for a cross-field rule).

    Never includes the offending values: the environment may carry secrets.
    """
    return "; ".join(
        f"{error['loc'][0] if error['loc'] else 'settings'}: {str(error['msg']).removeprefix('Value error, ')}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    )


# ---------------------------------------------------------------------------------------------------------------
# Observability.


@dataclass(frozen=True)
class Observability:
    """A function's Powertools utilities, all named ``service``."""

    service: str
    logger: Logger
    metrics: Metrics

    @cached_property
    def tracer(self) -> Tracer:
        """The X-Ray tracer, made on first use: making one patches boto3 for tracing, which a function that does
        not trace should not do."""
        return Tracer(service=self.service)


def powertools(default_service: str, *, default_namespace: str = DEFAULT_NAMESPACE) -> Observability:
    """Logger and Metrics (and, on first use, Tracer) for a function, made once at import time.

    ``POWERTOOLS_SERVICE_NAME`` and ``POWERTOOLS_METRICS_NAMESPACE`` win over the defaults when set and not empty;
    Powertools reads its other variables (``POWERTOOLS_LOG_LEVEL``, ...) itself.
    """
    service = os.getenv("POWERTOOLS_SERVICE_NAME") or default_service
    namespace = os.getenv("POWERTOOLS_METRICS_NAMESPACE") or default_namespace
    return Observability(
        service=service, logger=Logger(service=service), metrics=Metrics(namespace=namespace, service=service)
    )


# ---------------------------------------------------------------------------------------------------------------
# Responses.


def json_response(
    status: HTTPStatus | int, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = NO_STORE
) -> Response:
    """A JSON answer for an event handler route; ``headers`` default to ``Cache-Control: no-store``."""
    return Response(
        status_code=int(status),
        content_type=content_types.APPLICATION_JSON,
        body=dict(body),
        headers=dict(headers or {}),  # a copy: the resolver adds Content-Type to it
    )


def error_response(
    status: HTTPStatus | int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = NO_STORE,
    **extra: Any,
) -> Response:
    """``{"error": code, "message": message, **extra}`` with ``status``; ``message`` is what the caller is told."""
    return json_response(status, {"error": code, "message": message, **extra}, headers=headers)
