"""The publisher reconciles the ledger (SQLite twin) into the edge store (JSON twin), the way it runs in AWS."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge.store import LocalEdgeStore, RetryPolicy
from edge.store.base import Batch, EdgeStoreError, RetryableStoreError, StoreState, entry_size
from revocation.ledger import Revocation, SqliteLedger
from revocation.publisher import PublishError, priority, publish
from tests.revocation.helpers import HOUR, NOW, sid

KEY = ("k:kid-2026-01", "A" * 43)
NO_SLEEP = RetryPolicy(max_attempts=3, sleep=lambda _: None, rng=lambda: 0.0)


class RecordingStore(LocalEdgeStore):
    """The JSON twin, recording each write call's batch; ``fail_on`` makes chosen calls fail."""

    def __init__(self, path: Path, *, fail_on: dict[int, str] | None = None, retry: RetryPolicy = NO_SLEEP) -> None:
        super().__init__(path, retry=retry)
        self.batches: list[Batch] = []
        self.attempts = 0
        self.fail_on = fail_on or {}  # attempt number (1-based) -> "fatal" | "conflict"

    def _apply(self, etag: str, batch: Batch) -> StoreState:
        self.attempts += 1
        mode = self.fail_on.get(self.attempts)
        if mode == "fatal":
            raise EdgeStoreError("UpdateKeys failed: InternalServerException (injected)")
        if mode == "conflict":
            raise RetryableStoreError("ETag changed (injected)", reason="conflict")
        state = super()._apply(etag, batch)
        self.batches.append(batch)
        return state


@pytest.fixture
def store(tmp_path: Path) -> RecordingStore:
    s = RecordingStore(tmp_path / "store.json")
    s.put(*KEY)
    s.batches.clear()
    s.attempts = 0
    return s


def revoke_many(ledger: SqliteLedger, count: int, *, start: int = 0, expires: int = NOW + HOUR) -> list[str]:
    ids = [sid(n) for n in range(start, start + count)]
    for n, session_id in enumerate(ids):
        ledger.revoke(session_id, "auto", expires + n, "auto:run-1", now=NOW)
    return ids


def revocations_in(store: LocalEdgeStore) -> dict[str, str]:
    return store.items("r:")


def test_new_revocations_are_added(sqlite_ledger: SqliteLedger, store: RecordingStore) -> None:
    ids = revoke_many(sqlite_ledger, 3)
    result = publish(sqlite_ledger, store, now=NOW)
    assert revocations_in(store) == {f"r:{s}": f"{NOW + HOUR + n}|auto" for n, s in enumerate(ids)}
    assert store.get(KEY[0]) == KEY[1]
    assert (result.puts, result.deletes, result.unchanged, result.calls, result.skipped) == (3, 0, 0, 1, ())
    assert result.complete and not result.capacity_warning
    assert result.bytes == store.usage().bytes and result.fraction == pytest.approx(result.bytes / (5 * 1024 * 1024))


def test_expired_lifted_and_unknown_entries_are_deleted_but_keys_are_never_touched(
    sqlite_ledger: SqliteLedger, store: RecordingStore
) -> None:
    sqlite_ledger.revoke(sid(1), "auto", NOW + 60, "auto:run-1", now=NOW)  # will have expired
    sqlite_ledger.revoke(sid(2), "auto", NOW + HOUR, "auto:run-1", now=NOW)  # will be lifted
    sqlite_ledger.revoke(sid(3), "auto", NOW + HOUR, "auto:run-1", now=NOW)  # stays
    publish(sqlite_ledger, store, now=NOW)
    sqlite_ledger.lift(sid(2), "manual:alice", now=NOW + 100)
    store.update(puts={
        f"r:{sid(9)}": f"{NOW + HOUR}|auto",  # the ledger does not know it
        "r:garbage": "not even a revocation",
        "k:kid-2025-12": "B" * 43,  # an older signing key, still needed by live tokens
        "x:other": "someone else's entry",
    })
    result = publish(sqlite_ledger, store, now=NOW + 120)
    assert revocations_in(store) == {f"r:{sid(3)}": f"{NOW + HOUR}|auto"}
    assert store.items("k:") == {KEY[0]: KEY[1], "k:kid-2025-12": "B" * 43}
    assert store.get("x:other") == "someone else's entry"
    assert (result.puts, result.deletes, result.unchanged) == (0, 4, 1)


def test_a_changed_value_is_overwritten(sqlite_ledger: SqliteLedger, store: RecordingStore) -> None:
    revoke_many(sqlite_ledger, 1)
    store.put(f"r:{sid(0)}", "0|tampered")
    result = publish(sqlite_ledger, store, now=NOW)
    assert store.get(f"r:{sid(0)}") == f"{NOW + HOUR}|auto" and result.puts == 1


