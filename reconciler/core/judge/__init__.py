"""The statistical judge of a check: each metric of the canary against its baseline, then one score.

Data in, verdict out, no I/O: `judge(metrics, config)` takes the samples (or counts) of the window as plain
frozen data (`inputs`) and returns a `Judgement` that carries its evidence: per metric the sizes, the
estimate, its interval, the p-values and the spread, and why the verdict is what it is.

    per metric:  too few samples or trials ──────────────────▶ NoData
                 shift significant, beyond the allowed effect,
                   in a bad direction ───────────────────────▶ High | Low
                 outside the threshold, or spread grown ─────▶ Fail
                 otherwise ──────────────────────────────────▶ Pass
    the check:   a critical metric not Pass ─────────────────▶ Fail
                 score = weight of Pass / weight counted * 100 (an optional metric without data is not
                 counted; any other metric without data counts as failed: silence is not health)
                 score >= pass ▶ Pass;  >= marginal ▶ Marginal;  else ▶ Fail

The statistics are in `statistics`; the methods, their choice and references in docs/analysis.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from reconciler.core.judge.inputs import (
    CountMetric,
    Counts,
    Direction,
    JudgeConfig,
    Metric,
    MetricKind,
    SampleMetric,
    Threshold,
)
from reconciler.core.judge.statistics import (
    Comparison,
    Spread,
    compare_counts,
    compare_samples,
    compare_spread,
    finite_samples,
    median,
)

__all__ = [
    "CheckVerdict",
    "Comparison",
    "CountMetric",
    "Counts",
    "Direction",
    "JudgeConfig",
    "Judgement",
    "Metric",
    "MetricKind",
    "MetricResult",
    "SampleMetric",
    "Spread",
    "Threshold",
    "Verdict",
    "judge",
]


DEFAULT_CONFIG = JudgeConfig()
# The smallest spread a baseline is taken to have, relative to its level (its median): 1 %. Finer than that,
# samples of a rate or a quantile are the measurement's resolution, not the workload's variation.
SPREAD_RESOLUTION = 0.01


class Verdict(StrEnum):
    PASS = "Pass"
    HIGH = "High"
    LOW = "Low"
    NO_DATA = "NoData"
    FAIL = "Fail"


class CheckVerdict(StrEnum):
    PASS = "Pass"
    MARGINAL = "Marginal"
    FAIL = "Fail"


@dataclass(frozen=True)
class MetricResult:
    """One metric's verdict and its evidence. Sizes are the finite samples (or trials) the statistics used;
    `ignored` counts the samples left out (not finite, or thinned past the bound). `comparison` and
    `spread` are None where they were not computed (no data, not compared, counts have no spread)."""

    name: str
    kind: MetricKind
    verdict: Verdict
    reason: str
    weight: float
    critical: bool
    optional: bool
    canary_size: int
    baseline_size: int
    ignored: int = 0
    canary_level: float | None = None
    comparison: Comparison | None = None
    spread: Spread | None = None


@dataclass(frozen=True)
class Judgement:
    verdict: CheckVerdict
    score: float
    reason: str
    metrics: tuple[MetricResult, ...]


def judge(metrics: Sequence[Metric], config: JudgeConfig = DEFAULT_CONFIG) -> Judgement:
    results = tuple(
        _judge_samples(metric, config) if isinstance(metric, SampleMetric) else _judge_counts(metric, config)
        for metric in metrics
    )
    return _score(results, config)


def _judge_samples(metric: SampleMetric, config: JudgeConfig) -> MetricResult:
    canary = finite_samples(metric.canary, config.max_samples)
    baseline = finite_samples(metric.baseline, config.max_samples)
    ignored = len(metric.canary) + len(metric.baseline) - canary.size - baseline.size
    missing = _missing(metric, canary.size, baseline.size, config.min_samples, "finite samples")
    if missing:
        return _result(metric, (Verdict.NO_DATA, missing), canary.size, baseline.size, ignored)
    comparison = compare_samples(canary, baseline, config.confidence) if metric.compare_to_baseline else None
    if comparison and math.isinf(comparison.low):
        # Even samples wholly apart would not be significant: a metric that cannot fail has no data.
        too_few = (
            f"{canary.size} and {baseline.size} samples are too few to reject any shift "
            f"at {config.confidence:.0%}"
        )
        return _result(
            metric, (Verdict.NO_DATA, too_few), canary.size, baseline.size, ignored, comparison=comparison
        )
    spread = compare_spread(canary, baseline) if metric.compare_to_baseline else None
    level = comparison.canary_level if comparison else median(canary)
    findings = [
        _shift_finding(metric, comparison, config),
        _threshold_finding(metric, level),
        _spread_finding(metric, spread, comparison, config),
    ]
    return _result(
        metric,
        _verdict(metric, findings, level, comparison, config),
        canary.size,
        baseline.size,
        ignored,
        canary_level=level,
        comparison=comparison,
        spread=spread,
    )


def _judge_counts(metric: CountMetric, config: JudgeConfig) -> MetricResult:
    canary, baseline = metric.canary, metric.baseline
    missing = _missing(metric, canary.trials, baseline.trials, config.min_trials, "trials")
    if missing:
        return _result(metric, (Verdict.NO_DATA, missing), canary.trials, baseline.trials)
    comparison = compare_counts(canary, baseline, config.confidence) if metric.compare_to_baseline else None
    level = canary.failures / canary.trials
    findings = [_shift_finding(metric, comparison, config), _threshold_finding(metric, level)]
    return _result(
        metric,
        _verdict(metric, findings, level, comparison, config),
        canary.trials,
        baseline.trials,
        canary_level=level,
        comparison=comparison,
    )


_ESTIMATE = {MetricKind.CONTINUOUS: "Hodges-Lehmann shift", MetricKind.COUNTS: "difference of rates"}
_LEVEL = {MetricKind.CONTINUOUS: "median", MetricKind.COUNTS: "failure rate"}

Finding = tuple[Verdict, str] | None


def _missing(metric: Metric, canary_size: int, baseline_size: int, minimum: int, unit: str) -> str | None:
    if canary_size < minimum:
        return f"canary had {canary_size} {unit}, {minimum} needed"
    if metric.compare_to_baseline and baseline_size < minimum:
        return f"baseline had {baseline_size} {unit}, {minimum} needed"
    return None


def _shift_finding(metric: Metric, comparison: Comparison | None, config: JudgeConfig) -> Finding:
    """High or Low: significant at the check's confidence, in a direction the metric calls bad, and larger
    than the allowed effect relative to the baseline's level (any shift at all when that level is 0)."""
    if comparison is None:
        return None
    allowed = metric.allowed_effect * abs(comparison.baseline_level)
    either = metric.direction is Direction.EITHER
    p_increase = comparison.p_two_sided if either else comparison.p_increase
    p_decrease = comparison.p_two_sided if either else comparison.p_decrease
    if (
        metric.direction is not Direction.DECREASE
        and comparison.estimate > allowed
        and p_increase < config.alpha
    ):
        return Verdict.HIGH, _describe_shift(metric, comparison, config, p_increase)
    if (
        metric.direction is not Direction.INCREASE
        and comparison.estimate < -allowed
        and p_decrease < config.alpha
    ):
        return Verdict.LOW, _describe_shift(metric, comparison, config, p_decrease)
    return None


