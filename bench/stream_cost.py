#!/usr/bin/env python3
"""What the fast path costs a month at a given request rate, from what a replay measured.

    .venv/bin/python bench/stream_cost.py --replay REPLAY.json [--rates 1000,50000,500000] [--record-bytes 600]

REPLAY.json: what ``python -m detection replay --out`` wrote, or ``bench/stream_replay.py --json`` (its runs added).

A replay (``python -m detection replay``) counts the state's updates and what DynamoDB would bill for them (write
units: 1 KB of the larger of the item before and after each update), and the window reads; per record, those
scale with the request rate (the mix of viewers staying the same). The rest follows from the AWS price list
(us-east-1, on-demand, list prices in December 2026; check the pricing pages before you budget):

- Kinesis enhanced fan-out: per consumer-shard hour, and per GB pushed to the consumer; a shard takes 1 000 records
  a second (the real-time log stream exists already for Firehose: only the fan-out is the fast path's);
- Lambda (arm64): per request and per GB-second; with a one-second batching window each shard calls it about once
  a second, for about as long as the batch's DynamoDB updates take (``--update-ms`` each, ``--threads`` at a time);
- DynamoDB on demand: per write and read request unit, and the table's storage (the window plus the margin).

And what the same work would cost on Amazon Managed Service for Apache Flink, keyed by session with the minutes'
sets in Flink's own state (no per-record write anywhere): KPU-hours for ``--records-per-kpu`` records a second each
(an assumption, not a measurement: see the README), plus one KPU for the application, plus running storage.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

HOURS = 730.0
SECONDS = HOURS * 3600
PRICE = {
    "efo_shard_hour": 0.015,
    "efo_gb": 0.013,
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second": 0.0000133334,
    "dynamodb_wru": 0.625 / 1e6,
    "dynamodb_rru": 0.125 / 1e6,
    "dynamodb_gb_month": 0.25,
    "flink_kpu_hour": 0.11,
    "flink_storage_gb_month": 0.10,
}
RECORDS_PER_SHARD = 1000


def monthly(rate: float, measured: dict[str, float], args: argparse.Namespace) -> dict[str, float]:
    shards = math.ceil(rate / RECORDS_PER_SHARD)
    efo = shards * HOURS * PRICE["efo_shard_hour"] + rate * args.record_bytes * SECONDS / 1e9 * PRICE["efo_gb"]
    updates = rate * measured["writes_per_record"]
    calls = shards / args.batch_seconds
    busy = min(args.batch_seconds, updates / calls * args.update_ms / 1000 / args.threads + 0.05)
    lam = calls * SECONDS * (PRICE["lambda_request"] + busy * args.memory_gb * PRICE["lambda_gb_second"])
    writes = rate * measured["write_units_per_record"] * SECONDS * PRICE["dynamodb_wru"]
    reads = rate * measured["reads_per_record"] * SECONDS * PRICE["dynamodb_rru"] * 2  # ~2 KB per window read
    stored = updates / max(measured["writes_per_item"], 1) * (args.window_minutes * 60 + 600) * 2e-6
    dynamodb = writes + reads + stored * PRICE["dynamodb_gb_month"]
    kpus = math.ceil(rate / args.records_per_kpu) + 1
    flink = kpus * HOURS * PRICE["flink_kpu_hour"] + kpus * 50 * PRICE["flink_storage_gb_month"]
    return {"rate": rate, "shards": shards, "lambda_calls_per_month": calls * SECONDS, "updates_per_second": updates,
            "efo": efo, "lambda": lam, "dynamodb": dynamodb, "lambda_path": efo + lam + dynamodb,
            "flink_kpus": kpus, "flink_path": efo + flink}


def measured_of(replay: dict) -> dict[str, float]:
    """Per-record figures of a replay's stats, or of all the runs of a ``bench/stream_replay.py --json`` file."""
    runs = replay.get("runs") or [replay["stats"]]
    stats = {key: sum(run[key] for run in runs) for key in ("records", "state_writes", "state_write_units",
                                                             "state_reads", "state_items")}
    records = stats["records"]
    return {
        "writes_per_record": stats["state_writes"] / records,
        "write_units_per_record": stats["state_write_units"] / records,
        "reads_per_record": stats["state_reads"] / records,
        "writes_per_item": stats["state_writes"] / max(stats["state_items"], 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replay", required=True, help="a replay's JSON (python -m detection replay --out)")
    parser.add_argument("--rates", default="1000,50000,500000", help="requests a second, comma-separated")
    parser.add_argument("--record-bytes", type=float, default=600, help="a log record's size (600: the corpus)")
    parser.add_argument("--batch-seconds", type=float, default=1.0)
    parser.add_argument("--update-ms", type=float, default=8.0, help="one UpdateItem's round trip")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--memory-gb", type=float, default=1.0)
    parser.add_argument("--window-minutes", type=int, default=10)
    parser.add_argument("--records-per-kpu", type=float, default=10_000)
    args = parser.parse_args(argv)
    measured = measured_of(json.loads(Path(args.replay).read_text(encoding="utf-8")))
    print("measured per record: " + ", ".join(f"{k} {v:.3f}" for k, v in measured.items()))
    print(f"{'requests/s':>11} {'shards':>6} {'updates/s':>10} {'EFO $':>9} {'Lambda $':>9} {'DynamoDB $':>11} "
          f"{'Lambda path $':>14} {'Flink KPU':>9} {'Flink path $':>13}")
    for rate in (float(r) for r in args.rates.split(",")):
        m = monthly(rate, measured, args)
        print(f"{rate:>11,.0f} {m['shards']:>6} {m['updates_per_second']:>10,.0f} {m['efo']:>9,.0f} {m['lambda']:>9,.0f} "
              f"{m['dynamodb']:>11,.0f} {m['lambda_path']:>14,.0f} {m['flink_kpus']:>9} {m['flink_path']:>13,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
