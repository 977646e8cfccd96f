"""Real-time log records for the stream tests: rows in the log schema's columns, and the TSV lines CloudFront sends."""

from __future__ import annotations

import base64
import json
from typing import Any

from detection.logs.schema import DETECTION_FIELDS
from tests.helpers import REGION

MINUTE = 1_767_225_600  # 2026-01-01T00:00:00Z, a minute boundary
EXP = MINUTE + 7200


def token(session_id: str, exp: int = EXP) -> str:
    """A token segment as the URL carries it; only its claims matter here (detection never verifies it)."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{session_id}.{part({'alg': 'HS256', 'kid': 'k1'})}.{part({'sid': session_id, 'exp': exp})}.c2ln"


def row(session_id: str, ts: float, ip: str, *, country: str = "DE", asn: int = 3320, status: int = 200,
        file: str | None = None, seq: int = 1, channel: str = "live-ch1", ua: str = "Player/1.0",
        cmcd_sid: str | None = None, request_id: str | None = None, exp: int = EXP) -> dict[str, Any]:
    name = file or f"seg_{seq:05d}.ts"
    values = {"timestamp": ts, "c_ip": ip, "asn": asn, "c_country": country, "sc_status": status,
              "cs_uri_stem": f"/{token(session_id, exp)}/{channel}/720p/{name}", "cs_user_agent": ua,
              "x_edge_request_id": request_id or f"req-{session_id}-{ip}-{ts}-{name}"}
    if cmcd_sid:
        values["cmcd_session_id"] = cmcd_sid
    return values


def line(values: dict[str, Any]) -> bytes:
    """The TSV line of a row, fields in the detection configuration's order, '-' for what it lacks."""
    return ("\t".join(str(values.get(f.column, "-")) for f in DETECTION_FIELDS) + "\n").encode()


def two_homes(session_id: str, minutes: int = 2, start: float = MINUTE, exp: int = EXP) -> list[dict[str, Any]]:
    """One token played at the same time in Germany and in France, a segment every 6 s in each, for ``minutes``."""
    rows = []
    for second in range(0, 60 * minutes, 6):
        seq = 100 + second // 6
        rows.append(row(session_id, start + second + 0.5, "198.51.100.7", seq=seq, exp=exp))
        rows.append(row(session_id, start + second + 2.5, "203.0.113.9", country="FR", asn=3215, seq=seq + 40,
                        exp=exp))
    return rows


def one_viewer(session_id: str, minutes: int = 2, start: float = MINUTE, ip: str = "198.51.100.20"
               ) -> list[dict[str, Any]]:
    return [row(session_id, start + second + 1, ip, seq=500 + second // 6) for second in range(0, 60 * minutes, 6)]


def kinesis_event(kinesis: Any, stream: str, lines: list[bytes]) -> dict[str, Any]:
    """Put the lines on the stream (one record each, as CloudFront does), read them back from every shard, and wrap
    them the way Lambda's Kinesis event source does."""
    arn = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamARN"]
    for number, data in enumerate(lines):
        kinesis.put_record(StreamName=stream, Data=data, PartitionKey=f"edge-{number % 7}")
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for record in kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]:
            records.append({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": record["PartitionKey"],
                            "sequenceNumber": record["SequenceNumber"],
                            "data": base64.b64encode(record["Data"]).decode(),
                            "approximateArrivalTimestamp": record["ApproximateArrivalTimestamp"].timestamp()},
                "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventName": "aws:kinesis:record",
                "eventID": f"{shard['ShardId']}:{record['SequenceNumber']}", "awsRegion": REGION,
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/stream-consumer", "eventSourceARN": arn,
            })
    return {"Records": records}
