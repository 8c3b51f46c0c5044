"""The canary analysis as data: what a check asks Prometheus, and what its answers mean. Pure.

A check runs two queries. The CanaryApp's `prometheusQuery` returns a result when the canary is failing
(the original operator's contract). The traffic query counts the canary's requests in the same window,
because an empty error query proves nothing by itself: a canary that served nothing, or a query whose
label matches nothing, also returns nothing. Silence is not health, so a check is clean only when the
canary demonstrably served at least `minCanaryRequests` requests and no error result came back.

    error query ──failed──▶ QueryFailed
        │ result ─────────▶ ErrorsFound      (errors are evidence even with little traffic)
        │ empty
    traffic query ─failed─▶ QueryFailed
        │ count < minimum ▶ NoCanaryTraffic  (hold the weight; the progress deadline bounds the wait)
        └ enough ─────────▶ Clean

What an endpoint answered (error messages, series labels and values) is stored in the status and printed in
terminals, so it is kept `printable` (no escape sequence or control character) from here on.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.core import templates
from reconciler.core.model import (
    MAX_EVIDENCE_TEXT,
    MAX_SERIES_PER_CHECK,
    CanaryAppSpec,
    CanaryAppStatus,
    CheckOutcome,
    MetricRecord,
    Series,
)
from reconciler.core.names import baseline_name, canary_name, primary_name
from reconciler.core.text import printable

# Requests the canary's workload answered in the window, as Istio's destination sidecars count them.
DEFAULT_TRAFFIC_QUERY = (
    'sum(increase(istio_requests_total{reporter="destination",'
    'destination_workload_namespace="{{ namespace }}",destination_workload="{{ canary }}"}[{{ window }}]))'
)


@dataclass(frozen=True)
class QueryResult:
    """One answer of the metrics source: `series` is empty for an empty result; `outcome` is QUERY_FAILED
    (with the cause in `message`) when there was no usable answer, else CLEAN (empty) or ERRORS_FOUND."""

    outcome: CheckOutcome
    message: str = ""
    series: tuple[Series, ...] = ()
    total_series: int = 0
    # The sum of every series' finite value, the series not kept as evidence included (None: not counted).
    total: float | None = None

    def sum(self) -> float:
        if self.total is not None:
            return self.total
        return sum_finite(series.value for series in self.series)


@dataclass(frozen=True)
class RenderedQueries:
    errors: str | None  # None: no prometheusQuery (the metrics of spec.analysis judge alone)
    traffic: str | None  # None: the traffic check is off (minCanaryRequests 0)


@dataclass(frozen=True)
class CheckResult:
    """What one check found, with its evidence; `decide()` consumes it."""

    outcome: CheckOutcome
    message: str = ""
    query: str = ""
    series: tuple[Series, ...] = ()
    canary_requests: float | None = None
    # The statistical judge's score, verdict and per-metric evidence (spec.analysis.metrics; comparison.py).
    score: float | None = None
    verdict: str | None = None
    metrics: tuple[MetricRecord, ...] = ()


def query_variables(
    name: str, namespace: str, spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime
) -> dict[str, str]:
    """The values of the template variables at `now`: the window starts at the last weight change."""
    since = status.last_traffic_shift
    window = (now - _parse(since)).total_seconds() if since else spec.traffic_shift_update_interval
    return {
        "name": name,
        "namespace": namespace,
        "canary": canary_name(name),
        "primary": primary_name(name),
        "baseline": baseline_name(name),
        "interval": templates.promql_duration(spec.traffic_shift_update_interval),
        "window": templates.promql_duration(window),
    }


def render_queries(spec: CanaryAppSpec, variables: dict[str, str]) -> RenderedQueries:
    traffic = spec.canary_traffic_query or DEFAULT_TRAFFIC_QUERY
    return RenderedQueries(
        errors=templates.render(spec.prometheus_query, variables) if spec.prometheus_query else None,
        traffic=templates.render(traffic, variables) if spec.min_canary_requests > 0 else None,
    )


def assess(
    queries: RenderedQueries, errors: QueryResult, traffic: QueryResult | None, min_requests: int
) -> CheckResult:
    """One check's outcome from the two answers (see the module's diagram)."""
    requests = traffic.sum() if traffic is not None and traffic.outcome != CheckOutcome.QUERY_FAILED else None

    def result(outcome: CheckOutcome, message: str) -> CheckResult:
        return CheckResult(outcome, shortened(message), queries.errors or "", errors.series, requests)

    if errors.outcome != CheckOutcome.CLEAN:
        return result(errors.outcome, errors.message)
    if traffic is None:
        return result(CheckOutcome.CLEAN, "error query returned no result")
    if requests is None:
        return result(CheckOutcome.QUERY_FAILED, f"canary traffic query failed: {traffic.message}")
    counted = f"{_count(requests)} canary requests in the window"
    if requests < min_requests:
        return result(
            CheckOutcome.NO_CANARY_TRAFFIC,
            f"no canary traffic observed: {counted}, at least {min_requests} needed",
        )
    return result(CheckOutcome.CLEAN, f"error query returned no result; {counted}")


def capped_series(series: list[tuple[dict[str, str], str]]) -> tuple[Series, ...]:
    """At most MAX_SERIES_PER_CHECK series, each label value cut to a bounded length, printable, for the
    status."""
    return tuple(
        Series(
            labels={
                printable(str(key)): printable(str(value))[:128]
                for key, value in labels.items()
                if key != "__name__"
            },
            value=printable(value),
        )
        for labels, value in series[:MAX_SERIES_PER_CHECK]
    )


def describe_series(result: QueryResult) -> str:
    shown = ", ".join(
        "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}=" + s.value
        for s in result.series
    )
    more = result.total_series - len(result.series)
    return f"query returned {result.total_series} series: {shown}" + (f" and {more} more" if more > 0 else "")


def sum_finite(values: Iterable[str]) -> float:
    """The sum of the values that are finite numbers (a series' value is text: "NaN", "+Inf" are left out)."""
    return math.fsum(number for value in values if math.isfinite(number := _number(value)))


def _count(requests: float) -> str:
    return str(int(requests)) if requests == int(requests) else f"{requests:.1f}"


def shortened(text: str) -> str:
    """Text an endpoint or a user wrote, as the status keeps it: printable, at most MAX_EVIDENCE_TEXT."""
    text = printable(text)
    return text if len(text) <= MAX_EVIDENCE_TEXT else text[: MAX_EVIDENCE_TEXT - 1] + "…"


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def _parse(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
