"""The statistical judge (reconciler/core/judge/): its statistics against published reference values, the
verdict of a metric by direction, effect, threshold and spread, the score rules, and invariants."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from reconciler.core.judge import (
    CheckVerdict,
    CountMetric,
    Counts,
    Direction,
    JudgeConfig,
    Metric,
    MetricKind,
    SampleMetric,
    Threshold,
    Verdict,
    judge,
)

# Hollander & Wolfe's permeability constants, the example of R's wilcox.test help page: W = 35 and the exact
# one-sided p = 0.1272 for x greater than y.
PERMEABILITY_X = (0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46)
PERMEABILITY_Y = (1.15, 0.88, 0.90, 0.74, 1.21)
# A baseline of 40 distinct samples, 95.125 to 104.875 in steps of 0.25, out of order: median 100, mean
# absolute deviation from it 2.5.
BASELINE = tuple(100 + (((index * 7919) % 40) - 19.5) / 4 for index in range(40))


def samples(name: str = "latency", canary: tuple[float, ...] = BASELINE, **rules: object) -> SampleMetric:
    return SampleMetric(name=name, canary=canary, baseline=BASELINE, **rules)


def shifted(by: float) -> tuple[float, ...]:
    return tuple(value + by for value in BASELINE)


def only(metric: Metric, config: JudgeConfig | None = None):
    return judge([metric], config or JudgeConfig()).metrics[0]


# --- reference values ---------------------------------------------------------------------------------------


def test_mann_whitney_matches_scipys_documented_example() -> None:
    """scipy.stats.mannwhitneyu's docs: males against females, U = 17, exact two-sided p = 14/126 = 0.1111."""
    metric = SampleMetric(name="age", canary=(19, 22, 16, 29, 24), baseline=(20, 11, 17, 12))
    comparison = only(metric, JudgeConfig(min_samples=4)).comparison
    assert comparison is not None
    assert comparison.p_two_sided == pytest.approx(14 / 126)
    assert comparison.p_increase == pytest.approx(7 / 126)


def _exact_moses_interval(
    x: tuple[float, ...], y: tuple[float, ...], confidence: float
) -> tuple[float, float]:
    """The order-statistic interval by definition, as R's wilcox.test computes it: the null distribution of U
    by enumerating every assignment of ranks, k = the smallest u with P(U <= u) >= alpha / 2."""
    m, n = len(x), len(y)
    u_values = sorted(
        sum(1 for rank in ranks for other in set(range(m + n)) - set(ranks) if rank > other)
        for ranks in itertools.combinations(range(m + n), m)
    )
    k = next(
        u for u in range(m * n + 1) if sum(v <= u for v in u_values) / len(u_values) >= (1 - confidence) / 2
    )
    differences = sorted(a - b for a in x for b in y)
    return differences[k - 1], differences[m * n - k]


def test_hodges_lehmann_and_its_interval_on_hollander_and_wolfes_permeability_data() -> None:
    metric = SampleMetric(name="permeability", canary=PERMEABILITY_X, baseline=PERMEABILITY_Y)
    result = only(metric, JudgeConfig(confidence=0.95, min_samples=5))
    comparison = result.comparison
    assert comparison is not None
    assert comparison.p_increase == pytest.approx(0.1272, abs=5e-5)
    assert comparison.estimate == pytest.approx(0.305)
    low, high = _exact_moses_interval(PERMEABILITY_X, PERMEABILITY_Y, 0.95)
    assert (comparison.low, comparison.high) == pytest.approx((low, high))
    assert (comparison.low, comparison.high) == pytest.approx((-0.15, 0.76))
    assert result.verdict is Verdict.PASS


def test_the_interval_of_large_samples_is_the_textbooks_normal_approximation() -> None:
    """Hollander & Wolfe (1999), eq. 4.41: for large samples k = mn/2 - z(alpha/2) sqrt(mn(m+n+1)/12); scipy's
    continuity correction may move k by one."""
    generator = np.random.default_rng(7)
    canary, baseline = generator.normal(103, 10, 60), generator.normal(100, 10, 50)
    comparison = only(SampleMetric(name="latency", canary=tuple(canary), baseline=tuple(baseline))).comparison
    m, n = canary.size, baseline.size
    k = math.floor(m * n / 2 - scipy_stats.norm.ppf(0.99) * math.sqrt(m * n * (m + n + 1) / 12))
    differences = np.sort(np.subtract.outer(canary, baseline), axis=None)
    assert comparison is not None
    assert comparison.low in differences[k - 2 : k + 1]
    assert comparison.high in differences[m * n - k - 1 : m * n - k + 2]


