"""Fixtures for the revocation tests: a fixed clock, moto DynamoDB (one mock for the package), ledgers, stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from edge.store import LocalEdgeStore
from revocation.ledger import SqliteLedger
from revocation.ledger.dynamodb import create_table
from tests.helpers import REGION, mocked_aws


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