def test_writes_go_in_calls_of_at_most_50_keys(sqlite_ledger: SqliteLedger, store: RecordingStore) -> None:
    revoke_many(sqlite_ledger, 120)
    result = publish(sqlite_ledger, store, now=NOW)
    assert [len(b) for b in store.batches] == [50, 50, 20]
    assert (result.calls, result.puts) == (3, 120)
    assert len(revocations_in(store)) == 120


def test_a_second_run_with_nothing_new_makes_no_calls(sqlite_ledger: SqliteLedger, store: RecordingStore) -> None:
    revoke_many(sqlite_ledger, 60)
    publish(sqlite_ledger, store, now=NOW)
    raw = store.path.read_bytes()
    store.batches.clear()
    again = publish(sqlite_ledger, store, now=NOW + 1)
    assert (again.calls, again.puts, again.deletes, again.unchanged) == (0, 0, 0, 60)
    assert store.batches == [] and store.path.read_bytes() == raw


@pytest.mark.parametrize("failure", ["fatal", "conflict"])
def test_a_partial_failure_loses_nothing_and_the_next_run_repairs(
    sqlite_ledger: SqliteLedger, store: RecordingStore, failure: str
) -> None:
    ids = revoke_many(sqlite_ledger, 120)
    # The second call fails for good (a fatal error, or conflicts until the retries run out).
    store.fail_on = {2: failure} if failure == "fatal" else {2: "conflict", 3: "conflict", 4: "conflict"}
    with pytest.raises(PublishError, match="next publish run repairs") as caught:
        publish(sqlite_ledger, store, now=NOW)
    partial = caught.value.result
    assert (partial.calls, partial.puts) == (1, 50) and partial.errors
    assert ("gave up" in partial.errors[0]) == (failure == "conflict")
    assert len(revocations_in(store)) == 50  # the first call, all of it, and nothing of the rest
    assert len(sqlite_ledger.active_revocations(NOW)) == 120  # the ledger is untouched
    store.fail_on = {}
    repaired = publish(sqlite_ledger, store, now=NOW + 1)
    assert (repaired.puts, repaired.unchanged, repaired.calls) == (70, 50, 2)
    assert set(revocations_in(store)) == {f"r:{s}" for s in ids}


def test_a_conflict_is_retried_within_the_run(sqlite_ledger: SqliteLedger, store: RecordingStore) -> None:
    revoke_many(sqlite_ledger, 3)
    store.fail_on = {1: "conflict"}
    result = publish(sqlite_ledger, store, now=NOW)
    assert (result.calls, result.retries, result.puts) == (1, 1, 3)


def test_capacity_warning_past_80_percent(sqlite_ledger: SqliteLedger, store: RecordingStore,
                                         caplog: pytest.LogCaptureFixture) -> None:
    ids = revoke_many(sqlite_ledger, 10)
    per_entry = entry_size(f"r:{ids[0]}", f"{NOW + HOUR}|auto")
    total = entry_size(*KEY) + 10 * per_entry
    store.limit_bytes = int(total / 0.79)  # 79 %: quiet
    quiet = publish(sqlite_ledger, store, now=NOW, reserve_bytes=0)
    assert not quiet.capacity_warning and quiet.fraction < 0.8
    store.limit_bytes = int(total / 0.85)  # 85 %: loud
    with caplog.at_level(logging.WARNING, logger="revocation.publisher"):
        loud = publish(sqlite_ledger, store, now=NOW, reserve_bytes=0)
    assert loud.capacity_warning and loud.fraction == pytest.approx(0.85, abs=0.01) and loud.complete
    assert any("85." in r.getMessage() or "84." in r.getMessage() for r in caplog.records)
    assert publish(sqlite_ledger, store, now=NOW, reserve_bytes=0, warn_fraction=0.9).capacity_warning is False


