"""Prometheus answers become check outcomes (data), including every way a query can fail."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from devenv.hostile_endpoint import EMPTY_VECTOR, HostileEndpoint
from reconciler.adapters.prometheus import PrometheusMetrics, classify
from reconciler.core.endpoints import MetricsEndpoint, plain_endpoint
from reconciler.core.model import CheckOutcome
from reconciler.core.policy import MetricsPolicy


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
        result = metrics.query(plain_endpoint("http://prometheus:9090/"), "up")
        assert result.outcome == CheckOutcome.QUERY_FAILED
        assert fragment in result.message


def test_query_is_sent_to_the_query_api() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vector())

    metrics = PrometheusMetrics(transport=httpx.MockTransport(answer))
    metrics.query(plain_endpoint("http://prom:9090/"), 'up{job="x"}')
    metrics.query(
        plain_endpoint("http://prom:9090/"), "up", at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    )
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
    # The sum counts every series, the ones not kept as evidence too (a count summed over pods).
    assert result.sum() == 10.0


def recorder(*answers: httpx.Response) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if queue else httpx.Response(200, json=vector())

    return seen, httpx.MockTransport(answer)


SECRET_ENDPOINT = MetricsEndpoint(
    url="https://mimir.example.com/prometheus",
    namespace="shop",
    headers=(("X-Scope-OrgID", "team-a"),),
    bearer_token="s3cr3t-token",
)
POLICY = MetricsPolicy(("https://mimir.example.com/prometheus", "https://replica.example.com"))


def test_credentials_and_tenant_headers_are_sent_and_never_shown() -> None:
    seen, transport = recorder()
    result = PrometheusMetrics(POLICY, transport=transport).query(SECRET_ENDPOINT, "up")
    assert result.outcome == CheckOutcome.CLEAN
    assert seen[0].url.path == "/prometheus/api/v1/query"
    assert seen[0].headers["authorization"] == "Bearer s3cr3t-token"
    assert seen[0].headers["x-scope-orgid"] == "team-a"
    assert "s3cr3t" not in repr(SECRET_ENDPOINT)
    basic = MetricsEndpoint(url="http://prom:9090", namespace="shop", basic_auth=("user", "pa55"))
    seen, transport = recorder()
    PrometheusMetrics(transport=transport).query(basic, "up")
    assert seen[0].headers["authorization"] == "Basic dXNlcjpwYTU1"
    assert "pa55" not in repr(basic)


def test_a_url_the_policy_does_not_allow_is_never_contacted() -> None:
    seen, transport = recorder()
    result = PrometheusMetrics(POLICY, transport=transport).query(
        plain_endpoint("http://10.0.0.1:9090", "shop"), "up"
    )
    assert result.outcome == CheckOutcome.QUERY_FAILED
    assert "not allowed by --allowed-metric-urls; not contacted" in result.message
    assert seen == []


def test_a_redirect_to_a_host_the_policy_does_not_allow_is_not_followed() -> None:
    moved = httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data"})
    seen, transport = recorder(moved)
    result = PrometheusMetrics(POLICY, transport=transport).query(SECRET_ENDPOINT, "up")
    assert result.outcome == CheckOutcome.QUERY_FAILED
    assert "redirected to http://169.254.169.254/latest/meta-data" in result.message
    assert "not followed" in result.message
    assert len(seen) == 1


def test_an_allowed_redirect_is_followed_without_the_credentials_on_another_origin() -> None:
    moved = httpx.Response(307, headers={"Location": "https://replica.example.com/api/v1/query?query=up"})
    seen, transport = recorder(moved)
    result = PrometheusMetrics(POLICY, transport=transport).query(SECRET_ENDPOINT, "up")
    assert result.outcome == CheckOutcome.CLEAN
    assert [request.url.host for request in seen] == ["mimir.example.com", "replica.example.com"]
    assert "authorization" not in seen[1].headers
    assert seen[1].headers["x-scope-orgid"] == "team-a"


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("https://mimir.example.com/prometheus/../admin", id="dot dot"),
        pytest.param("/prometheus/%2e%2e/admin", id="encoded dot dot"),
        pytest.param("/prometheus/%2E%2e/admin", id="mixed case"),
        pytest.param("/prometheus/.%2e/admin", id="half encoded"),
        pytest.param("https://mimir.example.com/prometheus/%2e%2e/%2e%2e/admin", id="absolute, two up"),
        pytest.param("/prometheus/x%2f..%2f..%2fadmin", id="encoded slashes"),
        pytest.param("/prometheus/..;/admin", id="dot dot parameter"),
    ],
)
def test_a_redirect_out_of_the_allowed_path_is_not_followed_however_it_is_spelled(location: str) -> None:
    moved = httpx.Response(302, headers={"Location": location})
    seen, transport = recorder(moved)
    result = PrometheusMetrics(POLICY, transport=transport).query(SECRET_ENDPOINT, "up")
    assert result.outcome == CheckOutcome.QUERY_FAILED
    assert "which --allowed-metric-urls does not allow; not followed" in result.message
    assert len(seen) == 1


def test_a_refused_redirect_is_shown_without_its_user_info() -> None:
    moved = httpx.Response(302, headers={"Location": "http://admin:s3cret-pw@evil.example/x?token=t0k"})
    _, transport = recorder(moved)
    result = PrometheusMetrics(POLICY, transport=transport).query(SECRET_ENDPOINT, "up")
    assert "redirected to http://***@evil.example/x, which" in result.message
    assert "s3cret-pw" not in result.message
    assert "t0k" not in result.message


def test_endless_redirects_end() -> None:
    loop = [httpx.Response(302, headers={"Location": "/prometheus/again"}) for _ in range(10)]
    seen, transport = recorder(*loop)
    result = PrometheusMetrics(POLICY, transport=transport).query(SECRET_ENDPOINT, "up")
    assert "redirected more than 3 times" in result.message
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        pytest.param(
            httpx.Response(200, content=b"[" + b"1," * 600_000 + b"1]"),
            "answered more than 1024 KiB",
            id="huge",
        ),
        pytest.param(
            httpx.Response(200, html="<html>login</html>"), "answered HTTP 200 without JSON", id="html"
        ),
        pytest.param(httpx.Response(401, text="Unauthorized"), "refused the request (HTTP 401)", id="401"),
    ],
)
def test_answers_that_are_not_query_answers_fail_clearly(answer: httpx.Response, fragment: str) -> None:
    _, transport = recorder(answer)
    result = PrometheusMetrics(transport=transport, max_bytes=1024 * 1024).query(SECRET_ENDPOINT, "up")
    assert result.outcome == CheckOutcome.QUERY_FAILED
    assert fragment in result.message
    assert "s3cr3t" not in result.message


def test_an_endpoint_that_drips_its_answer_ends_as_a_timeout_within_the_deadline() -> None:
    with HostileEndpoint(drip_interval=0.2) as hostile:
        metrics = PrometheusMetrics(timeout=2.0, deadline=1.0)
        result = metrics.query(plain_endpoint(hostile.url("drip")), "up")
        metrics.close()
    # Each byte came within the read timeout; the deadline on the whole answer ended it.
    assert result.outcome == CheckOutcome.QUERY_FAILED
    assert "timed out: no whole answer within 1s" in result.message


class _SlowRedirects(BaseHTTPRequestHandler):
    """Waits `delay` seconds before its headers, then redirects /hop/N to /hop/N+1 up to /hop/3, which
    answers the empty vector: every hop is slow, none is slow enough for a read timeout."""

    delay = 0.4

    def do_GET(self) -> None:
        time.sleep(self.delay)
        hop = int(self.path.split("/")[2])
        if hop < 3:
            self.send_response(302)
            self.send_header("Location", f"/hop/{hop + 1}/api/v1/query")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(EMPTY_VECTOR)))
        self.end_headers()
        self.wfile.write(EMPTY_VECTOR)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("deadline", "outcome"),
    [
        pytest.param(1.0, CheckOutcome.QUERY_FAILED, id="four slow hops exceed the deadline together"),
        pytest.param(30.0, CheckOutcome.CLEAN, id="the same hops within a long deadline"),
    ],
)
def test_slow_headers_and_redirect_hops_count_against_the_one_deadline(
    deadline: float, outcome: CheckOutcome
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowRedirects)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hop/0"
        metrics = PrometheusMetrics(timeout=5.0, deadline=deadline)
        result = metrics.query(plain_endpoint(url), "up")
        metrics.close()
    finally:
        server.shutdown()
        server.server_close()
    assert result.outcome == outcome, result.message
    if outcome == CheckOutcome.QUERY_FAILED:
        assert "timed out" in result.message


class _SetsACookie(BaseHTTPRequestHandler):
    """Answers the empty vector with a session cookie for the whole host, and records the Cookie headers it
    was sent."""

    received: list[str | None]

    def do_GET(self) -> None:
        self.received.append(self.headers.get("Cookie"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "session=tenant-a-secret; Path=/")
        self.send_header("Content-Length", str(len(EMPTY_VECTOR)))
        self.end_headers()
        self.wfile.write(EMPTY_VECTOR)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def cookie_setter() -> Iterator[tuple[str, list[str | None]]]:
    received: list[str | None] = []
    handler = type("Handler", (_SetsACookie,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/prometheus", received
    server.shutdown()
    serving.join()
    server.server_close()


def test_a_cookie_one_tenants_endpoint_sets_never_reaches_another_request(
    cookie_setter: tuple[str, list[str | None]],
) -> None:
    cookie_url, cookies_received = cookie_setter
    metrics = PrometheusMetrics(MetricsPolicy(("http://127.0.0.1:*",)))
    with HostileEndpoint() as echo:
        # Cookies ignore the port: without a cookie-less client, 127.0.0.1's cookie would go to both.
        tenant_a = plain_endpoint(cookie_url, "tenant-a")
        tenant_b = plain_endpoint(echo.url("echo"), "tenant-b")
        assert metrics.query(tenant_a, "up").outcome == CheckOutcome.CLEAN
        assert metrics.query(tenant_b, "up").outcome == CheckOutcome.CLEAN
        assert metrics.query(tenant_a, "up").outcome == CheckOutcome.CLEAN
        metrics.close()
        [tenant_b_headers] = echo.headers_received("echo")
    assert "cookie" not in tenant_b_headers
    assert cookies_received == [None, None]
