"""The ledger's local twin: one SQLite file (stdlib ``sqlite3``), the same behaviour as the DynamoDB ledger.

Three tables mirror the DynamoDB items: ``verdicts`` (primary key session + run, so ``INSERT OR IGNORE`` makes a
re-run a no-op, like the conditional put), ``revocations`` (one row per session) and ``issued`` (the latest token
expiry issued per session). A revoke, lift or issue reads and writes in one ``BEGIN IMMEDIATE`` transaction, so
concurrent processes (a CLI next to a running demo) serialise; the decision itself is
:func:`revocation.ledger.base.plan_revoke`, shared with DynamoDB. The file uses WAL so readers never wait.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from revocation.ledger.base import (
    ISSUED_MARGIN_SECONDS,
    Ledger,
    LedgerError,
    Reason,
    RecordResult,
    Revocation,
    RevokeOutcome,
    RevokeResult,
    SessionHistory,
    SessionRefused,
    Verdict,
    check_actor,
    check_session_id,
    normalise_verdicts,
    now_epoch,
    plan_revoke,
    refuses_issue,
)

SCHEMA_VERSION = 2  # 2: the issued table (a version 1 ledger gains it when opened)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    session_id TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    score      REAL NOT NULL,
    reasons    TEXT NOT NULL,           -- JSON list of {code, detail, weight, values, thresholds}
    features   TEXT NOT NULL,           -- JSON object
    action     TEXT NOT NULL CHECK (action IN ('flag', 'revoke', 'monitor')),
    decided_at INTEGER NOT NULL,
    source     TEXT NOT NULL CHECK (source IN ('auto', 'manual')),
    PRIMARY KEY (session_id, run_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS verdicts_by_time ON verdicts (decided_at);
CREATE TABLE IF NOT EXISTS revocations (
    session_id TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    lifted_at  INTEGER,
    lifted_by  TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS revocations_active ON revocations (expires_at) WHERE lifted_at IS NULL;
CREATE TABLE IF NOT EXISTS issued (
    session_id TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,      -- the latest token expiry the issuer signed for the session
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
"""
_REVOCATION_COLUMNS = "session_id, reason, expires_at, revoked_by, created_at, updated_at, lifted_at, lifted_by"
_VERDICT_COLUMNS = "session_id, run_id, score, reasons, features, action, decided_at, source"


