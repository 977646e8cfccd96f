"""``python -m detection replay``: the stream consumer on a log folder, with a simulated clock and the local twins.

The records are fed in timestamp order, in batches the way Lambda's Kinesis event source makes them: a batch closes
when it spans ``batch_seconds`` (the batching window) or holds :data:`MAX_BATCH_RECORDS`. Each batch is judged at the
time of its last record plus the batching window (when Lambda would have been called), so ``revoked_at`` is on the
simulated clock: what a real deployment adds to it (Kinesis, the Lambda call, the edge store's propagation) is in the
README. The ledger and the edge store are local twins in a temporary folder, the state is :class:`MemoryState`.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detection.logs.reader import InputError, open_logs
from detection.logs.schema import Field
from detection.scoring.config import DetectionConfig
from detection.stream.consumer import WINDOW_MINUTES, StreamConsumer
from detection.stream.evidence import session_of
from detection.stream.state import MemoryState
from edge.store.local import LocalEdgeStore
from revocation.ledger.sqlite import SqliteLedger

#: Lambda reads at most 10 000 records from a shard per call.
MAX_BATCH_RECORDS = 10_000
DEFAULT_BATCH_SECONDS = 1.0
#: The columns the stream reads (those the log configuration has).
COLUMNS = ("timestamp", "c_ip", "asn", "c_country", "cs_user_agent", "sc_status", "cs_uri_stem", "cmcd_session_id",
           "x_edge_request_id")  # fmt: skip


@dataclass
class Replay:
    revocations: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"revocations": self.revocations, "stats": self.stats}


def _records(path: str | os.PathLike[str], fields: Any, until: float | None) -> Iterator[dict[str, Any]]:
    with open_logs(path, fields=fields) as logs:
        present = set(logs.execute("SELECT * FROM logs LIMIT 0").column_names)
        if "timestamp" not in present or "cs_uri_stem" not in present:
            raise InputError("replay needs the timestamp and cs-uri-stem fields")
        columns = ", ".join(f'"{c}"' for c in COLUMNS if c in present)
        where = "WHERE \"timestamp\" IS NOT NULL" + ("" if until is None else f' AND "timestamp" < {float(until)!r}')
        query = f'SELECT {columns} FROM logs {where} ORDER BY "timestamp"'
        # the sort reads every file inside execute(), where a damaged gzip file is repaired (LogInput.run)
        reader = logs.run(lambda con: con.sql(query).to_arrow_reader(50_000))
        for chunk in reader:
            for row in chunk.to_pylist():
                yield {k: v for k, v in row.items() if v is not None}


def batches(records: Iterable[dict[str, Any]], batch_seconds: float) -> Iterator[list[dict[str, Any]]]:
    """Records in timestamp order -> Kinesis-sized batches (see the module docstring)."""
    batch: list[dict[str, Any]] = []
    for row in records:
        if batch and (row["timestamp"] - batch[0]["timestamp"] >= batch_seconds or len(batch) >= MAX_BATCH_RECORDS):
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def replay(
    logs: str | os.PathLike[str],
    *,
    fields: str | os.PathLike[str] | Sequence[str | Field] | None = None,
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    now: float | None = None,
    config: DetectionConfig | None = None,
    window_minutes: int = WINDOW_MINUTES,
) -> Replay:
    """Feed the records before ``now`` (all of them without it) through the stream consumer (module docstring)."""
    if not batch_seconds > 0 or not math.isfinite(batch_seconds):
        raise InputError(f"--batch-seconds must be a positive number of seconds, not {batch_seconds!r}")
    started = time.perf_counter()
    first_seen: dict[str | None, float] = {}
    evidence_at: dict[str, float] = {}  # the first batch that found the session's minute odd
    out = Replay()
    totals: Counter[str] = Counter()
    count = 0
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        state = MemoryState()
        ledger = SqliteLedger(Path(tmp) / "ledger.sqlite")
        store = LocalEdgeStore(Path(tmp) / "store.json")
        consumer = StreamConsumer(state, ledger, store, config or DetectionConfig(), window_minutes=window_minutes)
        pruned_at = -math.inf
        try:
            for batch in batches(_records(logs, fields, now), batch_seconds):
                count += 1
                for row in batch:
                    first_seen.setdefault(session_of(row.get("cs_uri_stem")), row["timestamp"])
                clock = batch[-1]["timestamp"] + batch_seconds
                outcome = consumer.process(batch, clock)
                totals.update(outcome.counts())
                for sid in outcome.candidates:
                    evidence_at.setdefault(sid, clock)
                for revoked in outcome.revocations:
                    out.revocations.append({
                        "session_id": revoked.session_id,
                        "first_seen": first_seen.get(revoked.session_id),
                        "revoked_at": round(revoked.revoked_at, 3),
                        "reasons": [r.code for r in revoked.reasons],
                        "odd_minute_at": round(evidence_at[revoked.session_id], 3),
                    })
                if clock - pruned_at >= 60:
                    state.prune(clock)
                    pruned_at = clock
        finally:
            ledger.close()
    delays = [r["revoked_at"] - r["first_seen"] for r in out.revocations if r["first_seen"] is not None]
    out.stats = {
        "batches": count,
        **totals,
        "state_writes": state.writes,
        "state_write_units": state.write_units,
        "state_items": state.items,
        "state_reads": state.reads,
        "batch_seconds": batch_seconds,
        "seconds_to_revoke": _quantiles(delays),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if not count:
        raise InputError(f"no log record in {logs}" + ("" if now is None else f" before {now}"))
    return out


def quantile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of ``values`` (any order), to a tenth; None for no values."""
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 1) if ordered else None


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    return {"p50": quantile(values, 0.5), "p95": quantile(values, 0.95), "max": quantile(values, 1.0)}
