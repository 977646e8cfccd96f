"""The edge store interface and the rules both implementations share.

The edge store holds what the viewer-request function reads at the edge (``k:<kid>`` signing keys and
``r:<session_id>`` revocations, see docs/contracts.md, KeyValueStore keys). CloudFront's KeyValueStore is the
real one; a JSON file in the KeyValueStore import format is its local twin. Both behave the same because everything
that is not storage-specific lives here: key/value validation, the size limits, splitting a write into calls of at
most 50 keys, and the ETag-conditional retry loop with exponential backoff and jitter.

No boto3 here: this module is pure Python so domain code and tests can use it without AWS.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from types import MappingProxyType

# CloudFront KeyValueStore quotas (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/cloudfront-limits.html).
KEY_MAX_BYTES = 512
VALUE_MAX_BYTES = 1024
STORE_MAX_BYTES = 5 * 1024 * 1024
BATCH_MAX_KEYS = 50

_NO_PUTS: Mapping[str, str] = MappingProxyType({})


class EdgeStoreError(Exception):
    """Anything that goes wrong reading or writing an edge store; the message says which store and why."""


class StoreValidationError(EdgeStoreError, ValueError):
    """A key or value the store cannot hold (wrong type, not encodable as UTF-8, key both put and deleted)."""


class StoreLimitError(StoreValidationError):
    """A key, value or the whole store would exceed a CloudFront KeyValueStore limit. Raised before any write."""

    def __init__(self, message: str, *, key: str, limit: int, actual: int) -> None:
        super().__init__(message)
        self.key = key
        self.limit = limit
        self.actual = actual


@dataclass(frozen=True)
class UpdateResult:
    """What an :meth:`EdgeStore.update` did.

    ``calls`` counts the all-or-nothing write calls that were applied; ``retries`` the attempts repeated after an
    ETag conflict or throttling. ``etag``, ``item_count`` and ``total_bytes`` describe the store after the last
    applied call (``None`` when nothing was written).
    """

    calls: int = 0
    puts: int = 0
    deletes: int = 0
    retries: int = 0
    etag: str | None = None
    item_count: int | None = None
    total_bytes: int | None = None


class RetriesExhaustedError(EdgeStoreError):
    """An update gave up after the bounded number of attempts (ETag conflicts or throttling).

    Each call is all-or-nothing, so the store holds exactly the calls counted in ``result`` and none of the rest;
    re-running the same update is safe (puts and deletes are idempotent).
    """

    def __init__(self, message: str, *, result: UpdateResult, total_calls: int) -> None:
        super().__init__(message)
        self.result = result
        self.total_calls = total_calls


class RetryableStoreError(EdgeStoreError):
    """Raised by an implementation's write when the call may succeed if repeated with a fresh ETag.

    ``reason`` is ``"conflict"`` (the ETag changed under us) or ``"throttled"``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class StoreUsage:
    """How full a store is, so a publisher can warn before it hits the 5 MB limit."""

    items: int
    bytes: int
    limit_bytes: int = STORE_MAX_BYTES

    @property
    def fraction(self) -> float:
        return self.bytes / self.limit_bytes

    @property
    def remaining_bytes(self) -> int:
        return max(self.limit_bytes - self.bytes, 0)


@dataclass(frozen=True)
class StoreState:
    """A consistent snapshot of a store's version and size, as read before (or returned by) a write."""

    etag: str
    item_count: int
    total_bytes: int


@dataclass(frozen=True)
class Batch:
    """One all-or-nothing write call: at most :data:`BATCH_MAX_KEYS` keys in total."""

    puts: tuple[tuple[str, str], ...] = ()
    deletes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.puts) + len(self.deletes)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").

    ``sleep`` and ``rng`` are injectable so tests neither sleep nor depend on randomness.
    """

    max_attempts: int = 8
    base_delay: float = 0.1
    max_delay: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): uniform in [0, min(cap, base*2^(n-1))]."""
        return self.rng() * min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers: validation, sizing, batching.


def utf8_len(text: str, *, what: str, key: str) -> int:
    if not isinstance(text, str):
        raise StoreValidationError(f"{what} for key {key!r} must be a str, not {type(text).__name__}")
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise StoreValidationError(f"{what} for key {key!r} is not valid UTF-8 text: {exc.reason}") from exc


def validate_key(key: str) -> int:
    """Check a key against the KeyValueStore rules; return its size in UTF-8 bytes."""
    if not isinstance(key, str):
        raise StoreValidationError(f"key must be a str, not {type(key).__name__}: {key!r}")
    size = utf8_len(key, what="key", key=key)
    if size == 0:
        raise StoreLimitError("key must not be empty", key=key, limit=1, actual=0)
    if size > KEY_MAX_BYTES:
        raise StoreLimitError(
            f"key {_short(key)} is {size} bytes; a KeyValueStore key is at most {KEY_MAX_BYTES} bytes (UTF-8)",
            key=key,
            limit=KEY_MAX_BYTES,
            actual=size,
        )
    return size


