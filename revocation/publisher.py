"""Reconcile the ledger into the edge store: the ledger is the truth, ``r:`` entries in the store are its projection.

One run of :func:`publish`:

1. **Desired**: the ledger's active revocations at ``now`` (not lifted, expiring later), each as
   ``r:<session_id>`` → ``<expires_at>|<reason>`` (docs/contracts.md, KeyValueStore keys).
2. **Actual**: the store's ``r:`` entries. Nothing else in the store (the ``k:`` signing keys above all) is ever
   put or deleted here; it only counts towards the size.
3. **Capacity**: the store after the run is projected *before* anything is written (everything but ``r:`` entries,
   plus the selected revocations). Room is kept for the signing keys (``reserve_bytes``) so a full revocation list
   can never stop key rotation (which would break every viewer). If the desired set does not fit, revocations are
   published in priority order (see :func:`priority`) and the rest are reported in ``skipped``, never dropped
   silently. Past ``warn_fraction`` of the limit (80 % by default) the result has ``capacity_warning`` set, and a
   warning is logged, for a metric and an alarm.
4. **Diff**: puts for new or changed entries; deletes for entries that are expired, lifted, unknown to the ledger,
   or crowded out. All of it goes to :meth:`edge.store.EdgeStore.update`, which splits it into all-or-nothing calls
   of at most 50 keys, conditional on the store's ETag, retried on conflicts and throttling. When the store is so
   full that the puts would overflow it before the deletes free room, the deletes are sent first, as their own update.
5. **Failure**: if the store gives up part-way, :class:`PublishError` carries what was applied. Nothing is lost: the
   ledger was not touched, and the next run computes the same diff from what the store then holds and finishes it.

Publishing is idempotent: when the store already matches, a run makes no write calls at all.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.store import EdgeStore, EdgeStoreError, RetriesExhaustedError, UpdateResult
from edge.store.base import check_capacity, entry_size, plan_batches
from revocation.ledger.base import Ledger, Revocation

__all__ = [
    "DEFAULT_RESERVE_BYTES",
    "DEFAULT_WARN_FRACTION",
    "REVOCATION_PREFIX",
    "Metric",
    "PublishError",
    "PublishResult",
    "desired_entries",
    "priority",
    "publish",
    "publish_fresh",
    "publish_summary",
    "store_metrics",
]

REVOCATION_PREFIX = "r:"
DEFAULT_WARN_FRACTION = 0.8
DEFAULT_RESERVE_BYTES = 16 * 1024
"""Kept free for signing keys: a ``k:`` entry is under 100 bytes, so this is room for well over a hundred keys."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishResult:
    """What one :func:`publish` run did (or, inside :class:`PublishError`, got as far as doing).

    ``bytes`` and ``fraction`` are the store's projected size after the run against ``limit_bytes`` (the 5 MB
    KeyValueStore limit); ``capacity_warning`` is set past the warning fraction or when anything was ``skipped``.
    ``calls`` and ``retries`` count the store's write calls (≤ 50 keys each) and the attempts repeated after ETag
    conflicts or throttling.
    """

    puts: int = 0
    deletes: int = 0
    unchanged: int = 0
    skipped: tuple[str, ...] = ()
    bytes: int = 0
    fraction: float = 0.0
    capacity_warning: bool = False
    calls: int = 0
    retries: int = 0
    desired: int = 0
    published: int = 0
    limit_bytes: int = 0
    warn_fraction: float = DEFAULT_WARN_FRACTION
    errors: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """Every active revocation is in the store."""
        return not self.skipped and not self.errors

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["skipped"] = list(self.skipped)
        data["errors"] = list(self.errors)
        data["complete"] = self.complete
        return data


class PublishError(EdgeStoreError):
    """The store failed part-way; ``result`` says what was applied. The ledger is unchanged: run again to repair."""

    def __init__(self, message: str, *, result: PublishResult) -> None:
        super().__init__(message)
        self.result = result


