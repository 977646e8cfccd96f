"""What the tests share: the repository's root, the shared vectors, Lambda events and contexts, reading back what a handler wrote, AWS on moto."""

from __future__ import annotations

import base64
import importlib
import json
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest

from edge.binding import Viewer
from edge.verify import MappingReader

ROOT = Path(__file__).resolve().parents[1]
VECTORS_FILE = ROOT / "tests" / "vectors" / "edge_vectors.json"


def load_vectors() -> dict[str, Any]:
    return json.loads(VECTORS_FILE.read_text(encoding="utf-8"))


def vector_viewer(vector: dict[str, Any]) -> Viewer:
    return Viewer.of(vector["viewer_ip"] or None, vector["headers"])


def store_reader(store_document: dict[str, Any]) -> MappingReader:
    return MappingReader({entry["key"]: entry["value"] for entry in store_document["data"]})


REGION = "us-east-1"


ACCOUNT_ID = "123456789012"


DEFAULT_CALLER = f"arn:aws:iam::{ACCOUNT_ID}:role/playback-api"


def powertools_env(service: str) -> dict[str, str]:
    """Powertools' variables for a handler under test: its own service name and namespace, no tracing."""
    return {
        "POWERTOOLS_SERVICE_NAME": service,
        "POWERTOOLS_METRICS_NAMESPACE": "MediaShieldTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def set_environment(monkeypatch: pytest.MonkeyPatch, values: Mapping[str, str | None]) -> None:
    """Set each variable, or unset it where the value is ``None``."""
    for name, value in values.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@contextmanager
def imported_handler(module_name: str, env: Mapping[str, str]) -> Iterator[ModuleType]:
    """The handler module, (re)imported with ``env`` set: Powertools reads it when the module makes its Logger and
    Metrics. The module's ``runtime`` cache is cleared on the way out."""
    with pytest.MonkeyPatch.context() as mp:
        set_environment(mp, env)
        if module_name in sys.modules:
            module = importlib.reload(sys.modules[module_name])
        else:
            module = importlib.import_module(module_name)
        yield module
        module.runtime.cache_clear()


@dataclass(frozen=True)
class FakeLambdaContext:
    """What Lambda passes a handler as ``context`` (the attributes Powertools reads)."""

    function_name: str = "test-function"
    remaining_ms: int = 10_000
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_stream_name: str = "2026/01/01/[$LATEST]abcdef"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def http_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    query: str = "",
    source_ip: str = "192.0.2.44",
    caller: str = DEFAULT_CALLER,
    base64_body: bool = False,
) -> dict[str, Any]:
    """A Lambda function URL event with IAM auth (payload format 2.0); ``body`` other than a string is sent as JSON."""
    headers = dict(headers or {})
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    if base64_body and text is not None:
        text = base64.b64encode(text.encode()).decode()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"content-type": "application/json", "host": "abc.lambda-url.us-east-1.on.aws", **headers},
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "abcdefghijklmnop",
            "authorizer": {
                "iam": {
                    "accessKey": "AKIAEXAMPLE",
                    "accountId": ACCOUNT_ID,
                    "callerId": "AIDAEXAMPLE",
                    "userArn": caller,
                    "userId": "AIDAEXAMPLE",
                }
            },
            "domainName": "abcdefghijklmnop.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghijklmnop",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", "aws-sdk"),
            },
            "requestId": "req-0001",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000,
        },
        "isBase64Encoded": base64_body,
    }
    if query:
        event["queryStringParameters"] = dict(part.split("=", 1) for part in query.split("&"))
    if text is not None:
        event["body"] = text
    return event


def body_of(response: Mapping[str, Any]) -> Any:
    """The JSON body of a handler's HTTP response."""
    return json.loads(response["body"])


class Captured(NamedTuple):
    """What a handler wrote: ``text`` (all of it), ``logs`` (log lines as JSON) and ``emf`` (EMF metric blobs)."""

    text: str
    logs: list[dict[str, Any]]
    emf: list[dict[str, Any]]


def metric_names(emf: Iterable[Mapping[str, Any]]) -> list[str]:
    """The metric names in EMF blobs, in order (one per metric per blob)."""
    return [m["Name"] for blob in emf for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]


def with_metric(emf: Iterable[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """The EMF blobs that carry metric ``name``."""
    return [blob for blob in emf if name in metric_names([blob])]


def firehose_parse(lines: Iterable[bytes], fields: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The lines as the Firehose transformation parses them, one by one: ``(rows with every field's column, lines
    rejected per kind)`` (blank lines give neither)."""
    from detection.logs import firehose as firehose_transform

    rows: list[dict[str, Any]] = []
    kinds: dict[str, int] = {}
    for line in lines:
        try:
            row = firehose_transform.parse_line(line, fields)
        except firehose_transform.LineError as exc:
            kinds[exc.kind] = kinds.get(exc.kind, 0) + 1
            continue
        if row is not None:
            rows.append({f.column: row.get(f.column) for f in fields})
    return rows, kinds


@contextmanager
def mocked_aws(region: str = REGION, config: dict[str, Any] | None = None) -> Iterator[None]:
    """moto's ``mock_aws`` (with moto's ``config``) with fake credentials and ``region`` in the environment (and no
    profile), for the block."""
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
            mp.setenv(name, "testing")
        mp.setenv("AWS_DEFAULT_REGION", region)
        mp.delenv("AWS_PROFILE", raising=False)
        with mock_aws(config=config):
            yield


def new_secret(client: Any, value: str, prefix: str = "media-shield/signing-key") -> tuple[str, str]:
    """A secret with a fresh name under ``prefix``: ``(name, arn)``."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    return name, client.create_secret(Name=name, SecretString=value)["ARN"]
