"""The words the analysis API (metrics.py) and the judge (judge/) share: a metric's kind, which direction of
change is bad, and Kayenta's default confidence and score thresholds. Apart from the judge's package so that
reading a CanaryApp never loads the statistics (numpy and scipy take most of a second to import).
"""

from __future__ import annotations

from enum import StrEnum

# Kayenta's defaults: a shift must be significant at 98 % to count, and the score decides against 75 and 95.
DEFAULT_CONFIDENCE = 0.98
DEFAULT_MARGINAL_SCORE = 75.0
DEFAULT_PASS_SCORE = 95.0


class MetricKind(StrEnum):
    CONTINUOUS = "continuous"  # samples over the window: latency, CPU
    COUNTS = "counts"  # failures out of trials: errors out of requests


class Direction(StrEnum):
    """Which change of the canary against the baseline is bad."""

    INCREASE = "increase"
    DECREASE = "decrease"
    EITHER = "either"
