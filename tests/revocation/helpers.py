"""What the revocation tests share: session ids, verdicts, a DynamoDB ledger on a moto table."""

from __future__ import annotations

from typing import Any

from revocation.ledger import Ledger, Reason, Verdict
from revocation.ledger.dynamodb import DynamoDbLedger

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


HOUR = 3600


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
