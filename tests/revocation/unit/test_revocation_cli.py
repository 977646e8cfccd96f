"""The revocation commands, through a parser built with ``register`` (the lead wires them into python -m detection)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from edge.store import LocalEdgeStore
from revocation.cli import register
from revocation.ledger import SqliteLedger
from tests.revocation.helpers import HOUR, NOW, sid, verdict


def build(allow: set[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m detection")
    commands = parser.add_subparsers(dest="command", required=True)
    register(commands, allow_sessions=(lambda args: allow) if allow else None)
    return parser


def run(argv: list[str], capsys: pytest.CaptureFixture[str], allow: set[str] | None = None) -> tuple[int, str, str]:
    args = build(allow).parse_args(argv)
    code = args.run(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    store = LocalEdgeStore(tmp_path / "store.json")
    store.put("k:kid-2026-01", "A" * 43)
    SqliteLedger(tmp_path / "ledger.sqlite").close()  # an existing ledger, as after the first --create
    return {"ledger": str(tmp_path / "ledger.sqlite"), "store": str(store.path)}


def test_revoke_list_and_unrevoke(paths: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--ledger", paths["ledger"], "--now", str(NOW)]
    code, out, err = run(["revoke", sid(1), "--reason", "restreaming", "--ttl", "3600", "--store", paths["store"],
                          "--by", "alice", *common], capsys)
    assert (code, err) == (0, "")
    assert f"{sid(1)}: created, revoked until {NOW + HOUR}" in out and "manual:alice" in out
    store = LocalEdgeStore(paths["store"])
    assert store.get(f"r:{sid(1)}") == f"{NOW + HOUR}|restreaming"

    code, out, _ = run(["revocations", "--json", *common], capsys)
    listed = json.loads(out)["revocations"]
    assert code == 0 and [(r["session_id"], r["reason"], r["revoked_by"]) for r in listed] == [
        (sid(1), "restreaming", "manual:alice")
    ]
    code, out, _ = run(["revocations", *common], capsys)
    assert code == 0 and sid(1) in out and "restreaming" in out

    code, out, _ = run(["unrevoke", sid(1), "--store", paths["store"], "--by", "bob", *common], capsys)
    assert code == 0 and "lifted by manual:bob" in out
    assert store.get(f"r:{sid(1)}") is None and store.get("k:kid-2026-01") == "A" * 43
    code, out, _ = run(["revocations", *common], capsys)
    assert "no revocations in force" in out


def test_until_and_json_output(paths: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["revoke", sid(1), "--reason", "manual", "--until", str(NOW + 99), "--ledger", paths["ledger"],
                        "--store", paths["store"], "--by", "alice", "--now", str(NOW), "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and result["revocation"]["expires_at"] == NOW + 99 and result["published"] is True
    assert result["publish"]["puts"] == 1 and result["publish"]["capacity_warning"] is False


def test_flagged_lists_reasons(paths: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with SqliteLedger(paths["ledger"]) as ledger:
        ledger.record_verdicts("run-1", [verdict(sid(1), decided_at=NOW - 600), verdict(sid(2), decided_at=NOW - 7200)])
    code, out, _ = run(["flagged", "--ledger", paths["ledger"], "--since", str(NOW - HOUR), "--now", str(NOW), "--json"],
                       capsys)
    verdicts = json.loads(out)["verdicts"]
    assert code == 0 and [v["session_id"] for v in verdicts] == [sid(1)]
    reason = verdicts[0]["reasons"][0]
    assert (reason["code"], reason["detail"]) == ("concurrent-ips", "7 IPs in 5 minutes")
    assert {"weight", "values", "thresholds"} <= set(reason)  # what the policy saw, kept with the verdict
    code, out, _ = run(["flagged", "--ledger", paths["ledger"], "--now", str(NOW)], capsys)  # last 24 hours
    assert code == 0 and sid(1) in out and sid(2) in out and "concurrent-ips: 7 IPs in 5 minutes" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["revoke", "short", "--reason", "manual"], "not a valid session id"),
        (["revoke", sid(1), "--reason", "Not Valid"], "not a valid reason code"),
        (["revoke", sid(1), "--reason", "manual", "--ttl", "-5"], "not in the future"),
        (["revoke", sid(1), "--reason", "manual", "--ttl", str(10**8)], "no token lives longer"),
        (["unrevoke", sid(9)], "is not revoked"),
    ],
)
def test_bad_input_exits_2_with_an_error(
    paths: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run([*argv, "--ledger", paths["ledger"], "--store", paths["store"], "--by", "alice",
                          "--now", str(NOW)], capsys)
    assert code == 2 and err.startswith("error: ") and message in err and out == ""


def test_a_bad_ledger_or_store_spec_exits_2(paths: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["revocations", "--ledger", "ledger.txt", "--create"], capsys)
    assert code == 2 and "cannot open ledger" in err
    code, _, err = run(["revoke", sid(1), "--reason", "manual", "--ledger", paths["ledger"], "--store", "store.txt",
                        "--by", "alice", "--create"], capsys)
    assert code == 2 and "cannot open edge store" in err


def test_a_ledger_or_store_that_is_not_there_is_an_error_unless_create(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo must not look like an empty ledger ("no revocations in force") or start a new store."""
    missing = str(tmp_path / "nonexistent.sqlite")
    code, out, err = run(["revocations", "--ledger", missing], capsys)
    assert (code, out) == (2, "") and f"no ledger at {missing}" in err and "--create" in err
    assert not Path(missing).exists()
    store = str(tmp_path / "nonexistent.json")
    argv = ["revoke", sid(1), "--reason", "manual", "--ledger", missing, "--store", store, "--by", "ops",
            "--now", str(NOW)]
    code, _, err = run(argv, capsys)
    assert code == 2 and "no ledger at" in err and not Path(store).exists()
    code, _, _ = run([*argv, "--create"], capsys)
    assert code == 0 and Path(missing).is_file() and LocalEdgeStore(store).get(f"r:{sid(1)}")


def test_a_dynamodb_ledger_without_a_region_says_so(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    code, _, err = run(["revocations", "--ledger", "dynamodb:media-shield-ledger"], capsys)
    assert code == 2 and "no AWS region" in err and "Traceback" not in err


def test_ttl_and_until_are_exclusive(paths: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build().parse_args(["revoke", sid(1), "--reason", "m", "--ttl", "5", "--until", "9", "--ledger", "l.sqlite",
                            "--store", "s.json"])
    assert caught.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_allow_listed_needs_force(paths: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["revoke", sid(1), "--reason", "manual", "--ledger", paths["ledger"], "--store", paths["store"],
            "--by", "alice", "--now", str(NOW)]
    code, _, err = run(argv, capsys, allow={sid(1)})
    assert code == 2 and "allow-listed" in err and "--force" in err
    code, _, err = run([*argv, "--force"], capsys, allow={sid(1)})
    assert code == 0


def test_recorded_but_not_published_exits_1(paths: dict[str, str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    Path(paths["store"]).write_text("not json")  # the store is unreadable: the ledger still records the decision
    code, _, err = run(["revoke", sid(1), "--reason", "manual", "--ledger", paths["ledger"], "--store", paths["store"],
                        "--by", "alice", "--now", str(NOW)], capsys)
    assert code == 1 and "recorded in the ledger but not yet at the edge" in err
    with SqliteLedger(paths["ledger"]) as ledger:
        assert [r.session_id for r in ledger.active_revocations(NOW)] == [sid(1)]
