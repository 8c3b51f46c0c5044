"""The statistics of the judge, all from scipy and numpy: where the canary lies against the baseline (the
Mann-Whitney U test and the Hodges-Lehmann shift with its interval; Fisher's exact test and Newcombe's
interval for counts) and whether its spread grew (Brown-Forsythe). The methods and their references are
in docs/analysis.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from reconciler.core.judge.inputs import Counts

if TYPE_CHECKING:
    from types import ModuleType

Samples = npt.NDArray[np.float64]


def _stats() -> ModuleType:
    """scipy.stats, imported at the first check that needs it: it takes about a second to import, and the
    processes that only parse CanaryApps (the kubectl plugin, the Pulumi workers) never need it."""
    import scipy.stats  # noqa: PLC0415 (deferred on purpose, see above)

    return scipy.stats


Alternative = Literal["two-sided", "greater", "less"]
# Shifts the search for the interval tests in one call: the bracket narrows by this factor per round.
_PROBES = 32


@dataclass(frozen=True)
class Comparison:
    """The canary against the baseline. `level` is the median of the samples or the failure rate;
    `estimate` is canary minus baseline (the Hodges-Lehmann shift, or the difference of the rates) and
    `low`..`high` its interval at the check's confidence (unbounded when the samples are too few for the test
    to reject any shift). The p-values are the two-sided test's and the one-sided tests' that the canary is
    higher (`p_increase`) or lower (`p_decrease`)."""

    canary_level: float
    baseline_level: float
    estimate: float
    low: float
    high: float
    p_two_sided: float
    p_increase: float
    p_decrease: float

    @property
    def relative(self) -> float | None:
        """The estimate relative to the baseline's level; None when that level is 0."""
        return self.estimate / abs(self.baseline_level) if self.baseline_level else None


@dataclass(frozen=True)
class Spread:
    """How far the samples lie from their median (mean absolute deviation), canary and baseline, and the
    Brown-Forsythe test's p-value that the two spreads differ."""

    canary: float
    baseline: float
    p_value: float

    @property
    def ratio(self) -> float:
        if self.baseline:
            return self.canary / self.baseline
        return math.inf if self.canary else 1.0


def finite_samples(values: tuple[float, ...], max_samples: int) -> Samples:
    """The finite samples, thinned evenly (in their order, so over the whole window) past `max_samples`."""
    samples = np.asarray(values, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size > max_samples:
        samples = samples[np.linspace(0, samples.size - 1, max_samples).round().astype(np.intp)]
    return samples


def median(samples: Samples) -> float:
    return float(np.median(samples))


def compare_samples(canary: Samples, baseline: Samples, confidence: float) -> Comparison:
    differences = np.subtract.outer(canary, baseline).ravel()
    differences.sort()
    low, high = _shift_interval(canary, baseline, differences, 1 - confidence)
    return Comparison(
        canary_level=median(canary),
        baseline_level=median(baseline),
        estimate=float(differences[(differences.size - 1) // 2] + differences[differences.size // 2]) / 2,
        low=low,
        high=high,
        p_two_sided=_mann_whitney(canary, baseline, "two-sided"),
        p_increase=_mann_whitney(canary, baseline, "greater"),
        p_decrease=_mann_whitney(canary, baseline, "less"),
    )


def _mann_whitney(canary: Samples, baseline: Samples, alternative: Alternative) -> float:
    # scipy picks the exact distribution for small samples without ties, else the normal one with the
    # tie correction; samples that are all equal leave nothing to test (p-value NaN or 1).
    result = _stats().mannwhitneyu(canary, baseline, alternative=alternative)
    return _p_value(float(result.pvalue))


def _shift_interval(
    canary: Samples, baseline: Samples, differences: Samples, alpha: float
) -> tuple[float, float]:
    """The distribution-free interval of the shift (Bauer 1972; Hollander & Wolfe, section 4.3): the k-th
    smallest and the k-th largest pairwise difference, k from the critical value of U's distribution, which
    is symmetric. k is found by asking the test itself: a shift between the k-th and (k+1)-th difference
    leaves U = mn - k, and the smallest k whose shift the two-sided test keeps is the one. The test keeps
    more shifts the closer they lie to the middle, so the search narrows a bracket [rejected, kept] by
    testing _PROBES shifts inside it at once, one vectorised call per round (four rounds for 600 x 600)."""
    rejected, kept = -1, differences.size // 2
    while kept - rejected > 1:
        probes = np.unique(np.linspace(rejected + 1, kept - 1, _PROBES).round().astype(np.intp))
        below = np.where(probes > 0, differences[probes - 1], differences[0] - (abs(differences[0]) + 1.0))
        shifts = (below + differences[probes]) / 2
        p_values = (
            _stats().mannwhitneyu(canary[np.newaxis, :] - shifts[:, np.newaxis], baseline, axis=1).pvalue
        )
        accepted = probes[np.nan_to_num(p_values, nan=1.0) > alpha]
        if accepted.size:
            kept = int(accepted[0])
            rejected = int(probes[probes < kept][-1]) if (probes < kept).any() else rejected
        else:
            rejected = int(probes[-1])
    if kept == 0:
        return -math.inf, math.inf
    return float(differences[kept - 1]), float(differences[differences.size - kept])


def compare_spread(canary: Samples, baseline: Samples) -> Spread:
    """Brown-Forsythe: Levene's test on the absolute deviations from each sample's own median, so a shift of
    the canary does not read as a change of its spread, and heavy tails do not either."""
    canary_spread = float(np.mean(np.abs(canary - median(canary))))
    baseline_spread = float(np.mean(np.abs(baseline - median(baseline))))
    if not (canary_spread or baseline_spread):
        return Spread(canary=0.0, baseline=0.0, p_value=1.0)
    result = _stats().levene(canary, baseline, center="median")
    return Spread(canary=canary_spread, baseline=baseline_spread, p_value=_p_value(float(result.pvalue)))


def compare_counts(canary: Counts, baseline: Counts, confidence: float) -> Comparison:
    """Fisher's exact test on the 2x2 table (exact for any counts, so 3 failures in 20 against none in 200
    is significant, not 'too few'), and Newcombe's hybrid score interval of the difference of the rates
    (his method 10), built from each side's Wilson interval."""
    table = np.array(
        [
            [canary.failures, canary.trials - canary.failures],
            [baseline.failures, baseline.trials - baseline.failures],
        ]
    )
    canary_rate, baseline_rate = canary.failures / canary.trials, baseline.failures / baseline.trials
    canary_low, canary_high = _wilson(canary, confidence)
    baseline_low, baseline_high = _wilson(baseline, confidence)
    difference = canary_rate - baseline_rate
    return Comparison(
        canary_level=canary_rate,
        baseline_level=baseline_rate,
        estimate=difference,
        low=difference - math.hypot(canary_rate - canary_low, baseline_high - baseline_rate),
        high=difference + math.hypot(canary_high - canary_rate, baseline_rate - baseline_low),
        p_two_sided=_p_value(float(_stats().fisher_exact(table).pvalue)),
        p_increase=_p_value(float(_stats().fisher_exact(table, alternative="greater").pvalue)),
        p_decrease=_p_value(float(_stats().fisher_exact(table, alternative="less").pvalue)),
    )


def _wilson(counts: Counts, confidence: float) -> tuple[float, float]:
    interval = _stats().binomtest(counts.failures, counts.trials).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def _p_value(value: float) -> float:
    """A p-value, or 1 where the test had nothing to compare (scipy's NaN when every sample is equal)."""
    return 1.0 if math.isnan(value) else min(value, 1.0)
