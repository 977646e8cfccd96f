"""The real detection state machine executed by moto (see conftest.py): happy path and failure paths."""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Any

import pytest

from edge.store import LocalEdgeStore
from edge.store.base import EdgeStoreError
from revocation.ledger import open_ledger_setting
from revocation.service import revoke
from revocation.token_expiry import DEFAULT_MARGIN_SECONDS
from tests.detection.workflow_helpers import Pipeline, entered_states, label_column

pytestmark = pytest.mark.slow


def revocations(store_path) -> dict[str, str]:
    return LocalEdgeStore(store_path).items("r:")


def test_a_run_revokes_the_planted_pirates_and_nobody_else(pipeline: Pipeline, corpus: dict[str, Any]) -> None:
    run = pipeline.run({"now": corpus["end"]})

    assert run["status"] == "SUCCEEDED", run.get("cause")
    states = entered_states(run["history"])
    assert states[:3] == ["Prepare", "StartQuery", "WaitForQuery"]
    assert states.count("GetQueryState") >= 2  # moto's query goes QUEUED -> RUNNING -> SUCCEEDED over the polls
    assert {"Score", "RecordVerdicts", "RecordPage", "Publish", "ReportRun"} <= set(states)
    # Athena got the UNLOAD of features.sql over the Glue table, with the window as execution parameters
    (statement,) = pipeline.athena.statements
    assert "media_shield.realtime_logs" in statement and "FORMAT = 'PARQUET'" in statement.upper().replace('"', "'")

    score = run["output_json"]["score"]
    assert score["flagged"] >= 5 and len(score["pages"]) == -(-score["flagged"] // 4)  # PAGE_SIZE=4
    assert len(pipeline.calls("record")) == len(score["pages"])

    truth = label_column(corpus, "label")
    revoked = {key.removeprefix("r:") for key in revocations(pipeline.store_path)}
    assert revoked, "nothing reached the edge store"
    assert all(truth[s] == "pirate" for s in revoked), "a legit viewer was revoked"
    ledger = open_ledger_setting(pipeline.ledger_table)
    assert {r.session_id for r in ledger.active_revocations(now=corpus["end"])} == revoked
    # every revocation lasts until its session's token expires plus the margin: exp read from the logged JWT
    expiry = label_column(corpus, "exp")
    for key, value in revocations(pipeline.store_path).items():
        assert int(value.split("|", 1)[0]) == expiry[key.removeprefix("r:")] + DEFAULT_MARGIN_SECONDS

    report = run["output_json"]["report"]
    assert report["outcome"] == "succeeded" and report["SessionsRevoked"] == len(revoked)
    assert pipeline.alerts() == []


def test_a_rerun_of_the_same_window_changes_nothing(pipeline: Pipeline, corpus: dict[str, Any]) -> None:
    first = pipeline.run({"now": corpus["end"]})
    store_after_first = revocations(pipeline.store_path)
    second = pipeline.run({"now": corpus["end"]})

    assert first["status"] == second["status"] == "SUCCEEDED"
    assert revocations(pipeline.store_path) == store_after_first
    assert second["output_json"]["report"]["SessionsRevoked"] == 0
    assert second["output_json"]["published"]["puts"] == 0


def test_an_empty_window_succeeds_and_still_publishes(pipeline: Pipeline, corpus: dict[str, Any]) -> None:
    run = pipeline.run({"now": corpus["start"] - 7200})  # two hours before the first record

    assert run["status"] == "SUCCEEDED", run.get("cause")
    states = entered_states(run["history"])
    assert "NothingToRecord" in states and "RecordVerdicts" not in states
    assert "Publish" in states  # expired and lifted revocations are cleaned up every run
    assert run["output_json"]["score"]["flagged"] == 0
    assert pipeline.calls("record") == []
    # the same summary as a scored window's, all zero
    score = run["output_json"]["score"]
    assert {k: score[k] for k in ("sessions_scored", "revoke", "flag", "monitor", "reasons", "pages")} == {
        "sessions_scored": 0, "revoke": 0, "flag": 0, "monitor": 0, "reasons": {}, "pages": []
    }


def test_a_failed_query_alerts_and_fails_the_run(pipeline: Pipeline, corpus: dict[str, Any]) -> None:
    pipeline.athena.fail_with = "HIVE_BAD_DATA"

    run = pipeline.run({"now": corpus["end"]})

    assert run["status"] == "FAILED"
    states = entered_states(run["history"])
    assert "QueryFailed" in states and "ReportFailure" in states and "NotifyFailure" in states
    assert "Score" not in states and "Publish" not in states
    (failure,) = pipeline.calls("report")
    assert failure["outcome"] == "failed" and failure["error"]["Error"] == "AthenaQueryFailed"
    (message,) = pipeline.alerts()
    assert "AthenaQueryFailed" in message
    assert revocations(pipeline.store_path) == {}


def test_a_query_that_never_finishes_is_stopped(pipeline: Pipeline, corpus: dict[str, Any]) -> None:
    pipeline.athena.never_finish = True

    run = pipeline.run({"now": corpus["end"]})

    assert run["status"] == "FAILED"
    states = entered_states(run["history"])
    assert states.count("GetQueryState") == 20  # MAX_POLLS
    assert "StopQuery" in states
    assert "AthenaQueryTimedOut" in pipeline.alerts()[0]


def test_a_keyvaluestore_conflict_is_retried_and_keeps_the_other_writer(
    pipeline: Pipeline, corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Key rotation writes k: while the publisher updates: the ETag conflict is retried, both changes survive."""
    from detection.workflow import handlers as workflow_handler

    rotation = LocalEdgeStore(pipeline.store_path)
    conflicts = []

    class RacedStore(LocalEdgeStore):
        def _write_session(self):  # noqa: ANN202 - like a KeyValueStore: no lock, writers race on the ETag
            return nullcontext()

        def _apply(self, etag, batch):  # noqa: ANN001 - the adapter's hook
            if not conflicts:
                conflicts.append(etag)
                rotation.put("k:kid-rotated", "B" * 43)  # another writer gets in first: the ETag changes
            return super()._apply(etag, batch)

    monkeypatch.setattr(workflow_handler, "_store", lambda spec: RacedStore(spec))

    run = pipeline.run({"now": corpus["end"]})

    assert run["status"] == "SUCCEEDED", run.get("cause")
    assert conflicts, "the conflict was not injected"
    entries = LocalEdgeStore(pipeline.store_path).items()
    assert entries["k:kid-rotated"] == "B" * 43
    assert any(key.startswith("r:") for key in entries)
    assert run["output_json"]["published"]["retries"] >= 1


def _seed_manual_revocations(pipeline: Pipeline, now: float, count: int) -> set[str]:
    ledger = open_ledger_setting(pipeline.ledger_table)
    sessions = {f"manual_{n:012d}" for n in range(count)}
    for session_id in sessions:
        revoke(ledger, None, session_id, "resale", ttl=3600, by="ops@example.com", now=now)
    return sessions


def test_a_partial_publish_is_retried_by_the_workflow(
    pipeline: Pipeline, corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store takes the first 50-key update and fails the second: PublishError, the workflow retries publish,
    the retry sends only what is missing."""
    from detection.workflow import handlers as workflow_handler

    manual = _seed_manual_revocations(pipeline, corpus["end"] - 60, 70)
    calls = []

    class FlakyStore(LocalEdgeStore):
        def _apply(self, etag, batch):  # noqa: ANN001
            calls.append(len(batch.puts) if hasattr(batch, "puts") else 0)
            if len(calls) == 2:
                raise EdgeStoreError("injected: the store went away after the first update")
            return super()._apply(etag, batch)

    monkeypatch.setattr(workflow_handler, "_store", lambda spec: FlakyStore(spec))

    run = pipeline.run({"now": corpus["end"]})

    assert run["status"] == "SUCCEEDED", run.get("cause")
    assert len(pipeline.calls("publish")) == 2
    failed = [e for e in run["history"] if e["type"].endswith("Failed")]
    assert any("PublishError" in json.dumps(e, default=str) for e in failed)
    assert manual <= {key.removeprefix("r:") for key in revocations(pipeline.store_path)}


def test_a_publish_that_keeps_failing_alerts_and_the_next_run_repairs_the_store(
    pipeline: Pipeline, corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from detection.workflow import handlers as workflow_handler

    manual = _seed_manual_revocations(pipeline, corpus["end"] - 60, 70)
    broken = {"on": True}
    calls = []

    class BrokenStore(LocalEdgeStore):
        def _apply(self, etag, batch):  # noqa: ANN001
            calls.append(1)
            if broken["on"] and len(calls) > 1:
                raise EdgeStoreError("injected: the store keeps failing after the first update")
            return super()._apply(etag, batch)

    monkeypatch.setattr(workflow_handler, "_store", lambda spec: BrokenStore(spec))

    failed = pipeline.run({"now": corpus["end"]})

    assert failed["status"] == "FAILED"
    assert "PublishError" in pipeline.alerts()[0]
    ledger = open_ledger_setting(pipeline.ledger_table)
    in_ledger = {r.session_id for r in ledger.active_revocations(now=corpus["end"])}
    assert manual <= in_ledger  # nothing lost: the ledger is the truth
    assert not in_ledger <= {key.removeprefix("r:") for key in revocations(pipeline.store_path)}

    broken["on"] = False
    repaired = pipeline.run({"now": corpus["end"] + 60})

    assert repaired["status"] == "SUCCEEDED", repaired.get("cause")
    assert in_ledger <= {key.removeprefix("r:") for key in revocations(pipeline.store_path)}
