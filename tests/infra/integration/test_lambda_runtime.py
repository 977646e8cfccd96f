"""Each Lambda function run the way the Lambda Python runtime will run it.

* The interpreter is Python 3.12 (the runtime's) where this machine has one, with site-packages holding only the
  SDK a Lambda runtime provides: boto3 and botocore of :data:`RUNTIME_SDK` (an older release than the lock's, as the
  runtime's trails PyPI's and varies by region) and their dependencies; no awscrt, no test or local-tool package.
* On sys.path before it, in the runtime's order: the function's code as ``make build-<Function>`` builds it, then its
  layers: ``make build-DependenciesLayer`` built from uv.lock for this machine's architecture, and for the workflow's
  functions a stand-in for the AWS SDK for pandas layer (pandas, numpy and pyarrow at the lock's versions).
* Environment: what the template gives the function (Globals and its own variables, references resolved to the
  resources made here), what Lambda sets (region, credentials, function name, task root, X-Ray trace header).
* Every AWS call goes through botocore's real signing and HTTP stack: Secrets Manager, DynamoDB and S3 to a moto
  server on loopback, the KeyValueStore data plane to :mod:`tests.infra.fake_keyvaluestore`, which records each
  request's signature algorithm (SigV4A needs awscrt: a layer without it fails here, see the last test).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from detection.logs.schema import DETECTION_FIELDS
from revocation.ledger.dynamodb import DynamoDbLedger, create_table
from rotation.keyring import RotationPolicy, parse_secret_value, plan_rotation
from rotation.secrets import AWSCURRENT, AWSPENDING
from tests.detection.workflow_helpers import AthenaOnDuckDB
from tests.helpers import ACCOUNT_ID, REGION, ROOT, http_event
from tests.infra.fake_keyvaluestore import FakeKeyValueStore, serve
from tests.infra.helpers import RES, TPL, make_build, uv
from tools.generate import generate_corpus

pytestmark = pytest.mark.slow

#: The SDK of the Lambda runtime, older than the lock's on purpose: the runtime's release is not ours to choose.
RUNTIME_SDK = ("boto3==1.40.4", "botocore==1.40.4")
RUNNER = ROOT / "tests" / "infra" / "lambda_runtime_runner.py"
KVS_ARN = f"arn:aws:cloudfront::{ACCOUNT_ID}:key-value-store/6c2f1a38-1d5e-4c4e-9a43-0d7c3b8e5f11"
SIGV4A = "AWS4-ECDSA-P256-SHA256"
FUNCTIONS = {name: r for name, r in RES.items() if r["Type"] == "AWS::Serverless::Function"}
PANDAS_LAYER_PACKAGES = ("pandas", "numpy", "pyarrow")


def _runtime_python() -> Path:
    """Python 3.12 where this machine has it (PATH, pyenv); else this interpreter, said in the test output."""
    candidates = [os.environ.get("LAMBDA_RUNTIME_PYTHON", ""), shutil.which("python3.12") or "",
                  *sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                               text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 12)":
            return Path(candidate)
    print(f"no Python 3.12 here: the runtime test runs on {sys.version.split()[0]}")
    return Path(sys.executable)


def _uv(*args: str) -> None:
    done = uv(*args)
    assert done.returncode == 0, done.stderr[-3000:]


@dataclass(frozen=True)
class Runtime:
    python: Path
    version: str
    layer: Path
    pandas_layer: Path
    artifacts: dict[str, Path]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    base = tmp_path_factory.mktemp("lambda-runtime")
    interpreter = _runtime_python()
    version = subprocess.run([str(interpreter), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    _uv("venv", "--quiet", "--python", str(interpreter), str(base / "runtime"))
    python = base / "runtime" / "bin" / "python"
    _uv("pip", "install", "--quiet", "--python", str(python), *RUNTIME_SDK)
    platform_tag = f"{platform.machine()}-manylinux_2_28"  # AL2023, the runtime's OS, has glibc 2.34
    layer = make_build("build-DependenciesLayer", base / "layer", LAMBDA_PLATFORM=platform_tag, LAMBDA_PYTHON=version)
    pinned = [f"{name}=={importlib.metadata.version(name)}" for name in PANDAS_LAYER_PACKAGES]
    _uv("pip", "install", "--quiet", "--target", str(base / "pandas-layer" / "python"), "--python-platform",
        platform_tag, "--python-version", version, "--only-binary", ":all:", *pinned)
    artifacts = {name: make_build(f"build-{name}", base / name) for name in FUNCTIONS}
    return Runtime(python, version, layer / "python", base / "pandas-layer" / "python", artifacts)


@dataclass
class Aws:
    """The moto server, the fake KeyValueStore and the resources the template's references resolve to."""

    endpoint: str
    proxy: str
    kvs: FakeKeyValueStore
    resources: dict[str, str]

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # Lambda without Docker: RotateSecret then only stages the AWSPENDING version (the steps run below, for real)
    requests.post(f"{endpoint}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10)
    kvs = FakeKeyValueStore(KVS_ARN)
    try:
        with serve(kvs) as proxy:
            yield Aws(endpoint, proxy, kvs, {})
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def test_process_talks_to_moto(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": aws.endpoint}.items():
        monkeypatch.setenv(name, value)


def _resolve(value: Any, names: dict[str, str]) -> str | None:
    """A template value with its Ref / GetAtt / Sub resolved from ``names`` (a parameter's default otherwise)."""
    if isinstance(value, str | int | float):
        return str(value)
    (function, argument), = value.items()
    if function == "Ref":
        if argument == "AWS::NoValue":
            return None  # the variable is not set
        return names[argument] if argument in names else str(TPL["Parameters"][argument].get("Default", ""))
    if function == "Fn::GetAtt":
        return names[".".join(argument)]
    if function == "Fn::If":  # the template's conditions, on its parameters' defaults
        condition, when_true, when_false = argument
        return _resolve(when_true if _condition(TPL["Conditions"][condition], names) else when_false, names)
    if function == "Fn::Sub":
        text = argument
        for name, resolved in names.items():
            text = text.replace("${" + name + "}", resolved)
        assert "${" not in text, f"unresolved reference in {argument!r}"
        return text
    raise AssertionError(f"no resolution for {value!r}")


def _condition(value: Any, names: dict[str, str]) -> bool:
    (function, argument), = value.items()
    if function == "Fn::Not":
        return not _condition(argument[0], names)
    if function == "Fn::Equals":
        return _resolve(argument[0], names) == _resolve(argument[1], names)
    raise AssertionError(f"no evaluation for {value!r}")


def invoke(runtime: Runtime, aws: Aws, function: str, event: dict[str, Any], tmp_path: Path,
           layer: Path | None = None) -> dict[str, Any]:
    """Runs ``function``'s handler once, as the runtime would; returns the runner's result."""
    resource = FUNCTIONS[function]["Properties"]
    variables = {**TPL["Globals"]["Function"]["Environment"]["Variables"],
                 **resource.get("Environment", {}).get("Variables", {})}
    names = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID, "EdgeKeyValueStore.Arn": KVS_ARN, **aws.resources}
    layers = [layer or runtime.layer]
    if {"Ref": "PandasLayerArn"} in resource.get("Layers", []):
        layers.append(runtime.pandas_layer)
    env = {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC",
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "session",
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": f"media-shield-{function}", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12", "LAMBDA_TASK_ROOT": str(runtime.artifacts[function]),
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "_X_AMZN_TRACE_ID": "Root=1-67a1b2c3-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000", "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        # every AWS service to moto, the KeyValueStore data plane to the fake one (its endpoint gets the account
        # id put in front of the host, so it is reached as a proxy)
        "AWS_ENDPOINT_URL": aws.endpoint, "AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE": "http://kvs.example",
        "HTTP_PROXY": aws.proxy, "http_proxy": aws.proxy, "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **{name: resolved for name, value in variables.items() if (resolved := _resolve(value, names)) is not None},
    }
    event_file, result_file = tmp_path / f"{function}-event.json", tmp_path / f"{function}-result.json"
    event_file.write_text(json.dumps(event), encoding="utf-8")
    ran = subprocess.run(
        [str(runtime.python), "-I", str(RUNNER), str(runtime.artifacts[function]), ":".join(map(str, layers)),
         resource["Handler"], str(event_file), str(result_file)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(result_file.read_text(encoding="utf-8"))
    result["stdout"] = ran.stdout
    # the runtime's own SDK answered, not a copy in the function or its layers
    assert result["botocore"] == RUNTIME_SDK[1].split("==")[1], result["botocore_file"]
    return result


def response_of(result: dict[str, Any]) -> Any:
    assert "error" not in result, json.dumps(result["error"], indent=1)
    return result["response"]


def first_key_ring(now: int) -> str:
    """A signing-key secret value holding one current key (what the first rotation writes)."""
    policy = RotationPolicy(max_token_lifetime=3600)
    return plan_rotation(parse_secret_value("generated-by-cloudformation"), now, policy).pending.to_json()


@pytest.fixture(scope="module")
def signing_secret(aws: Aws) -> str:
    secrets = aws.client("secretsmanager")
    arn = secrets.create_secret(Name=f"media-shield/signing-key-{uuid.uuid4().hex[:8]}",
                                SecretString=first_key_ring(int(time.time())))["ARN"]
    aws.resources["SigningKeySecret"] = arn
    return arn


@pytest.fixture(scope="module")
def ledger_table(aws: Aws) -> str:
    name = f"media-shield-ledger-{uuid.uuid4().hex[:8]}"
    create_table(aws.client("dynamodb"), name)
    aws.resources["LedgerTable"] = name
    return name


def kvs_calls_were_sigv4a(kvs: FakeKeyValueStore, since: int) -> None:
    signed = kvs.authorizations[since:]
    assert signed, "the function made no KeyValueStore call"
    assert all(a.startswith(SIGV4A) for a in signed), signed
    assert set(kvs.region_sets[since:]) == {"*"}


# ---------------------------------------------------------------------------------------------------------------


def test_every_function_of_the_template_is_run_here() -> None:
    run_here = {"TokenIssuerFunction", "KeyRotationFunction", "LogTransformFunction", "RevocationApiFunction",
                "PrepareRunFunction", "ScoreFunction", "RecordVerdictsFunction", "PublishRevocationsFunction",
                "ReportRunFunction", "StreamConsumerFunction"}
    assert set(FUNCTIONS) == run_here


def test_key_rotation_publishes_the_key_to_the_store(runtime: Runtime, aws: Aws, signing_secret: str,
                                                     tmp_path: Path) -> None:
    secrets = aws.client("secretsmanager")
    lam = aws.client("lambda")
    role = aws.client("iam").create_role(RoleName=f"rotation-{uuid.uuid4().hex[:6]}",
                                         AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    function_arn = lam.create_function(FunctionName=f"rotation-{uuid.uuid4().hex[:6]}", Runtime="python3.12",
                                       Role=role, Handler="rotation.handler.handler",
                                       Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18})["FunctionArn"]
    secrets.rotate_secret(SecretId=signing_secret, RotationLambdaARN=function_arn,
                          RotationRules={"AutomaticallyAfterDays": 1}, RotateImmediately=False)
    stages = secrets.describe_secret(SecretId=signing_secret)["VersionIdsToStages"]
    (token,) = [version for version, labels in stages.items() if AWSPENDING in labels]
    since = len(aws.kvs.authorizations)
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        event = {"SecretId": signing_secret, "ClientRequestToken": token, "Step": step}
        response_of(invoke(runtime, aws, "KeyRotationFunction", event, tmp_path))
    current = parse_secret_value(secrets.get_secret_value(SecretId=signing_secret,
                                                          VersionStage=AWSCURRENT)["SecretString"]).current
    assert current is not None and aws.kvs.items[current.store_key] == current.encoded
    assert "UpdateKeys" in aws.kvs.operations
    kvs_calls_were_sigv4a(aws.kvs, since)


def test_the_issuer_reads_the_secret_and_the_store_and_records_in_the_ledger(
    runtime: Runtime, aws: Aws, signing_secret: str, ledger_table: str, tmp_path: Path
) -> None:
    since = len(aws.kvs.authorizations)
    event = http_event("POST", "/tokens", {"asset_url": "https://cdn.example.com/live/ch1/master.m3u8",
                                           "session_id": "session_runtime_0010", "path_prefixes": ["/live/ch1"],
                                           "bind": ["ip-prefix"]})
    response = response_of(invoke(runtime, aws, "TokenIssuerFunction", event, tmp_path))
    assert response["statusCode"] == 201, response
    body = json.loads(response["body"])
    assert body["url"].startswith("https://cdn.example.com/session_runtime_0010.")
    kvs_calls_were_sigv4a(aws.kvs, since)  # the issuer asks the store whether the session is revoked
    ledger = DynamoDbLedger(ledger_table, client=aws.client("dynamodb"))
    assert ledger.get("session_runtime_0010").issued_until == body["expires_at"]  # a transaction, by the runtime's SDK
    ledger.revoke("session_runtime_0010", "manual", int(time.time()) + 60, "manual:test")
    refused = response_of(invoke(runtime, aws, "TokenIssuerFunction", event, tmp_path))
    assert refused["statusCode"] == 409 and json.loads(refused["body"])["error"] == "revoked"
    assert ledger.get("session_runtime_0010").revocation.expires_at == body["expires_at"] + 300


def test_the_revocation_api_records_and_publishes(runtime: Runtime, aws: Aws, ledger_table: str,
                                                  tmp_path: Path) -> None:
    since = len(aws.kvs.authorizations)
    session = "session_runtime_0001"
    event = http_event("POST", "/revocations", {"session_id": session, "reason": "restreaming",
                                                "ttl_seconds": 3600})
    response = response_of(invoke(runtime, aws, "RevocationApiFunction", event, tmp_path))
    assert response["statusCode"] == 201 and json.loads(response["body"])["published"] is True, response
    assert aws.kvs.items[f"r:{session}"].endswith("|restreaming")
    item = aws.client("dynamodb").scan(TableName=ledger_table)["Items"]
    assert any(session in json.dumps(i) for i in item)
    kvs_calls_were_sigv4a(aws.kvs, since)


def test_the_log_transformation_parses_a_firehose_batch(runtime: Runtime, aws: Aws, tmp_path: Path) -> None:
    import base64

    values = {"timestamp": "1767225600.123", "c-ip": "198.51.100.7", "sc-status": "200",
              "cs-uri-stem": "/session_runtime_0002.x.y.z/live/ch1/seg_00001.ts"}
    line = "\t".join(values.get(f.name, "-") for f in DETECTION_FIELDS) + "\n"
    event = {"invocationId": "inv-1", "deliveryStreamArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/x",
             "region": REGION, "records": [
                 {"recordId": "1", "approximateArrivalTimestamp": 1767225600000,
                  "data": base64.b64encode(line.encode()).decode()},
                 {"recordId": "2", "approximateArrivalTimestamp": 1767225600000,
                  "data": base64.b64encode(b"not a log line\n").decode()}]}
    records = response_of(invoke(runtime, aws, "LogTransformFunction", event, tmp_path))["records"]
    assert [r["result"] for r in records] == ["Ok", "ProcessingFailed"]
    assert json.loads(base64.b64decode(records[0]["data"]))["c_ip"] == "198.51.100.7"


def test_the_detection_workflow_steps_revoke_through_the_store(runtime: Runtime, aws: Aws, ledger_table: str,
                                                                tmp_path: Path) -> None:
    bucket = f"media-shield-results-{uuid.uuid4().hex[:8]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    aws.resources.update({"AthenaResultsBucket": bucket, "LogsDatabase": "media_shield",
                          "LogsTable": "realtime_logs", "DetectionWorkGroup": "media-shield-detection"})
    corpus = tmp_path / "corpus"
    summary = generate_corpus(corpus, sessions=150, minutes=10, seed=11)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(summary.end_epoch))
    plan = response_of(invoke(runtime, aws, "PrepareRunFunction",
                              {"input": {"now": summary.end_epoch}, "execution": "runtime-1", "started": started},
                              tmp_path))
    athena = AthenaOnDuckDB(corpus)  # Athena's part: the UNLOAD of the features, written to moto's S3
    athena.table("media_shield.realtime_logs")
    athena.answer(plan["query"], plan["parameters"])
    scored = response_of(invoke(runtime, aws, "ScoreFunction", {"plan": plan}, tmp_path))
    assert scored["flagged"] > 0 and scored["pages"], scored
    recorded = [response_of(invoke(runtime, aws, "RecordVerdictsFunction",
                                   {"page": page, "run_id": plan["run_id"], "now": plan["now"]}, tmp_path))
                for page in scored["pages"]]
    since = len(aws.kvs.authorizations)
    published = response_of(invoke(runtime, aws, "PublishRevocationsFunction",
                                    {"run_id": plan["run_id"], "now": plan["now"], "pages": plan["pages"]}, tmp_path))
    revoked = [key for key in aws.kvs.items if key.startswith("r:")]
    assert sum(r["revoked"] for r in recorded) > 0 and revoked
    kvs_calls_were_sigv4a(aws.kvs, since)
    report = invoke(runtime, aws, "ReportRunFunction",
                    {"outcome": "succeeded", "score": scored, "recorded": recorded, "published": published}, tmp_path)
    response_of(report)
    assert '"SessionsRevoked"' in report["stdout"]  # EMF metrics on stdout, as CloudWatch reads them


