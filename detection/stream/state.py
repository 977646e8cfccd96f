"""Where the stream keeps each session's minutes between batches: one contract, a DynamoDB table in AWS
(:mod:`detection.stream.state_dynamodb`) and memory locally (:class:`MemoryState`, what ``replay`` uses).

Updates only add members to sets, so applying one twice changes nothing (a retried batch, a record delivered
twice). Entries expire on their own once no window can read them (``expires_at``; DynamoDB's TTL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from detection.stream.evidence import MinuteState


class StreamState(Protocol):
    def add(self, minutes: Sequence[MinuteState], *, expires_at: int) -> list[MinuteState]:
        """Add each minute's members to what is kept for that session and minute; return the minutes as they are
        now (everything any batch added)."""
        ...

    def window(self, session_id: str, first_minute: int, last_minute: int) -> list[MinuteState]:
        """The session's minutes from ``first_minute`` to ``last_minute`` (both included), oldest first."""
        ...


class MemoryState:
    """The local twin: dicts, with the same expiry (:meth:`prune` drops what has expired, as DynamoDB's TTL does)."""

    def __init__(self) -> None:
        self._sessions: dict[str, dict[int, MinuteState]] = {}
        self._expiry: dict[tuple[str, int], int] = {}
        self.writes = 0  # minute updates: an UpdateItem each in DynamoDB
        self.write_units = 0  # what DynamoDB would bill them: 1 KB units of the larger of the item before and after
        self.reads = 0  # window reads: a DynamoDB query each
        self.items = 0  # (session, minute) items made

    def add(self, minutes: Sequence[MinuteState], *, expires_at: int) -> list[MinuteState]:
        merged = []
        for minute in minutes:
            kept = self._sessions.setdefault(minute.session_id, {})
            if minute.minute not in kept:
                self.items += 1
            state = kept.setdefault(minute.minute, MinuteState(minute.session_id, minute.minute))
            before = state.item_bytes()
            state.merge(minute)
            self.write_units += -(-max(before, state.item_bytes()) // 1024)
            key = (minute.session_id, minute.minute)
            self._expiry[key] = max(expires_at, self._expiry.get(key, 0))
            merged.append(state.copy())
            self.writes += 1
        return merged

    def window(self, session_id: str, first_minute: int, last_minute: int) -> list[MinuteState]:
        self.reads += 1
        kept = self._sessions.get(session_id, {})
        return [kept[m].copy() for m in sorted(kept) if first_minute <= m <= last_minute]

    def prune(self, now: float) -> int:
        """Drop the minutes that expired by ``now``; how many."""
        gone = [key for key, expires in self._expiry.items() if expires <= now]
        for session_id, minute in gone:
            del self._expiry[(session_id, minute)]
            minutes = self._sessions[session_id]
            del minutes[minute]
            if not minutes:
                del self._sessions[session_id]
        return len(gone)

    def __len__(self) -> int:
        return len(self._expiry)
