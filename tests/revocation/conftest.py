"""Fixtures for the revocation tests: a fixed clock, moto DynamoDB (one mock for the package), ledgers, stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from edge.store import LocalEdgeStore
from revocation.ledger import Ledger, Reason, SqliteLedger, Verdict
from revocation.ledger.dynamodb import DynamoDbLedger, create_table
from tests.conftest import REGION, mocked_aws

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
HOUR = 3600


@pytest.fixture(scope="package")
def dynamodb() -> Iterator[Any]:
    """A DynamoDB client on moto, shared by the package (starting moto is the slow part; tables are per test)."""
    with mocked_aws():
        yield boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def table_name(dynamodb: Any) -> str:
    """A fresh ledger table, created from TABLE_DEFINITION (the definition the template uses)."""
    name = f"ledger-{uuid.uuid4().hex[:12]}"
    create_table(dynamodb, name)
    return name


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[SqliteLedger]:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    yield ledger
    ledger.close()


@pytest.fixture
def edge_store(tmp_path: Path) -> LocalEdgeStore:
    store = LocalEdgeStore(tmp_path / "store.json")
    store.put("k:kid-2026-01", "A" * 43)
    return store


def sid(n: int, prefix: str = "session") -> str:
    """A valid session id (16-32 of [A-Za-z0-9_-])."""
    return f"{prefix}_{n:010d}"


def verdict(session_id: str, run_id: str = "run-1", *, action: str = "revoke", decided_at: int = NOW,
            score: float = 0.93, **extra: Any) -> Verdict:
    return Verdict(
        session_id=session_id,
        run_id=run_id,
        score=score,
        reasons=(Reason(code="concurrent-ips", detail="7 IPs in 5 minutes"), Reason(code="asn-spread")),
        features={"ips": 7, "asns": [64500, 64501], "bytes": 1.5e9, "countries": ["DE", "FR"], "nested": {"a": 1}},
        action=action,
        decided_at=decided_at,
        **extra,
    )


def new_dynamodb_ledger(client: Any, table: str, **kwargs: Any) -> Ledger:
    return DynamoDbLedger(table, client=client, **kwargs)
