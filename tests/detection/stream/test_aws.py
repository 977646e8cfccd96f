"""The stream on moto: the DynamoDB state (idempotent, shards writing at once) and the Lambda handler fed from a
Kinesis stream."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from detection.networks import default_registry
from detection.stream.evidence import MinuteState, sighting
from detection.stream.state_dynamodb import DynamoDbStreamState, create_state_table
from revocation.ledger.dynamodb import create_table
from tests.detection.stream.records import MINUTE, kinesis_event, line, two_homes
from tests.helpers import REGION, FakeLambdaContext, imported_handler, mocked_aws, powertools_env


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mocked_aws():
        yield boto3.client("dynamodb", region_name=REGION)


def minutes_of(rows: list[dict]) -> list[MinuteState]:
    found: dict[tuple[str, int], MinuteState] = {}
    for values in rows:
        seen = sighting(values, default_registry())
        found.setdefault((seen.session_id, seen.minute), MinuteState(seen.session_id, seen.minute)).add(seen)
    return list(found.values())


def test_the_state_table_adds_sets_once_whatever_the_order_and_the_repeats(dynamodb: Any) -> None:
    create_state_table(dynamodb, "stream-state")
    rows = two_homes("sess_dynamo_state_01", minutes=3)
    state = DynamoDbStreamState("stream-state", client=dynamodb)
    germany = [r for r in rows if r["c_country"] == "DE"]
    france = [r for r in rows if r["c_country"] == "FR"]
    with ThreadPoolExecutor(4) as pool:  # two shards, each delivering its records twice, at once
        list(pool.map(lambda part: state.add(minutes_of(part), expires_at=MINUTE + 9999),
                      [germany, france, france, germany]))
    expected = {m.minute: m for m in minutes_of(rows)}
    stored = state.window("sess_dynamo_state_01", MINUTE // 60, MINUTE // 60 + 2)
    assert [m.minute for m in stored] == sorted(expected)
    for minute in stored:
        assert minute.sets == expected[minute.minute].sets and minute.exps == expected[minute.minute].exps
        assert minute.first_seen is not None
    assert state.window("sess_dynamo_state_01", MINUTE // 60 + 1, MINUTE // 60 + 1)[0].minute == MINUTE // 60 + 1
    item = dynamodb.scan(TableName="stream-state")["Items"][0]
    assert item["expires_at"] == {"N": str(MINUTE + 9999)}
    ttl = dynamodb.describe_time_to_live(TableName="stream-state")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"


def test_a_full_item_keeps_what_it_has() -> None:
    client = boto3.client("dynamodb", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    (minute,) = minutes_of(two_homes("sess_dynamo_full_001", minutes=1))
    stored = {"session_id": {"S": minute.session_id}, "minute": {"N": str(minute.minute)}, "c": {"SS": ["DE"]}}
    with Stubber(client) as stub:
        stub.add_client_error("update_item", "ValidationException",
                              "Item size has exceeded the maximum allowed size")
        stub.add_response("get_item", {"Item": stored})
        state = DynamoDbStreamState("stream-state", client=client)
        (kept,) = state.add([minute], expires_at=MINUTE)
    assert kept.values("countries") == {"DE"} and state.oversized == 1


def test_the_handler_revokes_from_a_kinesis_batch_and_a_retry_adds_nothing(tmp_path: Path) -> None:
    start = (math.floor(time.time() / 60) - 2) * 60  # the two minutes before this one: nothing from the future
    session = f"sess_handler_{uuid.uuid4().hex[:12]}"
    lines = [line(r) for r in two_homes(session, minutes=2, start=start, exp=start + 3600)] + [b"not a log line\n"]
    with mocked_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_state_table(dynamodb, "stream-state")
        create_table(dynamodb, "ledger")
        kinesis = boto3.client("kinesis", region_name=REGION)
        kinesis.create_stream(StreamName="realtime-logs", ShardCount=2)
        event = kinesis_event(kinesis, "realtime-logs", lines)
        env = {**powertools_env("media-shield"), "STREAM_STATE_TABLE": "stream-state", "LEDGER_TABLE": "ledger",
               "EDGE_STORE": str(tmp_path / "store.json")}
        with imported_handler("detection.stream.handler", env) as module:
            first = module.handler(event, FakeLambdaContext())
            items = dynamodb.scan(TableName="stream-state")["Items"]
            again = module.handler(event, FakeLambdaContext())
            after = dynamodb.scan(TableName="stream-state")["Items"]
    assert (first["records"], first["revoked"], first["published"]) == (len(lines) - 1, 1, 1)
    assert again["revoked"] == 0  # the session is revoked already: the retry judges it no more
    sets = lambda found: sorted(json.dumps({k: v for k, v in i.items() if k not in ("expires_at",)}, sort_keys=True)
                                for i in found)  # noqa: E731
    assert sets(items) == sets(after) and len(items) == 2
    store = json.loads((tmp_path / "store.json").read_text(encoding="utf-8"))
    assert [e["key"] for e in store["data"]] == [f"r:{session}"]
