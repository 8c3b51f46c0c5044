"""The metrics of a check (reconciler/core/comparison.py): rendered for the canary and the baseline, answered
by a fake metrics source, judged, and combined with the legacy query and the traffic guard."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest

from reconciler.core import analysis, comparison
from reconciler.core.analysis import CheckResult, QueryResult, RenderedQueries
from reconciler.core.metrics import MetricTemplateSpec, TemplateError, TemplateRef
from reconciler.core.model import (
    MAX_EVIDENCE_TEXT,
    CanaryAppSpec,
    CanaryAppStatus,
    CheckOutcome,
    Series,
)
from reconciler.core.ports import RangeResult

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, 400_000, tzinfo=datetime.UTC)
LATENCY = 'histogram_quantile(0.99, rate(latency_bucket{workload="{{ target }}"}[1m]))'
FAILURES = 'sum(increase(errors{workload="{{ target }}"}[{{ window }}]))'
TRIALS = 'sum(increase(requests{workload="{{ target }}"}[{{ window }}]))'


def spec(metrics: list[dict[str, Any]], **analysis_fields: Any) -> CanaryAppSpec:
    return CanaryAppSpec.model_validate(
        {
            "image": "app:v2",
            "imageListenPort": 8080,
            "prometheusURL": "http://prometheus:9090",
            "trafficShiftUpdateInterval": 30,
            "analysis": {"baseline": True, "metrics": metrics, **analysis_fields},
        }
    )


def latency(**rules: Any) -> dict[str, Any]:
    return {"name": "latency", "query": LATENCY, **rules}


def errors(**rules: Any) -> dict[str, Any]:
    return {"name": "errors", "counts": {"failures": FAILURES, "trials": TRIALS}, **rules}


STATUS = CanaryAppStatus(last_traffic_shift="2026-01-01T11:58:00Z")
VARIABLES = analysis.query_variables("web", "shop", spec([latency()]), STATUS, NOW)


def rendered(query: str, workload: str) -> str:
    return query.replace("{{ target }}", workload).replace("{{ window }}", VARIABLES["window"])


class FakeAnswers:
    """Answers by query text (an unknown query has no series); records every query asked."""

    def __init__(self, ranges: dict[str, RangeResult], counts: dict[str, QueryResult] | None = None) -> None:
        self.ranges = ranges
        self.counts = counts or {}
        self.asked: list[str] = []

    def samples(self, query: str) -> RangeResult:
        self.asked.append(query)
        return self.ranges.get(query, RangeResult())

    def count(self, query: str) -> QueryResult:
        self.asked.append(query)
        return self.counts.get(query, QueryResult(CheckOutcome.CLEAN, total=0.0))


def steady(level: float, size: int = 60) -> RangeResult:
    """`size` samples around `level` (a spread of 10 %), in two series."""
    values = tuple(level * (1 + (index % 10) / 100) for index in range(size))
    return RangeResult((values[: size // 2], values[size // 2 :]))


def number(value: float) -> QueryResult:
    return QueryResult(CheckOutcome.ERRORS_FOUND, "", (Series(labels={}, value=str(value)),), 1, total=value)


CLEAN_LEGACY = CheckResult(CheckOutcome.CLEAN, "error query returned no result; 500 canary requests", "")


def check(
    the_spec: CanaryAppSpec,
    answers: FakeAnswers,
    legacy: CheckResult = CLEAN_LEGACY,
    found: dict[TemplateRef, comparison.TemplateAnswer] | None = None,
) -> CheckResult:
    plan = comparison.plan(the_spec, VARIABLES, found or {})
    compared = comparison.compare(plan, answers, comparison.judge_config(the_spec.analysis))
    return comparison.assess(legacy, compared)


def latency_answers(canary: RangeResult, baseline: RangeResult) -> FakeAnswers:
    return FakeAnswers({rendered(LATENCY, "web-canary"): canary, rendered(LATENCY, "web-baseline"): baseline})


def test_a_clear_shift_fails_the_check_with_each_metrics_evidence() -> None:
    answers = latency_answers(steady(200), steady(100))
    result = check(spec([latency()]), answers)
    assert result.outcome == CheckOutcome.METRICS_FAILED
    assert result.verdict == "Fail"
    assert result.score == 0.0
    assert "latency High" in result.message
    assert answers.asked == [rendered(LATENCY, "web-canary"), rendered(LATENCY, "web-baseline")]
    [record] = result.metrics
    assert (record.name, record.kind, record.verdict) == ("latency", "continuous", "High")
    assert (record.canary_size, record.baseline_size) == (60, 60)
    assert record.canary_level is not None
    assert record.baseline_level is not None
    assert record.canary_level == pytest.approx(2 * record.baseline_level, rel=0.01)
    assert record.estimate is not None
    assert record.low is not None
    assert record.high is not None
    assert record.low <= record.estimate <= record.high
    assert record.p_value is not None
    assert record.p_value < 0.02
    assert record.spread_ratio is not None
    assert "against the baseline" in record.reason


def test_the_same_samples_on_both_sides_pass_and_advance() -> None:
    result = check(spec([latency()]), latency_answers(steady(100), steady(100)))
    assert result.outcome == CheckOutcome.CLEAN
    assert (result.verdict, result.score) == ("Pass", 100.0)
    assert result.message.startswith("score 100.0 against pass 95")


def test_no_samples_anywhere_is_no_data_naming_each_metric() -> None:
    result = check(spec([latency(), errors()]), FakeAnswers({}))
    assert result.outcome == CheckOutcome.NO_DATA
    assert result.message.startswith("no metric had data (latency: canary had 0 finite samples")
    assert "errors: canary had 0 trials, 10 needed" in result.message
    assert [record.verdict for record in result.metrics] == ["NoData", "NoData"]


def test_some_metrics_without_data_are_judged_not_held() -> None:
    result = check(spec([latency(), errors()]), latency_answers(steady(100), steady(100)))
    assert result.outcome == CheckOutcome.METRICS_FAILED  # a metric without data counts as failed
    assert result.score == 50.0


def test_a_score_between_marginal_and_pass_is_marginal() -> None:
    the_spec = spec([latency(), errors()], scoreThresholds={"marginal": 50, "pass": 90})
    answers = latency_answers(steady(100), steady(100))
    answers.counts = {
        rendered(FAILURES, "web-canary"): number(30),
        rendered(TRIALS, "web-canary"): number(100),
        rendered(FAILURES, "web-baseline"): number(0),
        rendered(TRIALS, "web-baseline"): number(100),
    }
    result = check(the_spec, answers)
    assert result.outcome == CheckOutcome.MARGINAL
    assert (result.verdict, result.score) == ("Marginal", 50.0)
    assert "errors High" in result.message


def test_three_errors_in_twenty_requests_against_a_clean_baseline_fail() -> None:
    answers = FakeAnswers(
        {},
        {
            rendered(FAILURES, "web-canary"): number(2.6),  # increase() extrapolates: rounded to 3
            rendered(TRIALS, "web-canary"): number(20.2),
            rendered(FAILURES, "web-baseline"): number(0),
            rendered(TRIALS, "web-baseline"): number(200),
        },
    )
    result = check(spec([errors()]), answers)
    assert result.outcome == CheckOutcome.METRICS_FAILED
    [record] = result.metrics
    assert (record.kind, record.verdict, record.canary_size, record.baseline_size) == (
        "counts",
        "High",
        20,
        200,
    )
    assert record.canary_level == pytest.approx(3 / 20)


def test_counts_are_whole_and_failures_never_exceed_trials() -> None:
    answers = FakeAnswers(
        {},
        {
            rendered(FAILURES, "web-canary"): number(14.4),
            rendered(TRIALS, "web-canary"): number(11.6),
            rendered(TRIALS, "web-baseline"): number(-0.2),
        },
    )
    result = check(spec([errors(compareToBaseline=False, threshold={"max": 0.5})]), answers)
    [record] = result.metrics
    assert (record.canary_size, record.canary_level) == (12, 1.0)
    assert result.outcome == CheckOutcome.METRICS_FAILED
    assert rendered(FAILURES, "web-baseline") not in answers.asked  # not compared: the baseline is not asked


def test_a_metric_query_that_fails_is_a_failed_query_naming_the_metric_and_the_workload() -> None:
    answers = latency_answers(steady(100), RangeResult(error="query rejected: parse error"))
    result = check(spec([latency(), errors()]), answers)
    assert result.outcome == CheckOutcome.QUERY_FAILED
    assert result.message == "metric 'latency': the query for baseline failed: query rejected: parse error"
    # Nothing more is asked after a failed query: an endpoint that times out costs one deadline per check.
    assert answers.asked == [rendered(LATENCY, "web-canary"), rendered(LATENCY, "web-baseline")]
    assert result.verdict is None
    assert result.metrics == ()


def test_a_missing_template_fails_the_check_naming_the_metric_template_and_fix_and_asks_nothing() -> None:
    ref = TemplateRef(name="p99", kind="ClusterMetricTemplate")
    answers = FakeAnswers({})
    result = check(spec([{"name": "latency", "templateRef": {"name": "p99", "kind": ref.kind}}]), answers)
    assert result.outcome == CheckOutcome.METRICS_FAILED
    assert result.message == (
        "metric 'latency': ClusterMetricTemplate 'p99' not found: create it or fix templateRef"
    )
    assert answers.asked == []


def test_a_template_that_does_not_parse_or_fit_fails_the_check() -> None:
    broken = TemplateRef(name="broken")
    fitting = TemplateRef(name="p99")
    the_spec = spec(
        [
            {"name": "one", "templateRef": {"name": "broken"}},
            {"name": "two", "templateRef": {"name": "p99"}, "args": {"quantile": "0.9"}},
        ]
    )
    found: dict[TemplateRef, comparison.TemplateAnswer] = {
        broken: TemplateError("MetricTemplate shop/broken is invalid: spec.query: too long: fix its spec"),
        fitting: MetricTemplateSpec(query=LATENCY),
    }
    result = check(the_spec, FakeAnswers({}), found=found)
    assert result.outcome == CheckOutcome.METRICS_FAILED
    assert result.message == (
        "metric 'one': MetricTemplate shop/broken is invalid: spec.query: too long: fix its spec; "
        "metric 'two': MetricTemplate 'p99' has no argument quantile; it takes none"
    )


def test_a_template_comparing_to_a_baseline_that_does_not_run_is_a_problem() -> None:
    ref = TemplateRef(name="p99")
    the_spec = spec([{"name": "latency", "templateRef": {"name": "p99"}}], baseline=False)
    found: dict[TemplateRef, comparison.TemplateAnswer] = {
        ref: MetricTemplateSpec(query=LATENCY, compareToBaseline=True)
    }
    result = check(the_spec, FakeAnswers({}), found=found)
    assert result.outcome == CheckOutcome.METRICS_FAILED
    assert "MetricTemplate 'p99' says so" in result.message
    assert "set analysis.baseline: true" in result.message


def test_a_template_renders_its_arguments_target_and_the_canaryapps_variables() -> None:
    ref = TemplateRef(name="p99")
    template = MetricTemplateSpec.model_validate(
        {
            "query": 'q{w="{{ target }}",b="{{ baseline }}",q="{{ args.quantile }}",n="{{ namespace }}"}',
            "args": [{"name": "quantile", "default": "0.99"}],
        }
    )
    the_spec = spec([{"name": "latency", "templateRef": {"name": "p99"}, "args": {"quantile": "0.9"}}])
    [queries] = comparison.plan(the_spec, VARIABLES, {ref: template}).metrics
    assert queries.canary.query == 'q{w="web-canary",b="web-baseline",q="0.9",n="shop"}'
    assert queries.baseline is not None
    assert queries.baseline.query == 'q{w="web-baseline",b="web-baseline",q="0.9",n="shop"}'
    assert comparison.template_refs(the_spec.analysis) == (ref,)


@pytest.mark.parametrize(
    ("legacy", "outcome"),
    [
        pytest.param(
            CheckResult(CheckOutcome.ERRORS_FOUND, "query returned 1 series", "errors"),
            CheckOutcome.ERRORS_FOUND,
            id="the legacy query's errors win",
        ),
        pytest.param(
            CheckResult(CheckOutcome.NO_CANARY_TRAFFIC, "no canary traffic observed"),
            CheckOutcome.NO_CANARY_TRAFFIC,
            id="the traffic guard holds before the judge",
        ),
        pytest.param(
            CheckResult(CheckOutcome.QUERY_FAILED, "canary traffic query failed"),
            CheckOutcome.QUERY_FAILED,
            id="a failed legacy query",
        ),
    ],
)
def test_the_legacy_query_and_the_traffic_guard_come_first_with_the_judges_evidence(
    legacy: CheckResult, outcome: CheckOutcome
) -> None:
    result = check(spec([latency()]), latency_answers(steady(200), steady(100)), legacy)
    assert (result.outcome, result.message) == (outcome, legacy.message)
    assert result.verdict == "Fail"
    assert [record.verdict for record in result.metrics] == ["High"]


def test_the_legacy_errors_win_over_a_template_problem() -> None:
    the_spec = spec([{"name": "latency", "templateRef": {"name": "gone"}}])
    legacy = CheckResult(CheckOutcome.ERRORS_FOUND, "query returned 1 series")
    assert check(the_spec, FakeAnswers({}), legacy).outcome == CheckOutcome.ERRORS_FOUND
    held = CheckResult(CheckOutcome.NO_CANARY_TRAFFIC, "no canary traffic observed")
    assert check(the_spec, FakeAnswers({}), held).outcome == CheckOutcome.METRICS_FAILED


def test_a_whole_check_through_analysis_assess_with_a_legacy_query() -> None:
    the_spec = spec([latency()])
    queries = RenderedQueries(errors="errors > 0", traffic="traffic")
    legacy = analysis.assess(
        queries, QueryResult(CheckOutcome.CLEAN), number(500), the_spec.min_canary_requests
    )
    result = check(the_spec, latency_answers(steady(100), steady(100)), legacy)
    assert (result.outcome, result.query, result.canary_requests) == (CheckOutcome.CLEAN, "errors > 0", 500)


def test_records_are_bounded_for_the_status() -> None:
    canary = RangeResult(((math.nan, math.inf, *steady(0, 30).samples()),))
    result = check(spec([latency(direction="either")]), latency_answers(canary, steady(0, 30)))
    [record] = result.metrics
    assert record.canary_size == 30  # the NaN and the infinity are left out
    assert record.spread_ratio == 1.0
    long_reason = comparison.assess(
        CLEAN_LEGACY,
        comparison.Compared(
            comparison.Plan((), ("metric 'x': " + "y" * 2000,)),
        ),
    )
    assert len(long_reason.message) == MAX_EVIDENCE_TEXT


def test_the_window_starts_at_the_last_weight_change_and_keeps_a_bounded_number_of_points() -> None:
    the_spec = spec([latency()], sampleStepSeconds=5)
    window = comparison.window(the_spec, STATUS, NOW)
    assert window.start == datetime.datetime(2026, 1, 1, 11, 58, tzinfo=datetime.UTC)
    assert window.end == datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
    assert window.step_seconds == 5
    no_shift = comparison.window(the_spec, CanaryAppStatus(), NOW)
    assert (no_shift.end - no_shift.start).total_seconds() == 30
    paused_for_days = CanaryAppStatus(last_traffic_shift="2025-12-25T12:00:00Z")
    long = comparison.window(the_spec, paused_for_days, NOW)
    points = (long.end - long.start).total_seconds() // long.step_seconds + 1
    assert long.step_seconds > 5
    assert points <= comparison.MAX_RANGE_POINTS