def validate_value(key: str, value: str) -> int:
    """Check a value against the KeyValueStore rules; return its size in UTF-8 bytes."""
    size = utf8_len(value, what="value", key=key)
    if size > VALUE_MAX_BYTES:
        raise StoreLimitError(
            f"value for key {_short(key)} is {size} bytes; a KeyValueStore value is at most {VALUE_MAX_BYTES} bytes (UTF-8)",
            key=key,
            limit=VALUE_MAX_BYTES,
            actual=size,
        )
    return size


def entry_size(key: str, value: str) -> int:
    """Bytes an entry counts against the 5 MB store limit: UTF-8 key plus UTF-8 value."""
    return len(key.encode("utf-8")) + len(value.encode("utf-8"))


def plan_batches(
    puts: Mapping[str, str], deletes: Iterable[str], *, max_keys: int = BATCH_MAX_KEYS
) -> list[Batch]:
    """Validate a write and split it into calls of at most ``max_keys`` keys.

    Puts go before deletes: if a multi-call update stops part-way, the store then holds the new entries *and* the
    old ones (e.g. both the new and the retiring signing key) rather than neither. A key may not be both put and
    deleted in one update, since the outcome would depend on how the write was split.
    """
    if not isinstance(puts, Mapping):
        raise StoreValidationError(f"puts must be a mapping of key to value, not {type(puts).__name__}")
    if isinstance(deletes, (str, bytes)):  # a lone key would otherwise be deleted character by character
        raise StoreValidationError(f"deletes must be a collection of keys, not a single {type(deletes).__name__}")
    put_items: list[tuple[str, str]] = []
    for key, value in puts.items():
        validate_key(key)
        validate_value(key, value)
        put_items.append((key, value))
    delete_keys: list[str] = []
    seen: set[str] = set()
    for key in deletes:
        validate_key(key)
        if key in puts:
            raise StoreValidationError(f"key {_short(key)} is both put and deleted in one update")
        if key not in seen:
            seen.add(key)
            delete_keys.append(key)
    ops: list[tuple[str, str | None]] = [*put_items, *((key, None) for key in delete_keys)]
    batches = []
    for start in range(0, len(ops), max_keys):
        chunk = ops[start : start + max_keys]
        batches.append(
            Batch(
                puts=tuple((k, v) for k, v in chunk if v is not None),
                deletes=tuple(k for k, v in chunk if v is None),
            )
        )
    return batches


def check_capacity(
    batches: Iterable[Batch],
    current_bytes: int,
    current_sizes: Mapping[str, int],
    *,
    limit: int = STORE_MAX_BYTES,
) -> int:
    """Raise :class:`StoreLimitError` if the store would exceed ``limit`` after any call; return the final size.

    ``current_sizes`` maps keys already in the store to their entry size. A key missing from it is treated as new
    when put and as absent when deleted, so an incomplete map gives an upper bound: safe to accept on, and worth
    refining with exact sizes before rejecting.
    """
    size = current_bytes
    sizes = dict(current_sizes)
    for batch in batches:
        before = size
        for key, value in batch.puts:
            size += entry_size(key, value) - sizes.get(key, 0)
            sizes[key] = entry_size(key, value)
        for key in batch.deletes:
            size -= sizes.pop(key, 0)
        if size > limit and size > before:  # a call that shrinks an over-full store is always allowed
            # Deletes only shrink the store, so some put in this call crossed the limit: name the first one.
            culprit, running = "", before
            for key, value in batch.puts:
                running += entry_size(key, value) - current_sizes.get(key, 0)
                if running > limit:
                    culprit = key
                    break
            raise StoreLimitError(
                f"writing key {_short(culprit)} would bring the store to {size} bytes; a KeyValueStore holds at most"
                f" {limit} bytes (5 MB) of keys and values (delete entries in a separate, earlier update to make room)",
                key=culprit,
                limit=limit,
                actual=size,
            )
    return size


def _short(key: str, width: int = 80) -> str:
    return repr(key if len(key) <= width else key[:width] + "…")


# ---------------------------------------------------------------------------------------------------------------
# The interface.


