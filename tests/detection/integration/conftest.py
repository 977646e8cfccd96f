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
and running a Lambda handler on its event. Those internals are isolated, and guarded, in moto_hooks.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.moto_api import state_manager

from detection.workflow import handlers as workflow_handler
from revocation.ledger.dynamodb import create_table
from tests.detection.moto_hooks import dispatch_lambda_invokes, on_athena_query_start
from tests.detection.workflow_helpers import (
    STEPS,
    AthenaOnDuckDB,
    Pipeline,
    load_definition,
    pace_queries,
)
from tests.helpers import REGION, mocked_aws
from tools.generate import generate_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small labelled corpus (gzip TSV, Firehose layout) with planted pirates."""
    out = tmp_path_factory.mktemp("workflow-corpus")
    summary = generate_corpus(out, sessions=300, minutes=10, seed=11)
    return {"path": out, "start": summary.start_epoch, "end": summary.end_epoch}


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
