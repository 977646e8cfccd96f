"""The edge store on CloudFront KeyValueStore, through boto3's ``cloudfront-keyvaluestore`` data-plane client.

The data plane signs with SigV4A, which botocore does through ``awscrt`` (the ``botocore[crt]`` extra).
Writes are ``UpdateKeys`` calls (Puts/Deletes, If-Match on the store's ETag from ``DescribeKeyValueStore`` or from
the previous write); the shared algorithm in :mod:`edge.store.base` batches, validates and retries them.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core.aws import global_cloudfront_client
from edge.store.base import (
    Batch,
    EdgeStore,
    EdgeStoreError,
    RetryableStoreError,
    RetryPolicy,
    StoreState,
    StoreUsage,
    entry_size,
    validate_key,
)

SERVICE_NAME = "cloudfront-keyvaluestore"
PAGE_SIZE = 50  # ListKeys MaxResults ceiling

_CONFLICT_CODES = frozenset({"ConflictException", "PreconditionFailed", "PreconditionFailedException"})
_THROTTLE_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
)


class KeyValueStoreEdgeStore(EdgeStore):
    """An :class:`EdgeStore` on a CloudFront KeyValueStore, addressed by its ARN."""

    def __init__(
        self,
        kvs_arn: str,
        client: Any = None,
        *,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        super().__init__(retry)
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {PAGE_SIZE} (the ListKeys maximum), not {page_size}")
        self.kvs_arn = kvs_arn
        self.client = client if client is not None else global_cloudfront_client(SERVICE_NAME)
        self.page_size = page_size
        self._last_item_count = 0

    def __repr__(self) -> str:
        return f"KeyValueStoreEdgeStore({self.kvs_arn!r})"

    # -- reads -----------------------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        validate_key(key)
        try:
            response = self.client.get_key(KvsARN=self.kvs_arn, Key=key)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise self._error("GetKey", exc, key=key) from exc
        except BotoCoreError as exc:
            raise self._error("GetKey", exc, key=key) from exc
        return str(response["Value"])

    def items(self, prefix: str = "") -> dict[str, str]:
        # ListKeys has no prefix filter: read every page and filter here.
        entries: dict[str, str] = {}
        paginator = self.client.get_paginator("list_keys")
        try:
            for page in paginator.paginate(KvsARN=self.kvs_arn, PaginationConfig={"PageSize": self.page_size}):
                for item in page.get("Items", []):
                    if item["Key"].startswith(prefix):
                        entries[item["Key"]] = item["Value"]
        except (ClientError, BotoCoreError) as exc:
            raise self._error("ListKeys", exc) from exc
        return entries

    def usage(self) -> StoreUsage:
        state = self._describe()
        return StoreUsage(items=state.item_count, bytes=state.total_bytes, limit_bytes=self.limit_bytes)

    # -- EdgeStore hooks -------------------------------------------------------------------------------------

    def _read_state(self) -> StoreState:
        return self._describe()

    def _entry_sizes(self, keys: Collection[str]) -> dict[str, int]:
        """Sizes of the keys' current entries: one GetKey each, or one full listing if that takes fewer calls."""
        if len(keys) > math.ceil(self._last_item_count / self.page_size):
            everything = self.items()
            return {key: entry_size(key, everything[key]) for key in keys if key in everything}
        sizes = {}
        for key in keys:
            value = self.get(key)
            if value is not None:
                sizes[key] = entry_size(key, value)
        return sizes

    def _apply(self, etag: str, batch: Batch) -> StoreState:
        request: dict[str, Any] = {"KvsARN": self.kvs_arn, "IfMatch": etag}
        if batch.puts:
            request["Puts"] = [{"Key": key, "Value": value} for key, value in batch.puts]
        if batch.deletes:
            request["Deletes"] = [{"Key": key} for key in batch.deletes]
        try:
            response = self.client.update_keys(**request)
        except ClientError as exc:
            self._raise_retryable(exc)
            raise self._error("UpdateKeys", exc, batch=batch) from exc
        except BotoCoreError as exc:
            raise self._error("UpdateKeys", exc, batch=batch) from exc
        return self._state(response)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _describe(self) -> StoreState:
        try:
            response = self.client.describe_key_value_store(KvsARN=self.kvs_arn)
        except ClientError as exc:
            self._raise_retryable(exc)
            raise self._error("DescribeKeyValueStore", exc) from exc
        except BotoCoreError as exc:
            raise self._error("DescribeKeyValueStore", exc) from exc
        return self._state(response)

    def _state(self, response: dict[str, Any]) -> StoreState:
        state = StoreState(
            etag=response["ETag"],
            item_count=int(response["ItemCount"]),
            total_bytes=int(response["TotalSizeInBytes"]),
        )
        self._last_item_count = state.item_count
        return state

    def _raise_retryable(self, exc: ClientError) -> None:
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _CONFLICT_CODES or status in (409, 412):
            raise RetryableStoreError(f"{code}: {_message(exc)}", reason="conflict") from exc
        if code in _THROTTLE_CODES or status == 429:
            raise RetryableStoreError(f"{code}: {_message(exc)}", reason="throttled") from exc

    def _error(self, operation: str, exc: Exception, *, key: str | None = None, batch: Batch | None = None) -> EdgeStoreError:
        where = f"{operation} on {self.kvs_arn}"
        if key is not None:
            where += f" for key {key!r}"
        if batch is not None:
            where += f" ({len(batch.puts)} puts, {len(batch.deletes)} deletes; nothing in this call was applied)"
        if isinstance(exc, ClientError):
            detail = f"{_code(exc)}: {_message(exc)}"
            if _code(exc) == "ServiceQuotaExceededException":
                detail += " (the store would exceed a KeyValueStore quota, e.g. its 5 MB size)"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        return EdgeStoreError(f"{where} failed: {detail}")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or "(no message)"
