"""moto runs the real statemachine/detection.asl.json: the pieces the workflow tests build it from."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow.parquet as pq
from moto.moto_api import state_manager

from detection.logs.reader import open_logs
from detection.scoring.query import Query
from detection.workflow import handlers as workflow_handler
from tests.detection.moto_hooks import StartedQuery, fail_athena_query
from tests.helpers import ACCOUNT_ID, REGION, ROOT, FakeLambdaContext

ASL = ROOT / "statemachine" / "detection.asl.json"


STEPS = ("prepare", "score", "record", "publish", "report")


NEVER = 10**9  # GetQueryExecution calls before a held query moves on: more than any run makes


UNLOAD = re.compile(r"^\s*UNLOAD\s*\((?P<select>.*)\)\s*TO\s*'(?P<to>s3://[^']+)'\s*WITH\s*\((?P<with>[^)]*)\)\s*$", re.S)


class AthenaOnDuckDB:
    """Athena for moto's query executions: each started UNLOAD runs on DuckDB over the corpus (or is held, or fails)."""

    def __init__(self, corpus: Path) -> None:
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.logs = open_logs(corpus, self.con)
        self.logs.set_window((0.0, 2.0**40))
        self.statements: list[str] = []
        self.fail_with: str | None = None
        self.never_finish = False

    def table(self, name: str) -> None:
        """Make ``database.table`` the corpus with Athena's projected partition column ``dt``."""
        database, table = name.split(".")
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {database}")
        self.con.execute(
            f"CREATE OR REPLACE VIEW {database}.{table} AS SELECT *, "
            f"strftime(to_timestamp(\"timestamp\"), '%Y/%m/%d/%H') AS dt FROM {self.logs.view}"
        )

    def started(self, query: StartedQuery) -> None:
        """moto created the execution: hold it QUEUED, end it FAILED (moto keeps no reason: ``fail_with`` is only a
        switch), or answer it (it then succeeds over the polls)."""
        if self.never_finish:
            pace_queries(times=NEVER)
        elif self.fail_with:
            fail_athena_query(query.execution_id, ACCOUNT_ID, REGION)
        else:
            self.answer(query.statement, query.parameters)

    def answer(self, statement: str, parameters: list[str] | None) -> None:
        self.statements.append(statement)
        match = UNLOAD.match(statement)
        assert match, f"the workflow must send an UNLOAD statement, not {statement[:200]!r}"
        assert "PARQUET" in match["with"].upper()
        names = [f"p{i}" for i in range(len(parameters or []))]
        header = f"-- parameters: {', '.join(names)}\n-- partition: dt\n"
        query = Query.from_text("athena", header + match["select"])  # its '?' are bound in order, like Athena's
        values = {name: _literal(value) for name, value in zip(names, parameters or [], strict=True)}
        sql = query.duckdb_sql(relation="logs", partition_column=True)
        table = self.con.sql(sql, params=values).to_arrow_table()
        if table.num_rows == 0:
            return  # like Athena: an empty result writes no data file
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        bucket, _, prefix = match["to"].removeprefix("s3://").partition("/")
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=bucket, Key=f"{prefix}{uuid.uuid4().hex}", Body=buffer.getvalue()
        )


def _literal(value: str) -> float | str:
    """An ExecutionParameters literal as Athena reads it: quoted text, or a number."""
    if value.startswith("'") and value.endswith("'") and len(value) >= 2:
        return value[1:-1].replace("''", "'")
    return float(value)


def pace_queries(times: int) -> None:
    """A query moves one state (QUEUED -> RUNNING -> SUCCEEDED) every ``times`` GetQueryExecution calls: moto's public
    state transition API (https://docs.getmoto.org/en/latest/docs/configuration/state_transition/index.html)."""
    state_manager.set_transition(model_name="athena::execution", transition={"progression": "manual", "times": times})


@dataclass
class Pipeline:
    """The deployed workflow on moto, and handles to what it touched."""

    sfn: Any
    s3: Any
    sqs: Any
    alert_queue: str
    bucket: str
    ledger_table: str
    store_path: Path
    state_machine: str
    athena: AthenaOnDuckDB
    invocations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: dict[str, Callable[[dict[str, Any]], None]] = field(default_factory=dict)
    received_alerts: list[str] = field(default_factory=list)

    def run(self, execution_input: dict[str, Any], *, timeout: float = 120.0) -> dict[str, Any]:
        """Start an execution and wait for it to end; returns describe_execution plus the history."""
        arn = self.sfn.start_execution(
            stateMachineArn=self.state_machine, name=f"run-{uuid.uuid4().hex[:10]}", input=json.dumps(execution_input)
        )["executionArn"]
        deadline = time.monotonic() + timeout
        while True:
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                break
            assert time.monotonic() < deadline, "the execution did not finish"
            time.sleep(0.05)
        events = self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        described["history"] = events
        described["output_json"] = json.loads(described["output"]) if described.get("output") else None
        return described

    def calls(self, step: str) -> list[dict[str, Any]]:
        return [event for name, event in self.invocations if name == step]

    def invoke(self, function_name: str, event: dict[str, Any]) -> Any:
        """What the Lambda function ``function_name`` (name or ARN) answers: its handler's result, or an injected
        failure's exception."""
        step = function_name.rsplit(":", 1)[-1].removeprefix("media-shield-")
        self.invocations.append((step, event))
        inject = self.failures.get(step)
        if inject:
            inject(event)
        context = FakeLambdaContext(f"media-shield-{step}", remaining_ms=300_000, memory_limit_in_mb=1024)
        return getattr(workflow_handler, step)(event, context)

    def alerts(self) -> list[str]:
        """Every message published to the alert topic so far, oldest first (read from the queue subscribed to it)."""
        while batch := self.sqs.receive_message(QueueUrl=self.alert_queue, MaxNumberOfMessages=10).get("Messages"):
            for message in batch:
                self.received_alerts.append(message["Body"])
                self.sqs.delete_message(QueueUrl=self.alert_queue, ReceiptHandle=message["ReceiptHandle"])
        return list(self.received_alerts)


def entered_states(history: list[dict[str, Any]]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def label_column(corpus: dict[str, Any], column: str) -> dict[str, Any]:
    """``session_id -> <column>`` of the corpus's labels (``label``, ``exp``, ``kind``...)."""
    table = pq.read_table(corpus["path"] / "labels.parquet", columns=["session_id", column])
    return dict(zip(table["session_id"].to_pylist(), table[column].to_pylist(), strict=True))


def load_definition(substitutions: dict[str, str]) -> str:
    """The ASL text with ``${Name}`` replaced the way SAM's DefinitionSubstitutions does; every one must be used."""
    text = ASL.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{(\w+)\}", text))
    assert used == set(substitutions), f"substitutions: the definition uses {sorted(used)}"
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", value)
    return text