class EdgeStore(ABC):
    """A key/value store with CloudFront KeyValueStore semantics and limits.

    Reads: :meth:`get`, :meth:`items`, :meth:`usage`. Writes: :meth:`update` (batched, conditional on the store's
    ETag, retried), with :meth:`put` and :meth:`delete` as one-key updates. Implementations supply the storage
    primitives :meth:`_read_state`, :meth:`_entry_sizes` and :meth:`_apply`; the write algorithm lives here.
    """

    retry: RetryPolicy
    max_batch_keys: int = BATCH_MAX_KEYS
    limit_bytes: int = STORE_MAX_BYTES

    def __init__(self, retry: RetryPolicy | None = None) -> None:
        self.retry = retry or RetryPolicy()

    # -- reads -----------------------------------------------------------------------------------------------

    @abstractmethod
    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or ``None``."""

    @abstractmethod
    def items(self, prefix: str = "") -> dict[str, str]:
        """All entries whose key starts with ``prefix`` (every entry for ``""``), however many pages that takes."""

    @abstractmethod
    def usage(self) -> StoreUsage:
        """Number of entries and bytes held, against the 5 MB limit."""

    def size_bytes(self) -> int:
        return self.usage().bytes

    # -- writes ----------------------------------------------------------------------------------------------

    def put(self, key: str, value: str) -> UpdateResult:
        return self.update(puts={key: value})

    def delete(self, key: str) -> UpdateResult:
        """Remove ``key``; removing a key that is not there is not an error."""
        return self.update(deletes=(key,))

    def update(self, puts: Mapping[str, str] = _NO_PUTS, deletes: Iterable[str] = ()) -> UpdateResult:
        """Apply ``puts`` and ``deletes`` in calls of at most 50 keys, each all-or-nothing on the store's ETag.

        Everything is validated, and the store's size projected, before the first call: a limit error means
        nothing was written. A call that meets an ETag conflict or throttling is retried with backoff after
        re-reading the ETag; when attempts run out, :class:`RetriesExhaustedError` reports how far it got.
        """
        batches = plan_batches(puts, deletes, max_keys=self.max_batch_keys)
        if not batches:
            return UpdateResult()
        with self._write_session():
            return self._run(batches)

    # -- implementation hooks --------------------------------------------------------------------------------

    def _write_session(self) -> AbstractContextManager[object]:
        """Held around a whole update (the local twin takes its file lock here)."""
        return nullcontext()

    @abstractmethod
    def _read_state(self) -> StoreState:
        """Current ETag and size. May raise :class:`RetryableStoreError` (e.g. throttled)."""

    @abstractmethod
    def _entry_sizes(self, keys: Collection[str]) -> dict[str, int]:
        """Entry sizes (key+value bytes) of those ``keys`` that are in the store; used near the size limit."""

    @abstractmethod
    def _apply(self, etag: str, batch: Batch) -> StoreState:
        """Write one batch all-or-nothing if the store's ETag is still ``etag``; return the new state.

        Raise :class:`RetryableStoreError` on an ETag mismatch or throttling, :class:`EdgeStoreError` otherwise.
        """

    # -- the shared write algorithm --------------------------------------------------------------------------

    def _run(self, batches: list[Batch]) -> UpdateResult:
        total = len(batches)
        done = UpdateResult()
        state, retries = self._attempt(self._read_state, call=0, total=total, done=done)
        self._check_capacity(batches, state)
        done = replace(done, retries=retries)
        etag: str | None = state.etag
        for index, batch in enumerate(batches, start=1):

            def write(batch: Batch = batch) -> StoreState:
                nonlocal etag
                if etag is None:  # after a failed attempt: someone else wrote, or we were throttled
                    etag = self._read_state().etag
                try:
                    return self._apply(etag, batch)
                except RetryableStoreError:
                    etag = None
                    raise

            state, retries = self._attempt(write, call=index, total=total, done=done)
            etag = state.etag
            done = UpdateResult(
                calls=done.calls + 1,
                puts=done.puts + len(batch.puts),
                deletes=done.deletes + len(batch.deletes),
                retries=done.retries + retries,
                etag=state.etag,
                item_count=state.item_count,
                total_bytes=state.total_bytes,
            )
        return done

    def _attempt(
        self, step: Callable[[], StoreState], *, call: int, total: int, done: UpdateResult
    ) -> tuple[StoreState, int]:
        """Run ``step`` until it succeeds or attempts run out, with backoff between attempts; return its result
        and the number of retries it took."""
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                return step(), attempt - 1
            except RetryableStoreError as exc:
                if attempt == self.retry.max_attempts:
                    what = "reading the store's ETag" if call == 0 else f"write call {call} of {total}"
                    if done.calls:
                        progress = (
                            f"calls 1-{done.calls} were applied, calls {done.calls + 1}-{total} were not"
                            " (each call is all-or-nothing; re-running the update is safe)"
                        )
                    else:
                        progress = "nothing was written"
                    raise RetriesExhaustedError(
                        f"{self!r}: gave up on {what} after {attempt} attempts ({exc.reason}: {exc}); {progress}",
                        result=done,
                        total_calls=total,
                    ) from exc
                self.retry.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_capacity(self, batches: list[Batch], state: StoreState) -> None:
        try:
            # Cheap upper bound first (every put is new, no delete frees anything) ...
            check_capacity(batches, state.total_bytes, {}, limit=self.limit_bytes)
        except StoreLimitError:
            # ... and only near the limit look up what the touched keys hold now, for the exact answer.
            touched = {key for batch in batches for key in (*(k for k, _ in batch.puts), *batch.deletes)}
            check_capacity(batches, state.total_bytes, self._entry_sizes(touched), limit=self.limit_bytes)