def _describe_shift(metric: Metric, comparison: Comparison, config: JudgeConfig, p_value: float) -> str:
    relative = comparison.relative
    amount = (
        f"{relative:+.1%} against the baseline"
        if relative is not None
        else f"{comparison.estimate:+.4g} against a baseline at 0"
    )
    return (
        f"canary {amount} ({_evidence(metric, comparison, config)}, p={p_value:.2g}), "
        f"beyond the allowed {metric.allowed_effect:.0%}"
    )


def _evidence(metric: Metric, comparison: Comparison, config: JudgeConfig) -> str:
    return (
        f"{_ESTIMATE[metric.kind]} {comparison.estimate:.4g}, "
        f"{config.confidence:.0%} interval {comparison.low:.4g} to {comparison.high:.4g}"
    )


def _threshold_finding(metric: Metric, level: float) -> Finding:
    violation = metric.threshold.violation(level) if metric.threshold else None
    if violation is None:
        return None
    return Verdict.FAIL, f"canary {_LEVEL[metric.kind]} {level:.4g} {violation}"


def _spread_finding(
    metric: SampleMetric, spread: Spread | None, comparison: Comparison | None, config: JudgeConfig
) -> Finding:
    """Fail: the spread grew significantly (Kayenta misses it, kayenta#780) and by more than allowed. The
    baseline's spread counts as at least SPREAD_RESOLUTION of its level: a baseline whose samples are all
    equal (a quantile that stays in one histogram bucket) has no spread at all, and a canary with one sample
    a few percent off would otherwise be infinitely more spread."""
    allowed_ratio = 1 + metric.allowed_spread_increase
    if spread is None or spread.p_value >= config.alpha or spread.ratio <= allowed_ratio:
        return None
    resolution = SPREAD_RESOLUTION * abs(comparison.baseline_level) if comparison is not None else 0.0
    if spread.canary <= allowed_ratio * max(spread.baseline, resolution):
        return None
    return Verdict.FAIL, (
        f"canary spread {spread.ratio:.2f} times the baseline's (mean absolute deviation {spread.canary:.4g} "
        f"against {spread.baseline:.4g}, Brown-Forsythe p={spread.p_value:.2g}), beyond the allowed "
        f"{allowed_ratio:.2f} times"
    )


