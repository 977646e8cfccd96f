"""moto runs the real statemachine/detection.asl.json: Lambda tasks go to the real handlers, Athena to DuckDB.

* moto's Step Functions executor interprets the definition (``execute_state_machine``); its ``aws-sdk:athena``
  tasks call moto's Athena, whose ``StartQueryExecution`` is answered here by running the statement it was given
  (the UNLOAD of features.sql, Trino text, ExecutionParameters bound positionally) on DuckDB over a generated
  corpus, with a ``dt`` column like the Glue table's projected partition, and writing the result as Parquet where
  the UNLOAD says. moto's execution then goes QUEUED → RUNNING → SUCCEEDED over the polls.
* Lambda tasks: moto's "simple" Lambda backend (no Docker) is patched to call the handler of
  :mod:`detection.workflow_handler` named by the function, and to answer an exception the way Lambda does
  (``FunctionError``, ``errorType``), so the definition's Retry/Catch see the handler's error names.
* Ledger: moto DynamoDB (the template's table definition). Edge store: the local twin (moto has no KeyValueStore),
  which the tests can wrap to inject conflicts or failures.
"""

from __future__ import annotations

import io
import json
import re
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest
from moto.athena.models import AthenaBackend
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.moto_api import state_manager

from detection import workflow_handler
from detection.generate import generate_corpus
from detection.ledger.dynamodb import create_table
from detection.logs import open_logs
from detection.query import Query
from tests.conftest import ACCOUNT_ID, REGION, FakeLambdaContext, mocked_aws

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "detection.asl.json"
STEPS = ("prepare", "score", "record", "publish", "report")
UNLOAD = re.compile(r"^\s*UNLOAD\s*\((?P<select>.*)\)\s*TO\s*'(?P<to>s3://[^']+)'\s*WITH\s*\((?P<with>[^)]*)\)\s*$", re.S)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small labelled corpus (gzip TSV, Firehose layout) with planted pirates."""
    out = tmp_path_factory.mktemp("workflow-corpus")
    summary = generate_corpus(out, sessions=300, minutes=10, seed=11)
    return {"path": out, "start": summary.start_epoch, "end": summary.end_epoch}


class AthenaOnDuckDB:
    """Answers moto's StartQueryExecution by running the statement on DuckDB over the corpus."""

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


@dataclass
class Pipeline:
    """The deployed workflow on moto, and handles to what it touched."""

    sfn: Any
    s3: Any
    sns_topic: str
    bucket: str
    ledger_table: str
    store_path: Path
    state_machine: str
    athena: AthenaOnDuckDB
    invocations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: dict[str, Callable[[dict[str, Any]], None]] = field(default_factory=dict)

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


def entered_states(history: list[dict[str, Any]]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def sns_messages(topic_arn: str) -> list[str]:
    from moto.sns.models import sns_backends

    topic = sns_backends[ACCOUNT_ID][REGION].topics[topic_arn]
    return [message for _id, message, *_rest in topic.sent_notifications]


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
    holder: dict[str, Pipeline] = {}
    original_start = AthenaBackend.start_query_execution

    def start_query_execution(self: AthenaBackend, query: str, context: Any, config: Any, workgroup: str,
                              execution_parameters: list[str] | None) -> str:
        execution_id = original_start(self, query, context, config, workgroup, execution_parameters)
        execution = self.executions[execution_id]
        if athena.never_finish:
            execution._transitions = [("QUEUED", "RUNNING")]
        elif athena.fail_with:
            execution._transitions = [("QUEUED", "RUNNING"), ("RUNNING", "FAILED")]
        else:
            athena.answer(query, execution_parameters)
        return execution_id

    def invoke(self: LambdaSimpleBackend, function_name: str, qualifier: Any, body: Any, headers: Any,
               response_headers: dict[str, str]) -> bytes:
        step = function_name.rsplit(":", 1)[-1].removeprefix("media-shield-")
        event = json.loads(body or "{}")
        holder["p"].invocations.append((step, event))
        try:
            inject = holder["p"].failures.get(step)
            if inject:
                inject(event)
            context = FakeLambdaContext(f"media-shield-{step}", remaining_ms=300_000, memory_limit_in_mb=1024)
            result = getattr(workflow_handler, step)(event, context)
        except Exception as exc:  # noqa: BLE001 - answered like Lambda answers an unhandled error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc)[-3:],
            }).encode()
        return json.dumps(result).encode()

    monkeypatch.setattr(AthenaBackend, "start_query_execution", start_query_execution)
    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    # a query advances one state per GetQueryExecution (QUEUED -> RUNNING -> SUCCEEDED): the polling loop runs
    state_manager.set_transition(model_name="athena::execution", transition={"progression": "manual", "times": 1})
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
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="media-shield-alerts")["TopicArn"]
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
                Handler=f"detection.workflow_handler.{step}",
                Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
            )["FunctionArn"]
        definition = load_definition({**arns, "AlertTopicArn": topic})
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(name="media-shield-detection", definition=definition, roleArn=role)
        holder["p"] = Pipeline(
            sfn=sfn, s3=s3, sns_topic=topic, bucket=bucket, ledger_table=env["LEDGER_TABLE"], store_path=store_path,
            state_machine=machine["stateMachineArn"], athena=athena,
        )
        yield holder["p"]
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
