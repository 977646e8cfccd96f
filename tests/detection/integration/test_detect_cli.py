"""detect() end to end and the ``python -m detection`` CLI: exit codes, JSON shape, bad input."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detection.detect import detect
from detection.logs.convert import convert_to_parquet
from detection.logs.reader import InputError
from detection.logs.schema import DETECTION_FIELDS
from tests.helpers import ROOT
from tools.detection_cli import main
from tools.scenarios import Viewer, playback, records, write_firehose

T0 = 1_767_225_600
END = T0 + 600
PIRATE = "twohomessession001"


def world() -> list[dict]:
    reqs: list[dict] = []
    for i in range(4):
        reqs += playback(f"crowdsession00{i:03d}", Viewer(f"100.64.{i}.9"), start=T0 + 5 + i, duration=590)
    reqs += playback(PIRATE, Viewer("198.51.100.7"), start=T0 + 30, duration=540)
    reqs += playback(PIRATE, Viewer("203.0.113.9", asn=3215, country="FR"), start=T0 + 40, duration=530)
    return reqs


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "logs"
    write_firehose(root, world())
    return root


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_detect_prints_the_contract_json(logs: Path, capsys) -> None:
    code, out, err = run_cli(["detect", "--logs", str(logs)], capsys)
    assert code == 0, err
    document = json.loads(out)
    assert set(document) == {"sessions", "stats"}
    [session] = document["sessions"]
    assert session["session_id"] == PIRATE and session["action"] == "revoke" and session["score"] >= 1
    assert {"session_id", "score", "reasons", "features"} <= set(session)
    assert session["reasons"][0]["code"] == "countries_at_once"
    assert session["features"]["countries"] == ["DE", "FR"]
    stats = document["stats"]
    assert stats["records_read"] == len(world()) and stats["records_skipped"] == {}
    assert stats["sessions_scored"] == 5 and stats["flagged"] == 1 and stats["revoke"] == 1
    assert stats["window"]["minutes"] == 10 and stats["window"]["end"] > stats["window"]["newest_record"]
    assert {"open", "newest_record", "features_sql", "policy", "total"} <= set(stats["timings"])
    assert "1 revoke" in err


def test_out_file_and_out_dash(logs: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "sub" / "verdicts.json"
    code, out, _ = run_cli(["detect", "--logs", str(logs), "--out", str(target)], capsys)
    assert code == 0 and out == ""
    from_file = json.loads(target.read_text())
    code, out, _ = run_cli(["detect", "--logs", str(logs), "--out", "-"], capsys)
    assert code == 0 and json.loads(out)["sessions"] == from_file["sessions"]


def test_window_and_now(logs: Path, capsys) -> None:
    code, out, _ = run_cli(["detect", "--logs", str(logs), "--now", str(T0 + 120), "--window", "1"], capsys)
    assert code == 0
    stats = json.loads(out)["stats"]
    assert stats["window"] == {"start": T0 + 60.0, "end": T0 + 120.0, "minutes": 1.0, "newest_record": None}
    assert 0 < stats["records_read"] < len(world())
    code, _, err = run_cli(["detect", "--logs", str(logs), "--now", str(T0 - 3600)], capsys)
    assert code == 2 and err.startswith("error: no log record")


def test_monitor_mode_and_config(logs: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = run_cli(["detect", "--logs", str(logs), "--monitor"], capsys)
    [session] = json.loads(out)["sessions"]
    assert code == 0 and session["action"] == "monitor" and session["reasons"][-1]["code"] == "monitor-mode"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"allow_sessions": [PIRATE]}))
    code, out, _ = run_cli(["detect", "--logs", str(logs), "--config", str(config)], capsys)
    assert code == 0 and json.loads(out)["sessions"][0]["action"] == "flag"
    config.write_text(json.dumps({"revoke_scor": 1}))
    code, _, err = run_cli(["detect", "--logs", str(logs), "--config", str(config)], capsys)
    assert code == 2 and "revoke_scor" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--logs", "/nonexistent/logs"], "not found"),
        (["--fields", "timestamp,c-ip,cs-uri-stm"], "unknown real-time log field"),
        (["--fields", "timestamp,c-ip,sc-status"], "rejected"),  # not what wrote the files
        (["--window", "0"], "window"),
        (["--window", "ten"], "window"),
        (["--now", "yesterday"], "epoch"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(logs: Path, capsys, args: list[str], message: str) -> None:
    argv = ["detect", *(args if args[0] == "--logs" else ["--logs", str(logs), *args])]
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and out == ""
    assert "error:" in err and message in err


def test_a_field_list_without_what_detection_needs(tmp_path: Path, capsys) -> None:
    fields = "timestamp,c-ip,sc-status,sc-bytes"
    lines = records(playback(PIRATE, Viewer("198.51.100.7"), start=T0, duration=60), fields)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.tsv").write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(["detect", "--logs", str(tmp_path / "logs"), "--fields", fields], capsys)
    assert code == 2 and "cs-uri-stem" in err


def test_garbage_only_input(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "fields.txt").write_text("\n".join(f.name for f in DETECTION_FIELDS))
    (folder / "junk.gz").write_bytes(gzip.compress(os.urandom(4096)))
    code, _, err = run_cli(["detect", "--logs", str(folder)], capsys)
    assert code == 2 and err.startswith("error: ")


def test_bad_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    files = write_firehose(root, world())
    with gzip.open(files[0], "ab") as handle:  # a short line and binary garbage appended to a good object
        garbage = bytes(b for b in range(256) if b not in (9, 10, 13))
        handle.write(b"1767225601.000\t1.2.3.4\t-\n" + garbage + b"\n")
    damaged = files[-1].read_bytes()
    files[-1].write_bytes(damaged[: len(damaged) // 2])  # a truncated object
    run = detect(root)
    skipped = run.stats["records_skipped"]
    assert skipped.get("field_count", 0) + skipped.get("binary", 0) >= 2 and skipped.get("truncated", 0) >= 1
    assert run.stats["input"]["files_damaged"]
    assert [v.session_id for v in run.verdicts] == [PIRATE]  # the rest is still read


def test_parquet_input_gives_the_same_verdicts(logs: Path, tmp_path: Path) -> None:
    convert_to_parquet(logs, tmp_path / "parquet")
    tsv = detect(logs, now=END)
    parquet = detect(tmp_path / "parquet", now=END)
    assert [v.to_dict() for v in parquet.verdicts] == [v.to_dict() for v in tsv.verdicts]
    assert parquet.stats["records_read"] == tsv.stats["records_read"]
    assert detect(tmp_path / "parquet").window == pytest.approx(detect(logs).window)  # newest from the footers


def test_detect_validates_its_arguments(logs: Path) -> None:
    with pytest.raises(InputError):
        detect(logs, window_minutes=0)
    with pytest.raises(InputError):
        detect(logs, now=float("nan"))


def test_the_module_entry_point(logs: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "detection", "detect", "--logs", str(logs), "--out", "-"],
                        capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["sessions"][0]["session_id"] == PIRATE
    bad = subprocess.run([sys.executable, "-m", "detection", "detect", "--logs", "/nonexistent"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stdout == ""
    usage = subprocess.run([sys.executable, "-m", "detection"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert usage.returncode == 2 and "detect" in usage.stderr


def test_a_truncated_gzip_is_named_on_the_console_not_only_counted(logs: Path, tmp_path: Path, capsys) -> None:
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "fields.txt").write_text((logs / "fields.txt").read_text())
    whole = next(logs.rglob("*.gz")).read_bytes()
    (damaged / "part.gz").write_bytes(whole[: len(whole) // 2])
    code, _, err = run_cli(["detect", "--logs", str(damaged), "--out", str(tmp_path / "v.json")], capsys)
    assert code == 0
    assert f"warning: {damaged / 'part.gz'}: truncated gzip file" in err and "the rest is lost" in err


def test_run_takes_your_logs_through_ledger_and_store_and_a_rerun_changes_nothing(logs: Path, tmp_path: Path,
                                                                                 capsys) -> None:
    ledger, store = tmp_path / "ledger.sqlite", tmp_path / "store.json"
    argv = ["run", "--logs", str(logs), "--ledger", str(ledger), "--store", str(store), "--create", "--out", "-"]
    code, out, err = run_cli(argv, capsys)
    first = json.loads(out)
    assert code == 0 and first["revoked"] == 1 and [s["session_id"] for s in first["sessions"]] == [PIRATE]
    assert json.loads(store.read_text())["data"][0]["key"] == f"r:{PIRATE}" and "1 revoked" in err
    code, out, _ = run_cli(argv, capsys)
    again = json.loads(out)
    assert code == 0 and (again["recorded"], again["revoked"], again["published"]["calls"]) == (0, 0, 0)
