"""tools.attach: attach the viewer-request function and the real-time log configuration to an existing
distribution's cache behaviors, dry run first, backup and ETag on apply, undo.

moto's CloudFront runs the reads and updates (it keeps RealtimeLogConfigArn but drops FunctionAssociations and
accepts any IfMatch), so what is sent is checked on the wire with botocore's event hooks; botocore's Stubber plays
the answers moto cannot give (an existing function, a stale ETag)."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from tests.helpers import mocked_aws
from tools.attach import (
    BACKUP_FORMAT,
    AttachError,
    behavior_names,
    config_diff,
    main,
    plan_attach,
)

FUNCTION = "arn:aws:cloudfront::123456789012:function/media-shield-viewer-request"
OTHER_FUNCTION = "arn:aws:cloudfront::123456789012:function/legacy-rewrite"
LOG_CONFIG = "arn:aws:cloudfront::123456789012:realtime-log-config/media-shield-realtime-logs"
OTHER_LOG_CONFIG = "arn:aws:cloudfront::123456789012:realtime-log-config/bi-pipeline"
EDGE_LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:auth:3"


def _behavior(**extra: Any) -> dict[str, Any]:
    return {
        "TargetOriginId": "media",
        "ViewerProtocolPolicy": "redirect-to-https",
        "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6",
        **extra,
    }


def _config(**default: Any) -> dict[str, Any]:
    return {
        "CallerReference": "media-shield-test",
        "Comment": "existing distribution",
        "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{
            "Id": "media",
            "DomainName": "origin.example.com",
            "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"},
        }]},
        "DefaultCacheBehavior": _behavior(**default),
        "CacheBehaviors": {"Quantity": 2, "Items": [
            _behavior(PathPattern="/live/*"),
            _behavior(PathPattern="/static/*"),
        ]},
    }


def _behaviors_of(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    named = {"default": config["DefaultCacheBehavior"]}
    named.update({b["PathPattern"]: b for b in config.get("CacheBehaviors", {}).get("Items", [])})
    return named


# -- the plan (pure) ---------------------------------------------------------------------------------------------


def test_plan_attaches_to_every_behavior_by_default_and_keeps_other_events() -> None:
    config = _config(FunctionAssociations={"Quantity": 1, "Items": [
        {"FunctionARN": OTHER_FUNCTION, "EventType": "viewer-response"}]})
    before = copy.deepcopy(config)
    plan = plan_attach(config, function_arn=FUNCTION, realtime_log_config_arn=LOG_CONFIG)
    assert config == before  # the input is not modified
    assert plan.behaviors == behavior_names(config) == ["default", "/live/*", "/static/*"]
    assert not plan.conflicts and len(plan.changes) == 6
    for name, behavior in _behaviors_of(plan.updated).items():
        functions = behavior["FunctionAssociations"]
        assert functions["Quantity"] == len(functions["Items"])
        assert {"FunctionARN": FUNCTION, "EventType": "viewer-request"} in functions["Items"], name
        assert behavior["RealtimeLogConfigArn"] == LOG_CONFIG
    assert {"FunctionARN": OTHER_FUNCTION, "EventType": "viewer-response"} in (
        plan.updated["DefaultCacheBehavior"]["FunctionAssociations"]["Items"])
    again = plan_attach(plan.updated, function_arn=FUNCTION, realtime_log_config_arn=LOG_CONFIG)
    assert not again.changed and not again.changes  # idempotent


def test_plan_touches_only_the_chosen_behaviors() -> None:
    plan = plan_attach(_config(), function_arn=FUNCTION, realtime_log_config_arn=None, behaviors=["/live/*"])
    behaviors = _behaviors_of(plan.updated)
    assert behaviors["/live/*"]["FunctionAssociations"]["Items"][0]["FunctionARN"] == FUNCTION
    assert "FunctionAssociations" not in behaviors["default"] and "RealtimeLogConfigArn" not in behaviors["/live/*"]
    assert [str(c) for c in plan.changes] == [f"/live/*: add viewer-request function {FUNCTION}"]


def test_plan_refuses_a_different_viewer_request_function_unless_replace() -> None:
    config = _config(FunctionAssociations={"Quantity": 1, "Items": [
        {"FunctionARN": OTHER_FUNCTION, "EventType": "viewer-request"}]})
    plan = plan_attach(config, function_arn=FUNCTION, realtime_log_config_arn=LOG_CONFIG)
    assert [(c.behavior, c.current) for c in plan.conflicts] == [("default", OTHER_FUNCTION)]
    assert "--replace" in str(plan.conflicts[0])
    assert not plan.changed and not plan.changes  # refused as a whole
    replaced = plan_attach(config, function_arn=FUNCTION, realtime_log_config_arn=LOG_CONFIG, replace=True)
    assert not replaced.conflicts
    assert replaced.updated["DefaultCacheBehavior"]["FunctionAssociations"] == {
        "Quantity": 1, "Items": [{"FunctionARN": FUNCTION, "EventType": "viewer-request"}]}
    assert f"default: replace viewer-request function {OTHER_FUNCTION} -> {FUNCTION}" in map(str, replaced.changes)


def test_plan_refuses_lambda_at_edge_on_viewer_request_unless_replace() -> None:
    config = _config(LambdaFunctionAssociations={"Quantity": 2, "Items": [
        {"LambdaFunctionARN": EDGE_LAMBDA, "EventType": "viewer-request", "IncludeBody": False},
        {"LambdaFunctionARN": EDGE_LAMBDA, "EventType": "origin-request", "IncludeBody": False}]})
    plan = plan_attach(config, function_arn=FUNCTION, realtime_log_config_arn=None, behaviors=["default"])
    assert [c.current for c in plan.conflicts] == [EDGE_LAMBDA]
    replaced = plan_attach(config, function_arn=FUNCTION, realtime_log_config_arn=None, behaviors=["default"],
                           replace=True)
    kept = replaced.updated["DefaultCacheBehavior"]["LambdaFunctionAssociations"]
    assert kept == {"Quantity": 1, "Items": [
        {"LambdaFunctionARN": EDGE_LAMBDA, "EventType": "origin-request", "IncludeBody": False}]}


def test_plan_refuses_a_different_realtime_log_config_unless_replace() -> None:
    config = _config(RealtimeLogConfigArn=OTHER_LOG_CONFIG)
    plan = plan_attach(config, function_arn=None, realtime_log_config_arn=LOG_CONFIG)
    assert [(c.behavior, c.current) for c in plan.conflicts] == [("default", OTHER_LOG_CONFIG)]
    replaced = plan_attach(config, function_arn=None, realtime_log_config_arn=LOG_CONFIG, replace=True)
    assert replaced.updated["DefaultCacheBehavior"]["RealtimeLogConfigArn"] == LOG_CONFIG


LOCATION_POLICY = "0f5c9d2e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
CORS_POLICY = "88a5eaf4-2fd4-4709-b370-b4c650ea3fcf"


def test_plan_attaches_the_viewer_location_policy_only_where_it_can() -> None:
    config = _config()
    config["CacheBehaviors"]["Items"][0]["OriginRequestPolicyId"] = CORS_POLICY  # /live/* forwards CORS headers
    legacy = config["CacheBehaviors"]["Items"][1]
    del legacy["CachePolicyId"]
    legacy["ForwardedValues"] = {"QueryString": False}
    kwargs: dict[str, Any] = {"function_arn": None, "realtime_log_config_arn": None,
                              "origin_request_policy_id": LOCATION_POLICY}
    plan = plan_attach(config, **kwargs)
    assert [(c.behavior, c.current) for c in plan.conflicts] == [("/live/*", CORS_POLICY), ("/static/*", "ForwardedValues")]
    assert "add CloudFront-Viewer-Country" in str(plan.conflicts[0]) and plan.updated == config
    only_default = plan_attach(config, behaviors=["default"], **kwargs)
    assert [str(c) for c in only_default.changes] == [f"default: add origin request policy {LOCATION_POLICY}"]
    assert only_default.updated["DefaultCacheBehavior"]["OriginRequestPolicyId"] == LOCATION_POLICY
    replaced = plan_attach(config, behaviors=["default", "/live/*"], replace=True, **kwargs)
    assert _behaviors_of(replaced.updated)["/live/*"]["OriginRequestPolicyId"] == LOCATION_POLICY
    again = plan_attach(only_default.updated, behaviors=["default"], **kwargs)
    assert not again.changed and not again.changes


@pytest.mark.parametrize("kwargs, message", [
    ({"function_arn": None, "realtime_log_config_arn": None}, "nothing to attach"),
    ({"function_arn": "arn:aws:lambda:us-east-1:123456789012:function:x", "realtime_log_config_arn": None},
     "not a CloudFront Function ARN"),
    ({"function_arn": None, "realtime_log_config_arn": "bi-pipeline"}, "not a real-time log configuration ARN"),
    ({"function_arn": None, "realtime_log_config_arn": None, "origin_request_policy_id": "Managed-CORS-S3Origin"},
     "not an origin request policy id"),
    ({"function_arn": FUNCTION, "realtime_log_config_arn": None, "behaviors": ["/vod/*"]},
     "no cache behavior '/vod/\\*'.*default, /live/\\*, /static/\\*"),
])
def test_plan_rejects_bad_input(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AttachError, match=message):
        plan_attach(_config(), **kwargs)


def test_diff_is_empty_for_equal_configs_and_shows_the_change() -> None:
    config = _config()
    assert config_diff(config, copy.deepcopy(config), from_label="a", to_label="b") == ""
    plan = plan_attach(config, function_arn=None, realtime_log_config_arn=LOG_CONFIG, behaviors=["/static/*"])
    diff = config_diff(plan.original, plan.updated, from_label="a", to_label="b")
    assert diff.startswith("--- a\n+++ b\n")
    changed = [line for line in diff.splitlines()[2:] if line.startswith(("+", "-"))]
    assert changed == [f'+        "RealtimeLogConfigArn": "{LOG_CONFIG}",']


# -- against moto's CloudFront -------------------------------------------------------------------------------------


class Wire:
    """Records what the client sends and receives for the calls that matter."""

    def __init__(self, client: Any) -> None:
        self.sent: dict[str, list[dict[str, Any]]] = {}
        self.etags: list[str] = []
        client.meta.events.register("provide-client-params.cloudfront.*", self._sent)
        client.meta.events.register("after-call.cloudfront.GetDistributionConfig", self._etag)

    def _sent(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.sent.setdefault(model.name, []).append(copy.deepcopy(params))

    def _etag(self, parsed: dict[str, Any], **_: Any) -> None:
        self.etags.append(parsed["ETag"])


@pytest.fixture
def cloudfront(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.chdir(tmp_path)
    with mocked_aws():
        client = boto3.client("cloudfront", region_name="us-east-1")
        distribution = client.create_distribution(DistributionConfig=_config())["Distribution"]
        yield client, distribution["Id"]


def _run(client: Any, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), client=client, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_dry_run_prints_the_diff_and_changes_nothing(cloudfront: Any, tmp_path: Path) -> None:
    client, dist_id = cloudfront
    wire = Wire(client)
    code, out, err = _run(client, "--distribution-id", dist_id, "--function-arn", FUNCTION,
                          "--realtime-log-config-arn", LOG_CONFIG)
    assert code == 0, err
    assert out.startswith(f"--- {dist_id} (current)\n+++ {dist_id} (attached)\n")
    assert out.count(f'+        "RealtimeLogConfigArn": "{LOG_CONFIG}"') == 2  # the two path-pattern behaviors
    assert out.count(f'"FunctionARN": "{FUNCTION}"') == 3
    assert "dry run" in err and "--apply" in err
    assert "UpdateDistribution" not in wire.sent
    assert list(tmp_path.iterdir()) == []  # no backup either
    stored = client.get_distribution_config(Id=dist_id)["DistributionConfig"]
    assert all(not b.get("RealtimeLogConfigArn") for b in _behaviors_of(stored).values())


def test_apply_saves_a_backup_and_updates_with_the_etag_then_undo_restores(cloudfront: Any, tmp_path: Path) -> None:
    client, dist_id = cloudfront
    original = client.get_distribution_config(Id=dist_id)["DistributionConfig"]
    wire = Wire(client)
    backup = tmp_path / "before.json"
    code, out, err = _run(client, "--distribution-id", dist_id, "--function-arn", FUNCTION,
                          "--realtime-log-config-arn", LOG_CONFIG, "--behaviors", "default,/live/*",
                          "--apply", "--backup", str(backup))
    assert code == 0, err
    (update,) = wire.sent["UpdateDistribution"]
    assert update["Id"] == dist_id and update["IfMatch"] == wire.etags[0]
    sent = _behaviors_of(update["DistributionConfig"])
    for name in ("default", "/live/*"):
        assert sent[name]["FunctionAssociations"]["Items"] == [{"FunctionARN": FUNCTION, "EventType": "viewer-request"}]
        assert sent[name]["RealtimeLogConfigArn"] == LOG_CONFIG
    assert sent["/static/*"] == _behaviors_of(original)["/static/*"]

    saved = json.loads(backup.read_text())
    assert saved["format"] == BACKUP_FORMAT and saved["distribution_id"] == dist_id
    assert saved["etag"] == wire.etags[0] and saved["DistributionConfig"] == original
    assert saved["applied"]["DistributionConfig"] == client.get_distribution_config(Id=dist_id)["DistributionConfig"]
    stored = _behaviors_of(client.get_distribution_config(Id=dist_id)["DistributionConfig"])
    assert stored["/live/*"]["RealtimeLogConfigArn"] == LOG_CONFIG and not stored["/static/*"]["RealtimeLogConfigArn"]
    assert f"--undo {backup} --apply" in err

    code, out, err = _run(client, "--undo", str(backup))  # dry run first
    assert code == 0 and f'-        "RealtimeLogConfigArn": "{LOG_CONFIG}"' in out and "dry run" in err
    assert len(wire.sent["UpdateDistribution"]) == 1
    code, out, err = _run(client, "--undo", str(backup), "--apply", "--backup", str(tmp_path / "before-undo.json"))
    assert code == 0, err
    undo = wire.sent["UpdateDistribution"][1]
    assert undo["IfMatch"] == wire.etags[-1] and undo["DistributionConfig"] == original
    assert client.get_distribution_config(Id=dist_id)["DistributionConfig"] == original
    assert json.loads((tmp_path / "before-undo.json").read_text())["DistributionConfig"] == saved["applied"][
        "DistributionConfig"]
    code, _, err = _run(client, "--undo", str(backup), "--force")
    assert code == 0 and "nothing to change" in err


def test_undo_refuses_over_a_later_change(cloudfront: Any, tmp_path: Path) -> None:
    client, dist_id = cloudfront
    backup = tmp_path / "before.json"
    code, _, err = _run(client, "--distribution-id", dist_id, "--realtime-log-config-arn", LOG_CONFIG,
                        "--apply", "--backup", str(backup))
    assert code == 0, err
    response = client.get_distribution_config(Id=dist_id)
    changed = copy.deepcopy(response["DistributionConfig"])
    changed["Comment"] = "someone else's change"
    client.update_distribution(Id=dist_id, IfMatch=response["ETag"], DistributionConfig=changed)

    code, out, err = _run(client, "--undo", str(backup), "--apply")
    assert code == 1 and "--force" in err and "someone else's change" in out
    assert client.get_distribution_config(Id=dist_id)["DistributionConfig"]["Comment"] == "someone else's change"
    code, _, err = _run(client, "--undo", str(backup), "--apply", "--force", "--backup", str(tmp_path / "u.json"))
    assert code == 0, err
    assert client.get_distribution_config(Id=dist_id)["DistributionConfig"]["Comment"] == "existing distribution"


def test_bad_input_exits_2(cloudfront: Any, tmp_path: Path) -> None:
    client, dist_id = cloudfront
    code, _, err = _run(client, "--distribution-id", dist_id, "--function-arn", FUNCTION, "--behaviors", "/vod/*")
    assert code == 2 and "no cache behavior '/vod/*'" in err
    code, _, err = _run(client, "--distribution-id", "E0000000000000", "--function-arn", FUNCTION)
    assert code == 2 and "no distribution E0000000000000" in err
    (tmp_path / "junk.json").write_text("{}")
    code, _, err = _run(client, "--undo", str(tmp_path / "junk.json"))
    assert code == 2 and "not a backup" in err
    code, _, err = _run(client, "--function-arn", FUNCTION)
    assert code == 2 and "--distribution-id is required" in err


# -- answers moto cannot give ----------------------------------------------------------------------------------------


@pytest.fixture
def stubbed() -> Any:
    client = boto3.client("cloudfront", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_refuses_when_a_behavior_runs_another_viewer_request_function(stubbed: Any, tmp_path: Path) -> None:
    client, stubber = stubbed
    config = _config(FunctionAssociations={"Quantity": 1, "Items": [
        {"FunctionARN": OTHER_FUNCTION, "EventType": "viewer-request"}]})
    stubber.add_response("get_distribution_config", {"DistributionConfig": config, "ETag": "E1"}, {"Id": "EDIST"})
    code, out, err = _run(client, "--distribution-id", "EDIST", "--function-arn", FUNCTION, "--apply",
                          "--backup", str(tmp_path / "b.json"))
    assert code == 1 and out == ""
    assert f"refused: default: already has a viewer-request CloudFront Function {OTHER_FUNCTION}" in err
    assert "--replace" in err and "nothing changed" in err
    assert not (tmp_path / "b.json").exists()  # no UpdateDistribution was stubbed: any call would have failed


def test_replace_sends_the_new_function(stubbed: Any, tmp_path: Path) -> None:
    client, stubber = stubbed
    config = _config(FunctionAssociations={"Quantity": 1, "Items": [
        {"FunctionARN": OTHER_FUNCTION, "EventType": "viewer-request"}]})
    wanted = plan_attach(config, function_arn=FUNCTION, realtime_log_config_arn=None, behaviors=["default"],
                         replace=True).updated
    stubber.add_response("get_distribution_config", {"DistributionConfig": config, "ETag": "E1"}, {"Id": "EDIST"})
    stubber.add_response("update_distribution", {"Distribution": _distribution(wanted), "ETag": "E2"},
                         {"Id": "EDIST", "IfMatch": "E1", "DistributionConfig": wanted})
    code, _, err = _run(client, "--distribution-id", "EDIST", "--function-arn", FUNCTION, "--behaviors", "default",
                        "--replace", "--apply", "--backup", str(tmp_path / "b.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "b.json").read_text())["applied"]["etag"] == "E2"


def test_a_stale_etag_is_refused_and_the_backup_kept(stubbed: Any, tmp_path: Path) -> None:
    client, stubber = stubbed
    stubber.add_response("get_distribution_config", {"DistributionConfig": _config(), "ETag": "E1"}, {"Id": "EDIST"})
    stubber.add_client_error("update_distribution", service_error_code="PreconditionFailed", http_status_code=412,
                             expected_params={"Id": "EDIST", "IfMatch": "E1", "DistributionConfig": ANY})
    code, _, err = _run(client, "--distribution-id", "EDIST", "--realtime-log-config-arn", LOG_CONFIG, "--apply",
                        "--backup", str(tmp_path / "b.json"))
    assert code == 1 and "changed since it was read" in err
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["DistributionConfig"] == _config() and "applied" not in saved


def _distribution(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "Id": "EDIST", "ARN": "arn:aws:cloudfront::123456789012:distribution/EDIST", "Status": "InProgress",
        "LastModifiedTime": "2026-01-01T00:00:00Z", "InProgressInvalidationBatches": 0,
        "DomainName": "d111111abcdef8.cloudfront.net",
        "ActiveTrustedSigners": {"Enabled": False, "Quantity": 0}, "DistributionConfig": config,
    }