def test_fisher_exact_on_the_lady_tasting_tea() -> None:
    """Fisher (1935): 3 of 4 cups right against 1 of 4; one-sided p = 17/70, two-sided 34/70 = 0.4857."""
    metric = CountMetric(name="tea", canary=Counts(3, 4), baseline=Counts(1, 4))
    comparison = only(metric, JudgeConfig(min_trials=4)).comparison
    assert comparison is not None
    assert comparison.p_increase == pytest.approx(17 / 70)
    assert comparison.p_two_sided == pytest.approx(34 / 70)


@pytest.mark.parametrize(
    ("canary", "baseline", "interval"),
    [
        pytest.param(Counts(56, 70), Counts(48, 80), (0.0524, 0.3339), id="56/70 - 48/80"),
        pytest.param(Counts(9, 10), Counts(3, 10), (0.1705, 0.8090), id="9/10 - 3/10"),
    ],
)
def test_newcombes_interval_matches_his_table(
    canary: Counts, baseline: Counts, interval: tuple[float, float]
) -> None:
    """Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10 at 95 %."""
    comparison = only(
        CountMetric(name="rate", canary=canary, baseline=baseline), JudgeConfig(0.95, min_trials=10)
    )
    assert comparison.comparison is not None
    assert (comparison.comparison.low, comparison.comparison.high) == pytest.approx(interval, abs=5e-5)


def test_three_errors_in_twenty_requests_against_none_in_two_hundred_fail() -> None:
    """kayenta#426: sparse errors are evidence, not missing data. One-sided p = C(20,3)/C(220,3)."""
    result = only(CountMetric(name="errors", canary=Counts(3, 20), baseline=Counts(0, 200)))
    assert result.verdict is Verdict.HIGH
    assert result.comparison is not None
    assert result.comparison.p_increase == pytest.approx(math.comb(20, 3) / math.comb(220, 3))
    assert result.comparison.low > 0
    assert (result.canary_size, result.baseline_size) == (20, 200)
    assert result.reason.startswith(
        "canary +0.15 against a baseline at 0 (difference of rates 0.15, 98% interval"
    )


# --- a metric's verdict -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shift", "direction", "verdict"),
    [
        pytest.param(30.0, Direction.INCREASE, Verdict.HIGH, id="higher, an increase is bad"),
        pytest.param(30.0, Direction.DECREASE, Verdict.PASS, id="higher, a decrease is bad"),
        pytest.param(30.0, Direction.EITHER, Verdict.HIGH, id="higher, either is bad"),
        pytest.param(-30.0, Direction.INCREASE, Verdict.PASS, id="lower, an increase is bad"),
        pytest.param(-30.0, Direction.DECREASE, Verdict.LOW, id="lower, a decrease is bad"),
        pytest.param(-30.0, Direction.EITHER, Verdict.LOW, id="lower, either is bad"),
        pytest.param(5.0, Direction.INCREASE, Verdict.PASS, id="significant but within the allowed 10 %"),
        pytest.param(0.0, Direction.EITHER, Verdict.PASS, id="the same samples"),
    ],
)
def test_a_shift_is_judged_by_direction_and_allowed_effect(
    shift: float, direction: Direction, verdict: Verdict
) -> None:
    result = only(samples(canary=shifted(shift), direction=direction))
    assert result.verdict is verdict, result.reason
    assert result.comparison is not None
    assert result.comparison.estimate == pytest.approx(shift)
    assert result.comparison.low <= shift <= result.comparison.high


def test_a_significant_shift_within_the_allowed_effect_is_reported_with_its_evidence() -> None:
    result = only(samples(canary=shifted(5.0)))
    assert result.comparison is not None
    assert result.comparison.p_increase < 0.02
    assert result.comparison.relative == pytest.approx(5.0 / result.comparison.baseline_level)
    assert "allowed 10%" in result.reason


def test_a_grown_spread_fails_even_without_a_shift() -> None:
    """kayenta#780: the same median, three times the spread."""
    wider = tuple(100 + 3 * (value - 100) for value in BASELINE)
    result = only(samples(canary=wider, direction=Direction.EITHER))
    assert result.verdict is Verdict.FAIL
    assert result.spread is not None
    assert result.spread.ratio == pytest.approx(3.0)
    assert "Brown-Forsythe" in result.reason


