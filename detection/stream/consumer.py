"""The stream consumer's work on one batch of real-time log records: count, judge, revoke, publish.

1. Each served media request becomes a sighting of its session's minute (:func:`detection.stream.evidence.sighting`);
   a record too old for the window (real-time logs are best effort: late, out of order) or from the future is
   counted and left out, so it can neither count twice nor make a verdict about the past.
2. The batch's minutes are added to the state (sets: idempotent across retries and shards). A minute this instance
   knows shows one of everything (one address, one network, one country...) is written once: a later record that
   adds no new place or player is left out, since a viewer alone gives the concurrent reasons nothing to count, and
   the write is the fast path's main cost. Once a minute shows two of anything, every record of it is written. An
   instance that does not know the minute (a new container, another shard) writes, so nothing is lost.
3. The policy's concurrent reasons judge the sessions whose touched minute looks odd, over their window
   (:mod:`detection.stream.scoring`), at the batch's time.
4. What they revoke is recorded in the ledger (``revoke_run``: the verdicts, and a revocation lasting until the latest
   token seen or issued, plus the margin) and written to the edge store at once, all sessions of the batch together
   (the store's calls take at most 50 keys each). A session already revoked is not judged again; nothing the fast
   path did is undone except by an operator, and the workflow's full policy keeps running beside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from detection.scoring.config import DetectionConfig
from detection.stream.evidence import MinuteState, sighting
from detection.stream.scoring import could_fire, judge
from detection.stream.state import StreamState
from edge.store import EdgeStore, EdgeStoreError
from revocation.ledger.base import Ledger, Reason
from revocation.publisher import publish_fresh
from revocation.service import revoke_run

#: How far ahead of the batch's clock a record's timestamp may be (clocks of edge servers differ a little).
FUTURE_SECONDS = 60
#: Kept past the window, so that a retried batch still finds what it added.
STATE_MARGIN_SECONDS = 600


@dataclass(frozen=True)
class StreamRevocation:
    session_id: str
    revoked_at: float
    reasons: tuple[Reason, ...]
    expires_at: int
    first_seen: float | None  # the session's earliest record the state kept (its window's first minute)


@dataclass
class BatchOutcome:
    """What one batch did."""

    records: int = 0
    sightings: int = 0
    late: int = 0
    future: int = 0
    minutes: int = 0
    unwritten: int = 0  # minutes of the batch left out: a viewer alone, nothing new (see the module docstring)
    candidates: list[str] = field(default_factory=list)  # sessions judged over their window
    revocations: list[StreamRevocation] = field(default_factory=list)
    published: int = 0
    publish_error: str | None = None  # the edge store refused; the ledger has the revocations all the same

    def counts(self) -> dict[str, int]:
        return {"records": self.records, "sightings": self.sightings, "late": self.late, "future": self.future,
                "minutes": self.minutes, "unwritten": self.unwritten, "candidates": len(self.candidates),
                "revoked": len(self.revocations), "published": self.published}  # fmt: skip


#: The window a session is judged over, in whole minutes (the workflow's default window).
WINDOW_MINUTES = 10


@dataclass
class StreamConsumer:
    state: StreamState
    ledger: Ledger
    store: EdgeStore
    config: DetectionConfig = field(default_factory=DetectionConfig)
    window_minutes: int = WINDOW_MINUTES

    def process(self, rows: Iterable[Mapping[str, Any]], now: float) -> BatchOutcome:
        """One batch of parsed records (columns of the log schema), judged at ``now``."""
        outcome = BatchOutcome()
        registry = self.config.networks.registry
        current = math.floor(now / 60)
        first = current - self.window_minutes + 1
        touched: dict[tuple[str, int], MinuteState] = {}
        for row in rows:
            outcome.records += 1
            seen = sighting(row, registry)
            if seen is None:
                continue
            if seen.minute < first:
                outcome.late += 1
                continue
            if seen.timestamp > now + FUTURE_SECONDS:
                outcome.future += 1
                continue
            outcome.sightings += 1
            key = (seen.session_id, seen.minute)
            touched.setdefault(key, MinuteState(*key)).add(seen)
        if first > self._pruned_before:  # forget minutes no window reads any more
            self._written = {k: v for k, v in self._written.items() if k[1] >= first}
            self._pruned_before = first
        writes = [m for m in touched.values() if self._tells_something(m)]
        outcome.unwritten = len(touched) - len(writes)
        if not writes:
            return outcome
        keep_until = int(now) + self.window_minutes * 60 + STATE_MARGIN_SECONDS
        merged = self.state.add(writes, expires_at=keep_until)
        for minute in merged:
            self._written[(minute.session_id, minute.minute)] = (minute.places(), minute.plural())
        outcome.minutes = len(merged)
        outcome.candidates = sorted(sid for sid in could_fire(merged, self.config) if not self._in_force(sid, now))
        if not outcome.candidates:
            return outcome
        windows = {sid: self.state.window(sid, first, current + 1) for sid in outcome.candidates}
        run_id = f"stream-{math.floor(now)}"
        fired = judge(windows, self.config, run_id=run_id, now=now)
        if not fired:
            return outcome
        run = revoke_run(self.ledger, run_id, [v for v, _ in fired], {v.session_id: exps for v, exps in fired}, now=now)
        reasons = {v.session_id: v.reasons for v, _ in fired}
        outcome.revocations = [
            StreamRevocation(r.session_id, now, tuple(reasons.get(r.session_id, ())), r.expires_at,
                             min((m.first_seen for m in windows[r.session_id] if m.first_seen), default=None))
            for r in run.revoked
        ]
        self._revoked_until.update({r.session_id: r.expires_at for r in run.revoked})
        try:
            outcome.published = publish_fresh(self.store, run.revoked, now=now)
        except EdgeStoreError as exc:  # the ledger holds them: the workflow's next publish writes them
            outcome.publish_error = str(exc)
        return outcome

    def __post_init__(self) -> None:
        self._revoked_until: dict[str, int] = {}  # what this instance revoked, or found revoked, and until when
        self._written: dict[tuple[str, int], tuple[frozenset[tuple[str, str]], bool]] = {}  # places, plural
        self._pruned_before = 0

    def _tells_something(self, minute: MinuteState) -> bool:
        """Whether the batch's part of this minute must be written (see the module docstring, step 2)."""
        known = self._written.get((minute.session_id, minute.minute))
        return known is None or known[1] or not minute.places() <= known[0]

    def _in_force(self, session_id: str, now: float) -> bool:
        """Whether the session has a revocation in force (read from the ledger once, for candidates only)."""
        if self._revoked_until.get(session_id, 0) > now:
            return True
        revocation = self.ledger.get(session_id).revocation
        if revocation is not None and revocation.is_active(now):
            self._revoked_until[session_id] = revocation.expires_at
            return True
        return False
