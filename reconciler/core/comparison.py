"""A check of `spec.analysis.metrics`: each metric's queries rendered for the canary and for the baseline, the
answers turned into the judge's inputs, the judge's verdict turned into the check's outcome. Pure: the
templates come in already read, and the answers through `Answers`, which the runtime binds to Prometheus.

    a metric's template missing or not fitting ─▶ MetricsFailed (the message names the metric, template, fix)
    a query without a usable answer ────────────▶ QueryFailed
    the judge:  Pass ───────────────────────────▶ Clean
                Fail ───────────────────────────▶ MetricsFailed     (a failed check)
                Marginal ───────────────────────▶ Marginal          (a failed check: no step forward)
                every metric NoData ────────────▶ NoData            (hold the weight; the deadline bounds it)

A legacy `prometheusQuery` and the canary-traffic guard (analysis.py) come first: its ErrorsFound wins over
everything, a template problem over its unknowns, and its unknowns (QueryFailed, NoCanaryTraffic) over the
judge (`assess`). Whatever decides, the judge's evidence, when it ran, goes into the check's record.

A metric's query measures one workload, `{{ target }}`: rendered once as the canary, once as the baseline
(only for a metric compared to it). A continuous metric's samples are every value of every series of its
range query over the window (the last weight change to now); a counts metric's numbers are two instant
queries at now, each summed over its series and rounded to whole counts, failures clamped to the trials.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypedDict

from reconciler.core import templates
from reconciler.core.analysis import CheckResult, QueryResult, shortened
from reconciler.core.clock import parse_timestamp
from reconciler.core.judge import (
    CheckVerdict,
    CountMetric,
    Counts,
    Direction,
    JudgeConfig,
    Judgement,
    Metric,
    MetricResult,
    SampleMetric,
    Threshold,
    Verdict,
    judge,
)
from reconciler.core.metrics import (
    AnalysisSpec,
    MetricTemplateSpec,
    ResolvedMetric,
    TemplateError,
    TemplateRef,
    resolve,
)
from reconciler.core.model import CanaryAppSpec, CanaryAppStatus, CheckOutcome, MetricRecord
from reconciler.core.ports import MAX_RANGE_POINTS, RangeResult

# Counts beyond any real number of requests in a window are cut here (the judge's exact test stays bounded).
MAX_COUNT = 10**9
# What a template read answered: its spec, None (it does not exist) or why it does not parse.
TemplateAnswer = MetricTemplateSpec | TemplateError | None


@dataclass(frozen=True)
class Window:
    """The samples a continuous metric is judged on: from the last weight change to the check, every
    `step_seconds`."""

    start: datetime.datetime
    end: datetime.datetime
    step_seconds: int


@dataclass(frozen=True)
class SideQueries:
    """A metric's queries for one workload: `query` for a continuous metric, else `failures` and `trials`."""

    workload: str
    query: str | None = None
    failures: str | None = None
    trials: str | None = None


@dataclass(frozen=True)
class MetricQueries:
    metric: ResolvedMetric
    canary: SideQueries
    baseline: SideQueries | None  # None: not compared to the baseline


@dataclass(frozen=True)
class Plan:
    """What a check asks for its metrics; `problems` names each metric that cannot be asked and the fix."""

    metrics: tuple[MetricQueries, ...]
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Compared:
    """The metrics' part of a check: the plan's problems, the queries without a usable answer, and the
    judge's verdict (None when it could not run)."""

    plan: Plan
    failures: tuple[str, ...] = ()
    judgement: Judgement | None = None


class Answers(Protocol):
    """The metrics source as one check asks it: a continuous metric's samples over the check's window, and
    an instant query at the check's time."""

    def samples(self, query: str) -> RangeResult: ...

    def count(self, query: str) -> QueryResult: ...


