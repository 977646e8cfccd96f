"""template.yaml, the detection workflow part, tied to the code it deploys: the state machine definition and its
substitutions, one function per step with the environment its settings read and the permissions its adapters use,
the schedule, and the alarm. (tests/detection/integration/test_workflow_state_machine.py executes the same definition on moto.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

from detection.workflow import handlers as workflow_handler
from detection.workflow.steps import run_time
from tests.helpers import ROOT
from tests.infra.helpers import RES, TPL, actions, client_calls, props

STEP_FUNCTIONS = {
    "PrepareFunctionArn": ("PrepareRunFunction", "prepare", workflow_handler.PrepareSettings),
    "ScoreFunctionArn": ("ScoreFunction", "score", workflow_handler.ScoreSettings),
    "RecordFunctionArn": ("RecordVerdictsFunction", "record", workflow_handler.LedgerSettings),
    "PublishFunctionArn": ("PublishRevocationsFunction", "publish", workflow_handler.PublishSettings),
    "ReportFunctionArn": ("ReportRunFunction", "report", None),
}


def machine() -> dict[str, Any]:
    return props("DetectionStateMachine")


def definition_text() -> str:
    return (ROOT / machine()["DefinitionUri"]).read_text(encoding="utf-8")


@pytest.mark.parametrize("path", sorted((ROOT / "statemachine").glob("*.asl.json")), ids=lambda p: p.name)
def test_every_definition_parses_in_the_executor(path: Path) -> None:
    """moto's executor (LocalStack's ASL parser) accepts it, after the substitutions SAM makes."""

    def arn(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.endswith("TopicArn"):
            return f"arn:aws:sns:us-east-1:123456789012:{name}"
        return f"arn:aws:lambda:us-east-1:123456789012:function:{name}"

    program, _ = AmazonStateLanguageParser.parse(re.sub(r"\$\{(\w+)\}", arn, path.read_text(encoding="utf-8")))
    assert program is not None


def test_substitutions_are_exactly_what_the_definition_uses() -> None:
    used = set(re.findall(r"\$\{(\w+)\}", definition_text()))
    assert used == set(machine()["DefinitionSubstitutions"])
    assert machine()["DefinitionSubstitutions"]["AlertTopicArn"] == {"Ref": "AlertTopic"}


def test_each_task_function_runs_its_handler_with_the_environment_its_settings_read() -> None:
    substitutions = machine()["DefinitionSubstitutions"]
    for substitution, (resource, step, settings) in STEP_FUNCTIONS.items():
        assert substitutions[substitution] == {"Fn::GetAtt": [resource, "Arn"]}
        function = props(resource)
        assert function["Handler"] == f"detection.workflow.handlers.{step}"
        env = set(function.get("Environment", {}).get("Variables", {}))
        read = set() if settings is None else {f.validation_alias for f in settings.model_fields.values()}
        assert env == read, f"{resource}: sets {sorted(env)}, its settings read {sorted(read)}"
        policies = [s for p in function.get("Policies", []) for s in p["Statement"]]
        for statement in policies:
            assert statement["Resource"] != "*"


def test_ledger_and_edge_store_permissions_are_what_the_adapters_call() -> None:
    dynamodb = client_calls("revocation/ledger/dynamodb.py")
    issue_only = {"ConditionCheckItem"}  # record_issue's transaction: only the issuer records issues
    for resource in ("RecordVerdictsFunction", "PublishRevocationsFunction"):
        allowed, resources = actions(resource, "dynamodb")
        assert allowed == dynamodb - issue_only
        assert resources[0] == {"Fn::GetAtt": ["LedgerTable", "Arn"]}
    allowed, resource = actions("TokenIssuerFunction", "dynamodb")
    assert allowed == {"GetItem", "ConditionCheckItem", "UpdateItem"} <= dynamodb  # record_issue, nothing more
    assert resource == {"Fn::GetAtt": ["LedgerTable", "Arn"]}
    issuer_env = props("TokenIssuerFunction")["Environment"]["Variables"]
    assert issuer_env["LEDGER_TABLE"] == {"Ref": "LedgerTable"}
    # entitlements: the backend's key only when the stack names one, and read access to that secret only then
    assert issuer_env["ENTITLEMENT_SECRET_ARN"] == {"Fn::If": ["UseEntitlements", {"Ref": "EntitlementSecretArn"},
                                                               {"Ref": "AWS::NoValue"}]}
    (conditional,) = [p["Fn::If"] for p in props("TokenIssuerFunction")["Policies"] if "Fn::If" in p]
    assert conditional[0] == "UseEntitlements" and conditional[2] == {"Ref": "AWS::NoValue"}
    assert conditional[1]["Statement"][0]["Resource"] == {"Ref": "EntitlementSecretArn"}
    assert (issuer_env["REQUIRE_PATH_SCOPE"], issuer_env["REQUIRED_BINDINGS"]) == (
        {"Ref": "RequirePathScope"}, {"Ref": "RequiredBindings"})
    allowed, kvs = actions("PublishRevocationsFunction", "cloudfront-keyvaluestore")
    assert allowed == client_calls("edge/store/kvs.py")
    assert kvs == {"Fn::GetAtt": ["EdgeKeyValueStore", "Arn"]}
    assert "Policies" not in props("PrepareRunFunction") and "Policies" not in props("ReportRunFunction")


def test_score_function_keeps_the_log_contract_of_the_dashboard() -> None:
    score = props("ScoreFunction")
    assert score["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-score"}
    assert score["LoggingConfig"] == {"LogGroup": {"Ref": "ScoreLogGroup"}}
    source = (ROOT / "detection" / "workflow" / "handlers.py").read_text(encoding="utf-8")
    assert '"verdict"' in source
    for name in ("session_id", "reasons", "score", "action"):
        assert f'"{name}":' in source
    # the dashboard's workflow widgets find the machine by name
    assert machine()["Name"] == {"Fn::Sub": "${AWS::StackName}-detection"}
    assert ":stateMachine:${AWS::StackName}-detection" in json.dumps(props("Dashboard")["DashboardBody"])


def test_the_schedule_starts_runs_the_prepare_step_understands() -> None:
    (event,) = machine()["Events"].values()
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == {"Ref": "DetectionSchedule"}
    schedule_input = json.loads(event["Properties"]["Input"])
    assert schedule_input == {"scheduled_time": "<aws.scheduler.scheduled-time>"}
    # what Scheduler puts in place of the placeholder
    assert run_time({"scheduled_time": "2026-11-29T10:04:00Z"}) == 1795946640.0
    pattern = TPL["Parameters"]["DetectionSchedule"]["AllowedPattern"]
    assert re.match(pattern, TPL["Parameters"]["DetectionSchedule"]["Default"])
    assert not re.match(pattern, "cron(* * * * ? *)")


def test_athena_permissions_are_scoped_to_the_workgroup_table_and_buckets() -> None:
    statements = [s for p in machine()["Policies"] if "Statement" in p for s in p["Statement"]]
    athena = [s for s in statements if s["Action"][0].startswith("athena:")]
    assert len(athena) == 1 and "workgroup/${DetectionWorkGroup}" in athena[0]["Resource"]["Fn::Sub"]
    definition = json.loads(definition_text())
    used = {state["Resource"].rsplit(":", 1)[-1] for state in definition["States"].values()
            if state.get("Resource", "").startswith("arn:aws:states:::aws-sdk:athena:")}
    assert {f"athena:{a[0].upper()}{a[1:]}" for a in used} == set(athena[0]["Action"])


def test_failing_runs_alarm_watches_this_state_machine() -> None:
    alarm = props("DetectionRunsFailingAlarm")
    watched = [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]
    assert {m["MetricName"] for m in watched} == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    assert all(m["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "DetectionStateMachine"}}]
               for m in watched)
    assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}]
    assert "DetectionRunsFailingAlarm" in json.dumps(props("Dashboard")["DashboardBody"])
    assert RES["DetectionStateMachine"]["Type"] == "AWS::Serverless::StateMachine"
