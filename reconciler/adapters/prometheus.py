"""Prometheus as the metrics source: one instant query per check, classified as data, never raised."""

from __future__ import annotations

import httpx

from reconciler.decide import CheckResult
from reconciler.model import CheckOutcome

QUERY_TIMEOUT_SECONDS = 10.0
_MAX_SHOWN_SERIES = 3


class PrometheusMetrics:
    def __init__(
        self, timeout: float = QUERY_TIMEOUT_SECONDS, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def check(self, prometheus_url: str, query: str) -> CheckResult:
        endpoint = prometheus_url.rstrip("/") + "/api/v1/query"
        try:
            response = self._client.get(endpoint, params={"query": query})
        except httpx.TimeoutException:
            return CheckResult(CheckOutcome.QUERY_FAILED, f"Prometheus at {prometheus_url} timed out")
        except httpx.HTTPError as error:
            return CheckResult(
                CheckOutcome.QUERY_FAILED, f"Prometheus at {prometheus_url} unreachable: {error}"
            )
        return classify(response.status_code, _json_or_none(response))


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def classify(status_code: int, body: object) -> CheckResult:
    """Turns an answer of the Prometheus query API into a check outcome."""
    if not isinstance(body, dict):
        return CheckResult(CheckOutcome.QUERY_FAILED, f"Prometheus answered HTTP {status_code} without JSON")
    if body.get("status") != "success":
        detail = body.get("error") or f"HTTP {status_code}"
        return CheckResult(CheckOutcome.QUERY_FAILED, f"query rejected: {detail} (fix spec.prometheusQuery)")
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") not in {"vector", "matrix"}:
        kind = data.get("resultType") if isinstance(data, dict) else None
        return CheckResult(
            CheckOutcome.QUERY_FAILED,
            f"query returned a {kind}; spec.prometheusQuery must return an instant vector",
        )
    result = data.get("result") or []
    if not result:
        return CheckResult(CheckOutcome.CLEAN, "query returned no result")
    shown = ", ".join(_describe(series) for series in result[:_MAX_SHOWN_SERIES])
    more = f" and {len(result) - _MAX_SHOWN_SERIES} more" if len(result) > _MAX_SHOWN_SERIES else ""
    return CheckResult(CheckOutcome.ERRORS_FOUND, f"query returned {len(result)} series: {shown}{more}")


def _describe(series: object) -> str:
    if not isinstance(series, dict):
        return "?"
    labels = series.get("metric") or {}
    value = series.get("value") or (series.get("values") or [[None, "?"]])[-1]
    label_text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")
    return f"{{{label_text}}}={value[1] if isinstance(value, list) and len(value) > 1 else value}"
