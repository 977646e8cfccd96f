"""Manual revocation operations, automatic revocations of a run, and the policy mode (allow-lists, monitor)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.store import LocalEdgeStore
from edge.store.base import Batch, EdgeStoreError, StoreState
from edge.verify import revocation_active
from revocation.ledger import RevokeOutcome, SqliteLedger
from revocation.publisher import publish
from revocation.service import (
    DEFAULT_MANUAL_TTL_SECONDS,
    MAX_REVOCATION_SECONDS,
    AllowListedError,
    InvalidRevocation,
    NotRevokedError,
    lift,
    list_flagged,
    list_revoked,
    manual_actor,
    revoke,
    revoke_run,
)
from revocation.token_expiry import DEFAULT_MARGIN_SECONDS
from tests.revocation.helpers import HOUR, NOW, sid, verdict


class BrokenStore(LocalEdgeStore):
    def _apply(self, etag: str, batch: Batch) -> StoreState:
        raise EdgeStoreError("AccessDenied (injected)")


# ---------------------------------------------------------------------------------------------------------------
# Manual operations.


def test_a_manual_revoke_reaches_the_edge_at_once(sqlite_ledger: SqliteLedger, edge_store: LocalEdgeStore) -> None:
    result = revoke(sqlite_ledger, edge_store, sid(1), "restreaming", ttl=HOUR, by="alice", now=NOW)
    assert result.published and result.outcome == "created"
    value = edge_store.get(f"r:{sid(1)}")
    assert value == f"{NOW + HOUR}|restreaming"
    assert revocation_active(value, NOW + HOUR - 1) and not revocation_active(value, NOW + HOUR)
    history = sqlite_ledger.get(sid(1))
    assert history.revocation is not None and history.revocation.revoked_by == "manual:alice"
    # The decision is in the session's history too: who, when, why.
    (v,) = history.verdicts
    assert (v.source, v.action, v.reasons[0].code, v.decided_at) == ("manual", "revoke", "restreaming", NOW)


def test_expiry_forms(sqlite_ledger: SqliteLedger, edge_store: LocalEdgeStore) -> None:
    assert revoke(sqlite_ledger, edge_store, sid(1), "manual", by="a", now=NOW).revocation.expires_at == (
        NOW + DEFAULT_MANUAL_TTL_SECONDS
    )
    assert revoke(sqlite_ledger, edge_store, sid(2), "manual", expires_at=NOW + 99, by="a", now=NOW).revocation.expires_at == NOW + 99


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"session_id": "short"}, "invalid-session-id"),
        ({"session_id": "has space in it 123"}, "invalid-session-id"),
        ({"session_id": "x" * 33}, "invalid-session-id"),
        ({"reason": "Bad Reason"}, "invalid-reason"),
        ({"reason": "a|b"}, "invalid-reason"),
        ({"ttl": 60, "expires_at": NOW + 60}, "invalid-expiry"),
        ({"ttl": 0}, "invalid-expiry"),
        ({"expires_at": NOW}, "invalid-expiry"),
        ({"ttl": MAX_REVOCATION_SECONDS + 1}, "invalid-expiry"),
        ({"ttl": 1.5}, "invalid-expiry"),
        ({"by": "auto:run-1"}, "invalid-request"),
        ({"by": "two words"}, "invalid-request"),
    ],
)
def test_bad_manual_revokes_are_refused_and_change_nothing(
    sqlite_ledger: SqliteLedger, edge_store: LocalEdgeStore, kwargs: dict, code: str
) -> None:
    args = {"session_id": sid(1), "reason": "manual", "by": "alice", **kwargs}
    with pytest.raises(InvalidRevocation) as caught:
        revoke(sqlite_ledger, edge_store, args.pop("session_id"), args.pop("reason"), now=NOW, **args)
    assert caught.value.code == code
    assert sqlite_ledger.active_revocations(NOW) == [] and edge_store.items("r:") == {}


def test_an_allow_listed_session_needs_force(sqlite_ledger: SqliteLedger, edge_store: LocalEdgeStore) -> None:
    with pytest.raises(AllowListedError, match="allow-listed.*force"):
        revoke(sqlite_ledger, edge_store, sid(1), "manual", by="alice", now=NOW, allow_sessions={sid(1)})
    assert not sqlite_ledger.get(sid(1)).known and edge_store.get(f"r:{sid(1)}") is None
    result = revoke(sqlite_ledger, edge_store, sid(1), "manual", by="alice", now=NOW, allow_sessions={sid(1)}, force=True)
    assert result.published and edge_store.get(f"r:{sid(1)}") is not None
    assert sqlite_ledger.get(sid(1)).verdicts[0].features == {"forced": True}


def test_revoking_again_never_shortens(sqlite_ledger: SqliteLedger, edge_store: LocalEdgeStore) -> None:
    revoke(sqlite_ledger, edge_store, sid(1), "manual", ttl=2 * HOUR, by="alice", now=NOW)
    again = revoke(sqlite_ledger, edge_store, sid(1), "manual", ttl=HOUR, by="bob", now=NOW + 10)
    assert again.outcome == "unchanged" and again.revocation.expires_at == NOW + 2 * HOUR
    assert edge_store.get(f"r:{sid(1)}") == f"{NOW + 2 * HOUR}|manual"
    assert len(sqlite_ledger.get(sid(1)).verdicts) == 1  # nothing changed, nothing recorded


def test_lift_removes_the_entry_at_once(sqlite_ledger: SqliteLedger, edge_store: LocalEdgeStore) -> None:
    revoke(sqlite_ledger, edge_store, sid(1), "manual", ttl=HOUR, by="alice", now=NOW)
    revoke(sqlite_ledger, edge_store, sid(2), "manual", ttl=HOUR, by="alice", now=NOW)
    result = lift(sqlite_ledger, edge_store, sid(1), by="bob", now=NOW + 5)
    assert result.published and result.outcome == "lifted"
    assert result.revocation.lifted_by == "manual:bob"
    assert set(edge_store.items("r:")) == {f"r:{sid(2)}"}
    assert edge_store.items("k:")  # signing keys untouched
    assert lift(sqlite_ledger, edge_store, sid(1), by="carol", now=NOW + 9).outcome == "already-lifted"
    with pytest.raises(NotRevokedError):
        lift(sqlite_ledger, edge_store, sid(3), by="bob", now=NOW)


def test_a_failed_publish_keeps_the_change_for_the_next_run(sqlite_ledger: SqliteLedger, tmp_path: Path) -> None:
    broken = BrokenStore(tmp_path / "store.json")
    result = revoke(sqlite_ledger, broken, sid(1), "manual", ttl=HOUR, by="alice", now=NOW)
    assert not result.published and "AccessDenied" in (result.publish_error or "")
    assert [r.session_id for r in sqlite_ledger.active_revocations(NOW)] == [sid(1)]
    healthy = LocalEdgeStore(tmp_path / "store.json")
    publish(sqlite_ledger, healthy, now=NOW + 60)  # the next scheduled run
    assert healthy.get(f"r:{sid(1)}") == f"{NOW + HOUR}|manual"


def test_listing(sqlite_ledger: SqliteLedger, edge_store: LocalEdgeStore) -> None:
    revoke(sqlite_ledger, edge_store, sid(1), "manual", ttl=HOUR, by="alice", now=NOW)
    sqlite_ledger.record_verdicts("run-1", [verdict(sid(2), action="flag", decided_at=NOW - 100)])
    assert [r.session_id for r in list_revoked(sqlite_ledger, NOW)] == [sid(1)]
    flagged = list_flagged(sqlite_ledger, since=NOW - 200, until=NOW)
    assert [(v.session_id, v.source) for v in flagged] == [(sid(2), "auto"), (sid(1), "manual")]
    assert flagged[0].reasons[0].code == "concurrent-ips"
    assert list_flagged(sqlite_ledger, since=NOW - 50, until=NOW) == [flagged[1]]
    with pytest.raises(InvalidRevocation):
        list_flagged(sqlite_ledger, since=float("nan"))


def test_manual_actor() -> None:
    assert manual_actor("alice") == manual_actor("manual:alice") == "manual:alice"
    assert manual_actor("arn:aws:iam::123456789012:role/ops") == "manual:arn:aws:iam::123456789012:role/ops"


# ---------------------------------------------------------------------------------------------------------------
# Policy mode.


# ---------------------------------------------------------------------------------------------------------------
# Automatic revocations of a run.


def test_a_run_revokes_offenders_until_their_tokens_expire(sqlite_ledger: SqliteLedger, edge_store: LocalEdgeStore) -> None:
    # sid(2) as the policy leaves an allow-listed offender: flagged, never revoked
    verdicts = [verdict(sid(1)), verdict(sid(2), action="flag"), verdict(sid(3), action="flag")]
    exps = {sid(1): [NOW + 600, NOW + 1800, None]}
    run = revoke_run(sqlite_ledger, "run-1", verdicts, exps, now=NOW)
    assert (run.recorded, [r.session_id for r in run.revoked]) == (3, [sid(1)])
    assert run.revoked[0].expires_at == NOW + 1800 + DEFAULT_MARGIN_SECONDS
    assert run.revoked[0].revoked_by == "auto:run-1"
    publish(sqlite_ledger, edge_store, now=NOW, fresh=run.fresh)
    assert set(edge_store.items("r:")) == {f"r:{sid(1)}"}
    # The same window again: nothing changes.
    again = revoke_run(sqlite_ledger, "run-1", verdicts, exps, now=NOW + 30)
    assert (again.recorded, again.unchanged_verdicts) == (0, 3)
    assert [r.outcome for r in again.results] == [RevokeOutcome.UNCHANGED]
    assert publish(sqlite_ledger, edge_store, now=NOW + 30).calls == 0


def test_a_run_does_not_override_an_operators_lift(sqlite_ledger: SqliteLedger, edge_store: LocalEdgeStore) -> None:
    revoke_run(sqlite_ledger, "run-1", [verdict(sid(1))], {sid(1): [NOW + HOUR]}, now=NOW)
    lift(sqlite_ledger, edge_store, sid(1), by="alice", now=NOW + 60)
    later = revoke_run(sqlite_ledger, "run-2", [verdict(sid(1), "run-2", decided_at=NOW + 120)],
                       {sid(1): [NOW + HOUR]}, now=NOW + 120)
    assert later.suppressed == [sid(1)] and later.revoked == []
    publish(sqlite_ledger, edge_store, now=NOW + 120)
    assert edge_store.get(f"r:{sid(1)}") is None


def test_a_session_whose_tokens_are_all_dead_is_recorded_not_revoked(sqlite_ledger: SqliteLedger) -> None:
    """Seen minutes ago with a token that has expired since (and nothing issued later): nothing left to revoke, and a
    revocation ending in the past is no revocation (the ledger refuses one)."""
    dead = {sid(1): [NOW - 600], sid(2): [NOW - 600]}
    sqlite_ledger.record_issue(sid(2), NOW + HOUR, now=NOW - 900)  # the issuer signed a later token for sid(2)
    run = revoke_run(sqlite_ledger, "run-1", [verdict(sid(1)), verdict(sid(2))], dead, now=NOW)
    assert run.recorded == 2 and [r.session_id for r in run.revoked] == [sid(2)]
    assert run.revoked[0].expires_at == NOW + HOUR + DEFAULT_MARGIN_SECONDS


def test_monitor_mode_run_records_but_revokes_nothing(sqlite_ledger: SqliteLedger) -> None:
    verdicts = [verdict(sid(1), action="monitor"), verdict(sid(2), action="monitor")]  # as the policy's monitor mode
    run = revoke_run(sqlite_ledger, "run-1", verdicts, {}, now=NOW)
    assert run.recorded == 2 and run.results == ()
    assert sqlite_ledger.active_revocations(NOW) == []
    assert {v.action for v in sqlite_ledger.flagged(NOW, NOW)} == {"monitor"}


def test_unknown_token_expiry_covers_the_longest_token(sqlite_ledger: SqliteLedger) -> None:
    run = revoke_run(sqlite_ledger, "run-1", [verdict(sid(1))], {}, now=NOW)
    assert run.revoked[0].expires_at == NOW + 7 * 24 * HOUR + DEFAULT_MARGIN_SECONDS
