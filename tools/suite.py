"""An evaluation suite: several generated corpora, fixed in a file (seeds, size, detection config), evaluated and
added up, with the false-positive rate's 95 % upper confidence bound, so that "0 false positives" says how many
legit sessions it was measured on.

    python -m detection evaluate --suite tools/suites/generator-v1.json [--work DIR] [--json]

Each seed's corpus is generated under ``--work`` (reused when it is there and was made by the same suite entry),
then evaluated like ``evaluate --corpus``. The bound is the exact (Clopper-Pearson) one-sided bound: the largest
rate at which seeing as few false positives as were seen still has a 5 % chance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detection.scoring.config import DetectionConfig
from tools.evaluate import Evaluation, KindResult, Metrics, evaluate_corpus, kind_rows, targets_line
from tools.generate import DEFAULT_MIX, check_mix, generate_corpus

__all__ = ["Suite", "SuiteError", "SuiteResult", "corpus_for", "format_suite", "run_suite", "upper_bound"]


class SuiteError(ValueError):
    """The suite file cannot be used (the message says why)."""


class Suite(BaseModel):
    """What a suite file holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    seeds: tuple[int, ...] = Field(min_length=1)
    sessions: int = Field(ge=100)
    minutes: float = Field(gt=0, le=180)
    pirate_share: float | None = Field(None, gt=0, lt=1)
    mix: str = Field(DEFAULT_MIX, description="The generator's mix of kinds (tools.generate.MIXES).")
    config: dict[str, Any] | None = None

    @field_validator("mix")
    @classmethod
    def _known_mix(cls, value: str) -> str:
        return check_mix(value)

    @classmethod
    def load(cls, path: str | Path) -> Suite:
        try:
            return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise SuiteError(f"cannot read the suite {path}: {exc}") from exc
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'suite'}: {e['msg']}" for e in exc.errors())
            raise SuiteError(f"invalid suite {path}: {problems}") from exc


def upper_bound(failures: int, trials: int, confidence: float = 0.95) -> float:
    """The exact one-sided upper confidence bound of a rate after ``failures`` in ``trials``: the ``p`` at which
    P(X <= failures) = 1 - ``confidence`` for X ~ Binomial(trials, p) (1.0 for no trials)."""
    if trials <= 0:
        return 1.0
    if not 0 <= failures <= trials:
        raise ValueError(f"failures must be between 0 and {trials}, not {failures}")
    if failures == trials:
        return 1.0
    alpha = 1 - confidence
    if failures == 0:
        return 1 - alpha ** (1 / trials)

    def cdf(p: float) -> float:  # P(X <= failures), summed in logs: trials may be large
        log_p, log_q = math.log(p), math.log1p(-p)
        return sum(math.exp(math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
                            + k * log_p + (trials - k) * log_q) for k in range(failures + 1))

    low, high = failures / trials, 1.0
    for _ in range(100):  # the cdf falls as p rises
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) > alpha else (low, middle)
    return high


@dataclass
class SuiteResult:
    suite: Suite
    evaluations: list[Evaluation]
    policy: Metrics = field(default_factory=Metrics)
    baseline: Metrics = field(default_factory=Metrics)
    kinds: dict[str, KindResult] = field(default_factory=dict)
    flagged_only: dict[str, int] = field(default_factory=dict)

    @property
    def legit(self) -> int:
        return self.policy.fp + self.policy.tn

    @property
    def pirates(self) -> int:
        return self.policy.tp + self.policy.fn

    def fpr_upper(self, metrics: Metrics) -> float:
        return upper_bound(metrics.fp, metrics.fp + metrics.tn)

    def targets(self) -> dict[str, bool]:
        """The detection targets over the whole suite: recall >= 0.98, the false-positive rate's 95 % upper bound
        <= 0.1 %, strictly better than the existing rule on both."""
        p, b = self.policy, self.baseline
        return {
            "recall_at_least_0.98": p.recall >= 0.98,
            "fpr_upper_bound_at_most_0.1pct": self.fpr_upper(p) <= 0.001,
            "recall_better_than_baseline": p.recall > b.recall,
            "fpr_upper_bound_better_than_baseline": self.fpr_upper(p) < self.fpr_upper(b),
        }

    def to_dict(self) -> dict[str, Any]:
        def side(m: Metrics) -> dict[str, Any]:
            return {**m.to_dict(), "false_positive_rate_upper_95": round(self.fpr_upper(m), 6)}

        return {
            "suite": self.suite.model_dump(mode="json"),
            "legit": self.legit,
            "pirates": self.pirates,
            "policy": side(self.policy),
            "baseline": side(self.baseline),
            "flagged_only": dict(self.flagged_only),
            "kinds": [k.to_dict() for k in sorted(self.kinds.values(), key=lambda k: (k.label, k.kind))],
            "targets": self.targets(),
            "corpora": [e.corpus for e in self.evaluations],
        }