def _verdict(
    metric: Metric, findings: list[Finding], level: float, comparison: Comparison | None, config: JudgeConfig
) -> tuple[Verdict, str]:
    found = [finding for finding in findings if finding]
    if found:
        return found[0][0], "; ".join(reason for _, reason in found)
    if comparison is None:
        return Verdict.PASS, f"canary {_LEVEL[metric.kind]} {level:.4g} within the threshold"
    return Verdict.PASS, (
        f"no significant shift beyond the allowed {metric.allowed_effect:.0%} "
        f"({_evidence(metric, comparison, config)}, two-sided p={comparison.p_two_sided:.2g})"
    )


def _result(
    metric: Metric,
    verdict: tuple[Verdict, str],
    canary_size: int,
    baseline_size: int,
    ignored: int = 0,
    *,
    canary_level: float | None = None,
    comparison: Comparison | None = None,
    spread: Spread | None = None,
) -> MetricResult:
    return MetricResult(
        name=metric.name,
        kind=metric.kind,
        verdict=verdict[0],
        reason=verdict[1],
        weight=metric.weight,
        critical=metric.critical,
        optional=metric.optional,
        canary_size=canary_size,
        baseline_size=baseline_size,
        ignored=ignored,
        canary_level=canary_level,
        comparison=comparison,
        spread=spread,
    )


def _score(results: tuple[MetricResult, ...], config: JudgeConfig) -> Judgement:
    counted = [result for result in results if not (result.optional and result.verdict is Verdict.NO_DATA)]
    # Correctly rounded sums and the ratio first keep the score within 0..100 whatever the weights.
    counted_weight = math.fsum(result.weight for result in counted)
    passed_weight = math.fsum(result.weight for result in counted if result.verdict is Verdict.PASS)
    score = 100 * (passed_weight / counted_weight) if counted_weight else 0.0
    failing = [result for result in counted if result.verdict is not Verdict.PASS]
    critical = next((result for result in failing if result.critical), None)
    if critical is not None:
        reason = f"critical metric {critical.name!r} is {critical.verdict}: {critical.reason}"
        return Judgement(CheckVerdict.FAIL, score, reason, results)
    if not counted:
        return Judgement(CheckVerdict.FAIL, score, "no metric counted: none had data", results)
    verdict = (
        CheckVerdict.PASS
        if score >= config.pass_score
        else CheckVerdict.MARGINAL
        if score >= config.marginal_score
        else CheckVerdict.FAIL
    )
    summary = ", ".join(f"{result.name} {result.verdict}" for result in failing) or "every metric passed"
    reason = (
        f"score {score:.1f} against pass {config.pass_score:g} and marginal {config.marginal_score:g}: "
        f"{summary}"
    )
    return Judgement(verdict, score, reason, results)