class SqliteLedger(Ledger):
    """A :class:`Ledger` in one SQLite file (created with its schema if missing); ``":memory:"`` works too."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        if self.path != ":memory:":
            parent = Path(self.path).parent
            if not parent.is_dir():
                raise LedgerError(f"cannot open ledger {self.path}: folder {parent} does not exist")
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger {self.path} has schema version {version}; this code knows up to {SCHEMA_VERSION}"
                )
            if version < SCHEMA_VERSION:  # a new ledger, or an older schema: otherwise opening writes nothing
                try:
                    self._db.executescript(
                        f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
                    )
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"SqliteLedger({self.path!r})"

    def close(self) -> None:
        self._db.close()

    # -- writes ----------------------------------------------------------------------------------------------

    def record_verdicts(self, run_id: str, verdicts: Iterable[Verdict | Mapping[str, Any]]) -> RecordResult:
        rows = normalise_verdicts(run_id, verdicts)
        recorded = 0
        with self._transaction():
            for v in rows:
                cursor = self._db.execute(
                    f"INSERT OR IGNORE INTO verdicts ({_VERDICT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        v.session_id,
                        v.run_id,
                        v.score,
                        json.dumps([r.model_dump(mode="json") for r in v.reasons], ensure_ascii=False),
                        json.dumps(v.features, ensure_ascii=False, sort_keys=True, allow_nan=False),
                        v.action,
                        v.decided_at,
                        v.source,
                    ),
                )
                recorded += cursor.rowcount
        return RecordResult(recorded=recorded, unchanged=len(rows) - recorded)

    def revoke(
        self, session_id: str, reason: str, expires_at: int, by: str, *, now: float | None = None,
        margin: int = ISSUED_MARGIN_SECONDS,
    ) -> RevokeResult:
        check_session_id(session_id)
        check_actor(by)
        at = now_epoch(now)
        with self._transaction():
            current = self._revocation(session_id)
            outcome, record = plan_revoke(
                current, session_id=session_id, reason=reason, expires_at=expires_at, by=by, now=at,
                issued_until=self._issued_until(session_id), margin=margin,
            )
            if outcome not in (RevokeOutcome.UNCHANGED, RevokeOutcome.SUPPRESSED):
                self._db.execute(
                    f"INSERT OR REPLACE INTO revocations ({_REVOCATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    _revocation_row(record),
                )
        return RevokeResult(revocation=record, outcome=outcome)

    def record_issue(self, session_id: str, expires_at: int, *, now: float | None = None) -> int:
        check_session_id(session_id)
        at = now_epoch(now)
        with self._transaction():  # one transaction: a revoke cannot slip between the check and the write
            if refuses_issue(self._revocation(session_id)):
                raise SessionRefused(f"session {session_id} has a revocation that no operator lifted")
            self._db.execute(
                "INSERT INTO issued (session_id, expires_at, updated_at) VALUES (?, ?, ?) ON CONFLICT (session_id)"
                " DO UPDATE SET expires_at = max(expires_at, excluded.expires_at), updated_at = excluded.updated_at",
                (session_id, int(expires_at), at),
            )
            latest = self._issued_until(session_id)
        assert latest is not None
        return latest

    def lift(self, session_id: str, by: str, *, now: float | None = None) -> Revocation | None:
        check_session_id(session_id)
        check_actor(by)
        at = now_epoch(now)
        with self._transaction():
            current = self._revocation(session_id)
            if current is None or current.lifted_at is not None:
                return current
            lifted = current.model_copy(update={"lifted_at": at, "lifted_by": by, "updated_at": at})
            self._db.execute(
                "UPDATE revocations SET lifted_at = ?, lifted_by = ?, updated_at = ? WHERE session_id = ?",
                (at, by, at, session_id),
            )
        return lifted

    # -- reads -----------------------------------------------------------------------------------------------

    def active_revocations(self, now: float | None = None) -> list[Revocation]:
        rows = self._query(
            f"SELECT {_REVOCATION_COLUMNS} FROM revocations WHERE lifted_at IS NULL AND expires_at > ?"
            " ORDER BY expires_at, session_id",
            (now_epoch(now),),
        )
        return [_revocation(row) for row in rows]

    def flagged(self, since: float, until: float | None = None) -> list[Verdict]:
        rows = self._query(
            f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE decided_at >= ? AND decided_at <= ?"
            " ORDER BY decided_at, session_id, run_id",
            (now_epoch(max(since, 0)), now_epoch(until)),
        )
        return [_verdict(row) for row in rows]

    def get(self, session_id: str) -> SessionHistory:
        check_session_id(session_id)
        rows = self._query(
            f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE session_id = ? ORDER BY decided_at, run_id",
            (session_id,),
        )
        with self._errors("read"):
            revocation = self._revocation(session_id)
            issued_until = self._issued_until(session_id)
        return SessionHistory(
            session_id=session_id, verdicts=tuple(_verdict(row) for row in rows), revocation=revocation,
            issued_until=issued_until,
        )

    # -- helpers ---------------------------------------------------------------------------------------------

    def _revocation(self, session_id: str) -> Revocation | None:
        row = self._db.execute(
            f"SELECT {_REVOCATION_COLUMNS} FROM revocations WHERE session_id = ?", (session_id,)
        ).fetchone()
        return _revocation(row) if row else None

    def _issued_until(self, session_id: str) -> int | None:
        row = self._db.execute("SELECT expires_at FROM issued WHERE session_id = ?", (session_id,)).fetchone()
        return int(row[0]) if row else None

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._errors("read"):
            return self._db.execute(sql, params).fetchall()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"cannot {what} ledger {self.path}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._errors("write"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


def _revocation_row(r: Revocation) -> tuple[Any, ...]:
    return (r.session_id, r.reason, r.expires_at, r.revoked_by, r.created_at, r.updated_at, r.lifted_at, r.lifted_by)


def _revocation(row: tuple[Any, ...]) -> Revocation:
    keys = ("session_id", "reason", "expires_at", "revoked_by", "created_at", "updated_at", "lifted_at", "lifted_by")
    return Revocation.model_validate(dict(zip(keys, row, strict=True)))


def _verdict(row: tuple[Any, ...]) -> Verdict:
    session_id, run_id, score, reasons, features, action, decided_at, source = row
    return Verdict(
        session_id=session_id,
        run_id=run_id,
        score=score,
        reasons=tuple(Reason.model_validate(r) for r in json.loads(reasons)),
        features=json.loads(features),
        action=action,
        decided_at=decided_at,
        source=source,
    )