def _add(total: Metrics, part: Metrics) -> None:
    total.tp += part.tp
    total.fp += part.fp
    total.fn += part.fn
    total.tn += part.tn


def corpus_for(suite: Suite, seed: int, work: str | Path, *, log: Callable[[str], None] = lambda _: None) -> Path:
    """The corpus of one seed of the suite under ``work``: generated unless the same suite entry made it there."""
    corpus = Path(work) / f"{suite.name}-seed-{seed}"
    made = corpus / "suite.json"
    entry = {"suite": suite.name, "seed": seed, "sessions": suite.sessions, "minutes": suite.minutes,
             "pirate_share": suite.pirate_share, "mix": suite.mix}
    if not (made.is_file() and json.loads(made.read_text(encoding="utf-8")) == entry):
        log(f"generating seed {seed} ({suite.sessions} sessions, {suite.minutes:g} minutes)")
        generate_corpus(corpus, sessions=suite.sessions, minutes=suite.minutes, seed=seed,
                        pirate_share=suite.pirate_share, mix=suite.mix)
        made.write_text(json.dumps(entry), encoding="utf-8")
    return corpus


def run_suite(path: str | Path, work: str | Path, *, log: Callable[[str], None] = lambda _: None) -> SuiteResult:
    """Generate (or reuse) and evaluate every corpus of the suite at ``path`` under ``work``; add them up."""
    suite = Suite.load(path)
    config = DetectionConfig.load(suite.config) if suite.config else DetectionConfig()
    result = SuiteResult(suite, [])
    for seed in suite.seeds:
        corpus = corpus_for(suite, seed, work, log=log)
        log(f"evaluating seed {seed}")
        evaluation = evaluate_corpus(corpus, config=config)
        result.evaluations.append(evaluation)
        _add(result.policy, evaluation.policy)
        _add(result.baseline, evaluation.baseline)
        for label, count in evaluation.flagged_only.items():
            result.flagged_only[label] = result.flagged_only.get(label, 0) + count
        for kind in evaluation.kinds:
            total = result.kinds.setdefault(kind.kind, KindResult(kind.kind, kind.label, 0, 0, 0, 0))
            total.sessions += kind.sessions
            total.detected += kind.detected
            total.flagged_only += kind.flagged_only
            total.baseline += kind.baseline
    return result


def format_suite(result: SuiteResult) -> str:
    p, b = result.policy, result.baseline
    lines = [
        f"suite {result.suite.name}: seeds {', '.join(map(str, result.suite.seeds))}, {result.suite.sessions} sessions "
        f"of {result.suite.minutes:g} minutes each: {result.legit} legit, {result.pirates} pirates",
        "",
        f"{'':34s} {'detection':>12s} {'baseline rule':>14s}",
        f"{'precision':34s} {p.precision:>12.4f} {b.precision:>14.4f}",
        f"{'recall':34s} {p.recall:>12.4f} {b.recall:>14.4f}",
        f"{'false positives':34s} {p.fp:>12d} {b.fp:>14d}",
        f"{'false-positive rate':34s} {p.false_positive_rate:>11.3%} {b.false_positive_rate:>13.3%}",
        f"{'false-positive rate, 95 % upper':34s} {result.fpr_upper(p):>11.3%} {result.fpr_upper(b):>13.3%}",
        f"{'pirates flagged for review only':34s} {result.flagged_only.get('pirate', 0):>12d}",
        "",
        *kind_rows(sorted(result.kinds.values(), key=lambda k: (k.label, k.kind))),
        "",
        targets_line(result.targets()),
    ]
    return "\n".join(lines)
