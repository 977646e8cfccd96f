"""Fixtures every test may use; the helpers they share are in tests/helpers.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest

from edge.node_runtime import EdgeFunctionRunner
from tests.helpers import (
    REGION,
    Captured,
    mocked_aws,
)


@pytest.fixture(scope="session")
def edge_runner() -> Iterator[EdgeFunctionRunner]:
    with EdgeFunctionRunner() as runner:
        yield runner


@pytest.fixture
def output(
    handler_module: ModuleType, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Callable[[], Captured]:
    """Read back what the handler module (the test module's ``handler_module`` fixture) wrote since the last read.

    EMF blobs are printed to stdout. The Logger's stream handler writes to the stdout of the moment the module was
    imported, which is not this test's; the records themselves reach pytest's log capture, and the Logger's own
    formatter renders each one exactly as the function writes it to CloudWatch Logs.
    """
    name = handler_module.logger.name
    caplog.set_level("INFO", logger=name)
    formatter = handler_module.logger.registered_formatter

    def read() -> Captured:
        printed = capsys.readouterr().out
        lines = [formatter.format(r) for r in caplog.records if r.name == name]
        caplog.clear()
        emf = [json.loads(line) for line in printed.splitlines() if line.startswith('{"_aws"')]
        return Captured(printed + "\n".join(lines), [json.loads(line) for line in lines], emf)

    return read


@pytest.fixture(scope="module")
def secretsmanager() -> Iterator[Any]:
    """A Secrets Manager client on moto, one per test module (starting moto is the slow part; secrets are per test)."""
    with mocked_aws():
        yield boto3.client("secretsmanager", region_name=REGION)
