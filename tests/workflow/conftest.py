"""moto runs the real statemachine/detection.asl.json: Lambda tasks go to the real handlers, Athena to DuckDB.

* moto's Step Functions executor interprets the definition (public: ``mock_aws`` config
  ``stepfunctions.execute_state_machine``); its ``aws-sdk:athena`` tasks call moto's Athena. When moto has created a
  query execution, :class:`AthenaOnDuckDB` runs the statement it was given (the UNLOAD of features.sql, Trino text,
  ExecutionParameters bound positionally) on DuckDB over a generated corpus, with a ``dt`` column like the Glue
  table's projected partition, and writes the result as Parquet where the UNLOAD says.
* How the query progresses is moto's public state transition API (``state_manager.set_transition`` on
  ``athena::execution``): QUEUED -> RUNNING -> SUCCEEDED, one step per GetQueryExecution, or held QUEUED for ever.
* Lambda tasks: moto's "simple" Lambda backend (public: ``lambda.use_docker: False``) calls the handler of
  :mod:`detection.workflow.handlers` named by the function, and answers an exception the way Lambda does
  (``FunctionError``, ``errorType``), so the definition's Retry/Catch see the handler's error names.
* Alerts: an SQS queue subscribed to the SNS topic (raw delivery) receives what the workflow publishes.
* Ledger: moto DynamoDB (the template's table definition). Edge store: the local twin (moto has no KeyValueStore),
  which the tests can wrap to inject conflicts or failures.

Three needs have no public moto mechanism: running the query (and knowing when it starts), making it end FAILED,
and running a Lambda handler on its event. Those internals are isolated, and guarded, in moto_hooks.py.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest
from moto.moto_api import state_manager

from detection.logs.reader import open_logs
from detection.scoring.query import Query
from detection.workflow import handlers as workflow_handler
from revocation.ledger.dynamodb import create_table
from tests.conftest import ACCOUNT_ID, REGION, FakeLambdaContext, mocked_aws
from tests.workflow.moto_hooks import StartedQuery, dispatch_lambda_invokes, fail_athena_query, on_athena_query_start
from tools.generate import generate_corpus

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "detection.asl.json"
STEPS = ("prepare", "score", "record", "publish", "report")
NEVER = 10**9  # GetQueryExecution calls before a held query moves on: more than any run makes
UNLOAD = re.compile(r"^\s*UNLOAD\s*\((?P<select>.*)\)\s*TO\s*'(?P<to>s3://[^']+)'\s*WITH\s*\((?P<with>[^)]*)\)\s*$", re.S)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small labelled corpus (gzip TSV, Firehose layout) with planted pirates."""
    out = tmp_path_factory.mktemp("workflow-corpus")
    summary = generate_corpus(out, sessions=300, minutes=10, seed=11)
    return {"path": out, "start": summary.start_epoch, "end": summary.end_epoch}


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
        values = {name: float(value) for name, value in zip(names, parameters or [], strict=True)}
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


@pytest.fixture
def pipeline(
    corpus: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    bucket = "media-shield-athena-results"
    store_path = tmp_path / "edge-store.json"
    env = {
        "GLUE_DATABASE": "media_shield",
        "GLUE_TABLE": "realtime_logs",
        "RESULTS_URI": f"s3://{bucket}/detection/",
        "ATHENA_WORKGROUP": "media-shield-detection",
        "POLL_SECONDS": "0",
        "MAX_POLLS": "20",
        "LEDGER_TABLE": f"ledger-{uuid.uuid4().hex[:8]}",
        "EDGE_STORE": str(store_path),
        "PAGE_SIZE": "4",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "MediaShield",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for cached in (workflow_handler._run_files, workflow_handler._ledger, workflow_handler._store):
        cached.cache_clear()

    athena = AthenaOnDuckDB(corpus["path"])
    athena.table(f"{env['GLUE_DATABASE']}.{env['GLUE_TABLE']}")
    on_athena_query_start(monkeypatch, athena.started)
    pace_queries(times=1)  # one state per GetQueryExecution: QUEUED -> RUNNING -> SUCCEEDED, the polling loop runs
    request.addfinalizer(lambda: state_manager.unset_transition(model_name="athena::execution"))

    with mocked_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=bucket)
        create_table(boto3.client("dynamodb", region_name=REGION), env["LEDGER_TABLE"])
        boto3.client("athena", region_name=REGION).create_work_group(
            Name=env["ATHENA_WORKGROUP"],
            Configuration={"ResultConfiguration": {"OutputLocation": f"s3://{bucket}/results/"},
                           "EnforceWorkGroupConfiguration": True},
        )
        sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="media-shield-alerts")["TopicArn"]
        inbox = sqs.create_queue(QueueName="media-shield-alerts-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="media-shield-workflow",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        arns = {}
        for step in STEPS:
            arns[f"{step.capitalize()}FunctionArn"] = lam.create_function(
                FunctionName=f"media-shield-{step}",
                Runtime="python3.11",
                Role=role,
                Handler=f"detection.workflow.handlers.{step}",
                Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
            )["FunctionArn"]
        definition = load_definition({**arns, "AlertTopicArn": topic})
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(name="media-shield-detection", definition=definition, roleArn=role)
        pipeline = Pipeline(
            sfn=sfn, s3=s3, sqs=sqs, alert_queue=inbox, bucket=bucket, ledger_table=env["LEDGER_TABLE"],
            store_path=store_path, state_machine=machine["stateMachineArn"], athena=athena,
        )
        dispatch_lambda_invokes(monkeypatch, pipeline.invoke)
        yield pipeline
    athena.con.close()


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