def test_a_spread_grown_from_none_within_the_resolution_passes() -> None:
    """A p95 that stays in one histogram bucket reads the same value in every sample: the baseline has no
    spread, and one canary sample 8 % off (a delayed request; mean absolute deviation 4 against a level of
    975, under 1.5 times 1 % of it) is no grown spread."""
    flat = (975.0,) * 20
    result = only(SampleMetric(name="p95", canary=(*flat[:-1], 1055.0), baseline=flat))
    assert result.spread is not None
    assert result.spread.ratio == float("inf")
    assert result.verdict is Verdict.PASS, result.reason
    wide = (*flat[:-5], 1055.0, 1055.0, 1055.0, 1055.0, 1055.0)
    assert only(SampleMetric(name="p95", canary=wide, baseline=flat)).verdict is Verdict.FAIL


def test_a_spread_within_the_allowed_growth_passes() -> None:
    wider = tuple(100 + 1.3 * (value - 100) for value in BASELINE)
    assert only(samples(canary=wider)).verdict is Verdict.PASS


def test_a_shift_alone_is_no_change_of_spread() -> None:
    result = only(samples(canary=shifted(-30.0)))
    assert result.spread is not None
    assert result.spread.ratio == pytest.approx(1.0)
    assert result.spread.p_value > 0.5


@pytest.mark.parametrize(
    ("metric", "verdict", "reason"),
    [
        pytest.param(
            samples(threshold=Threshold(maximum=99.0)),
            Verdict.FAIL,
            "median 100 above the maximum 99",
            id="above",
        ),
        pytest.param(
            samples(threshold=Threshold(minimum=101.0)), Verdict.FAIL, "below the minimum 101", id="below"
        ),
        pytest.param(
            samples(threshold=Threshold(90.0, 110.0)), Verdict.PASS, "no significant shift", id="within"
        ),
        pytest.param(
            SampleMetric(
                name="cpu", canary=BASELINE, compare_to_baseline=False, threshold=Threshold(maximum=110)
            ),
            Verdict.PASS,
            "median 100 within the threshold",
            id="threshold only, no baseline",
        ),
        pytest.param(
            CountMetric(
                name="errors",
                canary=Counts(6, 100),
                compare_to_baseline=False,
                threshold=Threshold(maximum=0.05),
            ),
            Verdict.FAIL,
            "failure rate 0.06 above the maximum 0.05",
            id="counts against a threshold",
        ),
    ],
)
def test_thresholds(metric: Metric, verdict: Verdict, reason: str) -> None:
    result = only(metric)
    assert result.verdict is verdict
    assert reason in result.reason


@pytest.mark.parametrize(
    ("metric", "reason"),
    [
        pytest.param(samples(canary=BASELINE[:9]), "canary had 9 finite samples, 10 needed", id="few canary"),
        pytest.param(
            SampleMetric(name="latency", canary=BASELINE, baseline=BASELINE[:3]),
            "baseline had 3 finite samples, 10 needed",
            id="few baseline",
        ),
        pytest.param(
            samples(canary=(math.nan,) * 30 + BASELINE[:5]),
            "canary had 5 finite samples, 10 needed",
            id="not finite samples do not count",
        ),
        pytest.param(
            CountMetric(name="errors", canary=Counts(0, 9), baseline=Counts(0, 500)),
            "canary had 9 trials, 10 needed",
            id="few requests",
        ),
        pytest.param(
            CountMetric(name="errors", canary=Counts(0, 0), baseline=Counts(0, 0)),
            "canary had 0 trials, 10 needed",
            id="no requests at all",
        ),
    ],
)
def test_too_little_data_is_no_data_with_its_cause(metric: Metric, reason: str) -> None:
    result = only(metric)
    assert result.verdict is Verdict.NO_DATA
    assert result.reason == reason
    assert result.comparison is None


def test_samples_too_few_for_the_test_to_reject_anything_are_no_data() -> None:
    """4 against 4: the smallest two-sided p is 2/70 = 0.029, so at 98 % no shift, however large, counts."""
    metric = SampleMetric(name="latency", canary=(500.0, 501.0, 502.0, 503.0), baseline=(1.0, 2.0, 3.0, 4.0))
    result = only(metric, JudgeConfig(min_samples=4))
    assert result.verdict is Verdict.NO_DATA
    assert result.reason == "4 and 4 samples are too few to reject any shift at 98%"
    assert result.comparison is not None
    assert (result.comparison.low, result.comparison.high) == (-math.inf, math.inf)
    assert only(metric, JudgeConfig(confidence=0.95, min_samples=4)).verdict is Verdict.HIGH


def test_samples_that_are_not_finite_are_left_out_and_counted() -> None:
    result = only(samples(canary=(*BASELINE, math.nan, math.inf, -math.inf)))
    assert result.verdict is Verdict.PASS
    assert (result.canary_size, result.baseline_size, result.ignored) == (40, 40, 3)


