"""The stream consumer against the rest of detection: the same per-minute counts as features.sql on a generated
corpus, and the replay command's contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from detection.detect import detect
from detection.logs.schema import DETECTION_FIELDS
from detection.networks import default_registry
from detection.stream.evidence import MinuteState, session_features, sighting
from detection.stream.replay import _records, batches, replay
from tests.helpers import ROOT

PLACES = ("ips", "prefixes", "asns", "countries")


@pytest.fixture(scope="module")
def stream_minutes(corpus: dict[str, Any]) -> dict[str, list[MinuteState]]:
    registry = default_registry()
    minutes: dict[tuple[str, int], MinuteState] = {}
    for values in _records(corpus["path"], None, None):
        seen = sighting(values, registry)
        if seen is not None:
            minutes.setdefault((seen.session_id, seen.minute), MinuteState(seen.session_id, seen.minute)).add(seen)
    sessions: dict[str, list[MinuteState]] = {}
    for (session_id, _), state in minutes.items():
        sessions.setdefault(session_id, []).append(state)
    return sessions


def test_the_stream_counts_each_minute_as_features_sql_does(corpus: dict[str, Any],
                                                            stream_minutes: dict[str, list[MinuteState]]) -> None:
    run = detect(corpus["path"], window_minutes=60, now=corpus["end"] + 60, keep_features=True)
    sql = {row["session_id"]: {m["minute"]: m for m in row["per_minute"]} for row in run.features.to_pylist()}
    assert set(sql) == set(stream_minutes)
    compared = shared = 0
    for session_id, minutes in stream_minutes.items():
        for entry in session_features(session_id, minutes)["per_minute"]:
            expected = sql[session_id][entry["minute"]]
            # a fetch is a (channel, address, number): one address repeating a number counts once here
            assert {k: entry[k] for k in PLACES} == {k: expected[k] or 0 for k in PLACES}, session_id
            assert entry["segments"] <= expected["segments"] and entry["shared_segments"] <= expected["shared_segments"]
            assert entry["cmcd_sessions"] == (expected["cmcd_sessions"] or 0), session_id
            compared += 1
            shared += entry["shared_segments"] > 0
    assert compared > 1000 and shared > 0


def test_batches_close_on_the_batching_window() -> None:
    rows = [{"timestamp": t} for t in (0.0, 0.4, 0.99, 1.0, 2.5, 2.6)]
    assert [[r["timestamp"] for r in b] for b in batches(rows, 1.0)] == [[0.0, 0.4, 0.99], [1.0], [2.5, 2.6]]


def test_replay_writes_the_contract_with_revoked_at_on_the_simulated_clock(corpus: dict[str, Any],
                                                                            tmp_path: Path) -> None:
    out = tmp_path / "replay.json"
    done = subprocess.run([sys.executable, "-m", "detection", "replay", "--logs", str(corpus["path"]),
                           "--batch-seconds", "2", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text(encoding="utf-8"))
    assert set(document) == {"revocations", "stats"} and document["revocations"]
    labels = {line.split(",")[0]: line.split(",")[1] for line in
              (corpus["path"] / "labels.csv").read_text(encoding="utf-8").splitlines()[1:]}
    for revoked in document["revocations"]:
        assert set(revoked) >= {"session_id", "first_seen", "revoked_at", "reasons"}
        assert labels[revoked["session_id"]] == "pirate", revoked  # no legit viewer on the fast path
        assert revoked["first_seen"] < revoked["revoked_at"] <= corpus["end"] + 2
    stats = document["stats"]
    assert stats["records"] > 0 and stats["batches"] > 0 and stats["revoked"] == len(document["revocations"])
    assert "revoked by the stream" in done.stderr


def test_revoked_at_is_the_last_record_of_the_batch_plus_the_window(tmp_path: Path) -> None:
    from tests.detection.stream.records import MINUTE, line, two_homes

    rows = two_homes("sess_replay_clock_01")
    (tmp_path / "logs.tsv").write_bytes(b"".join(line(r) for r in rows))
    fields = ",".join(f.name for f in DETECTION_FIELDS)
    (revoked,) = replay(tmp_path / "logs.tsv", fields=fields, batch_seconds=3).revocations
    assert revoked["revoked_at"] == MINUTE + 62.5 + 3 and revoked["first_seen"] == MINUTE + 0.5


@pytest.mark.parametrize(("arguments", "message"), [
    (["--logs", "/nonexistent/logs", "--out", "-"], "nonexistent"),
    (["--logs", ".", "--batch-seconds", "0", "--out", "-"], "batching window"),
    (["--logs", ".", "--now", "yesterday", "--out", "-"], "epoch seconds"),
])
def test_replay_bad_input_exits_2_with_one_message(arguments: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "detection", "replay", *arguments], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
