"""One check of a CanaryApp with spec.analysis.metrics (reconciler/runtime/observe.py `check_canary`): its
templates read through the port, each continuous metric's range asked over the window for the canary and the
baseline, each counts metric's instant queries at the check's second, and the answers judged."""

from __future__ import annotations

import datetime
from typing import Any

from reconciler.core.analysis import QueryResult
from reconciler.core.endpoints import MetricsEndpoint, SecretData
from reconciler.core.metrics import MetricTemplateSpec, TemplateError, TemplateRef
from reconciler.core.model import CanaryApp, CheckOutcome, Series
from reconciler.core.ports import RangeResult
from reconciler.runtime.observe import check_canary

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, 700_000, tzinfo=datetime.UTC)
CHECKED_AT = NOW.replace(microsecond=0)
SHIFTED_AT = datetime.datetime(2026, 1, 1, 11, 59, 0, tzinfo=datetime.UTC)
TEMPLATE = MetricTemplateSpec.model_validate(
    {"query": 'p99{workload="{{ target }}",ns="{{ namespace }}"}', "allowedEffect": 0.2}
)


class FakePrometheus:
    """Answers a range by the workload its query names (the canary twice as slow), an instant query with
    the number in `counts`; records what was asked."""

    def __init__(self, counts: dict[str, float]) -> None:
        self.counts = counts
        self.ranges: list[tuple[str, datetime.datetime, datetime.datetime, int]] = []
        self.instants: list[tuple[str, datetime.datetime | None]] = []

    def query(
        self, endpoint: MetricsEndpoint, query: str, at: datetime.datetime | None = None
    ) -> QueryResult:
        self.instants.append((query, at))
        value = self.counts.get(query)
        if value is None:
            return QueryResult(CheckOutcome.CLEAN, "query returned no result", total=0.0)
        return QueryResult(CheckOutcome.ERRORS_FOUND, "", (Series(labels={}, value=str(value)),), 1, value)

    def query_range(
        self,
        endpoint: MetricsEndpoint,
        query: str,
        start: datetime.datetime,
        end: datetime.datetime,
        step: int,
    ) -> RangeResult:
        self.ranges.append((query, start, end, step))
        level = 200.0 if "web-canary" in query else 100.0
        return RangeResult((tuple(level + index % 7 for index in range(40)),))


class FakeCluster:
    def __init__(self, templates: dict[TemplateRef, MetricTemplateSpec | TemplateError]) -> None:
        self.templates = templates
        self.read: list[tuple[str, TemplateRef]] = []

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        return None

    def metric_template(self, namespace: str, ref: TemplateRef) -> MetricTemplateSpec | None:
        self.read.append((namespace, ref))
        found = self.templates.get(ref)
        if isinstance(found, TemplateError):
            raise found
        return found


def app(metrics: list[dict[str, Any]], **spec: Any) -> CanaryApp:
    return CanaryApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "generation": 1},
            "spec": {
                "image": "app:v2",
                "imageListenPort": 8080,
                "prometheusURL": "http://prometheus:9090",
                "analysis": {"baseline": True, "sampleStepSeconds": 3, "metrics": metrics},
                **spec,
            },
            "status": {
                "phase": "Progressing",
                "canaryWeight": 10,
                "lastTrafficShift": SHIFTED_AT.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }
    )


ERRORS = {
    "name": "errors",
    "counts": {"failures": 'errors{w="{{ target }}"}[{{ window }}]', "trials": 'requests{w="{{ target }}"}'},
}


def test_a_check_reads_the_template_asks_both_workloads_over_the_window_and_judges() -> None:
    the_app = app([{"name": "latency", "templateRef": {"name": "p99"}}, ERRORS], minCanaryRequests=0)
    prometheus = FakePrometheus(
        {
            'errors{w="web-canary"}[61s]': 0,
            'requests{w="web-canary"}': 400,
            'errors{w="web-baseline"}[61s]': 0,
            'requests{w="web-baseline"}': 400,
        }
    )
    cluster = FakeCluster({TemplateRef(name="p99"): TEMPLATE})
    result = check_canary(prometheus, the_app, the_app.status, NOW, cluster)
    assert cluster.read == [("shop", TemplateRef(name="p99"))]
    assert prometheus.ranges == [
        ('p99{workload="web-canary",ns="shop"}', SHIFTED_AT, CHECKED_AT, 3),
        ('p99{workload="web-baseline",ns="shop"}', SHIFTED_AT, CHECKED_AT, 3),
    ]
    assert {at for _, at in prometheus.instants} == {CHECKED_AT}
    assert result.outcome == CheckOutcome.METRICS_FAILED  # latency High, errors Pass: 50, below marginal
    assert [(record.name, record.verdict) for record in result.metrics] == [
        ("latency", "High"),
        ("errors", "Pass"),
    ]
    assert result.score == 50.0


def test_a_template_that_does_not_parse_is_a_failed_check_and_nothing_is_asked() -> None:
    the_app = app([{"name": "latency", "templateRef": {"name": "p99"}}], minCanaryRequests=0)
    broken = TemplateError("MetricTemplate shop/p99 is invalid: spec.query: field required: fix its spec")
    prometheus = FakePrometheus({})
    result = check_canary(
        prometheus, the_app, the_app.status, NOW, FakeCluster({TemplateRef(name="p99"): broken})
    )
    assert result.outcome == CheckOutcome.METRICS_FAILED
    assert result.message == f"metric 'latency': {broken}"
    assert prometheus.ranges == []


def test_the_legacy_query_and_the_traffic_guard_are_asked_as_before() -> None:
    the_app = app(
        [{"name": "latency", "query": 'p99{workload="{{ target }}"}'}], prometheusQuery="errors > 0"
    )
    prometheus = FakePrometheus({})  # no canary requests
    result = check_canary(prometheus, the_app, the_app.status, NOW, FakeCluster({}))
    assert result.outcome == CheckOutcome.NO_CANARY_TRAFFIC
    assert result.query == "errors > 0"
    assert result.verdict == "Fail"  # the judge's evidence is kept with the held check


def test_after_a_failed_legacy_query_no_metric_is_asked() -> None:
    the_app = app([{"name": "latency", "query": 'p99{workload="{{ target }}"}'}], prometheusQuery="errors")

    class Unreachable(FakePrometheus):
        def query(
            self, endpoint: MetricsEndpoint, query: str, at: datetime.datetime | None = None
        ) -> QueryResult:
            self.instants.append((query, at))
            return QueryResult(CheckOutcome.QUERY_FAILED, "Prometheus at http://prometheus:9090 timed out")

    prometheus = Unreachable({})
    result = check_canary(prometheus, the_app, the_app.status, NOW, FakeCluster({}))
    assert result.outcome == CheckOutcome.QUERY_FAILED
    assert result.message == "Prometheus at http://prometheus:9090 timed out"
    assert prometheus.ranges == []
