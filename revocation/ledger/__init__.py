"""The ledger of verdicts and revocations: DynamoDB in AWS, SQLite locally, one contract.

>>> ledger = open_ledger("ledger.sqlite")            # or open_ledger("dynamodb:media-shield-ledger")
>>> ledger.revoke("sess_0123456789abcdef", "manual", 1767225600, "manual:alice")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

from revocation.ledger.base import (
    ACTOR_PATTERN,
    REASON_CODE_PATTERN,
    RUN_ID_PATTERN,
    SESSION_ID_PATTERN,
    Ledger,
    LedgerConflictError,
    LedgerError,
    Reason,
    RecordResult,
    Revocation,
    RevokeOutcome,
    RevokeResult,
    SessionHistory,
    SessionRefused,
    Verdict,
    plan_revoke,
)
from revocation.ledger.dynamodb import DynamoDbLedger
from revocation.ledger.sqlite import SqliteLedger

__all__ = [
    "ACTOR_PATTERN",
    "REASON_CODE_PATTERN",
    "RUN_ID_PATTERN",
    "SESSION_ID_PATTERN",
    "DynamoDbLedger",
    "Ledger",
    "LedgerConflictError",
    "LedgerError",
    "Reason",
    "RecordResult",
    "Revocation",
    "RevokeOutcome",
    "RevokeResult",
    "SessionHistory",
    "SessionRefused",
    "SqliteLedger",
    "Verdict",
    "open_ledger",
    "open_ledger_setting",
    "plan_revoke",
]

DYNAMODB_PREFIX = "dynamodb:"
SQLITE_PREFIX = "sqlite:"


def open_ledger(spec: str | os.PathLike[str], *, client: Any = None) -> Ledger:
    """The ledger ``spec`` names: ``dynamodb:<table name>`` (or a table ARN), ``sqlite:<path>``, or a path to a
    ``.sqlite`` / ``.sqlite3`` / ``.db`` file (the local twin, created if missing)."""
    text = os.fspath(spec)
    if text.startswith(DYNAMODB_PREFIX) or (text.startswith("arn:") and ":dynamodb:" in text):
        table = text.removeprefix(DYNAMODB_PREFIX)
        if table.startswith("arn:"):
            table = table.rsplit("/", 1)[-1]
        return DynamoDbLedger(table, client=client)
    if text.startswith(SQLITE_PREFIX):
        return SqliteLedger(text.removeprefix(SQLITE_PREFIX))
    if text.lower().endswith((".sqlite", ".sqlite3", ".db")) or text == ":memory:":
        return SqliteLedger(text)
    raise LedgerError(
        f"cannot open ledger {text!r}: give a .sqlite file (local twin), sqlite:<path>, or dynamodb:<table name>"
    )


def open_ledger_setting(value: str, *, client: Any = None) -> Ledger:
    """The ledger a Lambda's ``LEDGER_TABLE`` names: a bare table name is the DynamoDB table (what the template
    passes); ``sqlite:``, ``dynamodb:`` and ARNs are taken as :func:`open_ledger` takes them."""
    text = value.strip()
    if not text.startswith((SQLITE_PREFIX, DYNAMODB_PREFIX, "arn:")):
        text = DYNAMODB_PREFIX + text
    return open_ledger(text, client=client)
