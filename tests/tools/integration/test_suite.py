"""A suite run: each seed's corpus generated once and evaluated, the counts added up."""

from __future__ import annotations

import json
from pathlib import Path

from tools.detection_cli import main
from tools.evaluate import evaluate_corpus
from tools.suite import run_suite


def test_a_suite_adds_up_its_seeds_and_reuses_their_corpora(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "small.json"
    suite.write_text(json.dumps({"name": "small", "seeds": [7, 8], "sessions": 300, "minutes": 10}))
    result = run_suite(suite, tmp_path / "work")
    single = [evaluate_corpus(tmp_path / "work" / f"small-seed-{seed}") for seed in (7, 8)]
    assert result.policy.fp == sum(e.policy.fp for e in single)
    assert result.policy.tn == sum(e.policy.tn for e in single) and result.legit == sum(e.legit for e in single)
    assert result.pirates == sum(e.pirates for e in single) > 0
    assert sum(k.sessions for k in result.kinds.values()) == result.legit + result.pirates
    assert result.fpr_upper(result.policy) > result.policy.false_positive_rate
    stamp = (tmp_path / "work" / "small-seed-7" / "labels.csv").stat().st_mtime_ns
    assert main(["evaluate", "--suite", str(suite), "--work", str(tmp_path / "work"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["legit"] == result.legit and "false_positive_rate_upper_95" in printed["policy"]
    assert (tmp_path / "work" / "small-seed-7" / "labels.csv").stat().st_mtime_ns == stamp  # reused, not regenerated


def test_a_suite_file_that_does_not_parse_is_exit_2(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "broken.json"
    suite.write_text("{")
    assert main(["evaluate", "--suite", str(suite), "--work", str(tmp_path)]) == 2
    assert "cannot read the suite" in capsys.readouterr().err
