"""The Lambda handlers of the detection workflow (``statemachine/detection.asl.json``): thin on purpose.

Each handler reads its state's input, calls one step of :mod:`detection.workflow.steps`, and moves data through the run
files (S3) so that only locations and counts travel between states. One module, one function per state, each
deployed as its own Lambda function with only the permissions of its step:

===========  ===================================================================================================
``prepare``  input ``{"input": <execution input>, "execution": <name>, "started": <ISO time>}`` → the run plan
             (``run_id``, ``window``, the UNLOAD statement and its ``parameters``, ``workgroup``,
             ``poll_seconds``, ``max_polls``). The execution input may carry ``now`` (epoch seconds),
             ``scheduled_time`` (ISO, from EventBridge Scheduler) and ``window_minutes``.
``score``    ``{"plan"}`` → reads the unloaded per-session table, applies the policy, writes verdict pages, logs
             one ``verdict`` line per flagged session (the dashboard's table) → ``{"flagged", "pages", ...}``.
``record``   ``{"run_id", "now", "page"}`` → one page into the ledger, offenders revoked; the revocation records
             it wrote go next to the page (``*.fresh.json``) for ``publish``.
``publish``  ``{"run_id", "now", "pages"}`` → the ledger into the edge store. A partial failure raises
             ``PublishError`` (the workflow retries; the ledger is the truth and the next run repairs).
``report``   ``{"outcome": "succeeded" | "failed", ...}`` → the run's metrics (namespace MediaShield).
===========  ===================================================================================================

Configuration (environment): ``GLUE_DATABASE``, ``GLUE_TABLE``, ``RESULTS_URI`` (``s3://bucket/prefix/``),
``ATHENA_WORKGROUP``, ``WINDOW_MINUTES`` (10), ``POLL_SECONDS`` (5), ``MAX_POLLS`` (120) for ``prepare``;
``DETECTION_CONFIG`` (JSON of :class:`detection.scoring.config.DetectionConfig`, optional) and ``PAGE_SIZE`` for
``score``; ``LEDGER_TABLE`` for ``record`` and ``publish``; ``EDGE_STORE`` for ``publish``.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from core.lambda_support import LambdaSettings, powertools
from detection.scoring.lambda_settings import DetectionConfigSettings
from detection.workflow.inputs import (
    PrepareInput,
    PublishInput,
    RecordInput,
    ReportInput,
    ScoreInput,
    parse_state,
)
from detection.workflow.run_files import RunFiles, open_run_files
from detection.workflow.steps import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_WINDOW_MINUTES,
    Metric,
    WorkflowInputError,
    plan_run,
    publish_summary,
    record_page,
    run_metrics,
    run_time,
    score_features,
)
from edge.store import EdgeStore, open_store
from revocation.ledger import Ledger, open_ledger_setting
from revocation.ledger.base import Revocation
from revocation.publisher import publish as publish_store

observability = powertools("media-shield")
SERVICE = observability.service
logger, metrics, tracer = observability.logger, observability.metrics, observability.tracer

FRESH_SUFFIX = ".fresh.json"


class PrepareSettings(DetectionConfigSettings):
    describes: ClassVar[str] = "detection workflow (prepare)"
    glue_database: str = Field(validation_alias="GLUE_DATABASE", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    glue_table: str = Field(validation_alias="GLUE_TABLE", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    results_uri: str = Field(validation_alias="RESULTS_URI", pattern=r"^s3://[^/\s']+/[^\s']*$")
    workgroup: str = Field(validation_alias="ATHENA_WORKGROUP", min_length=1)
    window_minutes: float = Field(DEFAULT_WINDOW_MINUTES, validation_alias="WINDOW_MINUTES", ge=1, le=1440)
    poll_seconds: int = Field(5, validation_alias="POLL_SECONDS", ge=0, le=300)
    max_polls: int = Field(120, validation_alias="MAX_POLLS", ge=1, le=10_000)


class ScoreSettings(DetectionConfigSettings):
    describes: ClassVar[str] = "detection workflow (score)"
    page_size: int = Field(DEFAULT_PAGE_SIZE, validation_alias="PAGE_SIZE", ge=1, le=1000)


class LedgerSettings(LambdaSettings):
    describes: ClassVar[str] = "detection workflow (record)"
    ledger_table: str = Field(validation_alias="LEDGER_TABLE", min_length=1)


class PublishSettings(LedgerSettings):
    describes: ClassVar[str] = "detection workflow (publish)"
    edge_store: str = Field(validation_alias="EDGE_STORE", min_length=1)


@cache
def _run_files(uri_scheme: str) -> RunFiles:
    return open_run_files(uri_scheme)


@cache
def _ledger(spec: str) -> Ledger:
    return open_ledger_setting(spec)


@cache
def _store(spec: str) -> EdgeStore:
    return open_store(spec)


def _files(uri: str) -> RunFiles:
    return _run_files("s3://" if uri.startswith("s3://") else "")


# -- handlers ----------------------------------------------------------------------------------------------------


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def prepare(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = PrepareSettings.from_env()
    state = parse_state(event, PrepareInput)
    now = run_time(state.input, state.started)
    plan = plan_run(
        now,
        window_minutes=state.input.get("window_minutes", settings.window_minutes),
        table=f"{settings.glue_database}.{settings.glue_table}",
        results_uri=settings.results_uri,
        execution=state.execution,
        query_parameters=settings.networks().query_parameters(),
    )
    logger.info("run planned", extra={"run_id": plan.run_id, "window": [plan.window_start, plan.window_end]})
    return {
        **plan.to_dict(),
        "workgroup": settings.workgroup,
        "poll_seconds": settings.poll_seconds,
        "max_polls": settings.max_polls,
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def score(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = ScoreSettings.from_env()
    plan = parse_state(event, ScoreInput).plan
    run_id, now, features_uri, pages_uri = plan.run_id, plan.now, plan.destination, plan.pages
    files = _files(features_uri)
    table = files.read_table(features_uri)
    if table is None or table.num_rows == 0:
        import pyarrow as pa  # the score step alone needs pyarrow: the other four steps start without it

        logger.info("no session in the window", extra={"run_id": run_id})
        table = table if table is not None else pa.table({})  # no data file: scored like an empty table
    outcome = score_features(table, settings.config(), run_id=run_id, now=now, page_size=settings.page_size)
    for verdict in outcome.verdicts:
        logger.info(
            "verdict",
            extra={
                "run_id": run_id,
                "session_id": verdict.session_id,
                "reasons": ", ".join(verdict.codes),
                "score": round(float(verdict.score), 4),
                "action": verdict.action.value,
            },
        )
    pages = []
    for number, page in enumerate(outcome.pages, start=1):
        uri = f"{pages_uri}page-{number:05d}.json"
        files.put_json(uri, page)
        pages.append(uri)
    return {"run_id": run_id, **outcome.stats, "pages": pages}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def record(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = LedgerSettings.from_env()
    state = parse_state(event, RecordInput)
    run_id, now, page_uri = state.run_id, state.now, state.page
    files = _files(page_uri)
    items = files.get_json(page_uri)
    if not isinstance(items, list):
        raise WorkflowInputError(f"{page_uri} is not a verdict page (a JSON list)")
    outcome = record_page(_ledger(settings.ledger_table), run_id, items, now=now)
    files.put_json(page_uri.removesuffix(".json") + FRESH_SUFFIX, [r.model_dump(mode="json") for r in outcome.fresh])
    logger.info("page recorded", extra={"run_id": run_id, "page": page_uri, **outcome.to_dict()})
    return outcome.to_dict()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def publish(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = PublishSettings.from_env()
    state = parse_state(event, PublishInput)
    run_id, now, pages_uri = state.run_id, state.now, state.pages
    files = _files(pages_uri)
    fresh = [
        Revocation.model_validate(record)
        for uri in files.list(pages_uri)
        if uri.endswith(FRESH_SUFFIX)
        for record in files.get_json(uri)
    ]
    result = publish_store(_ledger(settings.ledger_table), _store(settings.edge_store), now=now, fresh=fresh)
    if result.capacity_warning:
        logger.warning("edge store near full", extra={"run_id": run_id, "fraction": result.fraction})
    logger.info("published", extra={"run_id": run_id, "puts": result.puts, "deletes": result.deletes})
    return publish_summary(result)


@metrics.log_metrics
@logger.inject_lambda_context
def report(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = parse_state(event, ReportInput)
    if state.outcome == "failed":
        error = state.error
        metrics.add_metric(name="WorkflowFailures", unit=MetricUnit.Count, value=1)
        logger.error("detection run failed", extra={"error": error.get("Error"), "cause": error.get("Cause")})
        return {"outcome": "failed", "error": error.get("Error"), "cause": error.get("Cause")}
    score_summary = state.score
    emitted = run_metrics(score_summary, state.recorded, state.published)
    for metric in emitted:
        _emit(metric)
    summary = {m.name: m.value for m in emitted if not m.dimensions}
    logger.info("detection run finished", extra={"run_id": score_summary.get("run_id"), **summary})
    return {"outcome": "succeeded", **summary}


def _emit(metric: Metric) -> None:
    unit = MetricUnit(metric.unit)
    if not metric.dimensions:
        metrics.add_metric(name=metric.name, unit=unit, value=metric.value)
        return
    with single_metric(
        name=metric.name,
        unit=unit,
        value=metric.value,
        namespace=metrics.namespace,
        default_dimensions={"service": SERVICE, **metric.dimensions},
    ):
        pass
