"""Prometheus as the metrics source: one instant query per call, classified as data, never raised."""

from __future__ import annotations

import datetime

import httpx

from reconciler.analysis import QueryResult, capped_series, describe_series
from reconciler.model import CheckOutcome

QUERY_TIMEOUT_SECONDS = 10.0


class PrometheusMetrics:
    def __init__(
        self, timeout: float = QUERY_TIMEOUT_SECONDS, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def query(self, prometheus_url: str, query: str, at: datetime.datetime | None = None) -> QueryResult:
        """The instant query at `at` (default: now), as Prometheus evaluates it then."""
        endpoint = prometheus_url.rstrip("/") + "/api/v1/query"
        params = {"query": query}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        try:
            response = self._client.get(endpoint, params=params)
        except httpx.TimeoutException:
            return QueryResult(CheckOutcome.QUERY_FAILED, f"Prometheus at {prometheus_url} timed out")
        except httpx.HTTPError as error:
            return QueryResult(
                CheckOutcome.QUERY_FAILED, f"Prometheus at {prometheus_url} unreachable: {error}"
            )
        return classify(response.status_code, _json_or_none(response))


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def classify(status_code: int, body: object) -> QueryResult:
    """Turns an answer of the Prometheus query API into a result: no series is CLEAN, any is ERRORS_FOUND."""
    if not isinstance(body, dict):
        return QueryResult(CheckOutcome.QUERY_FAILED, f"Prometheus answered HTTP {status_code} without JSON")
    if body.get("status") != "success":
        detail = body.get("error") or f"HTTP {status_code}"
        return QueryResult(CheckOutcome.QUERY_FAILED, f"query rejected: {detail} (fix the query in the spec)")
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") not in {"vector", "matrix"}:
        kind = data.get("resultType") if isinstance(data, dict) else None
        return QueryResult(
            CheckOutcome.QUERY_FAILED, f"query returned a {kind}; a query must return an instant vector"
        )
    result = [item for item in data.get("result") or [] if isinstance(item, dict)]
    if not result:
        return QueryResult(CheckOutcome.CLEAN, "query returned no result")
    series = capped_series([(dict(item.get("metric") or {}), _last_value(item)) for item in result])
    found = QueryResult(CheckOutcome.ERRORS_FOUND, "", series, len(result))
    return QueryResult(found.outcome, describe_series(found), found.series, found.total_series)


def _last_value(series: dict[str, object]) -> str:
    value = series.get("value")
    if not isinstance(value, list):
        values = series.get("values")
        value = values[-1] if isinstance(values, list) and values else None
    return str(value[1]) if isinstance(value, list) and len(value) > 1 else "?"
