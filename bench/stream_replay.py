#!/usr/bin/env python3
"""Time to revoke on the fast path, per kind of viewer, over an evaluation suite's corpora.

Each corpus is replayed through the stream consumer (``python -m detection replay``: timestamp order, batches of
the event source's batching window, a simulated clock) and its revocations are read against the corpus's labels:

- pirates: how many of each kind the stream revoked, and how long after the session's first request (p50, p95,
  max), and how long after the first batch that found one of its minutes odd;
- legit viewers: how many the stream revoked (the target is none).

    .venv/bin/python bench/stream_replay.py --suite tools/suites/audience-v2.json [--work out/suites]
        [--batch-seconds 1] [--json FILE]

The corpora are the suite's, generated under ``--work`` or reused from there (as ``evaluate --suite`` does).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detection.scoring.config import DetectionConfig  # noqa: E402
from detection.stream.replay import quantile, replay  # noqa: E402
from tools.suite import Suite, corpus_for  # noqa: E402


def replayed(corpus: Path, batch_seconds: float, config: DetectionConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    run = replay(corpus, batch_seconds=batch_seconds, config=config)
    labels = pd.read_csv(corpus / "labels.csv", dtype={"session_id": str})
    labels = labels[labels["requests_2xx"] > 0][["session_id", "label", "kind"]]
    revoked = pd.DataFrame(run.revocations, columns=["session_id", "first_seen", "revoked_at", "odd_minute_at"])
    joined = labels.merge(revoked, on="session_id", how="left")
    joined["to_revoke"] = joined["revoked_at"] - joined["first_seen"]
    joined["odd_to_revoke"] = joined["revoked_at"] - joined["odd_minute_at"]
    return joined, run.stats


def summary(joined: pd.DataFrame) -> dict[str, Any]:
    kinds = {}
    for (label, kind), group in joined.groupby(["label", "kind"], sort=True):
        hit = group[group["revoked_at"].notna()]
        kinds[kind] = {
            "label": label, "sessions": len(group), "revoked": len(hit),
            "to_revoke_p50": quantile(hit["to_revoke"].tolist(), 0.5),
            "to_revoke_p95": quantile(hit["to_revoke"].tolist(), 0.95),
            "to_revoke_max": quantile(hit["to_revoke"].tolist(), 1.0),
            "odd_minute_to_revoke_p95": quantile(hit["odd_to_revoke"].tolist(), 0.95),
        }  # fmt: skip
    pirates = joined[(joined["label"] == "pirate") & joined["revoked_at"].notna()]
    return {
        "kinds": kinds,
        "legit_revoked": int(((joined["label"] == "legit") & joined["revoked_at"].notna()).sum()),
        "legit": int((joined["label"] == "legit").sum()),
        "pirates_revoked": len(pirates),
        "pirates": int((joined["label"] == "pirate").sum()),
        "to_revoke_p50": quantile(pirates["to_revoke"].tolist(), 0.5),
        "to_revoke_p95": quantile(pirates["to_revoke"].tolist(), 0.95),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", required=True)
    parser.add_argument("--work", default="out/suites")
    parser.add_argument("--batch-seconds", type=float, default=1.0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    suite = Suite.load(args.suite)
    config = DetectionConfig.load(suite.config) if suite.config else DetectionConfig()
    parts, stats = [], []
    for seed in suite.seeds:
        corpus = corpus_for(suite, seed, args.work, log=lambda m: print(m, file=sys.stderr))
        print(f"replaying seed {seed}", file=sys.stderr)
        joined, run_stats = replayed(corpus, args.batch_seconds, config)
        parts.append(joined)
        stats.append({"seed": seed, **run_stats})
    result = {"suite": suite.name, "batch_seconds": args.batch_seconds, **summary(pd.concat(parts)), "runs": stats}
    print(f"suite {suite.name}: {result['pirates_revoked']} of {result['pirates']} pirates revoked by the stream, "
          f"{result['legit_revoked']} of {result['legit']} legit; first request to revocation p50 "
          f"{result['to_revoke_p50']} s, p95 {result['to_revoke_p95']} s")
    print(f"{'kind':22} {'label':7} {'revoked':>12} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'odd->rev p95':>12}")
    for kind, k in result["kinds"].items():
        print(f"{kind:22} {k['label']:7} {k['revoked']:>5} / {k['sessions']:<5} {k['to_revoke_p50'] or '-':>7} "
              f"{k['to_revoke_p95'] or '-':>7} {k['to_revoke_max'] or '-':>7} {k['odd_minute_to_revoke_p95'] or '-':>12}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
