"""The stream consumer on the local twins: what it revokes, when, and what it leaves alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from detection.scoring.config import DetectionConfig
from detection.stream.consumer import StreamConsumer
from detection.stream.scoring import STREAM_REASONS, stream_config
from detection.stream.state import MemoryState
from edge.store.local import LocalEdgeStore
from revocation.ledger.base import ISSUED_MARGIN_SECONDS
from revocation.ledger.sqlite import SqliteLedger
from tests.detection.stream.records import EXP, MINUTE, one_viewer, row, two_homes


@pytest.fixture
def consumer(tmp_path: Path) -> StreamConsumer:
    return StreamConsumer(MemoryState(), SqliteLedger(tmp_path / "ledger.sqlite"), LocalEdgeStore(tmp_path / "s.json"))


def feed(consumer: StreamConsumer, rows: list[dict], batch_seconds: float = 1.0) -> list:
    """The rows in one-second batches, each judged at its last record plus the batching window."""
    revoked, batch = [], []
    for values in sorted(rows, key=lambda r: r["timestamp"]):
        if batch and values["timestamp"] - batch[0]["timestamp"] >= batch_seconds:
            revoked += consumer.process(batch, batch[-1]["timestamp"] + batch_seconds).revocations
            batch = []
        batch.append(values)
    if batch:
        revoked += consumer.process(batch, batch[-1]["timestamp"] + batch_seconds).revocations
    return revoked


def test_one_token_in_two_countries_is_revoked_in_the_second_minute_and_published(consumer: StreamConsumer) -> None:
    (revoked,) = feed(consumer, two_homes("sess_stream_two_homes") + one_viewer("sess_stream_one_viewer"))
    assert revoked.session_id == "sess_stream_two_homes"
    # the batch that sees both countries in the second minute: the French player's fetch at +62.5 s, plus the window
    assert revoked.revoked_at == MINUTE + 62.5 + 1
    assert [r.code for r in revoked.reasons] == ["countries_at_once"]
    assert revoked.expires_at == EXP + ISSUED_MARGIN_SECONDS  # the latest token seen, plus the margin
    assert consumer.store.get("r:sess_stream_two_homes") == f"{EXP + ISSUED_MARGIN_SECONDS}|auto"
    history = consumer.ledger.get("sess_stream_two_homes")
    assert history.revocation.revoked_by.startswith("auto:stream-") and history.verdicts[0].action == "revoke"
    assert consumer.store.get("r:sess_stream_one_viewer") is None


def test_one_odd_minute_is_not_enough(consumer: StreamConsumer) -> None:
    assert feed(consumer, two_homes("sess_stream_one_minute", minutes=1)) == []


def test_a_retried_batch_and_a_record_delivered_twice_count_nothing_twice(consumer: StreamConsumer) -> None:
    rows = two_homes("sess_stream_retried", minutes=1)
    feed(consumer, rows)
    kept = consumer.state.window("sess_stream_retried", 0, 2**40)
    feed(consumer, rows + rows)  # the whole minute again, twice over
    assert [m.sets for m in consumer.state.window("sess_stream_retried", 0, 2**40)] == [m.sets for m in kept]
    assert consumer.store.get("r:sess_stream_retried") is None


def test_late_and_future_records_are_counted_and_left_out(consumer: StreamConsumer) -> None:
    now = MINUTE + 3600
    late = two_homes("sess_stream_late", minutes=3, start=now - 3600)  # an hour old: outside any window
    future = row("sess_stream_late", now + 3600, "198.51.100.7")
    outcome = consumer.process(late + [future], now)
    assert (outcome.late, outcome.future, outcome.sightings, outcome.revocations) == (len(late), 1, 0, [])


def test_a_session_revoked_already_is_not_judged_again(consumer: StreamConsumer) -> None:
    consumer.ledger.revoke("sess_stream_manual_1", "manual", MINUTE + 9999, "manual:ops", now=MINUTE)
    assert feed(consumer, two_homes("sess_stream_manual_1")) == []
    assert consumer.ledger.get("sess_stream_manual_1").revocation.reason == "manual"


def test_a_revocation_an_operator_lifted_is_not_made_again(consumer: StreamConsumer) -> None:
    feed(consumer, two_homes("sess_stream_lifted_1"))
    consumer.ledger.lift("sess_stream_lifted_1", "manual:ops", now=MINUTE + 200)
    consumer.store.delete("r:sess_stream_lifted_1")
    consumer.__post_init__()  # a new container: nothing cached
    assert feed(consumer, two_homes("sess_stream_lifted_1", start=MINUTE + 240)) == []
    assert consumer.store.get("r:sess_stream_lifted_1") is None


def test_the_fast_path_runs_the_concurrent_reasons_only() -> None:
    config = stream_config(DetectionConfig())
    enabled = {code for code in DetectionConfig.model_fields if hasattr(getattr(config, code), "enabled")
               and getattr(config, code).enabled}
    assert enabled == set(STREAM_REASONS)
    assert DetectionConfig().playback_rate.enabled  # the workflow's config is left as it was


def test_a_handover_between_networks_is_one_viewer(consumer: StreamConsumer) -> None:
    """Wi-Fi to LTE mid-minute, twice: two addresses in a minute, one after the other, one country."""
    rows = one_viewer("sess_stream_handover", minutes=1) + one_viewer(
        "sess_stream_handover", minutes=1, start=MINUTE + 60, ip="10.20.30.40")
    assert feed(consumer, rows) == []


def test_the_memory_state_counts_what_dynamodb_would_bill(consumer: StreamConsumer) -> None:
    feed(consumer, two_homes("sess_stream_billing_1", minutes=1))
    state = consumer.state
    (minute,) = state.window("sess_stream_billing_1", 0, 2**40)
    assert state.writes == 20  # 20 records, 2 s or more apart: 20 batches, one update of the minute each
    assert state.writes <= state.write_units <= state.writes * -(-minute.item_bytes() // 1024)
    assert 500 < minute.item_bytes() < 4000 and state.items == 1


def test_an_edge_store_that_refuses_leaves_the_revocation_in_the_ledger(consumer: StreamConsumer,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.store import EdgeStoreError

    def refuse(**_: object) -> None:
        raise EdgeStoreError("throttled")

    monkeypatch.setattr(consumer.store, "update", refuse)
    rows = two_homes("sess_stream_refused_1")
    outcomes = [consumer.process([r], r["timestamp"] + 1) for r in sorted(rows, key=lambda r: r["timestamp"])]
    (failed,) = [o for o in outcomes if o.revocations]
    assert failed.publish_error == "throttled" and failed.published == 0
    assert consumer.ledger.get("sess_stream_refused_1").revocation is not None  # the next publish writes it


def test_a_viewer_alone_is_written_once_a_minute_and_a_second_place_writes_everything(
        consumer: StreamConsumer) -> None:
    feed(consumer, one_viewer("sess_stream_alone_01", minutes=2))  # 20 records, each its own batch
    assert consumer.state.writes == 2  # the first record of each minute; the rest add no place, no player
    (first, _) = consumer.state.window("sess_stream_alone_01", 0, 2**40)
    assert len(first.values("requests")) == 1
    consumer.state.writes = 0
    feed(consumer, two_homes("sess_stream_joined_01", minutes=1))
    assert consumer.state.writes == 20  # the French player's first record makes the minute plural: all written


def test_an_instance_that_does_not_know_the_minute_writes(consumer: StreamConsumer) -> None:
    rows = one_viewer("sess_stream_unknown1", minutes=1)
    feed(consumer, rows[:3])
    consumer.__post_init__()  # a new container: it knows nothing of the minute
    feed(consumer, rows[3:4])
    assert consumer.state.writes == 2
    (minute,) = consumer.state.window("sess_stream_unknown1", 0, 2**40)
    assert len(minute.values("requests")) == 2
