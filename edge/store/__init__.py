"""The edge store: CloudFront KeyValueStore behind one small interface, with a local JSON-file twin.

>>> store = open_store("store.json")  # or open_store("arn:aws:cloudfront::123456789012:key-value-store/...")
>>> store.update(puts={"r:abc...": "1767225600|auto"}, deletes=["r:old..."])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re

from edge.store.base import (
    BATCH_MAX_KEYS,
    KEY_MAX_BYTES,
    STORE_MAX_BYTES,
    VALUE_MAX_BYTES,
    EdgeStore,
    EdgeStoreError,
    RetriesExhaustedError,
    RetryPolicy,
    StoreLimitError,
    StoreUsage,
    StoreValidationError,
    UpdateResult,
)
from edge.store.kvs import KeyValueStoreEdgeStore
from edge.store.local import LocalEdgeStore

KVS_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:cloudfront::\d{12}:key-value-store/[A-Za-z0-9_-]+$")

__all__ = [
    "BATCH_MAX_KEYS",
    "KEY_MAX_BYTES",
    "KVS_ARN_PATTERN",
    "STORE_MAX_BYTES",
    "VALUE_MAX_BYTES",
    "EdgeStore",
    "EdgeStoreError",
    "KeyValueStoreEdgeStore",
    "LocalEdgeStore",
    "RetriesExhaustedError",
    "RetryPolicy",
    "StoreLimitError",
    "StoreUsage",
    "StoreValidationError",
    "UpdateResult",
    "open_store",
]


def open_store(spec: str | os.PathLike[str], *, retry: RetryPolicy | None = None) -> EdgeStore:
    """The store ``spec`` names: a KeyValueStore ARN, or a path to a ``.json`` file (the local twin)."""
    text = os.fspath(spec)
    if text.startswith("arn:"):
        if not KVS_ARN_PATTERN.match(text):
            raise StoreValidationError(
                f"{text!r} is not a KeyValueStore ARN (arn:aws:cloudfront::<account>:key-value-store/<id>)"
            )

        return KeyValueStoreEdgeStore(text, retry=retry)
    if text.lower().endswith(".json"):
        return LocalEdgeStore(text, retry=retry)
    raise StoreValidationError(
        f"cannot open edge store {text!r}: give a path to a .json file (local twin) or a KeyValueStore ARN"
        " (arn:aws:cloudfront::<account>:key-value-store/<id>)"
    )