def test_a_long_window_is_thinned_to_the_bound() -> None:
    long_window = BASELINE * 30
    result = only(
        SampleMetric(name="latency", canary=long_window, baseline=long_window), JudgeConfig(max_samples=500)
    )
    assert (result.canary_size, result.baseline_size, result.ignored) == (500, 500, 2 * (1200 - 500))
    assert result.verdict is Verdict.PASS


def test_counts_where_a_decrease_is_bad() -> None:
    result = only(
        CountMetric(
            name="cache hits", direction=Direction.DECREASE, canary=Counts(50, 200), baseline=Counts(150, 200)
        )
    )
    assert result.verdict is Verdict.LOW
    assert result.kind is MetricKind.COUNTS
    assert result.comparison is not None
    assert result.comparison.estimate == pytest.approx(-0.5)


# --- the score ----------------------------------------------------------------------------------------------

PASSING = "pass"
FAILING = "fail"
MISSING = "missing"


def metric_of(outcome: str, index: int, weight: float = 1.0, **rules: object) -> Metric:
    canary = {PASSING: Counts(1, 100), FAILING: Counts(30, 100), MISSING: Counts(0, 2)}[outcome]
    return CountMetric(name=f"m{index}", canary=canary, baseline=Counts(1, 100), weight=weight, **rules)


@pytest.mark.parametrize(
    ("outcomes", "config", "verdict", "score"),
    [
        pytest.param([PASSING] * 4, JudgeConfig(), CheckVerdict.PASS, 100.0, id="all pass"),
        pytest.param(
            [PASSING] * 3 + [FAILING], JudgeConfig(), CheckVerdict.MARGINAL, 75.0, id="75 is marginal"
        ),
        pytest.param([PASSING] * 2 + [FAILING] * 2, JudgeConfig(), CheckVerdict.FAIL, 50.0, id="50 fails"),
        pytest.param(
            [(PASSING, {"weight": 19.0}), FAILING],
            JudgeConfig(),
            CheckVerdict.PASS,
            95.0,
            id="95 by weight passes",
        ),
        pytest.param(
            [(PASSING, {"weight": 3.0}), FAILING],
            JudgeConfig(),
            CheckVerdict.MARGINAL,
            75.0,
            id="weights count",
        ),
        pytest.param(
            [PASSING] * 9 + [(FAILING, {"critical": True})],
            JudgeConfig(),
            CheckVerdict.FAIL,
            90.0,
            id="a critical metric fails the check at once",
        ),
        pytest.param(
            [PASSING, (MISSING, {"critical": True})],
            JudgeConfig(),
            CheckVerdict.FAIL,
            50.0,
            id="a critical metric without data fails the check",
        ),
        pytest.param(
            [PASSING, MISSING], JudgeConfig(), CheckVerdict.FAIL, 50.0, id="no data counts as failed"
        ),
        pytest.param(
            [PASSING, (MISSING, {"optional": True})],
            JudgeConfig(),
            CheckVerdict.PASS,
            100.0,
            id="an optional metric without data leaves the score",
        ),
        pytest.param(
            [(MISSING, {"optional": True})] * 2,
            JudgeConfig(),
            CheckVerdict.FAIL,
            0.0,
            id="nothing counted is no pass",
        ),
        pytest.param([], JudgeConfig(), CheckVerdict.FAIL, 0.0, id="no metrics is no pass"),
        pytest.param(
            [PASSING, FAILING],
            JudgeConfig(marginal_score=40, pass_score=60),
            CheckVerdict.MARGINAL,
            50.0,
            id="thresholds from the config",
        ),
    ],
)
def test_score_rules(
    outcomes: list[str | tuple[str, dict[str, object]]],
    config: JudgeConfig,
    verdict: CheckVerdict,
    score: float,
) -> None:
    metrics = [
        metric_of(outcome, index) if isinstance(outcome, str) else metric_of(outcome[0], index, **outcome[1])
        for index, outcome in enumerate(outcomes)
    ]
    judgement = judge(metrics, config)
    assert (judgement.verdict, judgement.score) == (verdict, pytest.approx(score)), judgement.reason
    assert len(judgement.metrics) == len(metrics)


