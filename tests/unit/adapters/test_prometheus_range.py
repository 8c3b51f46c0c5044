"""Range queries (/api/v1/query_range) of the Prometheus adapter: asked with the window and step, bounded in
points before anything is sent and in size like every answer, each series' values parsed as numbers; and an
instant query's sum over every series (a counts metric's number)."""

from __future__ import annotations

import datetime
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from reconciler.adapters.prometheus import PrometheusMetrics, classify, classify_range
from reconciler.core.endpoints import MetricsEndpoint, plain_endpoint
from reconciler.core.model import CheckOutcome
from reconciler.core.ports import MAX_RANGE_POINTS

START = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
END = START + datetime.timedelta(minutes=2)


def matrix(*series: list[list[object]]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"pod": f"p{n}"}, "values": values} for n, values in enumerate(series)],
        },
    }


class _RangeAnswers(BaseHTTPRequestHandler):
    """Answers /prometheus/api/v1/query_range with two series, and records each request's path, parameters
    and Authorization header."""

    received: list[tuple[str, dict[str, str], str | None]]

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query))
        self.received.append((url.path, params, self.headers.get("Authorization")))
        body = json.dumps(
            matrix([[1, "0.25"], [3, "0.5"], [5, "NaN"]], [[1, "+Inf"], [3, "1e3"], [5, "x"]])
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[tuple[str, list[tuple[str, dict[str, str], str | None]]]]:
    received: list[tuple[str, dict[str, str], str | None]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_RangeAnswers,), {"received": received}))
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/prometheus", received
    server.shutdown()
    serving.join()
    server.server_close()


def test_a_range_is_asked_with_its_window_step_and_credentials_and_its_values_parsed(
    prometheus: tuple[str, list[tuple[str, dict[str, str], str | None]]],
) -> None:
    url, received = prometheus
    endpoint = MetricsEndpoint(url=url, namespace="shop", bearer_token="t0ken")
    metrics = PrometheusMetrics()
    try:
        result = metrics.query_range(endpoint, 'latency{workload="web-canary"}', START, END, 2)
    finally:
        metrics.close()
    assert result.error is None
    [(path, params, authorization)] = received
    assert path == "/prometheus/api/v1/query_range"
    assert params == {
        "query": 'latency{workload="web-canary"}',
        "start": f"{START.timestamp():.3f}",
        "end": f"{END.timestamp():.3f}",
        "step": "2",
    }
    assert authorization == "Bearer t0ken"
    first, second = result.values
    assert first[:2] == (0.25, 0.5)
    assert str(first[2]) == "nan"
    assert second[:2] == (float("inf"), 1000.0)
    assert str(second[2]) == "nan"  # a value that is no number is kept as NaN: the judge leaves it out
    assert len(result.samples()) == 6


def test_a_range_of_more_points_than_prometheus_answers_is_refused_before_anything_is_sent() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=matrix())

    metrics = PrometheusMetrics(transport=httpx.MockTransport(answer))
    endpoint = plain_endpoint("http://prom:9090")
    fits = START + datetime.timedelta(seconds=(MAX_RANGE_POINTS - 1) * 2)
    assert metrics.query_range(endpoint, "up", START, fits, 2).error is None
    too_long = metrics.query_range(endpoint, "up", START, fits + datetime.timedelta(seconds=2), 2)
    assert too_long.error == (
        f"the range would hold {MAX_RANGE_POINTS + 1} points per series, more than the {MAX_RANGE_POINTS} "
        "Prometheus answers: use a larger step"
    )
    backwards = metrics.query_range(endpoint, "up", END, START, 2)
    assert backwards.error is not None
    assert "no range from" in backwards.error
    assert len(seen) == 1


def test_a_range_answer_is_bounded_in_size_like_every_answer() -> None:
    huge = matrix([[n, "1"] for n in range(50_000)])

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=huge)

    metrics = PrometheusMetrics(transport=httpx.MockTransport(answer), max_bytes=64 * 1024)
    result = metrics.query_range(plain_endpoint("http://prom:9090"), "up", START, END, 2)
    assert result.error is not None
    assert "answered more than 64 KiB" in result.error
    assert result.values == ()


@pytest.mark.parametrize(
    ("status_code", "body", "fragment"),
    [
        pytest.param(
            400,
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"},
            "query rejected: parse error at char 3",
            id="bad PromQL",
        ),
        pytest.param(
            200,
            {"status": "success", "data": {"resultType": "vector", "result": []}},
            "returned a vector, not a matrix",
            id="not a matrix",
        ),
        pytest.param(403, {}, "refused the request (HTTP 403)", id="forbidden"),
        pytest.param(502, None, "answered HTTP 502 without JSON", id="proxy error page"),
    ],
)
def test_range_answers_that_are_unusable_say_why(status_code: int, body: object, fragment: str) -> None:
    result = classify_range(status_code, body)
    assert result.error is not None
    assert fragment in result.error
    assert result.values == ()


def test_an_empty_range_is_an_answer_without_samples() -> None:
    result = classify_range(200, matrix())
    assert (result.error, result.samples()) == (None, ())


def test_an_instant_answer_sums_every_series_finite_value_for_counts() -> None:
    series = [
        {"metric": {"pod": f"p{n}"}, "value": [1, value]} for n, value in enumerate(["2", "3.5", "NaN", "4"])
    ]
    result = classify(200, {"status": "success", "data": {"resultType": "vector", "result": series}})
    assert result.outcome == CheckOutcome.ERRORS_FOUND
    assert len(result.series) == 3  # the evidence is capped, the sum is not
    assert result.sum() == 9.5
    empty = classify(200, {"status": "success", "data": {"resultType": "vector", "result": []}})
    assert empty.sum() == 0.0
