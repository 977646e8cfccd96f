"""core.lambda_support: settings from the environment, Powertools set-up, JSON answers."""

from __future__ import annotations

from typing import ClassVar

import pytest
from aws_lambda_powertools import Logger, Metrics, Tracer
from pydantic import Field, model_validator

from core.lambda_support import (
    NO_STORE,
    ConfigurationError,
    LambdaSettings,
    Observability,
    error_response,
    json_response,
    powertools,
)
from tests.helpers import set_environment

VARIABLES = ("EXAMPLE_STORE", "EXAMPLE_TTL", "EXAMPLE_RATIO", "EXAMPLE_NOTE")


class ExampleSettings(LambdaSettings):
    describes: ClassVar[str] = "example"

    store: str = Field(min_length=1, validation_alias="EXAMPLE_STORE")
    ttl: int = Field(60, ge=1, validation_alias="EXAMPLE_TTL")
    ratio: float = Field(0.5, ge=0, le=1, validation_alias="EXAMPLE_RATIO")
    note: str | None = Field(None, validation_alias="EXAMPLE_NOTE")

    @model_validator(mode="after")
    def _consistent(self) -> "ExampleSettings":
        if self.note == "forbidden":
            raise ValueError("EXAMPLE_NOTE may not be 'forbidden'")
        return self


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    set_environment(monkeypatch, dict.fromkeys(VARIABLES))
    return monkeypatch


# -- settings -----------------------------------------------------------------------------------------------------


def test_settings_read_the_named_variables_with_defaults(env: pytest.MonkeyPatch) -> None:
    env.setenv("EXAMPLE_STORE", "  store.json ")
    env.setenv("EXAMPLE_TTL", " 90 ")
    settings = ExampleSettings.from_env()
    assert (settings.store, settings.ttl, settings.ratio, settings.note) == ("store.json", 90, 0.5, None)


def test_blank_variables_are_unset_and_other_variables_ignored(env: pytest.MonkeyPatch) -> None:
    env.setenv("EXAMPLE_STORE", "s.json")
    env.setenv("EXAMPLE_TTL", "   ")
    env.setenv("EXAMPLE_RATIO", "")
    env.setenv("EXAMPLE_UNRELATED", "x")
    env.setenv("store", "lower-case field name")  # not a variable of these settings
    settings = ExampleSettings.from_env()
    assert (settings.store, settings.ttl, settings.ratio) == ("s.json", 60, 0.5)


def test_variable_names_are_case_sensitive(env: pytest.MonkeyPatch) -> None:
    env.setenv("example_store", "s.json")
    with pytest.raises(ConfigurationError, match="EXAMPLE_STORE: Field required"):
        ExampleSettings.from_env()


@pytest.mark.parametrize(
    ("variables", "problems"),
    [
        ({}, ["EXAMPLE_STORE: Field required"]),
        ({"EXAMPLE_STORE": "  "}, ["EXAMPLE_STORE: Field required"]),
        ({"EXAMPLE_STORE": "s", "EXAMPLE_TTL": "soon"}, ["EXAMPLE_TTL: Input should be a valid integer"]),
        ({"EXAMPLE_STORE": "s", "EXAMPLE_TTL": "0"}, ["EXAMPLE_TTL: Input should be greater than or equal to 1"]),
        ({"EXAMPLE_TTL": "x", "EXAMPLE_RATIO": "2"}, ["EXAMPLE_STORE:", "EXAMPLE_TTL:", "EXAMPLE_RATIO:"]),
        ({"EXAMPLE_STORE": "s", "EXAMPLE_NOTE": "forbidden"}, ["settings: EXAMPLE_NOTE may not be 'forbidden'"]),
    ],
)
def test_bad_configuration_names_each_variable(
    env: pytest.MonkeyPatch, variables: dict[str, str], problems: list[str]
) -> None:
    set_environment(env, variables)
    with pytest.raises(ConfigurationError) as raised:
        ExampleSettings.from_env()
    message = str(raised.value)
    assert message.startswith("invalid example configuration: ")
    assert all(problem in message for problem in problems), message
    assert "Value error" not in message and "errors.pydantic.dev" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_bad_values_are_not_repeated_in_the_message(env: pytest.MonkeyPatch) -> None:
    env.setenv("EXAMPLE_STORE", "s")
    env.setenv("EXAMPLE_TTL", "hunter2-secret")
    with pytest.raises(ConfigurationError) as raised:
        ExampleSettings.from_env()
    assert "hunter2" not in str(raised.value)


def test_dotenv_files_are_not_read(env: pytest.MonkeyPatch, tmp_path) -> None:
    (tmp_path / ".env").write_text("EXAMPLE_STORE=from-dotenv\n")
    env.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="EXAMPLE_STORE"):
        ExampleSettings.from_env()


def test_settings_are_frozen(env: pytest.MonkeyPatch) -> None:
    env.setenv("EXAMPLE_STORE", "s")
    settings = ExampleSettings.from_env()
    with pytest.raises(Exception, match="frozen"):
        settings.ttl = 5  # type: ignore[misc]


# -- powertools ---------------------------------------------------------------------------------------------------


def test_powertools_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "")
    obs = powertools("example-service")
    assert isinstance(obs, Observability)
    assert obs.service == "example-service"
    assert isinstance(obs.logger, Logger) and obs.logger.service == "example-service"
    assert isinstance(obs.metrics, Metrics)
    assert obs.metrics.namespace == "MediaShield" and obs.metrics.service == "example-service"


def test_powertools_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "from-env")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "NamespaceFromEnv")
    obs = powertools("example-service", default_namespace="Other")
    assert obs.service == "from-env" and obs.logger.service == "from-env"
    assert (obs.metrics.namespace, obs.metrics.service) == ("NamespaceFromEnv", "from-env")


def test_tracer_is_made_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)
    obs = powertools("traced-service")
    assert "tracer" not in vars(obs)
    tracer = obs.tracer
    assert isinstance(tracer, Tracer) and obs.tracer is tracer


# -- responses ----------------------------------------------------------------------------------------------------


JSON = {"Content-Type": "application/json"}


def test_json_response_is_not_cacheable_by_default() -> None:
    first = json_response(201, {"a": 1})
    assert first.status_code == 201
    assert first.headers == {"Cache-Control": "no-store", **JSON}
    assert first.body == {"a": 1}
    first.headers["X-Later"] = "added by the resolver"  # each response has its own headers
    assert json_response(200, {}).headers == {"Cache-Control": "no-store", **JSON}
    assert dict(NO_STORE) == {"Cache-Control": "no-store"}


def test_json_response_headers() -> None:
    assert json_response(200, {}, headers=None).headers == JSON
    assert json_response(200, {}, headers={"X-A": "b"}).headers == {"X-A": "b", **JSON}


def test_error_response_body() -> None:
    response = error_response(409, "revoked", "session revoked", details=[{"field": "x"}])
    assert response.status_code == 409 and response.headers == {"Cache-Control": "no-store", **JSON}
    assert response.body == {"error": "revoked", "message": "session revoked", "details": [{"field": "x"}]}
