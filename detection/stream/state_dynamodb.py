"""The stream's state in DynamoDB: one item per session and minute, its sets as DynamoDB string sets.

Key ``session_id`` (S) and ``minute`` (N); one letter per set (:attr:`MinuteState.NAMES`), ``e`` the tokens'
``exp`` (a number set), ``first_seen`` (set by the first batch only), ``expires_at`` the TTL. An update is one
``UpdateItem`` that ADDs members to the sets: DynamoDB applies it atomically, and adding members already there
changes nothing, so shards writing one session at once and a batch retried after a failure both leave the same item.
``ReturnValues=ALL_NEW`` hands back the minute as every batch made it, which is what the consumer judges. The calls
of one batch run in parallel threads (there is no batch form of UpdateItem).

A window is a ``Query`` on the session's key, strongly consistent so that it sees what the batch just wrote
(botocore's paginator follows its pages).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core.aws import dynamodb_client
from detection.stream.evidence import MinuteState

logger = logging.getLogger(__name__)

LETTER = MinuteState.NAMES
NAME_OF = {letter: name for name, letter in LETTER.items()}
EXPS = "e"
#: DynamoDB items hold at most 400 KB: a minute that grows past it keeps what it had (its evidence is there).
ITEM_TOO_LARGE = "Item size"


#: The table (template.yaml's StreamStateTable has these properties; a test holds them equal).
TABLE_DEFINITION: dict[str, Any] = {
    "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [{"AttributeName": "session_id", "AttributeType": "S"},
                             {"AttributeName": "minute", "AttributeType": "N"}],
    "KeySchema": [{"AttributeName": "session_id", "KeyType": "HASH"}, {"AttributeName": "minute", "KeyType": "RANGE"}],
    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
}


def create_state_table(client: Any, table_name: str) -> None:
    """Create the state table and wait for it, with its TTL (tests, local set-ups; AWS gets it from the template)."""
    client.create_table(TableName=table_name, **{k: v for k, v in TABLE_DEFINITION.items()
                                                 if k != "TimeToLiveSpecification"})
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(TableName=table_name,
                               TimeToLiveSpecification=TABLE_DEFINITION["TimeToLiveSpecification"])


class StreamStateError(RuntimeError):
    """The state table cannot be read or written."""


class DynamoDbStreamState:
    def __init__(self, table: str, *, client: Any = None, threads: int = 16) -> None:
        self.table = table
        self._client = client or dynamodb_client()
        self._threads = threads
        self.oversized = 0

    def add(self, minutes: Sequence[MinuteState], *, expires_at: int) -> list[MinuteState]:
        if len(minutes) <= 1:
            return [self._add(m, expires_at) for m in minutes]
        with ThreadPoolExecutor(max_workers=min(self._threads, len(minutes))) as pool:
            return list(pool.map(lambda m: self._add(m, expires_at), minutes))

    def _add(self, minute: MinuteState, expires_at: int) -> MinuteState:
        adds, values = [], {":x": {"N": str(int(expires_at))}}
        for name, members in minute.sets.items():
            if members:
                letter = LETTER[name]
                adds.append(f"{letter} :{letter}")
                values[f":{letter}"] = {"SS": sorted(members)}
        if minute.exps:
            adds.append(f"{EXPS} :{EXPS}")
            values[f":{EXPS}"] = {"NS": [str(e) for e in sorted(minute.exps)]}
        sets = "SET expires_at = :x"
        if minute.first_seen is not None:
            sets += ", first_seen = if_not_exists(first_seen, :t)"
            values[":t"] = {"N": repr(float(minute.first_seen))}
        expression = sets + (" ADD " + ", ".join(adds) if adds else "")
        try:
            answer = self._client.update_item(
                TableName=self.table,
                Key=self._key(minute.session_id, minute.minute),
                UpdateExpression=expression,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ValidationException" and ITEM_TOO_LARGE in error.get("Message", ""):
                self.oversized += 1
                logger.warning("state item of %s minute %s is full", minute.session_id, minute.minute)
                return self._get(minute)
            raise StreamStateError(f"cannot update the stream state table {self.table}: {exc}") from exc
        except BotoCoreError as exc:
            raise StreamStateError(f"cannot update the stream state table {self.table}: {exc}") from exc
        return from_item(answer["Attributes"])

    def _get(self, minute: MinuteState) -> MinuteState:
        try:
            item = self._client.get_item(TableName=self.table, Key=self._key(minute.session_id, minute.minute),
                                         ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StreamStateError(f"cannot read the stream state table {self.table}: {exc}") from exc
        return from_item(item) if item else minute

    def window(self, session_id: str, first_minute: int, last_minute: int) -> list[MinuteState]:
        pages = self._client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="session_id = :s AND #m BETWEEN :a AND :b",
            ExpressionAttributeNames={"#m": "minute"},
            ExpressionAttributeValues={":s": {"S": session_id}, ":a": {"N": str(first_minute)},
                                       ":b": {"N": str(last_minute)}},
            ConsistentRead=True,
        )  # fmt: skip
        try:
            return [from_item(item) for page in pages for item in page.get("Items", [])]
        except (ClientError, BotoCoreError) as exc:
            raise StreamStateError(f"cannot query the stream state table {self.table}: {exc}") from exc

    @staticmethod
    def _key(session_id: str, minute: int) -> dict[str, Any]:
        return {"session_id": {"S": session_id}, "minute": {"N": str(minute)}}


def from_item(item: dict[str, Any]) -> MinuteState:
    state = MinuteState(item["session_id"]["S"], int(item["minute"]["N"]))
    for letter, name in NAME_OF.items():
        if letter in item:
            state.sets[name] = set(item[letter]["SS"])
    if EXPS in item:
        state.exps = {int(e) for e in item[EXPS]["NS"]}
    if "first_seen" in item:
        state.first_seen = float(item["first_seen"]["N"])
    return state
