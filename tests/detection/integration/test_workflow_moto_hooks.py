"""Guards for the moto internals in moto_hooks.py: a moto release that moves one fails here, saying what to change,
instead of making the workflow tests fail (or pass) for reasons of its own."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import Any

import boto3
import moto
import pytest
from moto.athena.models import AthenaBackend, Execution, athena_backends
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.base_backend import BackendDict
from moto.moto_api import state_manager

from tests.detection.moto_hooks import (
    WRITTEN_FOR_MOTO,
    StartedQuery,
    dispatch_lambda_invokes,
    fail_athena_query,
    on_athena_query_start,
)
from tests.helpers import ACCOUNT_ID, REGION, mocked_aws


def moved(hook: str, was: str, now: object) -> str:
    return (f"tests/detection/moto_hooks.py:{hook} was written for moto {WRITTEN_FOR_MOTO}, where {was}; moto "
            f"{moto.__version__} has {now!r}. Look for a public way first (moto_api, state transitions), else adapt "
            f"{hook} to the new internals, then this guard.")


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_athena_internals_are_where_the_hooks_expect_them() -> None:
    start = ["self", "query", "context", "config", "workgroup", "execution_parameters"]
    assert "start_query_execution" in vars(AthenaBackend), moved(
        "on_athena_query_start", "AthenaBackend defines start_query_execution", sorted(vars(AthenaBackend)))
    assert parameters(AthenaBackend.start_query_execution) == start, moved(
        "on_athena_query_start", f"AthenaBackend.start_query_execution takes {start}",
        parameters(AthenaBackend.start_query_execution))

    assert isinstance(athena_backends, BackendDict), moved(
        "fail_athena_query", "athena_backends is a BackendDict (account -> region -> AthenaBackend)", athena_backends)
    executions = AthenaBackend(REGION, ACCOUNT_ID).executions
    assert type(executions) is dict, moved("fail_athena_query", "AthenaBackend.executions is a dict", executions)
    status = inspect.getattr_static(Execution, "status")
    assert isinstance(status, property) and status.fset is not None, moved(
        "fail_athena_query", "Execution.status is a property with a setter", status)


def test_the_lambda_internals_are_where_the_hook_expects_them() -> None:
    invoke = ["self", "function_name", "qualifier", "body", "headers", "response_headers"]
    assert "invoke" in vars(LambdaSimpleBackend), moved(
        "dispatch_lambda_invokes", "LambdaSimpleBackend defines invoke", sorted(vars(LambdaSimpleBackend)))
    assert parameters(LambdaSimpleBackend.invoke) == invoke, moved(
        "dispatch_lambda_invokes", f"LambdaSimpleBackend.invoke takes {invoke}", parameters(LambdaSimpleBackend.invoke))


@pytest.fixture
def aws() -> Iterator[None]:
    """moto as the workflow tests run it: no-Docker Lambda, a query moving one state per GetQueryExecution."""
    state_manager.set_transition(model_name="athena::execution", transition={"progression": "manual", "times": 1})
    try:
        with mocked_aws(config={"lambda": {"use_docker": False}}):
            yield
    finally:
        state_manager.unset_transition(model_name="athena::execution")


def test_a_started_query_is_seen_and_can_be_failed(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[StartedQuery] = []
    failing = {"on": False}

    def started(query: StartedQuery) -> None:
        seen.append(query)
        if failing["on"]:
            fail_athena_query(query.execution_id, ACCOUNT_ID, REGION)

    on_athena_query_start(monkeypatch, started)
    athena = boto3.client("athena", region_name=REGION)

    def states(execution_id: str) -> list[str]:
        return [athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"]["State"]
                for _ in range(3)]

    ok = athena.start_query_execution(QueryString="SELECT ?", ExecutionParameters=["1"])["QueryExecutionId"]
    assert seen == [StartedQuery(ok, "SELECT ?", ["1"])], moved(
        "on_athena_query_start", "the wrapped method gets the statement and parameters and returns the id", seen)
    assert states(ok) == ["RUNNING", "SUCCEEDED", "SUCCEEDED"]

    failing["on"] = True
    failed = states(athena.start_query_execution(QueryString="SELECT 1")["QueryExecutionId"])
    assert failed == ["FAILED"] * 3, moved(
        "fail_athena_query", "setting the execution's status makes GetQueryExecution answer it for good", failed)


def test_an_invoke_runs_the_handler_and_answers_its_error_like_lambda(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def handler(function_name: str, event: Any) -> Any:
        if function_name == "boom":
            raise ValueError(f"no {event['n']}")
        return {"function": function_name, "event": event}

    dispatch_lambda_invokes(monkeypatch, handler)
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="guard", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )["Role"]["Arn"]
    lam = boto3.client("lambda", region_name=REGION)
    for name in ("ok", "boom"):
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="index.handler",
                            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18})

    ok = lam.invoke(FunctionName="ok", Payload=json.dumps({"n": 1}))
    assert "FunctionError" not in ok and json.load(ok["Payload"]) == {"function": "ok", "event": {"n": 1}}, moved(
        "dispatch_lambda_invokes", "the no-Docker backend's invoke answers Invoke", ok)
    boom = lam.invoke(FunctionName="boom", Payload=json.dumps({"n": 2}))
    payload = json.load(boom["Payload"])
    assert boom.get("FunctionError") == "Unhandled" and payload["errorType"] == "ValueError", moved(
        "dispatch_lambda_invokes", "an x-amz-function-error put in response_headers becomes FunctionError", boom)
    assert payload["errorMessage"] == "no 2"