def test_the_checks_reason_names_the_critical_metric_and_its_evidence() -> None:
    judgement = judge([metric_of(PASSING, 0), metric_of(FAILING, 1, critical=True)])
    assert judgement.reason.startswith("critical metric 'm1' is High: canary +2900.0% against the baseline")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(lambda: samples(weight=0), "weight must be a positive number", id="weight"),
        pytest.param(lambda: samples(allowed_effect=-0.1), "allowed_effect must be >= 0", id="effect"),
        pytest.param(
            lambda: samples(critical=True, optional=True), "cannot be optional", id="critical optional"
        ),
        pytest.param(lambda: samples(compare_to_baseline=False), "judges nothing", id="judges nothing"),
        pytest.param(lambda: samples(name=""), "name must not be empty", id="name"),
        pytest.param(lambda: Counts(3, 2), "failures must be within 0..trials", id="counts"),
        pytest.param(Threshold, "give a finite minimum, maximum or both", id="empty threshold"),
        pytest.param(lambda: Threshold(2, 1), "minimum 2 is above maximum 1", id="inverted threshold"),
        pytest.param(lambda: JudgeConfig(confidence=1.0), "confidence must be within", id="confidence"),
        pytest.param(lambda: JudgeConfig(marginal_score=96), "marginal <= pass", id="scores"),
        pytest.param(lambda: JudgeConfig(min_samples=1), "min_samples", id="min samples"),
    ],
)
def test_impossible_inputs_are_refused_naming_the_field(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


# --- invariants ---------------------------------------------------------------------------------------------

window = st.lists(st.floats(min_value=100, max_value=110), min_size=10, max_size=60)
directions = st.sampled_from(Direction)


@settings(max_examples=60, deadline=None)
@given(values=window, direction=directions)
def test_identical_canary_and_baseline_never_fail(values: list[float], direction: Direction) -> None:
    metric = SampleMetric(name="latency", canary=tuple(values), baseline=tuple(values), direction=direction)
    assert judge([metric]).verdict is CheckVerdict.PASS


@settings(max_examples=60, deadline=None)
@given(failures=st.integers(0, 50), trials=st.integers(50, 500), direction=directions)
def test_identical_counts_never_fail(failures: int, trials: int, direction: Direction) -> None:
    counts = Counts(failures, trials)
    metric = CountMetric(name="errors", canary=counts, baseline=counts, direction=direction)
    assert judge([metric]).verdict is CheckVerdict.PASS


@settings(max_examples=60, deadline=None)
@given(values=window, beyond=st.floats(0.05, 0.8), upward=st.booleans())
def test_a_shift_beyond_the_allowed_effect_fails_in_the_bad_direction_only(
    values: list[float], beyond: float, upward: bool
) -> None:
    """The canary is the baseline moved by more than the allowed 10 % of any of its values."""
    shift = (0.1 + beyond) * 110 * (1 if upward else -1)
    canary = tuple(value + shift for value in values)
    bad, good = (
        (Direction.INCREASE, Direction.DECREASE) if upward else (Direction.DECREASE, Direction.INCREASE)
    )
    for direction, verdict in [
        (bad, Verdict.HIGH if upward else Verdict.LOW),
        (Direction.EITHER, Verdict.HIGH if upward else Verdict.LOW),
        (good, Verdict.PASS),
    ]:
        metric = SampleMetric(name="latency", canary=canary, baseline=tuple(values), direction=direction)
        assert only(metric).verdict is verdict


@settings(max_examples=60, deadline=None)
@given(baseline_failures=st.integers(0, 20), extra=st.integers(60, 200), direction=directions)
def test_many_more_failures_fail_only_where_an_increase_is_bad(
    baseline_failures: int, extra: int, direction: Direction
) -> None:
    """Of 1000 requests, the canary fails at least 60 more than the baseline: significant and beyond 10 %."""
    metric = CountMetric(
        name="errors",
        canary=Counts(baseline_failures + extra, 1000),
        baseline=Counts(baseline_failures, 1000),
        direction=direction,
    )
    assert only(metric).verdict is (Verdict.PASS if direction is Direction.DECREASE else Verdict.HIGH)


@settings(max_examples=100, deadline=None)
@given(
    metrics=st.lists(
        st.tuples(
            st.sampled_from([PASSING, FAILING, MISSING]),
            st.floats(0.01, 100),
            st.sampled_from([{}, {"critical": True}, {"optional": True}]),
        ),
        max_size=8,
    )
)
def test_the_score_stays_within_0_and_100(metrics: list[tuple[str, float, dict[str, object]]]) -> None:
    judgement = judge(
        [metric_of(outcome, index, weight, **rules) for index, (outcome, weight, rules) in enumerate(metrics)]
    )
    assert 0 <= judgement.score <= 100
    if judgement.verdict is CheckVerdict.PASS:
        assert all(result.verdict is Verdict.PASS for result in judgement.metrics if result.critical)