def test_when_the_store_cannot_hold_everything_the_highest_priority_goes_first(
    sqlite_ledger: SqliteLedger, store: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    # 8 automatic revocations, expiring 1..8 hours from now, and one manual one expiring soonest of all.
    for n in range(8):
        sqlite_ledger.revoke(sid(n), "auto", NOW + (n + 1) * HOUR, "auto:run-1", now=NOW)
    sqlite_ledger.revoke(sid(99), "manual", NOW + 60, "manual:alice", now=NOW)
    per_entry = entry_size(f"r:{sid(0)}", f"{NOW + HOUR}|auto")
    store.limit_bytes = entry_size(*KEY) + 5 * per_entry + 3  # room for five
    with caplog.at_level(logging.ERROR, logger="revocation.publisher"):
        result = publish(sqlite_ledger, store, now=NOW, reserve_bytes=0)
    published = {k.removeprefix("r:") for k in revocations_in(store)}
    assert published == {sid(99), sid(7), sid(6), sid(5), sid(4)}  # manual first, then the latest expiring
    assert result.skipped == (sid(0), sid(1), sid(2), sid(3))
    assert result.capacity_warning and not result.complete and (result.desired, result.published) == (9, 5)
    assert any("NOT published" in r.getMessage() for r in caplog.records)
    # Room comes back (a lifted revocation): the next run publishes the next in line.
    sqlite_ledger.lift(sid(7), "manual:bob", now=NOW + 1)
    again = publish(sqlite_ledger, store, now=NOW + 2, reserve_bytes=0)
    assert {k.removeprefix("r:") for k in revocations_in(store)} == {sid(99), sid(6), sid(5), sid(4), sid(3)}
    assert again.skipped == (sid(0), sid(1), sid(2))


def test_room_is_reserved_for_signing_keys(sqlite_ledger: SqliteLedger, store: RecordingStore) -> None:
    revoke_many(sqlite_ledger, 10)
    store.limit_bytes = store.usage().bytes + 10 * 60 + 1000
    result = publish(sqlite_ledger, store, now=NOW, reserve_bytes=1000 + 5 * 60)
    assert result.published < 10 and result.skipped
    assert store.usage().bytes <= store.limit_bytes - 1000  # a rotation can still add keys


def test_a_nearly_full_store_deletes_before_it_puts(sqlite_ledger: SqliteLedger, store: RecordingStore) -> None:
    # One call holds puts and deletes together and is sized as a whole; a write spanning several calls is not.
    old = revoke_many(sqlite_ledger, 40, expires=NOW + 60)  # expire soon
    publish(sqlite_ledger, store, now=NOW)
    store.limit_bytes = store.usage().bytes + 10  # full: the old entries use all the room
    new = revoke_many(sqlite_ledger, 40, start=100)
    store.batches.clear()
    result = publish(sqlite_ledger, store, now=NOW + 120, reserve_bytes=0)
    assert [(len(b.puts), len(b.deletes)) for b in store.batches] == [(0, 40), (40, 0)]
    assert set(revocations_in(store)) == {f"r:{s}" for s in new} and result.complete
    assert not set(revocations_in(store)) & {f"r:{s}" for s in old}


class StaleLedger(SqliteLedger):
    """A ledger whose listing lags behind its writes (as a DynamoDB index may, for a moment)."""

    def __init__(self, path: Path, stale: list[Revocation]) -> None:
        super().__init__(path)
        self.stale = stale

    def active_revocations(self, now: float | None = None) -> list[Revocation]:
        return list(self.stale)


def test_fresh_records_override_a_lagging_listing(tmp_path: Path, store: RecordingStore) -> None:
    ledger = StaleLedger(tmp_path / "l.sqlite", [])
    created = ledger.revoke(sid(1), "manual", NOW + HOUR, "manual:alice", now=NOW).revocation
    publish(ledger, store, now=NOW, fresh=[created])  # the listing does not show it yet
    assert store.get(f"r:{sid(1)}") == f"{NOW + HOUR}|manual"
    ledger.stale = [created]
    lifted = ledger.lift(sid(1), "manual:alice", now=NOW + 5)
    assert lifted is not None
    publish(ledger, store, now=NOW + 5, fresh=[lifted])  # the listing still shows it active
    assert store.get(f"r:{sid(1)}") is None
    ledger.close()


def test_priority_order() -> None:
    def rev(n: int, expires: int, by: str, created: int = NOW) -> Revocation:
        return Revocation(session_id=sid(n), reason="auto", expires_at=expires, revoked_by=by,
                          created_at=created, updated_at=created)

    ordered = sorted(
        [rev(1, NOW + 10, "auto:r"), rev(2, NOW + 99, "auto:r"), rev(3, NOW + 5, "manual:a"),
         rev(4, NOW + 99, "auto:r", created=NOW - 5)],
        key=priority,
    )
    assert [r.session_id for r in ordered] == [sid(3), sid(4), sid(2), sid(1)]


def test_bad_arguments(sqlite_ledger: SqliteLedger, store: RecordingStore) -> None:
    with pytest.raises(ValueError):
        publish(sqlite_ledger, store, warn_fraction=0)
    with pytest.raises(ValueError):
        publish(sqlite_ledger, store, reserve_bytes=-1)
