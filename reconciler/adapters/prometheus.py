"""Prometheus as the metrics source: one instant query (or one range query) per call, classified as data,
never raised.

Every answer is bounded: a range query asks for at most MAX_RANGE_POINTS points per series (Prometheus'
own limit, checked before asking), at most MAX_RESPONSE_BYTES are read and the whole exchange ends within
QUERY_DEADLINE_SECONDS (connecting, headers, redirect hops and body all count), so an HTML page, a huge
body or an endpoint that drips a byte at a time ends as a failed query, never as a stuck worker or a full
memory. Redirects are followed only to URLs the reconciler's MetricsPolicy allows, at most MAX_REDIRECTS,
and credentials go only to the endpoint's own origin. Credentials and headers are never logged or put in a
message, nor is a URL's user info.

The HTTP clients are shared by every CanaryApp with the same TLS trust, so they keep no cookies: a cookie one
tenant's endpoint sets must never reach another tenant's endpoint (nor the same one again: a query carries
only what its CanaryApp's spec and Secret say).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.cookiejar
import json
import math
import ssl
import threading
import time
import urllib.parse
from collections import OrderedDict
from typing import Any

import httpx

from reconciler.core.analysis import QueryResult, capped_series, describe_series, sum_finite
from reconciler.core.endpoints import MetricsEndpoint
from reconciler.core.model import CheckOutcome
from reconciler.core.policy import MetricsPolicy
from reconciler.core.ports import MAX_RANGE_POINTS, RangeResult
from reconciler.core.text import shown_url

QUERY_TIMEOUT_SECONDS = 10.0
QUERY_DEADLINE_SECONDS = 15.0
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_REDIRECTS = 3
MAX_CLIENTS = 32  # one per distinct TLS trust (CA bundle, verification off); least recently used dropped


class PrometheusMetrics:
    def __init__(
        self,
        policy: MetricsPolicy | None = None,
        *,
        timeout: float = QUERY_TIMEOUT_SECONDS,
        deadline: float = QUERY_DEADLINE_SECONDS,
        max_bytes: int = MAX_RESPONSE_BYTES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # No policy: every URL is allowed (the backtest and dry-run commands, run by a user on their own).
        self._policy = policy
        self._timeout = timeout
        self._deadline = deadline
        self._max_bytes = max_bytes
        self._transport = transport
        self._clients: OrderedDict[tuple[str, bool], httpx.Client] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def query(
        self, endpoint: MetricsEndpoint, query: str, at: datetime.datetime | None = None
    ) -> QueryResult:
        """The instant query at `at` (default: now), as Prometheus evaluates it then."""
        params = {"query": query}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        try:
            status, body = self._exchange(endpoint, "query", urllib.parse.urlencode(params))
        except QueryFailedError as error:
            return QueryResult(CheckOutcome.QUERY_FAILED, str(error))
        return classify(status, _json_or_none(body), shown_url(endpoint.url))

    def query_range(
        self,
        endpoint: MetricsEndpoint,
        query: str,
        start: datetime.datetime,
        end: datetime.datetime,
        step_seconds: int,
    ) -> RangeResult:
        """The query evaluated from `start` to `end` every `step_seconds` (/api/v1/query_range): every
        series' values in time order."""
        if step_seconds < 1 or end < start:
            return RangeResult(
                error=f"no range from {start.isoformat()} to {end.isoformat()} every {step_seconds}s"
            )
        points = int((end - start).total_seconds() // step_seconds) + 1
        if points > MAX_RANGE_POINTS:
            return RangeResult(
                error=f"the range would hold {points} points per series, more than the {MAX_RANGE_POINTS} "
                "Prometheus answers: use a larger step"
            )
        params = {
            "query": query,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": str(step_seconds),
        }
        try:
            status, body = self._exchange(endpoint, "query_range", urllib.parse.urlencode(params))
        except QueryFailedError as error:
            return RangeResult(error=str(error))
        return classify_range(status, _json_or_none(body), shown_url(endpoint.url))

    def _exchange(self, endpoint: MetricsEndpoint, api: str, query_string: str) -> tuple[int, bytes]:
        """(status, body) of the query (`api`: query or query_range), after the redirects the policy allows;
        raises QueryFailedError."""
        shown = shown_url(endpoint.url)
        if not self._allows(endpoint, endpoint.url):
            raise QueryFailedError(f"{shown} is not allowed by --allowed-metric-urls; not contacted")
        try:
            client = self._client(endpoint)
        except ssl.SSLError as error:
            raise QueryFailedError(f"the CA bundle for {shown} is unusable: {error}") from error
        url = endpoint.url.rstrip("/") + f"/api/v1/{api}?" + query_string
        started = time.monotonic()
        try:
            for _ in range(MAX_REDIRECTS + 1):
                same_origin = _origin(url) == _origin(endpoint.url)
                status, location, body = self._get(client, url, _headers(endpoint, same_origin), started)
                if location is None:
                    return status, body
                target = urllib.parse.urljoin(url, location)
                if not self._allows(endpoint, target):
                    raise QueryFailedError(
                        f"{shown} redirected to {shown_url(target)}, which --allowed-metric-urls does not "
                        "allow; not followed"
                    )
                url = target
        except httpx.TimeoutException as error:
            raise QueryFailedError(f"Prometheus at {shown} timed out") from error
        except httpx.HTTPError as error:
            raise QueryFailedError(f"Prometheus at {shown} unreachable: {_reason(error)}") from error
        raise QueryFailedError(f"{shown} redirected more than {MAX_REDIRECTS} times")

    def _allows(self, endpoint: MetricsEndpoint, url: str) -> bool:
        return self._policy is None or self._policy.allows(endpoint.namespace, url)

    def _get(
        self, client: httpx.Client, url: str, headers: dict[str, str], started: float
    ) -> tuple[int, str | None, bytes]:
        """(status, redirect location or None, body) of one GET, bounded in size and time: it may take only
        what is left of the exchange's deadline (connecting, headers and every read), so slow headers and
        redirect hops count against the same deadline as the body."""
        remaining = self._deadline - (time.monotonic() - started)
        if remaining <= 0:
            raise QueryFailedError(
                f"Prometheus at {shown_url(url)} timed out: no whole answer within {self._deadline:.0f}s"
            )
        timeout = httpx.Timeout(min(self._timeout, remaining))
        with client.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.is_redirect:
                return response.status_code, response.headers.get("location"), b""
            declared = response.headers.get("content-length")
            too_large = QueryFailedError(
                f"{shown_url(url)} answered more than {self._max_bytes // 1024} KiB: not a query answer"
            )
            if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
                raise too_large
            body = bytearray()
            for chunk in response.iter_bytes():  # decoded: a compressed bomb is counted as it unpacks
                body += chunk
                if len(body) > self._max_bytes:
                    raise too_large
                if time.monotonic() - started > self._deadline:
                    raise QueryFailedError(
                        f"Prometheus at {shown_url(url)} timed out: no whole answer within "
                        f"{self._deadline:.0f}s"
                    )
            return response.status_code, None, bytes(body)

    def _client(self, endpoint: MetricsEndpoint) -> httpx.Client:
        trust = hashlib.sha256((endpoint.ca_pem or "").encode()).hexdigest()
        key = (trust, endpoint.insecure_skip_verify)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            verify: ssl.SSLContext | bool = not endpoint.insecure_skip_verify
            if endpoint.ca_pem and not endpoint.insecure_skip_verify:
                verify = ssl.create_default_context(cadata=endpoint.ca_pem)
            client = httpx.Client(
                timeout=self._timeout,
                transport=self._transport,
                verify=verify,
                follow_redirects=False,
                cookies=_no_cookies(),
            )
            self._clients[key] = client
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)[1].close()
            return client


