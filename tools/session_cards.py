"""The flagged sessions as both reports show them, the demo's (:mod:`tools.demo`) and the one for your own logs
(:mod:`tools.verdict_report`), drawn by one template part (``templates/_flagged.html.j2``):

- one row per flagged session, highest score first: the index, filtered by reason, action (and ground truth where
  there is one) in the page;
- the first :data:`CARDS` sessions in full (the first :data:`OPEN_CARDS` open, the rest folded to one line): each
  reason with the values it saw and the thresholds it compared them with, every user agent (three shown, the rest
  folded with their count), every feature, the edge store's entry and the edge replay where known, and for a
  revoked one the command that lifts it;
- a timeline of its requests for the first :data:`TIMELINES` of them (each is a PNG of about 35 KB).

The index is paged, :data:`PAGE_SIZE` rows to a page with the cards of those rows (a link to a session turns to its
page), so 10 000 flagged sessions make a page a browser opens at once: 500 cards, 50 images and 10 000 rows, of
which one page is laid out.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from tools.report import ReplayRow, iso_utc, session_slices, timeline_figure

#: Sessions shown in full; the rest are rows of the index alone.
CARDS = 500
#: Sessions whose details are open when the page opens (the rest open on a click, or a link to them).
OPEN_CARDS = 5
#: Rows of the index to a page (the page shows the cards of its rows alone).
PAGE_SIZE = 100
#: Sessions drawn with a timeline of their requests (highest score first).
TIMELINES = 50
#: User agents shown before the rest are folded.
AGENTS_SHOWN = 3
#: Values that are times (epoch seconds in the verdicts), shown as ISO 8601.
TIME_KEYS = frozenset({"at", "first_seen", "last_seen", "decided_at", "expires_at", "since", "until"})


@dataclass
class FlaggedSessions:
    """What the template part draws: ``rows`` (every session), ``cards`` (the first :data:`CARDS` of them)."""

    rows: list[dict[str, Any]]
    cards: list[dict[str, Any]]
    reasons: list[str]
    actions: list[str]
    labels: list[str]  # the ground truths present (the demo's corpus has them; your own logs do not)
    card_limit: int = CARDS
    open_cards: int = OPEN_CARDS
    page_size: int = PAGE_SIZE

    @property
    def reason_counts(self) -> Counter[str]:
        return Counter(code for row in self.rows for code in row["codes"])


def flagged_sessions(
    sessions: Iterable[Mapping[str, Any]],
    *,
    ledger: str = "LEDGER.sqlite",
    store: str = "STORE.json",
    labels: Mapping[str, Mapping[str, Any]] | None = None,
    revocations: Mapping[str, str] | None = None,
    replays: Mapping[str, ReplayRow] | None = None,
) -> FlaggedSessions:
    """``sessions`` are verdicts as detect writes them (``Verdict.to_dict()``); ``labels`` the ground truth by
    session id, ``revocations`` the edge store's ``r:`` values by session id, ``replays`` the edge replay's rows."""
    ordered = sorted(sessions, key=lambda s: (-float(s.get("score") or 0), str(s.get("session_id"))))
    rows = []
    for n, session in enumerate(ordered):
        session_id = str(session.get("session_id"))
        truth = (labels or {}).get(session_id) or {}
        rows.append({
            "session_id": session_id, "action": str(session.get("action")), "score": session.get("score"),
            "codes": [str(r.get("code")) for r in session.get("reasons") or []],
            "label": None if labels is None else str(truth.get("label", "unknown")),
            "kind": str(truth.get("kind", "-")),
            "replay": (replays or {}).get(session_id), "carded": n < CARDS,
        })  # fmt: skip
    cards = [_card(session, row, ledger, store, (revocations or {}).get(row["session_id"]))
             for session, row in zip(ordered, rows[:CARDS])]  # fmt: skip
    return FlaggedSessions(
        rows=rows, cards=cards, reasons=sorted({c for r in rows for c in r["codes"]}),
        actions=sorted({r["action"] for r in rows}), labels=sorted({r["label"] for r in rows if r["label"]}),
    )  # fmt: skip


def _card(session: Mapping[str, Any], row: dict[str, Any], ledger: str, store: str,
          revocation: str | None) -> dict[str, Any]:
    features = dict(session.get("features") or {})
    agents = [unquote(str(a)) for a in features.pop("user_agents", None) or []]
    features.pop("per_minute", None)
    for name in ("first_seen", "last_seen"):
        if name in features:
            features[name] = iso_utc(features[name])
    lift = None
    if row["action"] == "revoke":
        lift = (f"python -m detection unrevoke {shlex.quote(row['session_id'])} --ledger {shlex.quote(ledger)} "
                f"--store {shlex.quote(store)} --by \"$USER\"")
    reasons = [{**r, "values": {k: iso_utc(v) if k in TIME_KEYS else v for k, v in (r.get("values") or {}).items()}}
               for r in session.get("reasons") or []]
    return {
        **row, "reasons": reasons, "features": features,
        "agents_shown": agents[:AGENTS_SHOWN], "agents_folded": agents[AGENTS_SHOWN:], "agents_listed": len(agents),
        "agents_total": max(len(agents), int(features.get("distinct_user_agents") or 0)),
        "edge": edge_entry_text(revocation) if revocation is not None else None, "unrevoke": lift,
        "timeline": None, "timeline_note": "",
    }  # fmt: skip


def edge_entry_text(value: str) -> str:
    """An edge store revocation (``<expiry>|<reason>``) as ``until 2026-01-01T04:00:00Z (auto)``."""
    expiry, _, why = value.partition("|")
    return f"until {iso_utc(expiry) if expiry.isdigit() else expiry} ({why or '-'})"


def draw_timelines(flagged: FlaggedSessions, requests: Any, *, run_at: float | None = None,
                   tick: Callable[[str], None] | None = None) -> None:
    """A timeline for each of the first :data:`TIMELINES` cards whose session has records in ``requests`` (a table
    ordered by session, as :func:`tools.report.load_session_requests` returns), with the detection run at
    ``run_at`` and each card's edge replay where known; ``tick`` hears of each."""
    slices = session_slices(requests)
    drawn = flagged.cards[:TIMELINES]
    for n, card in enumerate(drawn, 1):
        if tick is not None:
            tick(f"{n}/{len(drawn)} timelines")
        if card["session_id"] in slices:
            start, stop = slices[card["session_id"]]
            replay = card["replay"]
            card["timeline"], card["timeline_note"] = timeline_figure(
                requests.slice(start, stop - start), run_at=run_at,
                replay=(replay.at, replay.status, replay.reason, replay.ip) if replay else None,
            )  # fmt: skip
