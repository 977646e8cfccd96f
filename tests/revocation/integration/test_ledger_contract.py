"""The ledger contract, run against both backends: SQLite (a temporary file) and DynamoDB (moto, the table created
from TABLE_DEFINITION). DynamoDB queries use small pages here, so every listing below follows LastEvaluatedKey."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from revocation.ledger import Ledger, Reason, RevokeOutcome, SessionRefused, SqliteLedger, Verdict
from revocation.ledger.dynamodb import DynamoDbLedger
from tests.revocation.helpers import HOUR, NOW, sid, verdict

PAGE = 3
DAY = 24 * HOUR


@dataclass
class Backend:
    name: str
    ledger: Ledger
    reopen: Callable[[], Ledger]
    queries: list[int]  # Query calls made (DynamoDB), to show paging happened


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite"
        opened: list[Ledger] = []

        def reopen() -> Ledger:
            opened.append(SqliteLedger(path))
            return opened[-1]

        yield Backend("sqlite", reopen(), reopen, [])
        for ledger in opened:
            ledger.close()
        return
    client = request.getfixturevalue("dynamodb")
    table = request.getfixturevalue("table_name")
    queries: list[int] = []

    def count(**kwargs: Any) -> None:
        queries.append(1)

    client.meta.events.register("before-call.dynamodb.Query", count)
    try:
        yield Backend(
            "dynamodb",
            DynamoDbLedger(table, client=client, page_size=PAGE),
            lambda: DynamoDbLedger(table, client=client, page_size=PAGE),
            queries,
        )
    finally:
        client.meta.events.unregister("before-call.dynamodb.Query", count)


# ---------------------------------------------------------------------------------------------------------------
# Verdicts.


def test_verdicts_round_trip_with_reasons_and_features(backend: Backend) -> None:
    ledger = backend.ledger
    v = verdict(sid(1), score=0.1 + 0.2)
    assert ledger.record_verdicts("run-1", [v]).recorded == 1
    history = ledger.get(sid(1))
    assert history.verdicts == (v,)
    stored = history.verdicts[0]
    assert stored.score == 0.1 + 0.2  # exact, not rounded
    assert stored.reasons[0] == Reason(code="concurrent-ips", detail="7 IPs in 5 minutes")
    assert stored.features["asns"] == [64500, 64501] and stored.features["nested"] == {"a": 1}
    assert history.revocation is None


def test_re_running_the_same_window_changes_nothing(backend: Backend) -> None:
    ledger = backend.ledger
    verdicts = [verdict(sid(n)) for n in range(5)]
    assert ledger.record_verdicts("run-1", verdicts).model_dump() == {"recorded": 5, "unchanged": 0}
    before = [ledger.get(sid(n)) for n in range(5)]
    # Same window again, even with a slightly different score and time: the first record stays.
    again = [verdict(sid(n), score=0.5, decided_at=NOW + 60) for n in range(5)]
    assert ledger.record_verdicts("run-1", again).model_dump() == {"recorded": 0, "unchanged": 5}
    assert [ledger.get(sid(n)) for n in range(5)] == before
    assert ledger.flagged(NOW - HOUR, NOW + HOUR) == sorted(verdicts, key=lambda v: v.session_id)


def test_duplicate_session_in_one_call_is_recorded_once(backend: Backend) -> None:
    result = backend.ledger.record_verdicts("run-1", [verdict(sid(1)), verdict(sid(1), score=0.2)])
    assert (result.recorded, result.unchanged) == (1, 1)
    assert backend.ledger.get(sid(1)).verdicts[0].score == 0.93


def test_history_keeps_every_run_oldest_first(backend: Backend) -> None:
    ledger = backend.ledger
    ledger.record_verdicts("run-2", [verdict(sid(1), "run-2", decided_at=NOW + 60, action="flag")])
    ledger.record_verdicts("run-1", [verdict(sid(1), "run-1", decided_at=NOW)])
    history = ledger.get(sid(1))
    assert [v.run_id for v in history.verdicts] == ["run-1", "run-2"]
    assert [v.action for v in history.verdicts] == ["revoke", "flag"]


def test_verdicts_as_mappings_take_the_run_id(backend: Backend) -> None:
    row = verdict(sid(1)).model_dump(exclude={"run_id"})
    assert backend.ledger.record_verdicts("run-7", [row]).recorded == 1
    assert backend.ledger.get(sid(1)).verdicts[0].run_id == "run-7"


def test_verdict_of_another_run_or_malformed_is_refused(backend: Backend) -> None:
    with pytest.raises(ValueError, match="belongs to run"):
        backend.ledger.record_verdicts("run-2", [verdict(sid(1), "run-1")])
    with pytest.raises(ValueError, match="run id"):
        backend.ledger.record_verdicts("bad run id", [])
    with pytest.raises(ValidationError):
        backend.ledger.record_verdicts("run-1", [{"session_id": "short", "score": 1, "action": "revoke",
                                                  "decided_at": NOW}])
    assert not backend.ledger.get(sid(1)).known


def test_non_finite_features_are_stored_as_null(backend: Backend) -> None:
    v = verdict(sid(1)).model_copy(update={})
    v = Verdict.model_validate({**v.model_dump(), "features": {"ratio": math.nan, "big": math.inf, "t": (1, 2)}})
    backend.ledger.record_verdicts("run-1", [v])
    assert backend.ledger.get(sid(1)).verdicts[0].features == {"ratio": None, "big": None, "t": [1, 2]}


def test_flagged_window_is_inclusive_and_ordered_across_days(backend: Backend) -> None:
    ledger = backend.ledger
    times = [NOW - 3 * DAY, NOW - DAY - 1, NOW - 10, NOW, NOW + 5]
    for n, t in enumerate(times):
        ledger.record_verdicts(f"run-{n}", [verdict(sid(n), f"run-{n}", decided_at=t)])
    assert [v.decided_at for v in ledger.flagged(NOW - 2 * DAY, NOW)] == [NOW - DAY - 1, NOW - 10, NOW]
    assert [v.session_id for v in ledger.flagged(NOW - 10, NOW - 10)] == [sid(2)]
    assert ledger.flagged(NOW + 6, NOW + HOUR) == []
    assert ledger.flagged(NOW, NOW - 1) == []  # an empty range
    assert len(ledger.flagged(0, NOW + HOUR)) == 5


# ---------------------------------------------------------------------------------------------------------------
# Revocations.


def test_revoke_creates_an_active_revocation(backend: Backend) -> None:
    result = backend.ledger.revoke(sid(1), "auto", NOW + HOUR, "auto:run-1", now=NOW)
    assert result.outcome is RevokeOutcome.CREATED and result.changed
    r = result.revocation
    assert (r.expires_at, r.reason, r.revoked_by, r.created_at, r.lifted_at) == (NOW + HOUR, "auto", "auto:run-1", NOW, None)
    assert r.store_key == f"r:{sid(1)}" and r.store_value == f"{NOW + HOUR}|auto"
    assert backend.ledger.active_revocations(NOW) == [r]
    assert backend.ledger.get(sid(1)).revocation == r


def test_a_second_revoke_never_shortens(backend: Backend) -> None:
    ledger = backend.ledger
    first = ledger.revoke(sid(1), "auto", NOW + 2 * HOUR, "auto:run-1", now=NOW).revocation
    same = ledger.revoke(sid(1), "auto", NOW + 2 * HOUR, "auto:run-2", now=NOW + 60)
    shorter = ledger.revoke(sid(1), "manual", NOW + HOUR, "manual:alice", now=NOW + 120)
    assert same.outcome is shorter.outcome is RevokeOutcome.UNCHANGED
    assert ledger.get(sid(1)).revocation == first
    longer = ledger.revoke(sid(1), "restreaming", NOW + 3 * HOUR, "auto:run-3", now=NOW + 180)
    assert longer.outcome is RevokeOutcome.EXTENDED
    stored = ledger.get(sid(1)).revocation
    assert stored == longer.revocation
    assert (stored.expires_at, stored.reason, stored.revoked_by) == (NOW + 3 * HOUR, "restreaming", "auto:run-3")
    assert (stored.created_at, stored.updated_at) == (NOW, NOW + 180)  # first revoked at NOW, extended later
    assert ledger.active_revocations(NOW + 180) == [stored]


def test_an_expired_revocation_is_replaced(backend: Backend) -> None:
    ledger = backend.ledger
    ledger.revoke(sid(1), "auto", NOW + 60, "auto:run-1", now=NOW)
    again = ledger.revoke(sid(1), "auto", NOW + HOUR, "auto:run-9", now=NOW + 60)
    assert again.outcome is RevokeOutcome.REACTIVATED
    assert (again.revocation.created_at, again.revocation.revoked_by) == (NOW + 60, "auto:run-9")
    assert ledger.active_revocations(NOW + 61) == [again.revocation]


def test_active_means_not_lifted_and_expiring_later_than_now(backend: Backend) -> None:
    ledger = backend.ledger
    for n in range(4):
        ledger.revoke(sid(n), "auto", NOW + 100 * (n + 1), "auto:run-1", now=NOW)
    ledger.lift(sid(3), "manual:alice", now=NOW + 1)
    assert [r.session_id for r in ledger.active_revocations(NOW)] == [sid(0), sid(1), sid(2)]
    assert [r.session_id for r in ledger.active_revocations(NOW + 199)] == [sid(1), sid(2)]
    assert [r.session_id for r in ledger.active_revocations(NOW + 200)] == [sid(2)]  # expires_at == now: over
    assert ledger.active_revocations(NOW + 300) == []


def test_lift_is_idempotent_and_unknown_sessions_are_none(backend: Backend) -> None:
    ledger = backend.ledger
    ledger.revoke(sid(1), "auto", NOW + HOUR, "auto:run-1", now=NOW)
    lifted = ledger.lift(sid(1), "manual:alice", now=NOW + 10)
    assert lifted is not None and (lifted.lifted_at, lifted.lifted_by) == (NOW + 10, "manual:alice")
    assert ledger.lift(sid(1), "manual:bob", now=NOW + 20) == lifted
    assert ledger.get(sid(1)).revocation == lifted
    assert ledger.active_revocations(NOW + 30) == []
    assert ledger.lift(sid(2), "manual:alice", now=NOW) is None


def test_a_lift_holds_against_automatic_revokes_but_not_manual_ones(backend: Backend) -> None:
    ledger = backend.ledger
    ledger.revoke(sid(1), "auto", NOW + HOUR, "auto:run-1", now=NOW)
    lifted = ledger.lift(sid(1), "manual:alice", now=NOW + 10)
    # The next detection run flags the same session again: the operator's decision stands.
    again = ledger.revoke(sid(1), "auto", NOW + 2 * HOUR, "auto:run-2", now=NOW + 60)
    assert again.outcome is RevokeOutcome.SUPPRESSED and not again.changed
    assert ledger.get(sid(1)).revocation == lifted
    # An operator may revoke it again by hand.
    manual = ledger.revoke(sid(1), "manual", NOW + 2 * HOUR, "manual:bob", now=NOW + 120)
    assert manual.outcome is RevokeOutcome.REACTIVATED
    assert manual.revocation.lifted_at is None and ledger.active_revocations(NOW + 120) == [manual.revocation]


def test_after_the_lifted_revocation_would_have_ended_automatic_revokes_apply_again(backend: Backend) -> None:
    ledger = backend.ledger
    ledger.revoke(sid(1), "auto", NOW + HOUR, "auto:run-1", now=NOW)
    ledger.lift(sid(1), "manual:alice", now=NOW + 10)
    later = ledger.revoke(sid(1), "auto", NOW + 3 * HOUR, "auto:run-5", now=NOW + HOUR)
    assert later.outcome is RevokeOutcome.REACTIVATED


def test_bad_revocations_are_refused(backend: Backend) -> None:
    ledger = backend.ledger
    with pytest.raises(ValueError, match="future"):
        ledger.revoke(sid(1), "auto", NOW, "auto:run-1", now=NOW)
    with pytest.raises(ValueError, match="actor"):
        ledger.revoke(sid(1), "auto", NOW + 60, "alice", now=NOW)
    with pytest.raises(ValueError, match="session id"):
        ledger.revoke("too-short", "auto", NOW + 60, "auto:run-1", now=NOW)
    with pytest.raises(ValueError, match="reason code"):
        ledger.revoke(sid(1), "has|pipe", NOW + 60, "auto:run-1", now=NOW)
    assert ledger.active_revocations(NOW) == []


def test_unknown_session_has_an_empty_history(backend: Backend) -> None:
    history = backend.ledger.get(sid(42))
    assert (history.verdicts, history.revocation, history.known) == ((), None, False)


# ---------------------------------------------------------------------------------------------------------------
# Paging and durability.


def test_listings_return_every_item_past_one_page(backend: Backend) -> None:
    ledger = backend.ledger
    count = 4 * PAGE + 1
    for n in range(count):
        ledger.revoke(sid(n), "auto", NOW + HOUR + n, "auto:run-1", now=NOW)
    ledger.record_verdicts("run-1", [verdict(sid(n), decided_at=NOW + n) for n in range(count)])
    for n in range(count):  # a long history for one session too
        ledger.record_verdicts(f"run-{n + 2}", [verdict(sid(0), f"run-{n + 2}", decided_at=NOW + 100 + n)])
    backend.queries.clear()
    assert [r.session_id for r in ledger.active_revocations(NOW)] == [sid(n) for n in range(count)]
    if backend.name == "dynamodb":
        assert len(backend.queries) >= math.ceil(count / PAGE)  # paged, not one call
    assert len(ledger.flagged(NOW, NOW + HOUR)) == 2 * count
    assert len(ledger.get(sid(0)).verdicts) == count + 1


def test_a_new_connection_sees_everything(backend: Backend) -> None:
    backend.ledger.record_verdicts("run-1", [verdict(sid(1))])
    revoked = backend.ledger.revoke(sid(1), "auto", NOW + HOUR, "auto:run-1", now=NOW).revocation
    other = backend.reopen()
    assert other.get(sid(1)).verdicts == (verdict(sid(1)),)
    assert other.active_revocations(NOW) == [revoked]


# ---------------------------------------------------------------------------------------------------------------
# Issued tokens: a revocation covers every token of the session; a revoked session gets no new one.


def test_the_latest_issued_expiry_is_kept(backend: Backend) -> None:
    ledger = backend.ledger
    assert ledger.record_issue(sid(1), NOW + 4 * HOUR, now=NOW) == NOW + 4 * HOUR
    assert ledger.record_issue(sid(1), NOW + HOUR, now=NOW + 60) == NOW + 4 * HOUR  # an earlier one never lowers it
    assert ledger.record_issue(sid(1), NOW + 8 * HOUR, now=NOW + 120) == NOW + 8 * HOUR
    assert ledger.get(sid(1)).issued_until == NOW + 8 * HOUR
    assert backend.reopen().get(sid(1)).issued_until == NOW + 8 * HOUR
    assert ledger.get(sid(2)).issued_until is None


def test_a_revocation_lasts_until_the_latest_issued_token_expires_plus_the_margin(backend: Backend) -> None:
    ledger = backend.ledger
    ledger.record_issue(sid(1), NOW + 24 * HOUR, now=NOW)  # issued early, never used in a detection window
    # detection saw only a token expiring in an hour: the revocation still outlasts the 24-hour one
    result = ledger.revoke(sid(1), "auto", NOW + HOUR + 300, "auto:run-1", now=NOW + 60)
    assert result.revocation.expires_at == NOW + 24 * HOUR + 300
    manual = ledger.revoke(sid(2), "manual", NOW + 600, "manual:alice", now=NOW)
    assert manual.revocation.expires_at == NOW + 600  # nothing issued: as asked
    assert ledger.revoke(sid(1), "auto", NOW + 2 * HOUR, "auto:run-2", now=NOW + 120).outcome is RevokeOutcome.UNCHANGED


def test_a_session_whose_revocation_no_operator_lifted_gets_no_new_token(backend: Backend) -> None:
    ledger = backend.ledger
    ledger.record_issue(sid(1), NOW + HOUR, now=NOW)
    ledger.revoke(sid(1), "auto", NOW + 600, "auto:run-1", now=NOW)
    with pytest.raises(SessionRefused):
        ledger.record_issue(sid(1), NOW + 2 * HOUR, now=NOW + 60)  # in force
    with pytest.raises(SessionRefused):
        ledger.record_issue(sid(1), NOW + 5 * HOUR, now=NOW + 3 * HOUR)  # expired, never lifted
    assert ledger.get(sid(1)).issued_until == NOW + HOUR  # a refused issue records nothing
    ledger.lift(sid(1), "manual:alice", now=NOW + 3 * HOUR)
    assert ledger.record_issue(sid(1), NOW + 5 * HOUR, now=NOW + 3 * HOUR) == NOW + 5 * HOUR
    ledger.revoke(sid(1), "manual", NOW + 4 * HOUR, "manual:bob", now=NOW + 3 * HOUR + 60)  # revoked by hand again
    with pytest.raises(SessionRefused):
        ledger.record_issue(sid(1), NOW + 6 * HOUR, now=NOW + 3 * HOUR + 120)
    with pytest.raises(ValueError, match="session id"):
        ledger.record_issue("too-short", NOW + HOUR, now=NOW)
