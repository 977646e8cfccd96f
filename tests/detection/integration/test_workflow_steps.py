"""The workflow's steps without AWS (detection/workflow/steps.py), the run files adapters, and the handlers' settings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from core.lambda_support import ConfigurationError
from detection.workflow import handlers as workflow_handler
from detection.workflow.inputs import (
    PrepareInput,
    PublishInput,
    RecordInput,
    ReportInput,
    ScoreInput,
    parse_state,
)
from detection.workflow.run_files import LocalRunFiles, RunFilesError, S3RunFiles, open_run_files
from detection.workflow.steps import (
    MAX_TOKENS_PER_SESSION,
    WorkflowInputError,
    plan_run,
    record_page,
    run_id_for,
    run_local,
    run_metrics,
    run_time,
    token_exps,
)
from edge.store import LocalEdgeStore
from edge.tokens import MAX_TTL_SECONDS
from revocation.ledger import SqliteLedger
from tests.detection.workflow_helpers import label_column
from tests.helpers import mocked_aws, set_environment

NOW = 1_767_226_200.0  # 2026-01-01T00:10:00Z


def test_a_plan_binds_the_window_through_parameters_and_unloads_to_parquet() -> None:
    plan = plan_run(NOW + 0.7, window_minutes=10, table="media_shield.realtime_logs",
                    results_uri="s3://results/detection/", execution="exec-1")
    assert (plan.window_start, plan.window_end) == (NOW - 600, NOW)
    assert plan.run_id == "2026-01-01T00:10:00Z" == run_id_for(NOW + 0.7)
    window = (repr(NOW - 600), repr(NOW), repr(NOW - 600), repr(NOW))
    assert plan.parameters[:5] == (*window, "',13335,36183,36692,53813,54113,55256,62044,'")  # the shipped registry's
    own = plan_run(NOW, table="media_shield.realtime_logs", results_uri="s3://results/detection/", execution="e",
                   query_parameters={"shared_egress_asns": ",64496,", "location_free_asns": ",64497,"})  # an operator's
    assert own.parameters == (*window, "',64496,'", "',64497,'")
    assert plan.query.startswith("UNLOAD (") and str(NOW) not in plan.query  # bound, never spliced
    inner = plan.query[plan.query.index("(") + 1 : plan.query.rindex(")\nTO")]
    placeholders = list(sqlglot.parse_one(inner, read="trino").find_all(exp.Placeholder))
    assert len(placeholders) == 6 and "media_shield.realtime_logs" in plan.query
    assert plan.destination == "s3://results/detection/runs/20260101T001000Z/exec-1/features/"
    assert plan.pages == "s3://results/detection/runs/20260101T001000Z/exec-1/pages/"
    assert f"TO '{plan.destination}'" in plan.query and "format = 'PARQUET'" in plan.query


@pytest.mark.parametrize("kwargs", [
    {"window_minutes": 0}, {"window_minutes": float("nan")}, {"window_minutes": True}, {"window_minutes": 2000},
    {"table": "realtime_logs"}, {"table": "db.logs; DROP TABLE x"}, {"execution": "a/b"},
    {"results_uri": "https://example.com/"}, {"results_uri": "s3://bucket/it's/"},
])
def test_a_plan_refuses_bad_input(kwargs: dict[str, Any]) -> None:
    arguments = {"window_minutes": 10, "table": "db.logs", "results_uri": "s3://b/p/", "execution": "e", **kwargs}
    with pytest.raises(WorkflowInputError):
        plan_run(NOW, **arguments)


def test_run_time_takes_now_then_the_scheduled_time_then_the_execution_start() -> None:
    assert run_time({"now": NOW}) == NOW
    assert run_time({"scheduled_time": "2026-01-01T00:10:00Z"}) == NOW
    assert run_time({}, "2026-01-01T00:10:00.000Z") == NOW
    assert run_time({"scheduled_time": "2026-01-01T00:10:00"}) == NOW  # no zone: UTC
    for bad in ({"now": "soon"}, {"now": -1}, {"now": float("inf")}, {"scheduled_time": "yesterday"}, {}):
        with pytest.raises(WorkflowInputError):
            run_time(bad)


def test_token_exps_fall_back_to_the_longest_lifetime_when_the_list_may_be_cut() -> None:
    from tools.generate import session_token

    assert token_exps(None, NOW) == []
    assert token_exps(["garbage"], NOW) == [None]
    segment = "session_0000000001." + session_token("session_0000000001", iat=int(NOW), exp=int(NOW) + 7200,
                                                     paths=["live1"])
    assert token_exps([segment], NOW) == [int(NOW) + 7200]
    full = token_exps([segment] * MAX_TOKENS_PER_SESSION, NOW)
    assert full[-1] == math.ceil(NOW) + MAX_TTL_SECONDS and len(full) == MAX_TOKENS_PER_SESSION + 1


def _item(session_id: str, action: str = "revoke", exps: list[Any] | None = None) -> dict[str, Any]:
    return {
        "verdict": {"session_id": session_id, "run_id": "r1", "score": 2.0, "action": action,
                    "reasons": [{"code": "countries_at_once", "detail": "3 countries at once"}],
                    "features": {"distinct_countries": 3}, "decided_at": NOW},
        "token_exps": exps if exps is not None else [NOW + 3600],
    }


def test_record_page_is_idempotent_and_revokes_until_the_token_expires(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    page = [_item("session_0000000001"), _item("session_0000000002", "flag")]
    first = record_page(ledger, "r1", page, now=NOW)
    again = record_page(ledger, "r1", page, now=NOW + 60)
    assert (first.recorded, first.revoked) == (2, ["session_0000000001"])
    assert (again.recorded, again.unchanged, again.revoked) == (0, 2, [])
    (active,) = ledger.active_revocations(now=NOW)
    assert active.expires_at == NOW + 3600 + 300
    with pytest.raises(WorkflowInputError):
        record_page(ledger, "r1", [{"session_id": "x"}], now=NOW)


def test_run_metrics_count_what_the_run_did() -> None:
    metrics = run_metrics(
        {"sessions_scored": 10, "flagged": 3, "reasons": {"playback_rate": 2, "countries_at_once": 1}},
        [{"revoked": 2}, {"revoked": 1}],
        {"fraction": 0.25, "skipped": 1, "capacity_warning": False},
    )
    values = {(m.name, tuple(m.dimensions.items())): m.value for m in metrics}
    assert values[("SessionsFlagged", ())] == 3 and values[("SessionsRevoked", ())] == 3
    assert values[("SessionsFlaggedByReason", (("Reason", "playback_rate"),))] == 2
    assert values[("EdgeStoreUtilization", ())] == 25.0 and values[("RevocationsNotPublished", ())] == 1


def test_run_local_runs_the_workflow_steps_on_the_embedded_default(tmp_path: Path, corpus: dict[str, Any]) -> None:
    truth = label_column(corpus, "label")
    ledger, store = SqliteLedger(tmp_path / "ledger.sqlite"), LocalEdgeStore(tmp_path / "store.json")

    run = run_local(corpus["path"], ledger, store, page_size=3)

    assert corpus["end"] - 60 < run.window[1] <= corpus["end"] and len(run.pages) == len(run.score.pages)
    revoked = {key.removeprefix("r:") for key in store.items("r:")}
    assert revoked and all(truth[s] == "pirate" for s in revoked)
    assert run.published.puts == len(revoked)
    again = run_local(corpus["path"], ledger, store, page_size=3)
    assert again.published.puts == 0 and sum(len(p.revoked) for p in again.pages) == 0


# -- run files ---------------------------------------------------------------------------------------------------


def _parquet(rows: int) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"session_id": [f"s{i}" for i in range(rows)], "tokens": [["a.b"]] * rows}), sink)
    return sink.getvalue().to_pybytes()


def _exercise(files: Any, root: str) -> None:
    assert files.read_table(root + "features/") is None  # an empty result: no data file
    files.put_bytes(root + "features/part-1", _parquet(2))
    files.put_bytes(root + "features/part-2", _parquet(3))
    files.put_json(root + "pages/page-00001.json", [{"verdict": {}}])
    table = files.read_table(root + "features/")
    assert table.num_rows == 5 and table.column_names == ["session_id", "tokens"]
    assert files.get_json(root + "pages/page-00001.json") == [{"verdict": {}}]
    assert files.list(root + "pages/") == [root + "pages/page-00001.json"]
    files.put_bytes(root + "bad/part-1", b"not parquet")
    with pytest.raises(RunFilesError):
        files.read_table(root + "bad/")
    with pytest.raises(RunFilesError):
        files.get_json(root + "bad/part-1")
    with pytest.raises(RunFilesError):
        files.get_bytes(root + "missing.json")


def test_local_run_files(tmp_path: Path) -> None:
    files = open_run_files(str(tmp_path))
    assert isinstance(files, LocalRunFiles)
    _exercise(files, f"{tmp_path}/run/")


def test_s3_run_files() -> None:
    with mocked_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="results")
        files = open_run_files("s3://results/x/", client=s3)
        assert isinstance(files, S3RunFiles)
        _exercise(S3RunFiles(s3), "s3://results/run/")
    with pytest.raises(RunFilesError):
        open_run_files("gs://elsewhere/")


# -- handler settings --------------------------------------------------------------------------------------------


def test_a_step_with_a_bad_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(monkeypatch, {
        "GLUE_DATABASE": "media_shield", "GLUE_TABLE": "logs", "RESULTS_URI": "https://not-s3/",
        "ATHENA_WORKGROUP": None, "WINDOW_MINUTES": None,
    })  # fmt: skip
    with pytest.raises(ConfigurationError, match="RESULTS_URI") as raised:
        workflow_handler.PrepareSettings.from_env()
    assert "ATHENA_WORKGROUP" in str(raised.value) and "not-s3" not in str(raised.value)
    monkeypatch.setenv("DETECTION_CONFIG", '{"revoke_score": -1}')
    with pytest.raises(ConfigurationError, match="DETECTION_CONFIG"):
        workflow_handler.ScoreSettings.from_env().config()
    monkeypatch.setenv("DETECTION_CONFIG", '{"monitor": true}')
    assert workflow_handler.ScoreSettings.from_env().config().monitor is True


@pytest.mark.parametrize(("model", "event", "problem"), [
    (RecordInput, {"run_id": "r1", "now": True, "page": "s3://b/p.json"}, "now"),
    (RecordInput, {"run_id": "r1", "now": "1767226200", "page": "s3://b/p.json"}, "now"),
    (RecordInput, {"run_id": "", "now": NOW, "page": "s3://b/p.json"}, "run_id"),
    (ScoreInput, {"plan": {"run_id": "r1", "now": NOW, "pages": "s3://b/p/"}}, "plan.destination"),
    (PublishInput, {"run_id": "r1", "now": float("inf"), "pages": "s3://b/p/"}, "now"),
    (ReportInput, {"outcome": "maybe"}, "outcome"),
    (PrepareInput, {"input": [], "execution": "e"}, "input"),
])
def test_a_state_input_that_does_not_fit_names_the_field(model: Any, event: dict[str, Any], problem: str) -> None:
    with pytest.raises(WorkflowInputError, match=f"{model.__name__}: {problem}"):
        parse_state(event, model)


def test_state_inputs_ignore_what_the_state_passes_beside_them() -> None:
    state = parse_state({"run_id": "r1", "now": NOW, "page": "s3://b/p.json", "extra": 1}, RecordInput)
    assert (state.run_id, state.now, state.page) == ("r1", NOW, "s3://b/p.json")