def priority(revocation: Revocation) -> tuple[int, int, int, str]:
    """Sort key, most important first, used only when the store cannot hold every active revocation.

    1. Manual revocations first: they are explicit operator decisions.
    2. Then the latest expiry first: a revocation with a long time left protects the most (its token would keep
       working longest), while one about to expire protects little - its token dies on its own moments later.
    3. Then the older revocation first (it is the one already at the edge, so the store does not churn), and the
       session id to make the choice deterministic.

    Entries are all about the same size (``r:`` + a 16-32 character id + ``<epoch>|<reason>``), so packing by size
    would gain nothing.
    """
    return (0 if revocation.is_manual else 1, -revocation.expires_at, revocation.created_at, revocation.session_id)


def desired_entries(revocations: Iterable[Revocation], now: int) -> dict[str, Revocation]:
    """The active revocations by store key."""
    return {r.store_key: r for r in revocations if r.is_active(now)}


def publish(
    ledger: Ledger,
    store: EdgeStore,
    *,
    now: float | None = None,
    fresh: Iterable[Revocation] = (),
    warn_fraction: float = DEFAULT_WARN_FRACTION,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
) -> PublishResult:
    """Make the store's ``r:`` entries match the ledger's active revocations (see the module docstring).

    ``fresh`` are revocation records the caller has just written (revoked, extended or lifted): they override what
    the ledger's listing says for those sessions, because a DynamoDB index read may not show a write made a moment
    ago. Raises :class:`PublishError` (with the partial result) if the store fails part-way.
    """
    if not 0 < warn_fraction <= 1:
        raise ValueError("warn_fraction must be in (0, 1]")
    if reserve_bytes < 0:
        raise ValueError("reserve_bytes must not be negative")
    at = math.floor(time.time() if now is None else now)

    listed = {r.session_id: r for r in ledger.active_revocations(at)}
    for record in fresh:
        listed[record.session_id] = record
    desired = desired_entries(listed.values(), at)

    actual = store.items(REVOCATION_PREFIX)
    usage = store.usage()
    limit = store.limit_bytes
    actual_sizes = {key: entry_size(key, value) for key, value in actual.items()}
    other_bytes = max(usage.bytes - sum(actual_sizes.values()), 0)  # k: keys and anything else we never touch

    # Select what fits, highest priority first (everything, unless the store is nearly full).
    budget = limit - reserve_bytes - other_bytes
    selected: dict[str, str] = {}
    skipped: list[Revocation] = []
    used = 0
    for revocation in sorted(desired.values(), key=priority):
        size = entry_size(revocation.store_key, revocation.store_value)
        if used + size <= budget:
            selected[revocation.store_key] = revocation.store_value
            used += size
        else:
            skipped.append(revocation)

    puts = {key: value for key, value in selected.items() if actual.get(key) != value}
    deletes = sorted(key for key in actual if key not in selected)
    projected = other_bytes + used
    fraction = projected / limit if limit else 1.0
    warning = fraction >= warn_fraction or bool(skipped)
    base = PublishResult(
        unchanged=len(selected) - len(puts),
        skipped=tuple(sorted(r.session_id for r in skipped)),
        bytes=projected,
        fraction=fraction,
        capacity_warning=warning,
        desired=len(desired),
        published=len(selected),
        limit_bytes=limit,
        warn_fraction=warn_fraction,
    )
    if skipped:
        logger.error(
            "edge store full: %d of %d active revocations were NOT published (lowest priority first): %s",
            len(skipped),
            len(desired),
            ", ".join(base.skipped[:20]) + (" ..." if len(skipped) > 20 else ""),
        )
    elif warning:
        logger.warning(
            "edge store at %.1f%% of its %d byte limit after publishing (warning at %.0f%%)",
            fraction * 100,
            limit,
            warn_fraction * 100,
        )

    if not puts and not deletes:
        return base
    done = UpdateResult()
    for step_puts, step_deletes in _steps(puts, deletes, actual_sizes, usage.bytes, limit):
        try:
            step = store.update(puts=step_puts, deletes=step_deletes)
        except RetriesExhaustedError as exc:
            partial = _with(base, _add(done, exc.result), error=str(exc))
            raise PublishError(_failure(exc, partial), result=partial) from exc
        except EdgeStoreError as exc:
            partial = _with(base, _add(done, _applied(store, step_puts, step_deletes)), error=str(exc))
            raise PublishError(_failure(exc, partial), result=partial) from exc
        done = _add(done, step)
    return _with(base, done)


