"""The evaluation suite's arithmetic and its file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tools.suite import Suite, SuiteError, upper_bound


def test_the_upper_bound_of_no_failure_is_exact() -> None:
    assert upper_bound(0, 3000) == pytest.approx(1 - 0.05 ** (1 / 3000))
    assert upper_bound(0, 24_000) == pytest.approx(3 / 24_000, rel=0.01)  # the rule of three
    assert upper_bound(0, 0) == 1.0 and upper_bound(5, 5) == 1.0


@pytest.mark.parametrize(("failures", "trials", "expected"), [
    (1, 100, 0.0466),  # published one-sided 95 % Clopper-Pearson bounds
    (2, 100, 0.0616),
    (5, 1000, 0.0105),
])
def test_the_upper_bound_matches_clopper_pearson(failures: int, trials: int, expected: float) -> None:
    assert upper_bound(failures, trials) == pytest.approx(expected, abs=0.0002)


def test_the_upper_bound_rises_with_failures_and_falls_with_trials() -> None:
    bounds = [upper_bound(k, 20_000) for k in range(6)]
    assert bounds == sorted(bounds) and len(set(bounds)) == 6
    assert upper_bound(3, 40_000) < upper_bound(3, 20_000)
    with pytest.raises(ValueError):
        upper_bound(7, 5)


def test_the_frozen_suite_holds_20_000_legit_sessions_or_more() -> None:
    suite = Suite.load(ROOT / "tools" / "suites" / "generator-v1.json")
    assert len(suite.seeds) * suite.sessions * 0.95 >= 20_000 and not math.isnan(suite.minutes)


def test_a_bad_suite_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "seeds": [], "sessions": 10, "minutes": 10, "extra": 1}))
    with pytest.raises(SuiteError, match="seeds") as info:
        Suite.load(bad)
    assert "sessions" in str(info.value) and "extra" in str(info.value)
    with pytest.raises(SuiteError, match="cannot read"):
        Suite.load(tmp_path / "missing.json")
