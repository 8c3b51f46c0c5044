"""Prometheus answers become check outcomes (data), including every way a query can fail."""

from __future__ import annotations

import datetime

import httpx
import pytest

from reconciler.adapters.prometheus import PrometheusMetrics, classify
from reconciler.model import CheckOutcome


def vector(*series: dict[str, object]) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "vector", "result": list(series)}}


@pytest.mark.parametrize(
    ("status_code", "body", "outcome", "fragment"),
    [
        pytest.param(200, vector(), CheckOutcome.CLEAN, "no result", id="empty vector is clean"),
        pytest.param(
            200,
            vector({"metric": {"response_code": "500"}, "value": [1, "0.5"]}),
            CheckOutcome.ERRORS_FOUND,
            "response_code=500",
            id="any series means errors",
        ),
        pytest.param(
            400,
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"},
            CheckOutcome.QUERY_FAILED,
            "parse error",
            id="bad PromQL",
        ),
        pytest.param(
            200,
            {"status": "success", "data": {"resultType": "scalar", "result": [1, "1"]}},
            CheckOutcome.QUERY_FAILED,
            "instant vector",
            id="scalar is unusable",
        ),
        pytest.param(502, None, CheckOutcome.QUERY_FAILED, "without JSON", id="proxy error page"),
    ],
)
def test_classify(status_code: int, body: object, outcome: CheckOutcome, fragment: str) -> None:
    result = classify(status_code, body)
    assert result.outcome == outcome
    assert fragment in result.message


def test_unreachable_and_timeout_are_query_failures() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler, fragment in ((refuse, "unreachable"), (slow, "timed out")):
        metrics = PrometheusMetrics(transport=httpx.MockTransport(handler))
        result = metrics.query("http://prometheus:9090/", "up")
        assert result.outcome == CheckOutcome.QUERY_FAILED
        assert fragment in result.message


def test_query_is_sent_to_the_query_api() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vector())

    metrics = PrometheusMetrics(transport=httpx.MockTransport(answer))
    metrics.query("http://prom:9090/", 'up{job="x"}')
    metrics.query("http://prom:9090/", "up", at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    assert seen[0].url.path == "/api/v1/query"
    assert seen[0].url.params["query"] == 'up{job="x"}'
    assert "time" not in seen[0].url.params
    assert seen[1].url.params["time"] == "1767225600.000"


def test_series_are_kept_as_evidence_capped_and_counted() -> None:
    many = [{"metric": {"__name__": "x", "pod": f"p{n}"}, "value": [1, str(n)]} for n in range(5)]
    result = classify(200, vector(*many))
    assert result.total_series == 5
    assert [series.labels for series in result.series] == [{"pod": "p0"}, {"pod": "p1"}, {"pod": "p2"}]
    assert [series.value for series in result.series] == ["0", "1", "2"]
    assert result.message.endswith("and 2 more")
    assert result.sum() == 3.0
