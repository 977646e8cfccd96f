"""The moto internals the workflow tests cannot do without, each behind one function (written for moto 5.2.6).

What moto offers publicly, and why it is not enough here:

* Athena: ``/moto-api/static/athena/query-results`` queues fixed rows for GetQueryResults (and a CSV at the
  OutputLocation); it cannot compute an UNLOAD from its statement and parameters, nor write Parquet where the UNLOAD
  says. The state transition API (``state_manager.set_transition("athena::execution", ...)``) paces
  QUEUED -> RUNNING -> SUCCEEDED or holds an execution where it is, but offers no FAILED end; StopQueryExecution only
  gives CANCELLED. Hence :func:`on_athena_query_start` and :func:`fail_athena_query`.
* Lambda: ``/moto-api/static/lambda-simple/response`` queues fixed payloads, and cannot run a handler on the event
  it was invoked with nor answer a function error (``FunctionError``); the Docker backend needs Docker and a
  deployment package. Hence :func:`dispatch_lambda_invokes`.

tests/detection/integration/test_workflow_moto_hooks.py checks that each internal used here still has the shape assumed, and says what to
change when a moto release moves it.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from moto.athena.models import AthenaBackend, athena_backends
from moto.awslambda_simple.models import LambdaSimpleBackend

WRITTEN_FOR_MOTO = "5.2.6"


@dataclass(frozen=True)
class StartedQuery:
    """What StartQueryExecution was given, and the id moto answered."""

    execution_id: str
    statement: str
    parameters: list[str] | None


def on_athena_query_start(monkeypatch: pytest.MonkeyPatch, callback: Callable[[StartedQuery], None]) -> None:
    """Call ``callback`` when moto's StartQueryExecution has created an execution, before it returns its id.

    Internal: wraps ``AthenaBackend.start_query_execution(self, query, context, config, workgroup,
    execution_parameters) -> str`` (moto has no public hook on a query's start)."""
    original = AthenaBackend.start_query_execution

    def start_query_execution(self: AthenaBackend, query: str, context: Any, config: Any, workgroup: str,
                              execution_parameters: list[str] | None) -> str:
        execution_id = original(self, query, context, config, workgroup, execution_parameters)
        callback(StartedQuery(execution_id, query, execution_parameters))
        return execution_id

    monkeypatch.setattr(AthenaBackend, "start_query_execution", start_query_execution)


def fail_athena_query(execution_id: str, account_id: str, region: str) -> None:
    """End the execution FAILED.

    Internal: moto's execution only ever progresses to SUCCEEDED and no public API makes it fail, so set its
    ``status`` the way moto's own StopQueryExecution sets CANCELLED (``athena_backends[account][region]
    .executions[id].status``)."""
    athena_backends[account_id][region].executions[execution_id].status = "FAILED"


def dispatch_lambda_invokes(monkeypatch: pytest.MonkeyPatch, handler: Callable[[str, Any], Any]) -> None:
    """Answer every Invoke on moto's no-Docker Lambda with ``handler(function_name, event)``, JSON-encoded; an
    exception it raises is answered the way Lambda answers an unhandled error (``FunctionError: Unhandled``, a payload
    with ``errorType``, ``errorMessage``, ``stackTrace``), so Retry/Catch see the handler's error names.

    Internal: replaces ``LambdaSimpleBackend.invoke(self, function_name, qualifier, body, headers, response_headers)``,
    whose ``response_headers`` dict moto's response copies to the HTTP answer."""

    def invoke(self: LambdaSimpleBackend, function_name: str, qualifier: str | None, body: Any, headers: Any,
               response_headers: dict[str, str]) -> bytes:
        try:
            result = handler(function_name, json.loads(body or "{}"))
        except Exception as exc:  # noqa: BLE001 - answered like Lambda answers an unhandled error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc)[-3:],
            }).encode()
        return json.dumps(result).encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