def publish_fresh(store: EdgeStore, revocations: Iterable[Revocation], *, now: float | None = None) -> int:
    """Put just these revocations (those in force at ``now``) into the store at once, all of them together (the
    store's calls take at most 50 keys each): the stream consumer's path, which cannot wait for the next full
    :func:`publish`. Nothing is deleted; the next :func:`publish` reconciles the rest. Returns the keys written.

    Raises what :meth:`EdgeStore.update` raises; the ledger already holds the revocations, so the next
    :func:`publish` writes whatever did not get through."""
    at = math.floor(time.time() if now is None else now)
    puts = {r.store_key: r.store_value for r in desired_entries(revocations, at).values()}
    if not puts:
        return 0
    result = store.update(puts=puts)
    return result.puts


def _applied(store: EdgeStore, puts: dict[str, str], deletes: list[str]) -> UpdateResult:
    """What a failed update got done, read back from the store (calls are all-or-nothing and go in order, puts
    first, 50 keys each, so the keys found applied say how many calls went through). Zero if the store is unreadable."""
    try:
        now_held = store.items(REVOCATION_PREFIX)
    except EdgeStoreError:
        return UpdateResult()
    put_count = sum(1 for key, value in puts.items() if now_held.get(key) == value)
    delete_count = sum(1 for key in deletes if key not in now_held)
    calls = math.ceil((put_count + delete_count) / store.max_batch_keys)
    return UpdateResult(calls=calls, puts=put_count, deletes=delete_count)


def _steps(
    puts: dict[str, str], deletes: list[str], sizes: dict[str, int], current_bytes: int, limit: int
) -> list[tuple[dict[str, str], list[str]]]:
    """One update (puts then deletes, as the store orders them) unless the puts would overflow the store before the
    deletes free room: then the deletes go first, as an update of their own."""
    if not puts or not deletes:
        return [(puts, deletes)]
    try:
        check_capacity(plan_batches(puts, deletes), current_bytes, sizes, limit=limit)
    except EdgeStoreError:
        return [({}, deletes), (puts, [])]
    return [(puts, deletes)]


def _add(a: UpdateResult, b: UpdateResult) -> UpdateResult:
    return UpdateResult(
        calls=a.calls + b.calls,
        puts=a.puts + b.puts,
        deletes=a.deletes + b.deletes,
        retries=a.retries + b.retries,
        etag=b.etag or a.etag,
        item_count=b.item_count if b.item_count is not None else a.item_count,
        total_bytes=b.total_bytes if b.total_bytes is not None else a.total_bytes,
    )


def _with(base: PublishResult, done: UpdateResult, *, error: str | None = None) -> PublishResult:
    return PublishResult(
        **{
            **asdict(base),
            "skipped": base.skipped,
            "puts": done.puts,
            "deletes": done.deletes,
            "calls": done.calls,
            "retries": done.retries,
            "errors": base.errors + ((error,) if error else ()),
        }
    )


def _failure(exc: Exception, partial: PublishResult) -> str:
    return (
        f"publishing revocations to the edge store stopped part-way ({partial.calls} write calls applied,"
        f" {partial.puts} puts and {partial.deletes} deletes): {exc}. The ledger is unchanged and still the truth;"
        " the next publish run repairs the store."
    )


# -- what a publish reports ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One CloudWatch metric value (namespace MediaShield): of a detection run, or of a publish."""

    name: str
    value: float
    unit: str = "Count"
    dimensions: Mapping[str, str] = field(default_factory=dict)


def publish_summary(result: PublishResult) -> dict[str, Any]:
    """A publish as JSON (the workflow's publish step output): the result with the sessions not published counted,
    not listed (a full store can leave thousands, more than a state's payload should carry; the publisher logs
    them)."""
    return {**result.to_dict(), "skipped": len(result.skipped)}


def store_metrics(published: Mapping[str, Any]) -> list[Metric]:
    """The edge store's metrics after a publish (:func:`publish_summary`): how full it is, the revocations that did
    not fit, and whether it is past the warning fraction. Every publish reports them, scheduled or manual."""
    return [
        Metric("EdgeStoreUtilization", round(100.0 * float(published.get("fraction", 0.0)), 3), "Percent"),
        Metric("RevocationsNotPublished", float(published.get("skipped") or 0)),
        Metric("EdgeStoreCapacityWarning", 1.0 if published.get("capacity_warning") else 0.0),
    ]