def _no_cookies() -> http.cookiejar.CookieJar:
    """A cookie jar that accepts no cookie and so sends none (no domain is allowed)."""
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class QueryFailedError(Exception):
    """The query got no usable answer; the message says why (never with a credential in it)."""


def _headers(endpoint: MetricsEndpoint, same_origin: bool) -> dict[str, str]:
    headers = dict(endpoint.headers)
    if not same_origin:
        return headers  # static headers (a tenant) go along; credentials never leave their origin
    if endpoint.bearer_token is not None:
        headers["Authorization"] = f"Bearer {endpoint.bearer_token}"
    elif endpoint.basic_auth is not None:
        pair = ":".join(endpoint.basic_auth).encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return headers


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _reason(error: httpx.HTTPError) -> str:
    """The cause of a transport error, without the request (whose URL carries the query)."""
    text = str(error)
    return text.splitlines()[0][:200] if text else type(error).__name__


def _json_or_none(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None


def classify(status_code: int, body: object, shown: str = "Prometheus") -> QueryResult:
    """Turns an answer of the Prometheus query API into a result: no series is CLEAN, any is ERRORS_FOUND."""
    problem, data = _answer(status_code, body, shown)
    if problem is not None:
        return QueryResult(CheckOutcome.QUERY_FAILED, problem)
    if data.get("resultType") not in {"vector", "matrix"}:
        return QueryResult(
            CheckOutcome.QUERY_FAILED,
            f"query returned a {data.get('resultType')}; a query must return an instant vector",
        )
    result = _series(data)
    if not result:
        return QueryResult(CheckOutcome.CLEAN, "query returned no result", total=0.0)
    labelled = [(dict(item.get("metric") or {}), _last_value(item)) for item in result]
    series = capped_series(labelled)
    found = QueryResult(CheckOutcome.ERRORS_FOUND, "", series, len(result))
    total = sum_finite(value for _, value in labelled)
    return QueryResult(found.outcome, describe_series(found), found.series, found.total_series, total)


def classify_range(status_code: int, body: object, shown: str = "Prometheus") -> RangeResult:
    """Turns an answer of the range query API into each series' values (NaN where a value is no number)."""
    problem, data = _answer(status_code, body, shown)
    if problem is not None:
        return RangeResult(error=problem)
    if data.get("resultType") != "matrix":
        return RangeResult(
            error=f"the range query returned a {data.get('resultType')}, not a matrix: give a query of "
            "an instant vector (e.g. a rate or a histogram_quantile), not a range vector"
        )
    return RangeResult(tuple(tuple(_values(item)) for item in _series(data)))


def _answer(status_code: int, body: object, shown: str) -> tuple[str | None, dict[str, Any]]:
    """(why the answer is unusable or None, its data) of an answer of either query API."""
    if status_code in {401, 403}:
        return (
            f"{shown} refused the request (HTTP {status_code}): check the credentials in prometheusSecretRef",
            {},
        )
    if not isinstance(body, dict):
        return f"{shown} answered HTTP {status_code} without JSON", {}
    if body.get("status") != "success":
        detail = body.get("error") or f"HTTP {status_code}"
        return f"query rejected: {detail} (fix the query in the spec)", {}
    data = body.get("data")
    if not isinstance(data, dict):
        return "query returned no data; a query must return an instant vector", {}
    return None, data


def _series(data: dict[str, Any]) -> list[dict[str, Any]]:
    result = data.get("result")
    return [item for item in result if isinstance(item, dict)] if isinstance(result, list) else []


def _values(series: dict[str, object]) -> list[float]:
    values = series.get("values")
    if not isinstance(values, list):
        return []
    return [_number(value[1]) if isinstance(value, list) and len(value) > 1 else math.nan for value in values]


def _number(value: object) -> float:
    try:
        return float(str(value))
    except ValueError:
        return math.nan


def _last_value(series: dict[str, object]) -> str:
    value = series.get("value")
    if not isinstance(value, list):
        values = series.get("values")
        value = values[-1] if isinstance(values, list) and values else None
    return str(value[1]) if isinstance(value, list) and len(value) > 1 else "?"
