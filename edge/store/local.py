"""The local twin of the KeyValueStore: a JSON file in CloudFront's KeyValueStore import format.

The file is ``{"data": [{"key": "...", "value": "..."}, ...]}``, sorted by key, one entry a line, so it diffs
cleanly and the same file can seed a real store (``aws cloudfront create-key-value-store --import-source``).

Durability and concurrency, because the rotation and revocation tools write this file while ``edge serve`` reads it:

* writes go to a temporary file in the same directory, are flushed and fsynced, then ``os.replace``-d over the
  store, so a reader or a crash sees either the old or the new file, never half of one;
* an update holds an exclusive ``fcntl.flock`` on a sidecar ``<name>.lock`` file for its whole read-check-write, so
  writers in different processes serialise and no update is lost (the data file itself cannot carry the lock: it is
  replaced, and a lock on the old inode would not exclude a writer that opened the new one);
* the ETag is a hash of the file's bytes, and each write checks it under the lock, so an edit made without the lock
  (by hand, by another tool) is detected as a conflict instead of being overwritten;
* a file that does not parse is reported and never overwritten.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from core.files import replace_file
from edge.store.base import (
    Batch,
    EdgeStore,
    EdgeStoreError,
    RetryableStoreError,
    RetryPolicy,
    StoreState,
    StoreUsage,
    check_capacity,
    entry_size,
    validate_key,
)


class LocalEdgeStore(EdgeStore):
    """An :class:`EdgeStore` in a local JSON file; a missing file is an empty store, created on the first write."""

    def __init__(self, path: str | os.PathLike[str], *, retry: RetryPolicy | None = None) -> None:
        super().__init__(retry)
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._held = threading.local()

    def __repr__(self) -> str:
        return f"LocalEdgeStore({str(self.path)!r})"

    # -- reads -----------------------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        validate_key(key)
        return self._load()[1].get(key)

    def items(self, prefix: str = "") -> dict[str, str]:
        return {k: v for k, v in self._load()[1].items() if k.startswith(prefix)}

    def usage(self) -> StoreUsage:
        data = self._load()[1]
        return StoreUsage(items=len(data), bytes=_total(data), limit_bytes=self.limit_bytes)

    # -- EdgeStore hooks -------------------------------------------------------------------------------------

    def _write_session(self) -> AbstractContextManager[None]:
        return self._locked()

    def _read_state(self) -> StoreState:
        raw, data = self._load()
        return StoreState(etag=_etag(raw), item_count=len(data), total_bytes=_total(data))

    def _entry_sizes(self, keys: Collection[str]) -> dict[str, int]:
        data = self._load()[1]
        return {key: entry_size(key, data[key]) for key in keys if key in data}

    def _apply(self, etag: str, batch: Batch) -> StoreState:
        with self._locked():
            raw, data = self._load()
            if _etag(raw) != etag:
                raise RetryableStoreError(
                    f"{self.path} changed since its ETag was read (written without the lock?)", reason="conflict"
                )
            # The same limit the service enforces, checked against the exact current content.
            check_capacity([batch], _total(data), {k: entry_size(k, v) for k, v in data.items()}, limit=self.limit_bytes)
            for key, value in batch.puts:
                data[key] = value
            for key in batch.deletes:
                data.pop(key, None)
            new_raw = serialize(data)
            self._write(new_raw)
            return StoreState(etag=_etag(new_raw), item_count=len(data), total_bytes=_total(data))

    # -- file handling ---------------------------------------------------------------------------------------

    def _load(self) -> tuple[bytes | None, dict[str, str]]:
        """The file's bytes (``None`` if it does not exist) and its entries."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None, {}
        except OSError as exc:
            raise EdgeStoreError(f"cannot read edge store {self.path}: {exc.strerror or exc}") from exc
        return raw, parse(raw, source=str(self.path))

    def _write(self, raw: bytes) -> None:
        """Replace the file atomically with ``raw`` (mode 0600 for a new file: the store holds signing keys)."""
        try:
            replace_file(self.path, raw)
        except OSError as exc:
            raise EdgeStoreError(f"cannot write edge store {self.path}: {exc.strerror or exc}") from exc

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive inter-process lock, re-entrant within a thread (flock is per open file, not per process)."""
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise EdgeStoreError(f"cannot lock edge store {self.path} ({self.lock_path}): {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------------------------
# The file format.


def parse(raw: bytes, *, source: str = "edge store") -> dict[str, str]:
    """Entries of a KeyValueStore import-format document; :class:`EdgeStoreError` saying what is wrong otherwise."""
    def bad(why: str) -> EdgeStoreError:
        return EdgeStoreError(
            f"{source} is not a valid KeyValueStore file ({why}); expected"
            ' {"data": [{"key": "...", "value": "..."}, ...]}. The file was left as it is.'
        )

    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise bad(f"not UTF-8 at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise bad(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise bad('no "data" list at the top level')
    entries: dict[str, str] = {}
    for index, item in enumerate(doc["data"]):
        if not (isinstance(item, dict) and isinstance(item.get("key"), str) and isinstance(item.get("value"), str)):
            raise bad(f'data[{index}] is not an object with string "key" and "value"')
        if item["key"] in entries:
            raise bad(f"key {item['key']!r} appears more than once")
        entries[item["key"]] = item["value"]
    return entries


def serialize(entries: dict[str, str]) -> bytes:
    """The import-format document, sorted by key, one entry a line (stable, reviewable diffs)."""
    lines = [
        json.dumps({"key": key, "value": entries[key]}, ensure_ascii=False, separators=(", ", ": "))
        for key in sorted(entries)
    ]
    body = ",\n".join(f"    {line}" for line in lines)
    return (f'{{\n  "data": [\n{body}\n  ]\n}}\n' if lines else '{\n  "data": []\n}\n').encode("utf-8")


def _etag(raw: bytes | None) -> str:
    return hashlib.sha256(raw or b"").hexdigest()[:32]


def _total(entries: dict[str, str]) -> int:
    return sum(entry_size(k, v) for k, v in entries.items())


