"""What the judge is given: a metric's samples (or counts) from the canary and from its baseline, the rules
that say when a difference matters, and the check's confidence and score thresholds.

Plain frozen data, checked once when built, so the statistics never meet an impossible input; every message
names the metric and the field. The values themselves are data, whatever they hold: samples that are not
finite numbers (NaN from a 0/0 rate, infinities) are counted and left out, never raised on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from reconciler.core.judge_terms import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MARGINAL_SCORE,
    DEFAULT_PASS_SCORE,
    Direction,
    MetricKind,
)

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_MARGINAL_SCORE",
    "DEFAULT_PASS_SCORE",
    "CountMetric",
    "Counts",
    "Direction",
    "JudgeConfig",
    "Metric",
    "MetricKind",
    "MetricRules",
    "SampleMetric",
    "Threshold",
]


@dataclass(frozen=True)
class Counts:
    """Failures out of trials, e.g. errors out of requests."""

    failures: int
    trials: int

    def __post_init__(self) -> None:
        if not 0 <= self.failures <= self.trials:
            raise ValueError(
                f"counts: failures must be within 0..trials, got {self.failures} of {self.trials}"
            )


@dataclass(frozen=True)
class Threshold:
    """An absolute range the canary's level (median of its samples, or failure rate) must stay within."""

    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        bounds = [bound for bound in (self.minimum, self.maximum) if bound is not None]
        if not bounds or not all(math.isfinite(bound) for bound in bounds):
            raise ValueError(f"threshold: give a finite minimum, maximum or both, got {self}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"threshold: minimum {self.minimum} is above maximum {self.maximum}")

    def violation(self, level: float) -> str | None:
        if self.minimum is not None and level < self.minimum:
            return f"below the minimum {self.minimum:g}"
        if self.maximum is not None and level > self.maximum:
            return f"above the maximum {self.maximum:g}"
        return None


@dataclass(frozen=True, kw_only=True)
class MetricRules:
    """How one metric is judged. `allowed_effect` is the relative shift against the baseline's level that
    may pass even when significant (0.1 = 10 %). `optional`: when it has no data it leaves the score instead
    of counting as failed; a critical metric cannot be optional (a critical metric without data fails)."""

    name: str
    direction: Direction = Direction.INCREASE
    weight: float = 1.0
    critical: bool = False
    optional: bool = False
    allowed_effect: float = 0.1
    threshold: Threshold | None = None
    compare_to_baseline: bool = True

    kind: ClassVar[MetricKind]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("metric: name must not be empty")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"metric {self.name!r}: weight must be a positive number, got {self.weight}")
        if not (math.isfinite(self.allowed_effect) and self.allowed_effect >= 0):
            raise ValueError(f"metric {self.name!r}: allowed_effect must be >= 0, got {self.allowed_effect}")
        if self.critical and self.optional:
            raise ValueError(f"metric {self.name!r}: a critical metric cannot be optional")
        if not self.compare_to_baseline and self.threshold is None:
            raise ValueError(
                f"metric {self.name!r}: judges nothing: compare it to the baseline or give a threshold"
            )


@dataclass(frozen=True, kw_only=True)
class SampleMetric(MetricRules):
    """A continuous metric: the samples of the window, canary and baseline (empty when not compared).
    `allowed_spread_increase` is the relative growth of the spread that may pass (0.5 = 1.5 times)."""

    canary: tuple[float, ...]
    baseline: tuple[float, ...] = ()
    allowed_spread_increase: float = 0.5

    kind: ClassVar[MetricKind] = MetricKind.CONTINUOUS

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.allowed_spread_increase) and self.allowed_spread_increase >= 0):
            raise ValueError(
                f"metric {self.name!r}: allowed_spread_increase must be >= 0, "
                f"got {self.allowed_spread_increase}"
            )


@dataclass(frozen=True, kw_only=True)
class CountMetric(MetricRules):
    """A metric of failures out of trials, canary and baseline (zero trials when not compared)."""

    canary: Counts
    baseline: Counts = Counts(0, 0)

    kind: ClassVar[MetricKind] = MetricKind.COUNTS


Metric = SampleMetric | CountMetric


@dataclass(frozen=True)
class JudgeConfig:
    """The check's rules. Below `min_samples` finite samples (or `min_trials` trials) on either side a metric
    has no data. Past `max_samples` a side is thinned evenly, so a check's cost stays bounded whatever the
    window and step (the shift's interval sorts every pairwise difference: `max_samples` squared)."""

    confidence: float = DEFAULT_CONFIDENCE
    marginal_score: float = DEFAULT_MARGINAL_SCORE
    pass_score: float = DEFAULT_PASS_SCORE
    min_samples: int = 10
    min_trials: int = 10
    max_samples: int = 1000

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"judge: confidence must be within [0.5, 1), got {self.confidence}")
        if not 0 <= self.marginal_score <= self.pass_score <= 100:
            raise ValueError(
                "judge: scores must satisfy 0 <= marginal <= pass <= 100, "
                f"got marginal {self.marginal_score}, pass {self.pass_score}"
            )
        if not 2 <= self.min_samples <= self.max_samples:
            raise ValueError(
                f"judge: need 2 <= min_samples <= max_samples, got {self.min_samples} and {self.max_samples}"
            )
        if self.min_trials < 1:
            raise ValueError(f"judge: min_trials must be >= 1, got {self.min_trials}")

    @property
    def alpha(self) -> float:
        return 1 - self.confidence
