"""The KeyValueStore adapter call by call: exact requests, error mapping, retries, pagination (botocore Stubber)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from edge.store import EdgeStoreError, KeyValueStoreEdgeStore, RetriesExhaustedError, RetryPolicy, open_store
from edge.store.base import StoreValidationError

ARN = "arn:aws:cloudfront::123456789012:key-value-store/0a1b2c3d-4e5f-6789-abcd-ef0123456789"


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "cloudfront-keyvaluestore",
        region_name="us-east-1",
        aws_access_key_id="AKIDTESTTESTTEST",
        aws_secret_access_key="test-secret",
    )


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def store(client: Any, sleeps: list[float]) -> KeyValueStoreEdgeStore:
    policy = RetryPolicy(max_attempts=4, base_delay=0.25, max_delay=1.0, sleep=sleeps.append, rng=lambda: 0.5)
    return KeyValueStoreEdgeStore(ARN, client=client, retry=policy)


def describe(stub: Stubber, etag: str, items: int = 3, size: int = 300) -> None:
    stub.add_response(
        "describe_key_value_store",
        {
            "ItemCount": items,
            "TotalSizeInBytes": size,
            "KvsARN": ARN,
            "Created": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),
            "ETag": etag,
            "Status": "READY",
        },
        {"KvsARN": ARN},
    )


def written(etag: str, items: int = 4, size: int = 400) -> dict[str, Any]:
    return {"ETag": etag, "ItemCount": items, "TotalSizeInBytes": size}


def test_update_keys_request_has_the_exact_shape(store: KeyValueStoreEdgeStore, stub: Stubber) -> None:
    describe(stub, "ETAG-1")
    stub.add_response(
        "update_keys",
        written("ETAG-2", items=4, size=420),
        {
            "KvsARN": ARN,
            "IfMatch": "ETAG-1",
            "Puts": [{"Key": "k:new", "Value": "bmV3"}, {"Key": "r:abc", "Value": "1767225600|auto"}],
            "Deletes": [{"Key": "k:old"}],
        },
    )
    result = store.update(puts={"k:new": "bmV3", "r:abc": "1767225600|auto"}, deletes=["k:old"])
    assert (result.calls, result.etag, result.item_count, result.total_bytes) == (1, "ETAG-2", 4, 420)


def test_put_and_delete_send_only_their_own_list(store: KeyValueStoreEdgeStore, stub: Stubber) -> None:
    describe(stub, "E1")
    stub.add_response("update_keys", written("E2"), {"KvsARN": ARN, "IfMatch": "E1", "Puts": [{"Key": "k:a", "Value": "YQ"}]})
    describe(stub, "E2")
    stub.add_response("update_keys", written("E3"), {"KvsARN": ARN, "IfMatch": "E2", "Deletes": [{"Key": "k:a"}]})
    store.put("k:a", "YQ")
    store.delete("k:a")


def test_following_calls_use_the_etag_the_previous_call_returned(store: KeyValueStoreEdgeStore, stub: Stubber) -> None:
    puts = {f"r:{i:03d}": "1|auto" for i in range(75)}
    describe(stub, "E1")
    first = [{"Key": k, "Value": v} for k, v in list(puts.items())[:50]]
    rest = [{"Key": k, "Value": v} for k, v in list(puts.items())[50:]]
    stub.add_response("update_keys", written("E2"), {"KvsARN": ARN, "IfMatch": "E1", "Puts": first})
    stub.add_response("update_keys", written("E3"), {"KvsARN": ARN, "IfMatch": "E2", "Puts": rest})
    assert store.update(puts=puts).etag == "E3"


def test_throttling_is_retried_with_exponential_backoff(
    store: KeyValueStoreEdgeStore, stub: Stubber, sleeps: list[float]
) -> None:
    request = {"KvsARN": ARN, "IfMatch": "E1", "Puts": [{"Key": "r:s", "Value": "1|auto"}]}
    describe(stub, "E1")
    stub.add_client_error("update_keys", "ThrottlingException", "Rate exceeded", 400, expected_params=request)
    describe(stub, "E1")  # the ETag is read again before each retry
    stub.add_client_error("update_keys", "ThrottlingException", "Rate exceeded", 400, expected_params=request)
    describe(stub, "E1")
    stub.add_client_error("update_keys", "TooManyRequestsException", "Slow down", 429, expected_params=request)
    describe(stub, "E1")
    stub.add_response("update_keys", written("E2"), request)
    result = store.put("r:s", "1|auto")
    assert result.retries == 3
    assert sleeps == [0.125, 0.25, 0.5]  # full jitter (pinned at half) of 0.25 * 2^n, capped at 1.0


def test_conflict_rereads_the_etag_and_retries_with_it(store: KeyValueStoreEdgeStore, stub: Stubber) -> None:
    describe(stub, "E1")
    stub.add_client_error(
        "update_keys", "ConflictException", "ETag mismatch", 409,
        expected_params={"KvsARN": ARN, "IfMatch": "E1", "Puts": [{"Key": "k:a", "Value": "YQ"}]},
    )
    describe(stub, "E7")
    stub.add_response("update_keys", written("E8"), {"KvsARN": ARN, "IfMatch": "E7", "Puts": [{"Key": "k:a", "Value": "YQ"}]})
    assert store.put("k:a", "YQ").etag == "E8"


def test_throttling_forever_gives_up(store: KeyValueStoreEdgeStore, stub: Stubber, sleeps: list[float]) -> None:
    for _ in range(4):
        describe(stub, "E1")
        stub.add_client_error("update_keys", "ThrottlingException", "Rate exceeded", 400)
    with pytest.raises(RetriesExhaustedError, match=r"write call 1 of 1 after 4 attempts \(throttled: ThrottlingException"):
        store.put("k:a", "YQ")
    assert len(sleeps) == 3


@pytest.mark.parametrize(
    ("code", "status", "hint"),
    [
        ("ValidationException", 400, "ValidationException: bad key"),
        ("ServiceQuotaExceededException", 402, "5 MB"),
        ("AccessDeniedException", 403, "AccessDeniedException"),
    ],
)
def test_other_write_errors_are_not_retried_and_say_where(
    store: KeyValueStoreEdgeStore, stub: Stubber, sleeps: list[float], code: str, status: int, hint: str
) -> None:
    describe(stub, "E1")
    stub.add_client_error("update_keys", code, "bad key", status)
    with pytest.raises(EdgeStoreError) as info:
        store.put("k:a", "YQ")
    assert not isinstance(info.value, RetriesExhaustedError)
    message = str(info.value)
    assert "UpdateKeys" in message and ARN in message and hint in message and "nothing in this call was applied" in message
    assert sleeps == []


def test_get_key_maps_not_found_to_none(store: KeyValueStoreEdgeStore, stub: Stubber) -> None:
    stub.add_response(
        "get_key", {"Key": "k:a", "Value": "YQ", "ItemCount": 1, "TotalSizeInBytes": 5}, {"KvsARN": ARN, "Key": "k:a"}
    )
    stub.add_client_error("get_key", "ResourceNotFoundException", "Key not found", 404, expected_params={"KvsARN": ARN, "Key": "k:b"})
    assert store.get("k:a") == "YQ"
    assert store.get("k:b") is None


def test_get_key_other_errors_carry_context(store: KeyValueStoreEdgeStore, stub: Stubber) -> None:
    stub.add_client_error("get_key", "AccessDeniedException", "not allowed", 403)
    with pytest.raises(EdgeStoreError, match=r"GetKey on arn:aws:cloudfront::123456789012:.* for key 'k:a' failed: AccessDeniedException: not allowed"):
        store.get("k:a")


def test_list_keys_follows_the_pagination_token(store: KeyValueStoreEdgeStore, stub: Stubber) -> None:
    stub.add_response(
        "list_keys",
        {"Items": [{"Key": "k:a", "Value": "YQ"}, {"Key": "r:1", "Value": "1|auto"}], "NextToken": "page-2"},
        {"KvsARN": ARN, "MaxResults": 50},
    )
    stub.add_response(
        "list_keys",
        {"Items": [{"Key": "r:2", "Value": "2|auto"}], "NextToken": "page-3"},
        {"KvsARN": ARN, "MaxResults": 50, "NextToken": "page-2"},
    )
    stub.add_response("list_keys", {"Items": [{"Key": "r:3", "Value": "3|manual"}]}, {"KvsARN": ARN, "MaxResults": 50, "NextToken": "page-3"})
    assert store.items("r:") == {"r:1": "1|auto", "r:2": "2|auto", "r:3": "3|manual"}


def test_list_keys_error_is_an_edge_store_error(store: KeyValueStoreEdgeStore, stub: Stubber) -> None:
    stub.add_client_error("list_keys", "ResourceNotFoundException", "Key value store not found", 404)
    with pytest.raises(EdgeStoreError, match="ListKeys on .* failed: ResourceNotFoundException"):
        store.items()


def test_usage_comes_from_describe(store: KeyValueStoreEdgeStore, stub: Stubber) -> None:
    describe(stub, "E1", items=1200, size=1_048_576)
    usage = store.usage()
    assert (usage.items, usage.bytes, usage.fraction) == (1200, 1_048_576, 0.2)


def test_size_accounting_uses_total_size_from_the_service(store: KeyValueStoreEdgeStore, stub: Stubber) -> None:
    # The service says the store is 10 bytes short of 5 MB: an 11-byte new entry is refused without writing,
    # after one GetKey shows the key is not there already.
    describe(stub, "E1", items=10, size=5 * 1024 * 1024 - 10)
    stub.add_client_error("get_key", "ResourceNotFoundException", "Key not found", 404, expected_params={"KvsARN": ARN, "Key": "r:abcdefgh"})
    with pytest.raises(EdgeStoreError, match="5242881 bytes"):
        store.put("r:abcdefgh", "1")


def test_open_store_with_an_arn_makes_the_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    store = open_store(ARN)
    assert isinstance(store, KeyValueStoreEdgeStore) and store.kvs_arn == ARN
    assert store.client.meta.service_model.service_name == "cloudfront-keyvaluestore"
    with pytest.raises(StoreValidationError, match="not a KeyValueStore ARN"):
        open_store("arn:aws:cloudfront::123456789012:distribution/EDFDVBD6EXAMPLE")