def window(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> Window:
    """The window of a check at `now` (to the second, as the check's record): since the last weight change,
    else one interval."""
    end = now.replace(microsecond=0)
    since = status.last_traffic_shift
    interval = datetime.timedelta(seconds=spec.traffic_shift_update_interval)
    start = min(parse_timestamp(since) if since else end - interval, end)
    sample_step = spec.analysis.sample_step_seconds if spec.analysis is not None else 1
    return Window(start, end, range_step((end - start).total_seconds(), sample_step))


def range_step(span_seconds: float, sample_step: int) -> int:
    """`sample_step`, or the smallest step that keeps a range of `span_seconds` within MAX_RANGE_POINTS."""
    return max(sample_step, math.ceil(span_seconds / (MAX_RANGE_POINTS - 1)))


def template_refs(analysis: AnalysisSpec | None) -> tuple[TemplateRef, ...]:
    """The templates a CanaryApp's metrics name, each once."""
    if analysis is None:
        return ()
    return tuple(dict.fromkeys(m.template_ref for m in analysis.metrics if m.template_ref is not None))


def plan(
    spec: CanaryAppSpec, variables: Mapping[str, str], found: Mapping[TemplateRef, TemplateAnswer]
) -> Plan:
    """Each metric of `spec` resolved against its template (`found`: what reading each of `template_refs`
    answered) and rendered for the canary and the baseline; a metric that does not resolve is a problem."""
    metrics: list[MetricQueries] = []
    problems: list[str] = []
    for metric in spec.metrics:
        answer = found.get(metric.template_ref) if metric.template_ref is not None else None
        try:
            if isinstance(answer, TemplateError):
                raise answer
            resolved = resolve(metric, answer, spec.baseline)
        except TemplateError as error:
            problems.append(_about(metric.name, str(error)))
            continue
        if resolved.compare_to_baseline and not spec.baseline:
            ref = metric.template_ref
            problems.append(
                f"metric {metric.name!r} compares to the baseline ({ref.kind} {ref.name!r} says so), but "
                "analysis.baseline is false: set analysis.baseline: true, or compareToBaseline: false with a "
                "threshold on the metric"
                if ref is not None
                else f"metric {metric.name!r} compares to the baseline, but analysis.baseline is false"
            )
            continue
        canary = _side(resolved, variables, "canary")
        baseline = _side(resolved, variables, "baseline") if resolved.compare_to_baseline else None
        metrics.append(MetricQueries(resolved, canary, baseline))
    return Plan(tuple(metrics), tuple(problems))


def _about(name: str, message: str) -> str:
    return message if message.startswith(f"metric {name!r}") else f"metric {name!r}: {message}"


def _side(metric: ResolvedMetric, variables: Mapping[str, str], workload: str) -> SideQueries:
    values = {**variables, "target": variables[workload]}
    if metric.counts is not None:
        return SideQueries(
            workload,
            failures=templates.render(metric.counts.failures, values),
            trials=templates.render(metric.counts.trials, values),
        )
    return SideQueries(workload, query=templates.render(metric.query or "", values))


def compare(plan: Plan, answers: Answers, config: JudgeConfig) -> Compared:
    """Asks the queries of `plan` and judges the answers. Nothing is asked when the plan has problems (the
    check fails on them), and nothing more after a query without a usable answer (the check is a failed
    query whatever the others say, and an endpoint that times out costs one deadline, not one per query)."""
    if plan.problems or not plan.metrics:
        return Compared(plan)
    inputs: list[Metric] = []
    for queries in plan.metrics:
        try:
            canary = _fetch(queries.metric, queries.canary, answers)
            baseline = _fetch(queries.metric, queries.baseline, answers) if queries.baseline else None
        except _NoAnswerError as failure:
            return Compared(plan, (str(failure),))
        inputs.append(_judge_input(queries.metric, canary, baseline))
    return Compared(plan, judgement=judge(inputs, config))


def judge_config(analysis: AnalysisSpec | None) -> JudgeConfig:
    analysis = analysis or AnalysisSpec()
    return JudgeConfig(
        confidence=analysis.confidence,
        marginal_score=analysis.score_thresholds.marginal,
        pass_score=analysis.score_thresholds.pass_,
        min_samples=analysis.min_samples,
        min_trials=analysis.min_trials,
    )


Side = tuple[float, ...] | Counts


class _NoAnswerError(Exception):
    """A query of a metric got no usable answer; the message names the metric, the query and why."""


def _fetch(metric: ResolvedMetric, side: SideQueries, answers: Answers) -> Side:
    if side.query is not None:
        answer = answers.samples(side.query)
        if answer.error is not None:
            raise _NoAnswerError(
                f"metric {metric.name!r}: the query for {side.workload} failed: {answer.error}"
            )
        return answer.samples()
    counted: list[int] = []
    for what, query in (("failures", side.failures), ("trials", side.trials)):
        result = answers.count(query or "")
        if result.outcome == CheckOutcome.QUERY_FAILED:
            raise _NoAnswerError(
                f"metric {metric.name!r}: the {what} query for {side.workload} failed: {result.message}"
            )
        counted.append(_whole(result.sum()))
    failed, trials = counted
    return Counts(min(failed, trials), trials)


class _Rules(TypedDict):
    name: str
    direction: Direction
    weight: float
    critical: bool
    optional: bool
    allowed_effect: float
    threshold: Threshold | None
    compare_to_baseline: bool


def _whole(value: float) -> int:
    """A count as a whole number: rounded, at least 0, at most MAX_COUNT (a sum that overflowed is no
    count anyone measured)."""
    return min(max(0, round(value)), MAX_COUNT) if math.isfinite(value) else MAX_COUNT


def _judge_input(metric: ResolvedMetric, canary: Side, baseline: Side | None) -> Metric:
    limits = metric.threshold
    rules = _Rules(
        name=metric.name,
        direction=metric.direction,
        weight=metric.weight,
        critical=metric.critical,
        optional=metric.optional,
        allowed_effect=metric.allowed_effect,
        threshold=Threshold(limits.min, limits.max) if limits is not None else None,
        compare_to_baseline=metric.compare_to_baseline,
    )
    if isinstance(canary, Counts):
        counts = baseline if isinstance(baseline, Counts) else Counts(0, 0)
        return CountMetric(canary=canary, baseline=counts, **rules)
    samples = baseline if isinstance(baseline, tuple) else ()
    return SampleMetric(
        canary=canary, baseline=samples, allowed_spread_increase=metric.allowed_spread_increase, **rules
    )


def assess(legacy: CheckResult, compared: Compared | None) -> CheckResult:
    """The check's outcome from the legacy query and traffic guard (`legacy`, analysis.assess) and the
    metrics (see the module's diagram), with the judge's evidence when it ran."""
    if compared is None:
        return legacy
    judgement = compared.judgement
    evidenced = (
        dataclasses.replace(
            legacy,
            score=_finite(judgement.score),
            verdict=judgement.verdict.value,
            metrics=tuple(_record(result, compared.plan) for result in judgement.metrics),
        )
        if judgement is not None
        else legacy
    )
    decided = _decided(legacy, compared)
    if decided is None:
        return evidenced
    outcome, message = decided
    return dataclasses.replace(evidenced, outcome=outcome, message=shortened(message))


def _decided(legacy: CheckResult, compared: Compared) -> tuple[CheckOutcome, str] | None:
    """The outcome and message the metrics decide, or None where the legacy check's stand."""
    judgement = compared.judgement
    if compared.plan.problems and legacy.outcome != CheckOutcome.ERRORS_FOUND:
        return CheckOutcome.METRICS_FAILED, "; ".join(compared.plan.problems)
    if legacy.outcome != CheckOutcome.CLEAN:
        return None
    if compared.failures:
        return CheckOutcome.QUERY_FAILED, "; ".join(compared.failures)
    if judgement is None:
        return None
    if all(metric.verdict is Verdict.NO_DATA for metric in judgement.metrics):
        reasons = "; ".join(f"{metric.name}: {metric.reason}" for metric in judgement.metrics)
        return CheckOutcome.NO_DATA, f"no metric had data ({reasons})"
    return _OUTCOMES[judgement.verdict], judgement.reason


_OUTCOMES = {
    CheckVerdict.PASS: CheckOutcome.CLEAN,
    CheckVerdict.FAIL: CheckOutcome.METRICS_FAILED,
    CheckVerdict.MARGINAL: CheckOutcome.MARGINAL,
}


def _record(result: MetricResult, plan: Plan) -> MetricRecord:
    """One metric's evidence, bounded for the status: numbers that are not finite are None, the reason
    printable and cut."""
    comparison, spread = result.comparison, result.spread
    direction = next(
        (queries.metric.direction for queries in plan.metrics if queries.metric.name == result.name),
        Direction.INCREASE,
    )
    p_value = None
    if comparison is not None:
        p_value = {
            Direction.INCREASE: comparison.p_increase,
            Direction.DECREASE: comparison.p_decrease,
            Direction.EITHER: comparison.p_two_sided,
        }[direction]
    return MetricRecord(
        name=result.name,
        kind=result.kind.value,
        verdict=result.verdict.value,
        reason=shortened(result.reason),
        canary_size=result.canary_size,
        baseline_size=result.baseline_size,
        canary_level=_finite(result.canary_level),
        baseline_level=_finite(comparison.baseline_level) if comparison else None,
        estimate=_finite(comparison.estimate) if comparison else None,
        low=_finite(comparison.low) if comparison else None,
        high=_finite(comparison.high) if comparison else None,
        p_value=_finite(p_value),
        spread_ratio=_finite(spread.ratio) if spread else None,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
