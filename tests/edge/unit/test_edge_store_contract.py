"""One contract, two implementations: the local JSON twin and the KeyValueStore adapter must behave the same.

The adapter runs on a real boto3 ``cloudfront-keyvaluestore`` client. Its responses come from botocore's Stubber,
fed by a small in-memory fake of the service: for every call, a handler that runs just before the Stubber's
validates the request against the service model (as the client itself does), lets the fake compute the answer from
its state, and queues that answer on the Stubber, which checks it against the model's output shape and returns it.
So requests and responses are both checked against the real API model, and the fake keeps real state across calls.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import xform_name
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from edge.store import (
    BATCH_MAX_KEYS,
    KEY_MAX_BYTES,
    STORE_MAX_BYTES,
    VALUE_MAX_BYTES,
    EdgeStore,
    LocalEdgeStore,
    RetriesExhaustedError,
    RetryPolicy,
    StoreLimitError,
    StoreValidationError,
)
from edge.store.base import Batch, StoreState
from edge.store.kvs import KeyValueStoreEdgeStore
from edge.store.local import serialize

ARN = "arn:aws:cloudfront::123456789012:key-value-store/0a1b2c3d-4e5f-6789-abcd-ef0123456789"


# ---------------------------------------------------------------------------------------------------------------
# An in-memory fake of the KeyValueStore data plane.


class ServiceError(Exception):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class FakeKeyValueStore:
    """The service's observable behaviour: ETag-conditional, all-or-nothing writes, limits, paginated listing."""

    arn: str = ARN
    data: dict[str, str] = field(default_factory=dict)
    version: int = 1
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    intrusions: int = 0  # foreign writes still to make, one before each of the next UpdateKeys calls
    intrude_after: int = 0  # UpdateKeys calls to let through before intruding
    intruded: int = 0

    @property
    def etag(self) -> str:
        return f"KV{self.version:08X}"

    @property
    def total_bytes(self) -> int:
        return sum(len(k.encode()) + len(v.encode()) for k, v in self.data.items())

    def _meta(self) -> dict[str, Any]:
        return {"ItemCount": len(self.data), "TotalSizeInBytes": self.total_bytes}

    def handle(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((operation, params))
        if params["KvsARN"] != self.arn:
            raise ServiceError("ResourceNotFoundException", "Key value store not found", 404)
        return getattr(self, f"_op_{operation}")(params)

    def _op_DescribeKeyValueStore(self, params: dict[str, Any]) -> dict[str, Any]:
        created = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
        return {**self._meta(), "KvsARN": self.arn, "Created": created, "ETag": self.etag, "Status": "READY"}

    def _op_GetKey(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["Key"] not in self.data:
            raise ServiceError("ResourceNotFoundException", "Key not found", 404)
        return {"Key": params["Key"], "Value": self.data[params["Key"]], **self._meta()}

    def _op_ListKeys(self, params: dict[str, Any]) -> dict[str, Any]:
        if not 1 <= params.get("MaxResults", 50) <= 50:  # botocore checks minimums only; the service checks this
            raise ServiceError("ValidationException", "MaxResults must be between 1 and 50", 400)
        keys = sorted(self.data)
        start = int(base64.b64decode(params["NextToken"])) if "NextToken" in params else 0
        end = start + params.get("MaxResults", 50)
        response: dict[str, Any] = {"Items": [{"Key": k, "Value": self.data[k]} for k in keys[start:end]]}
        if end < len(keys):
            response["NextToken"] = base64.b64encode(str(end).encode()).decode()
        return response

    def _op_UpdateKeys(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.intrusions and self.intrude_after <= 0:
            self.intrusions -= 1
            self.intruded += 1
            self.data[f"zz:intruder:{self.intruded}"] = "concurrent write"
            self.version += 1
        self.intrude_after -= 1
        if params["IfMatch"] != self.etag:
            raise ServiceError("ConflictException", "Pre-condition failed: ETag mismatch", 409)
        puts = {p["Key"]: p["Value"] for p in params.get("Puts", [])}
        deletes = [d["Key"] for d in params.get("Deletes", [])]
        if len(puts) + len(deletes) > BATCH_MAX_KEYS:
            raise ServiceError("ValidationException", "Too many keys in one request", 400)
        for key, value in puts.items():
            if len(key.encode()) > KEY_MAX_BYTES or len(value.encode()) > VALUE_MAX_BYTES:
                raise ServiceError("ValidationException", f"Key or value too large: {key}", 400)
        after = {**self.data, **puts}
        for key in deletes:
            after.pop(key, None)
        if sum(len(k.encode()) + len(v.encode()) for k, v in after.items()) > STORE_MAX_BYTES:
            raise ServiceError("ServiceQuotaExceededException", "Key value store size limit exceeded", 402)
        self.data = after
        self.version += 1
        return {**self._meta(), "ETag": self.etag}

    def updates(self) -> list[dict[str, Any]]:
        return [params for operation, params in self.calls if operation == "UpdateKeys"]


def stubbed_client(fake: FakeKeyValueStore) -> Any:
    """A real ``cloudfront-keyvaluestore`` client answered by ``fake`` through a Stubber."""
    client = boto3.client(
        "cloudfront-keyvaluestore",
        region_name="us-east-1",
        aws_access_key_id="AKIDTESTTESTTEST",
        aws_secret_access_key="test-secret",
    )
    stubber = Stubber(client)

    def answer(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        validate_parameters(params, model.input_shape)  # a bad request fails here, before the fake sees it
        method = xform_name(model.name)
        try:
            stubber.add_response(method, fake.handle(model.name, params))
        except ServiceError as err:
            stubber.add_client_error(method, err.code, err.message, err.status)

    # Same event and section as the Stubber's own check, registered before it, so the answer is queued in time.
    client.meta.events.register_first("before-parameter-build.*.*", answer, unique_id="fake-kvs-answer")
    stubber.activate()
    client.stubber = stubber  # type: ignore[attr-defined]
    return client


# ---------------------------------------------------------------------------------------------------------------
# One harness per implementation: the store under test plus back doors to its state, which bypass the store.


class Harness:
    store: EdgeStore
    sleeps: list[float]

    def seed(self, entries: dict[str, str]) -> None:
        raise NotImplementedError

    def snapshot(self) -> dict[str, str]:
        raise NotImplementedError

    def intrude(self, times: int, *, after_calls: int = 0) -> None:
        """Make a concurrent write before each of the next ``times`` write attempts (after ``after_calls``)."""
        raise NotImplementedError

    def write_sizes(self) -> list[int]:
        """Keys per write call that reached the storage, in order (including refused attempts)."""
        raise NotImplementedError


def retry_policy(sleeps: list[float]) -> RetryPolicy:
    return RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=2.0, sleep=sleeps.append, rng=lambda: 1.0)


class LocalHarness(Harness):
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "store.json"
        self.sleeps = []
        self.store = LocalEdgeStore(self.path, retry=retry_policy(self.sleeps))
        self._sizes: list[int] = []
        self._intrusions = 0
        self._after = 0
        self._intruded = 0
        original = self.store._apply

        def apply(etag: str, batch: Batch) -> StoreState:
            self._sizes.append(len(batch))
            if self._intrusions and self._after <= 0:
                # Someone edits the file without taking the lock (by hand, another tool): a real ETag change.
                self._intrusions -= 1
                self._intruded += 1
                self.seed({**self.snapshot(), f"zz:intruder:{self._intruded}": "concurrent write"})
            self._after -= 1
            return original(etag, batch)

        self.store._apply = apply  # type: ignore[method-assign]

    def seed(self, entries: dict[str, str]) -> None:
        self.path.write_bytes(serialize(entries))

    def snapshot(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        doc = json.loads(self.path.read_text(encoding="utf-8"))
        return {item["key"]: item["value"] for item in doc["data"]}

    def intrude(self, times: int, *, after_calls: int = 0) -> None:
        self._intrusions, self._after = times, after_calls

    def write_sizes(self) -> list[int]:
        return list(self._sizes)


class KvsHarness(Harness):
    def __init__(self) -> None:
        self.fake = FakeKeyValueStore()
        self.client = stubbed_client(self.fake)
        self.sleeps = []
        self.store = KeyValueStoreEdgeStore(ARN, client=self.client, retry=retry_policy(self.sleeps))

    def seed(self, entries: dict[str, str]) -> None:
        self.fake.data = dict(entries)
        self.fake.version += 1

    def snapshot(self) -> dict[str, str]:
        return dict(self.fake.data)

    def intrude(self, times: int, *, after_calls: int = 0) -> None:
        self.fake.intrusions, self.fake.intrude_after = times, after_calls

    def write_sizes(self) -> list[int]:
        return [len(p.get("Puts", [])) + len(p.get("Deletes", [])) for p in self.fake.updates()]


@pytest.fixture(params=["local", "kvs"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h: Harness = LocalHarness(tmp_path) if request.param == "local" else KvsHarness()
    yield h
    if isinstance(h, KvsHarness):
        h.client.stubber.assert_no_pending_responses()


def bulk(n: int, prefix: str = "r:", value: str = "1767225600|auto") -> dict[str, str]:
    return {f"{prefix}{i:05d}": value for i in range(n)}


def size_of(entries: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in entries.items())


# ---------------------------------------------------------------------------------------------------------------
# The contract.


def test_empty_store_reads(harness: Harness) -> None:
    store = harness.store
    assert store.get("k:missing") is None
    assert store.items() == {}
    usage = store.usage()
    assert (usage.items, usage.bytes, usage.fraction) == (0, 0, 0.0)


def test_put_get_overwrite_delete(harness: Harness) -> None:
    store = harness.store
    result = store.put("k:kid1", "c2VjcmV0")
    assert (result.calls, result.puts, result.deletes) == (1, 1, 0)
    assert store.get("k:kid1") == "c2VjcmV0"
    store.put("k:kid1", "bmV3")
    store.put("r:session-0123456789", "1767225600|auto")
    assert harness.snapshot() == {"k:kid1": "bmV3", "r:session-0123456789": "1767225600|auto"}
    store.delete("k:kid1")
    assert store.get("k:kid1") is None
    assert harness.snapshot() == {"r:session-0123456789": "1767225600|auto"}


def test_unicode_keys_and_values_round_trip(harness: Harness) -> None:
    harness.store.update(puts={"r:é-ü": "ünïcödé ✓", "k:ascii": ""})
    assert harness.store.items() == {"r:é-ü": "ünïcödé ✓", "k:ascii": ""}
    assert harness.store.size_bytes() == size_of({"r:é-ü": "ünïcödé ✓", "k:ascii": ""})


def test_items_by_prefix_across_pages(harness: Harness) -> None:
    entries = {**bulk(130, "r:"), **bulk(7, "k:", "a2V5")}  # ListKeys pages hold at most 50: three pages and more
    harness.seed(entries)
    assert harness.store.items() == entries
    assert harness.store.items("k:") == bulk(7, "k:", "a2V5")
    assert harness.store.items("r:0012") == {f"r:0012{i}": "1767225600|auto" for i in range(10)}
    assert harness.store.items("x:") == {}
    usage = harness.store.usage()
    assert (usage.items, usage.bytes) == (137, size_of(entries))
    assert usage.fraction == pytest.approx(size_of(entries) / STORE_MAX_BYTES)


def test_large_update_is_split_into_calls_of_at_most_50_keys(harness: Harness) -> None:
    harness.seed(bulk(20, "old:"))
    puts = bulk(110, "r:")
    deletes = [f"old:{i:05d}" for i in range(20)]
    result = harness.store.update(puts=puts, deletes=deletes)
    assert harness.write_sizes() == [50, 50, 30]
    assert (result.calls, result.puts, result.deletes, result.retries) == (3, 110, 20, 0)
    assert harness.snapshot() == puts
    assert (result.item_count, result.total_bytes) == (110, size_of(puts))


def test_deleting_absent_keys_is_fine(harness: Harness) -> None:
    harness.seed({"r:present": "1|auto"})
    harness.store.delete("r:never-there")
    harness.store.update(deletes=["r:absent", "r:present", "r:absent"])
    assert harness.snapshot() == {}


def test_empty_update_writes_nothing(harness: Harness) -> None:
    assert harness.store.update().calls == 0
    assert harness.write_sizes() == []


@pytest.mark.parametrize(
    ("puts", "deletes", "limit"),
    [
        ({"é" * 256 + "a": "v"}, [], KEY_MAX_BYTES),  # 513 bytes of UTF-8, 257 characters
        ({"k:ok": "é" * 512 + "a"}, [], VALUE_MAX_BYTES),  # 1025 bytes
        ({}, ["x" * (KEY_MAX_BYTES + 1)], KEY_MAX_BYTES),
        ({"": "v"}, [], 1),
    ],
    ids=["key-513-bytes", "value-1025-bytes", "delete-key-513-bytes", "empty-key"],
)
def test_oversized_keys_and_values_are_rejected_before_any_write(
    harness: Harness, puts: dict[str, str], deletes: list[str], limit: int
) -> None:
    harness.seed({"r:keep": "1|auto"})
    valid = bulk(60, "r:new")  # the bad entry comes after more than one call's worth of good ones
    with pytest.raises(StoreLimitError) as info:
        harness.store.update(puts={**valid, **puts}, deletes=deletes)
    bad_key = next(iter(puts)) if puts else deletes[0]
    assert info.value.key == bad_key and info.value.limit == limit
    assert (str(limit) in str(info.value)) or limit == 1
    assert harness.write_sizes() == []
    assert harness.snapshot() == {"r:keep": "1|auto"}


def test_exact_limits_are_accepted(harness: Harness) -> None:
    key, value = "é" * 256, "ü" * 512  # exactly 512 and 1024 bytes
    harness.store.put(key, value)
    assert harness.store.get(key) == value


def test_store_size_limit_is_exact_and_checked_before_writing(harness: Harness) -> None:
    # 5120 entries of 7 + 1017 bytes: exactly 5 MB.
    full = {f"f:{i:05d}": "v" * 1017 for i in range(5120)}
    assert size_of(full) == STORE_MAX_BYTES
    harness.seed(full)
    assert harness.store.usage().fraction == 1.0

    with pytest.raises(StoreLimitError) as info:
        harness.store.update(puts={"f:00000": "w" * 1017, "r:one-more": "x"})
    assert info.value.key == "r:one-more" and info.value.limit == STORE_MAX_BYTES
    assert "5242880" in str(info.value) and "r:one-more" in str(info.value)
    assert harness.write_sizes() == []
    assert harness.snapshot() == full

    # Replacing a value with one of the same size, or making room first, fits exactly.
    harness.store.put("f:00000", "w" * 1017)
    harness.store.delete("f:00001")
    harness.store.put("r:one-more", "x" * (1024 - len("r:one-more")))
    assert harness.store.size_bytes() == STORE_MAX_BYTES
    with pytest.raises(StoreLimitError):
        harness.store.put("r:one-more", "x" * (1025 - len("r:one-more")))
    assert harness.snapshot()["f:00000"] == "w" * 1017


def test_key_both_put_and_deleted_is_refused(harness: Harness) -> None:
    with pytest.raises(StoreValidationError, match="both put and deleted"):
        harness.store.update(puts={"r:a": "1|auto"}, deletes=["r:a"])
    assert harness.write_sizes() == []


def test_malformed_arguments_are_refused(harness: Harness) -> None:
    with pytest.raises(StoreLimitError, match="must not be empty"):
        harness.store.get("")
    with pytest.raises(StoreValidationError, match="single str"):
        harness.store.update(deletes="r:abc")
    with pytest.raises(StoreValidationError, match="must be a str"):
        harness.store.put("r:abc", 1767225600)  # type: ignore[arg-type]
    with pytest.raises(StoreValidationError, match="not valid UTF-8"):
        harness.store.put("r:\ud800", "1|auto")  # a lone surrogate cannot be encoded
    assert harness.write_sizes() == []


def test_etag_conflict_is_retried_with_backoff_and_the_other_write_survives(harness: Harness) -> None:
    harness.intrude(2)
    result = harness.store.put("r:mine", "1767225600|auto")
    assert result.retries == 2
    assert harness.sleeps == [pytest.approx(0.1), pytest.approx(0.2)]  # exponential (jitter pinned to its cap)
    assert harness.snapshot() == {
        "r:mine": "1767225600|auto",
        "zz:intruder:1": "concurrent write",
        "zz:intruder:2": "concurrent write",
    }


def test_endless_conflict_gives_up_and_leaves_whole_calls_only(harness: Harness) -> None:
    puts = bulk(120, "r:")
    harness.intrude(10**6, after_calls=1)  # the first call goes through, then every attempt meets a conflict
    with pytest.raises(RetriesExhaustedError) as info:
        harness.store.update(puts=puts)
    error = info.value
    assert "call 2 of 3" in str(error) and "5 attempts" in str(error) and "calls 1-1 were applied" in str(error)
    assert (error.result.calls, error.result.puts, error.total_calls) == (1, 50, 3)
    assert harness.sleeps == [pytest.approx(x) for x in (0.1, 0.2, 0.4, 0.8)]
    # Exactly the first call's 50 keys and the concurrent writer's keys: no half-applied call.
    mine = {k: v for k, v in harness.snapshot().items() if not k.startswith("zz:")}
    assert mine == dict(list(puts.items())[:50])
    assert len(harness.snapshot()) - len(mine) == 5