def test_without_awscrt_in_the_layer_the_store_cannot_be_reached(runtime: Runtime, aws: Aws, ledger_table: str,
                                                                 tmp_path: Path) -> None:
    """What a real deploy did before awscrt was in the layer: the runtime has no awscrt, SigV4A cannot sign."""
    layer = tmp_path / "layer-without-awscrt"
    shutil.copytree(runtime.layer, layer)
    for path in [*layer.glob("awscrt*"), *layer.glob("_awscrt*")]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    since = len(aws.kvs.authorizations)
    event = http_event("POST", "/revocations", {"session_id": "session_runtime_0003", "reason": "test",
                                                "ttl_seconds": 60})
    result = invoke(runtime, aws, "RevocationApiFunction", event, tmp_path, layer=layer)
    response = response_of(result)
    assert json.loads(response["body"])["published"] is False, response
    assert "MissingDependencyException" in result["stdout"], result["stdout"][-2000:]
    assert len(aws.kvs.authorizations) == since  # nothing left the function unsigned


def test_the_stream_consumer_revokes_from_a_kinesis_batch(runtime: Runtime, aws: Aws, ledger_table: str,
                                                         tmp_path: Path) -> None:
    """Records from the Kinesis stream (moto), state in DynamoDB, the ledger, r:<sid> in the store: numpy and pyarrow
    from the pandas layer, the handler's clock for "now"."""
    import math

    from detection.stream.state_dynamodb import create_state_table
    from tests.detection.stream.records import kinesis_event, line, two_homes

    state = f"media-shield-stream-{uuid.uuid4().hex[:8]}"
    create_state_table(aws.client("dynamodb"), state)
    aws.resources["StreamStateTable"] = state
    kinesis = aws.client("kinesis")
    stream = f"realtime-logs-{uuid.uuid4().hex[:6]}"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    start = (math.floor(time.time() / 60) - 2) * 60
    session = "session_runtime_stream1"
    event = kinesis_event(kinesis, stream, [line(r) for r in two_homes(session, start=start, exp=start + 3600)])
    since = len(aws.kvs.authorizations)
    counts = response_of(invoke(runtime, aws, "StreamConsumerFunction", event, tmp_path))
    assert (counts["revoked"], counts["published"]) == (1, 1), counts
    assert aws.kvs.items[f"r:{session}"] == f"{start + 3600 + 300}|auto"
    kvs_calls_were_sigv4a(aws.kvs, since)
    assert DynamoDbLedger(ledger_table, client=aws.client("dynamodb")).get(session).revocation is not None
    assert aws.client("dynamodb").scan(TableName=state)["Count"] == 2  # one item per session and minute
