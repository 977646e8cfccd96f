"""template.yaml, the pipeline part: real-time logs, Firehose, Glue, Athena, ledger, revocation API, alarms, dashboard,
demo distribution. Each test ties the template to the code that depends on it, so a change on either side that
breaks the other fails here. (cfn-lint and the FunctionCode checks are in test_template.py; `sam validate --lint`
is the slow test at the end.)"""

from __future__ import annotations

import copy
import importlib
import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from detection.logs import firehose as firehose_transform
from detection.logs.reader import partition_start
from detection.logs.schema import DETECTION_FIELDS, athena_columns
from detection.scoring.query import FEATURES, load_query
from revocation import handler as revocation_handler
from revocation.ledger.dynamodb import GSI_NAME, cloudformation_properties
from tests.helpers import ROOT
from tests.infra.helpers import PSEUDO, RES, TEXT, TPL, actions, client_calls, globals_env, props, when_on
from tools.template_schema import render

# -- real-time log configuration and schema ----------------------------------------------------------------------


def test_generated_schema_blocks_are_current() -> None:
    assert render(TEXT) == TEXT, "run: python -m tools.template_schema"
    result = subprocess.run([sys.executable, "-m", "tools.template_schema", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_render_rewrites_a_stale_block() -> None:
    stale = TEXT.replace("        - c-ip\n", "", 1)
    assert stale != TEXT and render(stale) == TEXT
    with pytest.raises(ValueError, match="exactly once"):
        render("Resources: {}\n")


def test_realtime_log_config_requests_the_detection_fields_at_full_sampling() -> None:
    config = props("RealtimeLogConfig")
    assert config["Fields"] == [f.name for f in DETECTION_FIELDS]
    assert [f.position for f in DETECTION_FIELDS] == sorted(f.position for f in DETECTION_FIELDS)  # canonical order
    assert config["SamplingRate"] == 100
    (endpoint,) = config["EndPoints"]
    assert endpoint["StreamType"] == "Kinesis"
    assert endpoint["KinesisStreamConfig"] == {
        "RoleArn": {"Fn::GetAtt": ["RealtimeLogRole", "Arn"]},
        "StreamArn": {"Fn::GetAtt": ["RealtimeLogStream", "Arn"]},
    }
    role = props("RealtimeLogRole")
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    (statement,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert {"kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary"} <= set(statement["Action"])
    assert statement["Resource"] == {"Fn::GetAtt": ["RealtimeLogStream", "Arn"]}


def test_glue_columns_are_the_schema_columns_and_types() -> None:
    table = props("LogsTable")["TableInput"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert columns == athena_columns(DETECTION_FIELDS)
    assert all(c["Comment"] for c in table["StorageDescriptor"]["Columns"])
    hive = {"VARCHAR": "string", "DOUBLE": "double", "BIGINT": "bigint", "INTEGER": "int"}
    assert all(hive[f.sql_type] == f.athena_type for f in DETECTION_FIELDS)
    serde = table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
    assert serde == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert table["Parameters"]["classification"] == "parquet"


def _java_timestamp(pattern: str, at: time.struct_time) -> str:
    java = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H"}
    return time.strftime(re.sub(r"yyyy|MM|dd|HH", lambda m: java[m.group(0)], pattern), at)


def test_one_partition_layout_for_firehose_glue_athena_and_the_local_reader() -> None:
    destination = props("LogDeliveryStream")["ExtendedS3DestinationConfiguration"]
    table = props("LogsTable")["TableInput"]
    parameters = table["Parameters"]
    (partition,) = table["PartitionKeys"]
    assert partition["Name"] == "dt" and partition["Type"] == "string"
    assert parameters["projection.enabled"] == "true"
    assert parameters["projection.dt.type"] == "date"
    assert parameters["projection.dt.interval"] == "1" and parameters["projection.dt.interval.unit"] == "HOURS"
    assert parameters["storage.location.template"] == {"Fn::Sub": "s3://${LogsBucket}/logs/${!dt}/"}
    assert table["StorageDescriptor"]["Location"] == {"Fn::Sub": "s3://${LogsBucket}/logs/"}

    at = time.gmtime(1767239999)  # 2026-01-01 03:59:59 UTC
    prefix = re.sub(r"!\{timestamp:([^}]*)\}", lambda m: _java_timestamp(m.group(1), at), destination["Prefix"])
    dt = _java_timestamp(parameters["projection.dt.format"], at)
    assert prefix == f"logs/{dt}/" == "logs/2026/01/01/03/"  # Firehose writes where the projection looks
    assert partition_start(prefix + "stream-1-2026-01-01-03-59-59-abc.parquet") == 1767236400  # the local reader
    query = load_query(FEATURES)  # the detection SQL filters on the same column, formatted the same way
    assert query.partition == partition["Name"]
    assert "'%Y/%m/%d/%H'" in query.text and time.strftime("%Y/%m/%d/%H", at) == dt

    error_prefix = destination["ErrorOutputPrefix"]
    assert "!{firehose:error-output-type}" in error_prefix
    rules = {r["Prefix"]: r for r in props("LogsBucket")["LifecycleConfiguration"]["Rules"] if "Prefix" in r}
    for expiring in ("logs/", "errors/"):
        assert rules[expiring]["ExpirationInDays"] == {"Ref": "RawLogRetentionDays"}
    assert destination["Prefix"].startswith("logs/") and error_prefix.startswith("errors/")


def test_firehose_converts_the_transformed_records_to_parquet_with_the_glue_schema() -> None:
    stream = props("LogDeliveryStream")
    assert stream["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert stream["KinesisStreamSourceConfiguration"]["KinesisStreamARN"] == {"Fn::GetAtt": ["RealtimeLogStream", "Arn"]}
    destination = stream["ExtendedS3DestinationConfiguration"]
    conversion = destination["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True
    assert "OpenXJsonSerDe" in conversion["InputFormatConfiguration"]["Deserializer"]
    assert "ParquetSerDe" in conversion["OutputFormatConfiguration"]["Serializer"]
    schema = conversion["SchemaConfiguration"]
    assert schema["DatabaseName"] == {"Ref": "LogsDatabase"} and schema["TableName"] == {"Ref": "LogsTable"}
    assert destination["BufferingHints"]["SizeInMBs"] >= 64  # Firehose's minimum with format conversion
    assert destination["CompressionFormat"] == "UNCOMPRESSED"  # required with format conversion
    (processor,) = destination["ProcessingConfiguration"]["Processors"]
    parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
    assert parameters["LambdaArn"] == {"Fn::GetAtt": ["LogTransformFunction", "Arn"]}
    # 1 MB of TSV becomes < 3 MB of base64 JSON: under Lambda's 6 MB response limit.
    assert float(parameters["BufferSizeInMBs"]) <= 1
    assert props("LogTransformFunction")["Handler"] == "detection.logs.firehose.handler"
    assert "LOG_FIELDS" not in (props("LogTransformFunction").get("Environment") or {}).get("Variables", {}), (
        "the transformation parses DETECTION_FIELDS, the list the template requests"
    )


def test_athena_workgroup_enforces_results_limit_and_metrics() -> None:
    config = props("DetectionWorkGroup")["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["PublishCloudWatchMetricsEnabled"] is True
    assert config["BytesScannedCutoffPerQuery"] == {"Ref": "AthenaBytesScannedCutoff"}
    assert config["ResultConfiguration"]["OutputLocation"] == {"Fn::Sub": "s3://${AthenaResultsBucket}/results/"}
    (rule,) = props("AthenaResultsBucket")["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == {"Ref": "AthenaResultsRetentionDays"}


# -- ledger and revocation API -----------------------------------------------------------------------------------


def test_ledger_table_is_the_ledger_definition() -> None:
    assert props("LedgerTable") == cloudformation_properties()
    assert RES["LedgerTable"]["DeletionPolicy"] == "Retain"


def test_revocation_api_has_the_permissions_its_code_uses_and_no_more() -> None:
    function = props("RevocationApiFunction")
    assert function["Handler"] == "revocation.handler.handler"
    assert function["FunctionUrlConfig"] == {"AuthType": "AWS_IAM"}
    env = function["Environment"]["Variables"]
    assert set(env) == {revocation_handler.LEDGER_TABLE_ENV, revocation_handler.EDGE_STORE_ENV,
                        revocation_handler.ALLOW_SESSIONS_ENV}
    assert env["LEDGER_TABLE"] == {"Ref": "LedgerTable"}
    assert env["EDGE_STORE"] == {"Fn::GetAtt": ["EdgeKeyValueStore", "Arn"]}

    dynamodb, tables = actions("RevocationApiFunction", "dynamodb")
    assert dynamodb == client_calls("revocation/ledger/dynamodb.py") - {"ConditionCheckItem"}  # only the issuer issues
    assert tables == [{"Fn::GetAtt": ["LedgerTable", "Arn"]}, {"Fn::Sub": f"${{LedgerTable.Arn}}/index/{GSI_NAME}"}]
    kvs, store = actions("RevocationApiFunction", "cloudfront-keyvaluestore")
    assert kvs == client_calls("edge/store/kvs.py")
    assert store == {"Fn::GetAtt": ["EdgeKeyValueStore", "Arn"]}


# -- IAM: no write action on '*' ---------------------------------------------------------------------------------

READ_VERBS = ("Get", "List", "Describe", "BatchGet", "Query", "Scan", "Head", "Lookup", "Search", "Select")
# The two AWS managed policies SAM attaches to every function role (logs and X-Ray need '*' resources).
SAM_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    # SAM's for a Kinesis event source (the stream consumer): Kinesis reads and SubscribeToShard, logs; no write
    "arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole",
}


def _translated() -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    template = copy.deepcopy(TPL)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/code.zip"  # what `sam package` puts there
        if resource["Type"] == "AWS::Serverless::StateMachine":
            resource["Properties"]["DefinitionUri"] = "s3://bucket/detection.asl.json"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://bucket/layer.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    return transform(template, {}, NoManagedPolicies())


def _is_write(action: str) -> bool:
    if action == "*":
        return True
    service, _, verb = action.partition(":")
    return verb == "*" or not verb.startswith(READ_VERBS)


def _is_wildcard(resource: Any) -> bool:
    return resource == "*" or (isinstance(resource, str) and re.fullmatch(r"arn:[^:]*:[^:]*:[^:]*:[^:]*:\*", resource))


def _policy_documents(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for name, resource in resources.items():
        p = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            policies = [when_on(pol) for pol in p.get("Policies", [])]
            documents += [(f"{name}/{pol['PolicyName']}", pol["PolicyDocument"]) for pol in policies]
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append((name, p["PolicyDocument"]))
    return documents


def test_no_iam_statement_allows_a_write_action_on_every_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    resources = _translated()["Resources"]
    documents = _policy_documents(resources)
    assert len(documents) >= 5  # the function roles with inline policies, and the stack's own roles
    offending = []
    for where, document in documents:
        for statement in document["Statement"]:
            if statement.get("Effect") != "Allow":
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            targets = statement.get("Resource", "*")
            targets = targets if isinstance(targets, list) else [targets]
            writes = [a for a in actions if _is_write(a)]
            if writes and any(_is_wildcard(r) for r in targets):
                offending.append((where, writes, targets))
    assert not offending
    managed = {arn for r in resources.values() if r["Type"] == "AWS::IAM::Role"
               for arn in r["Properties"].get("ManagedPolicyArns", [])}
    assert managed <= SAM_MANAGED_POLICIES


def test_the_write_check_catches_a_wildcard() -> None:
    assert _is_write("s3:PutObject") and _is_write("kinesis:*") and not _is_write("glue:GetTable")
    assert _is_wildcard("*") and _is_wildcard("arn:aws:s3:::*") and not _is_wildcard("arn:aws:s3:::bucket/logs/*")


# -- Lambda handlers --------------------------------------------------------------------------------------------


def test_every_lambda_handler_resolves_to_an_importable_callable() -> None:
    handlers = {name: r["Properties"]["Handler"] for name, r in RES.items()
                if r["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function")}
    assert {"LogTransformFunction", "RevocationApiFunction", "TokenIssuerFunction"} <= set(handlers)
    for name, handler in handlers.items():
        module, _, attribute = handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute)), f"{name}: {handler}"


# -- alerts and dashboard -----------------------------------------------------------------------------------------


def _alarm_metrics(name: str) -> list[dict[str, Any]]:
    alarm = props(name)
    if "MetricName" in alarm:
        return [{"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"],
                 "Dimensions": alarm.get("Dimensions", [])}]
    return [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]


def test_alarms_watch_metrics_the_code_emits_and_notify_the_topic() -> None:
    alarms = [name for name, r in RES.items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert {"EdgeStoreNearFullAlarm", "RevocationsNotPublishedAlarm", "TokensRejectedSpikeAlarm"} <= set(alarms)
    for name in alarms:
        assert props(name)["AlarmActions"] == [{"Ref": "AlertTopic"}], name
    namespace, service = globals_env()["POWERTOOLS_METRICS_NAMESPACE"], globals_env()["POWERTOOLS_SERVICE_NAME"]
    emitted_by = {
        "StreamRecordsLate": "detection/stream/handler.py",
        "EdgeStoreUtilization": "revocation/publisher.py",  # store_metrics: the revocation API and each run emit it
        "RevocationsNotPublished": "revocation/publisher.py",
        "EdgeRequests": "detection/logs/firehose.py",
        "LogRecordsParsed": "detection/logs/firehose.py",
        "LogRecordsRejected": "detection/logs/firehose.py",
    }
    outcomes = set()
    for name in alarms:
        for metric in _alarm_metrics(name):
            if metric["Namespace"] != namespace:
                continue
            dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            assert dims["service"] == service, f"{name}: Powertools metrics carry service={service}"
            assert f'"{metric["MetricName"]}"' in (ROOT / emitted_by[metric["MetricName"]]).read_text()
            if metric["MetricName"] == "EdgeRequests":
                outcomes.add(dims["Outcome"])
    assert outcomes == set(firehose_transform.OUTCOMES)

    full = props("EdgeStoreNearFullAlarm")
    assert (full["Threshold"], full["ComparisonOperator"]) == (80, "GreaterThanOrEqualToThreshold")
    unpublished = props("RevocationsNotPublishedAlarm")
    assert (unpublished["Threshold"], unpublished["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    functions = _alarm_metrics("EdgeFunctionErrorsAlarm")
    assert {m["MetricName"] for m in functions} == {"FunctionExecutionErrors", "FunctionValidationErrors",
                                                   "FunctionThrottles"}
    assert RES["EdgeFunctionErrorsAlarm"]["Condition"] == "InUsEast1"
    assert all({"Name": "FunctionName", "Value": props("ViewerRequestFunction")["Name"]} in m["Dimensions"]
               for m in functions)


SUB_REF = re.compile(r"\$\{([^}!][^}]*)\}")


def _dashboard() -> dict[str, Any]:
    body = props("Dashboard")["DashboardBody"]["Fn::Sub"]
    for ref in SUB_REF.findall(body):
        name, _, attribute = ref.partition(".")
        assert ref in PSEUDO or name in RES or name in TPL["Parameters"], f"dashboard refers to unknown {ref}"
        assert "Condition" not in RES.get(name, {}), f"dashboard refers to conditional {name}"
    return json.loads(SUB_REF.sub(lambda m: m.group(1).replace(":", "_"), body).replace("${!", "${"))


def test_dashboard_shows_flagged_sessions_and_pipeline_health() -> None:
    widgets = _dashboard()["widgets"]
    text = json.dumps(widgets)
    for metric in ("SessionsFlagged", "SessionsRevoked", "SessionsFlaggedByReason", "EdgeRequests",
                   "EdgeStoreUtilization", "ProcessedBytes", "ExecutionTime", "FunctionComputeUtilization"):
        assert metric in text, metric
    (logs,) = [w for w in widgets if w["type"] == "log"]
    query = logs["properties"]["query"]
    assert query.startswith("SOURCE 'ScoreLogGroup' |")
    for name in ("session_id", "reasons", "score", "action"):
        assert name in query.split("|")[1]
    assert 'filter message = "verdict"' in query
    (compute,) = [w for w in widgets if "FunctionComputeUtilization" in json.dumps(w)]
    assert compute["properties"]["region"] == "us-east-1"
    assert compute["properties"]["metrics"][0][3] == "AWS__StackName-viewer-request"
    assert props("ViewerRequestFunction")["Name"] == {"Fn::Sub": "${AWS::StackName}-viewer-request"}
    (athena,) = [w for w in widgets if "ProcessedBytes" in json.dumps(w)]
    assert 'WorkGroup=\\"DetectionWorkGroup\\"' in json.dumps(athena)
    (alarms,) = [w for w in widgets if w["type"] == "alarm"]
    assert len(alarms["properties"]["alarms"]) >= 5
    assert all(0 <= w["x"] and w["x"] + w["width"] <= 24 for w in widgets)


def test_scoring_log_group_follows_the_function_name_contract() -> None:
    assert props("ScoreLogGroup")["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AWS::StackName}-score"}
    assert TPL["Outputs"]["ScoreFunctionName"]["Value"] == {"Fn::Sub": "${AWS::StackName}-score"}


# -- demo distribution and deployment knobs ------------------------------------------------------------------------


def test_demo_distribution_is_optional_and_protected() -> None:
    assert TPL["Parameters"]["CreateDemoDistribution"]["Default"] == "false"
    demo = [name for name, r in RES.items() if name.startswith("Demo")]
    assert len(demo) == 4 and all(RES[name]["Condition"] == "CreateDemo" for name in demo)
    behavior = props("DemoDistribution")["DistributionConfig"]["DefaultCacheBehavior"]
    assert behavior["FunctionAssociations"] == [{
        "EventType": "viewer-request",
        "FunctionARN": {"Fn::GetAtt": ["ViewerRequestFunction", "FunctionMetadata.FunctionARN"]},
    }]
    assert behavior["RealtimeLogConfigArn"] == {"Fn::GetAtt": ["RealtimeLogConfig", "Arn"]}
    assert behavior["OriginRequestPolicyId"] == {"Ref": "ViewerLocationOriginRequestPolicy"}
    (origin,) = props("DemoDistribution")["DistributionConfig"]["Origins"]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["DemoOriginAccessControl", "Id"]}
    statements = props("DemoOriginBucketPolicy")["PolicyDocument"]["Statement"]
    allow = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allow) == 1 and allow[0]["Condition"]["StringEquals"]["AWS:SourceArn"]


# -- the fast path -----------------------------------------------------------------------------------------------


def test_the_stream_consumer_reads_its_own_fan_out_in_small_batches_and_keeps_failures() -> None:
    from detection.stream.handler import StreamSettings
    from detection.stream.state_dynamodb import TABLE_DEFINITION

    consumer = props("StreamConsumerFunction")
    (event,) = consumer["Events"].values()
    source = event["Properties"]
    assert event["Type"] == "Kinesis"
    assert source["Stream"] == {"Fn::GetAtt": ["StreamKinesisConsumer", "ConsumerARN"]}  # enhanced fan-out
    assert props("StreamKinesisConsumer")["StreamARN"] == {"Fn::GetAtt": ["RealtimeLogStream", "Arn"]}
    assert source["MaximumBatchingWindowInSeconds"] == {"Ref": "StreamBatchingWindowSeconds"}
    assert TPL["Parameters"]["StreamBatchingWindowSeconds"]["Default"] == 1
    assert source["BisectBatchOnFunctionError"] is True
    assert source["ParallelizationFactor"] == {"Ref": "StreamParallelization"}
    assert source["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["StreamConsumerFailures",
                                                                                       "Arn"]}
    assert source["Enabled"] == {"Fn::If": ["FastPathOn", True, False]}
    assert TPL["Parameters"]["FastPath"]["Default"] == "true"
    # the environment names every setting the handler reads, and the state table is the code's definition
    variables = consumer["Environment"]["Variables"]
    aliases = {f.validation_alias for f in StreamSettings.model_fields.values()}
    assert {"STREAM_STATE_TABLE", "LEDGER_TABLE", "EDGE_STORE", "WINDOW_MINUTES", "DETECTION_CONFIG"} <= aliases
    assert aliases <= set(variables) | {None}
    assert variables["STREAM_STATE_TABLE"] == {"Ref": "StreamStateTable"}
    table = props("StreamStateTable")
    assert {k: table[k] for k in TABLE_DEFINITION} == TABLE_DEFINITION
    granted = {a for statement in consumer["Policies"][0]["Statement"] for a in statement["Action"]}
    assert {"dynamodb:UpdateItem", "dynamodb:Query", "cloudfront-keyvaluestore:UpdateKeys"} <= granted


def test_alarms_watch_the_consumer_falling_behind_and_failing_batches() -> None:
    behind = props("StreamConsumerBehindAlarm")
    assert (behind["Namespace"], behind["MetricName"], behind["Statistic"]) == ("AWS/Lambda", "IteratorAge", "Maximum")
    assert behind["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "StreamConsumerFunction"}}]
    assert behind["Threshold"] == 60000  # a minute behind: the fast path's whole point is gone
    failed = props("StreamBatchesFailedAlarm")
    assert failed["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["StreamConsumerFailures",
                                                                                  "QueueName"]}}]
    text = json.dumps(_dashboard()["widgets"])
    for metric in ("StreamSecondsToRevoke", "StreamSessionsRevoked", "SessionsRevoked", "IteratorAge"):
        assert metric in text, metric
    for name in ("StreamSecondsToRevoke", "StreamSessionsRevoked"):
        assert f'name="{name}"' in (ROOT / "detection" / "stream" / "handler.py").read_text()


def test_the_issuer_front_is_optional_needs_entitlements_and_forwards_what_the_issuer_reads() -> None:
    from edge.binding import COUNTRY_HEADER, REGION_HEADER
    from edge.entitlement import ASSERTION_HEADER
    from edge.issuing import VIEWER_ADDRESS_HEADER

    params = TPL["Parameters"]
    assert params["CreateIssuerDistribution"]["Default"] == "false" and params["IssuerRateLimit"]["Default"] == "0"
    front = [name for name in RES if name.startswith("Issuer")]
    assert {RES[name]["Condition"] for name in front} == {"CreateIssuerFront", "IssuerRateLimited"}
    assert RES["IssuerWebAcl"]["Condition"] == "IssuerRateLimited"
    # the template refuses a front without the backend's assertion, and a rate rule outside us-east-1
    (needs_entitlements,) = TPL["Rules"]["IssuerFrontNeedsEntitlements"]["Assertions"]
    assert needs_entitlements["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "EntitlementSecretArn"}, ""]}]}
    rate_rule = TPL["Rules"]["IssuerRateLimitNeedsTheFront"]["Assertions"]
    assert {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]} in [a["Assert"] for a in rate_rule]
    pattern = re.compile(params["IssuerRateLimit"]["AllowedPattern"])
    assert [v for v in ("0", "5", "10", "01", "300", "999999999", "-1") if pattern.match(v)] == [
        "0", "10", "300", "999999999"]

    headers = props("IssuerOriginRequestPolicy")["OriginRequestPolicyConfig"]["HeadersConfig"]
    forwarded = {h.lower() for h in headers["Headers"]}
    assert headers["HeaderBehavior"] == "whitelist" and "host" not in forwarded
    assert {ASSERTION_HEADER, VIEWER_ADDRESS_HEADER, COUNTRY_HEADER, REGION_HEADER, "user-agent"} <= forwarded
    config = props("IssuerDistribution")["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["DomainName"] == {"Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": ["TokenIssuerFunctionUrl",
                                                                                             "FunctionUrl"]}]}]}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["IssuerOriginAccessControl", "Id"]}
    access = props("IssuerOriginAccessControl")["OriginAccessControlConfig"]
    assert (access["OriginAccessControlOriginType"], access["SigningBehavior"]) == ("lambda", "always")
    behavior = config["DefaultCacheBehavior"]
    assert "POST" in behavior["AllowedMethods"] and behavior["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    for permission in ("IssuerFrontInvokeUrlPermission", "IssuerFrontInvokePermission"):
        granted = props(permission)
        assert granted["Principal"] == "cloudfront.amazonaws.com"
        assert "distribution/${IssuerDistribution}" in granted["SourceArn"]["Fn::Sub"]
    assert config["WebACLId"] == {"Fn::If": ["IssuerRateLimited", {"Fn::GetAtt": ["IssuerWebAcl", "Arn"]},
                                             {"Ref": "AWS::NoValue"}]}
    acl = props("IssuerWebAcl")
    assert acl["Scope"] == "CLOUDFRONT" and acl["DefaultAction"] == {"Allow": {}}
    (rule,) = acl["Rules"]
    assert rule["Statement"]["RateBasedStatement"] == {
        "AggregateKeyType": "IP", "EvaluationWindowSec": 300, "Limit": {"Ref": "IssuerRateLimit"}}
    assert rule["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 429


def test_the_viewer_location_policy_adds_every_header_a_location_binding_reads() -> None:
    """Country and region bindings read two headers; CloudFront sets them only where a policy adds them."""
    from edge.binding import COUNTRY_HEADER, REGION_HEADER

    config = props("ViewerLocationOriginRequestPolicy")["OriginRequestPolicyConfig"]
    headers = config["HeadersConfig"]
    assert headers["HeaderBehavior"] == "whitelist"
    assert {h.lower() for h in headers["Headers"]} == {COUNTRY_HEADER, REGION_HEADER}
    assert "Condition" not in RES["ViewerLocationOriginRequestPolicy"]  # for your own distribution too
    assert TPL["Outputs"]["ViewerLocationOriginRequestPolicyId"]["Value"] == {"Ref": "ViewerLocationOriginRequestPolicy"}
    function_code = (ROOT / "edge" / "viewer_request.js").read_text(encoding="utf-8")
    assert {COUNTRY_HEADER, REGION_HEADER} == set(re.findall(r"'(cloudfront-viewer-[a-z-]+)'", function_code))


def test_attach_command_output_names_this_stacks_arns() -> None:
    command = TPL["Outputs"]["AttachCommand"]["Value"]["Fn::Sub"]
    assert command.startswith("python -m tools.attach ")
    assert "${ViewerRequestFunction.FunctionMetadata.FunctionARN}" in command
    assert "${RealtimeLogConfig.Arn}" in command


def test_samconfig_is_valid_toml_with_deploy_defaults() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    deploy = config["default"]["deploy"]["parameters"]
    assert "CAPABILITY_IAM" in deploy["capabilities"]
    assert config["default"]["validate"]["parameters"]["lint"] is True


@pytest.mark.slow
def test_sam_validate_lint() -> None:
    """scripts/sam.sh validate: SAM CLI in its own virtualenv (.venv-sam, created on first run), offline."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "sam.sh"), "validate", "--lint"], cwd=ROOT,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr
