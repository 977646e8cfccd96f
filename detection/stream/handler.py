"""The stream consumer's Lambda handler: a batch of the real-time log stream (Kinesis event source) in, revocations
out (:class:`detection.stream.consumer.StreamConsumer`).

Each Kinesis record is one real-time log line; it is parsed with the log configuration's field list and the
Firehose transformation's parser. A line that is no record is counted and skipped (a poison record must not stop
the shard). Anything else that fails (the state table, the ledger, the edge store) fails the batch: the event
source retries it, halving it on each failure (bisect on error), and sends what keeps failing to the on-failure
destination. A retried batch adds nothing twice (the state's updates are idempotent; a session already revoked is
not judged again).

Configuration (environment): ``STREAM_STATE_TABLE``, ``LEDGER_TABLE``, ``EDGE_STORE``, ``WINDOW_MINUTES`` (10),
``DETECTION_CONFIG`` (the detection config as JSON), ``LOG_FIELDS`` (the field list, default the detection fields).
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any, ClassVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from core.lambda_support import powertools
from detection.logs.firehose import LineError, configured_fields, parse_record
from detection.scoring.lambda_settings import DetectionConfigSettings
from detection.stream.consumer import WINDOW_MINUTES, StreamConsumer
from detection.stream.state_dynamodb import DynamoDbStreamState
from edge.store import open_store
from revocation.ledger import open_ledger_setting

observability = powertools("media-shield")
logger, metrics, tracer = observability.logger, observability.metrics, observability.tracer


class StreamSettings(DetectionConfigSettings):
    describes: ClassVar[str] = "stream consumer"
    state_table: str = Field(validation_alias="STREAM_STATE_TABLE", min_length=1)
    ledger_table: str = Field(validation_alias="LEDGER_TABLE", min_length=1)
    edge_store: str = Field(validation_alias="EDGE_STORE", min_length=1)
    window_minutes: int = Field(WINDOW_MINUTES, validation_alias="WINDOW_MINUTES", ge=2, le=60)


@cache
def runtime() -> StreamConsumer:
    """One per container: the clients and the cache of sessions already revoked live as long as it does."""
    settings = StreamSettings.from_env()
    return StreamConsumer(
        DynamoDbStreamState(settings.state_table),
        open_ledger_setting(settings.ledger_table),
        open_store(settings.edge_store),
        settings.config(),
        window_minutes=settings.window_minutes,
    )


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=KinesisStreamEvent)
def handler(event: KinesisStreamEvent, context: LambdaContext) -> dict[str, Any]:
    fields = configured_fields()
    rows: list[dict[str, Any]] = []
    rejected = 0
    for record in event.records:
        try:
            rows.extend(parse_record(record.kinesis.data_as_bytes(), fields))
        except LineError as exc:
            rejected += 1
            logger.warning("log record rejected", extra={"kind": exc.kind, "error": str(exc),
                                                         "sequence_number": record.kinesis.sequence_number})
    now = time.time()
    outcome = runtime().process(rows, now)
    metrics.add_metric(name="StreamRecords", unit=MetricUnit.Count, value=outcome.records)
    metrics.add_metric(name="StreamRecordsRejected", unit=MetricUnit.Count, value=rejected)
    metrics.add_metric(name="StreamRecordsLate", unit=MetricUnit.Count, value=outcome.late)
    metrics.add_metric(name="StreamSessionsRevoked", unit=MetricUnit.Count, value=len(outcome.revocations))
    for revoked in outcome.revocations:
        if revoked.first_seen is not None:
            metrics.add_metric(name="StreamSecondsToRevoke", unit=MetricUnit.Seconds,
                               value=round(now - revoked.first_seen, 1))
        logger.info("revoked by the stream", extra={"session_id": revoked.session_id,
                                                    "reasons": ", ".join(r.code for r in revoked.reasons),
                                                    "expires_at": revoked.expires_at})
    if outcome.publish_error:
        logger.error("revocations recorded but not yet at the edge: the workflow's next publish writes them",
                     extra={"error": outcome.publish_error})
    logger.info("batch judged", extra=outcome.counts())
    return outcome.counts()
