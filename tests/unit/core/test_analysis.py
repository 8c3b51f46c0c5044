"""The analysis as data (analysis.py, templates.py): query templates, the window, and
what two answers mean — silence is never health — and what an endpoint said, kept printable."""

from __future__ import annotations

import datetime

import pytest
from pydantic import ValidationError

from reconciler.core import analysis, templates
from reconciler.core.analysis import QueryResult, RenderedQueries
from reconciler.core.model import CanaryAppSpec, CanaryAppStatus, CheckOutcome, Series

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def spec(**fields: object) -> CanaryAppSpec:
    base = {"image": "a:v1", "imageListenPort": 80, "prometheusQuery": "q", "prometheusURL": "http://p:9090"}
    return CanaryAppSpec.model_validate({**base, **fields})


def test_templates_render_every_variable() -> None:
    query = "x{a='{{ name }}',b='{{namespace}}',c='{{ canary }}',d='{{ primary }}'}"
    query += "[{{ interval }}] [{{ window }}]"
    status = CanaryAppStatus(last_traffic_shift="2026-01-01T11:59:17Z")
    variables = analysis.query_variables("web", "shop", spec(trafficShiftUpdateInterval=30), status, NOW)
    assert templates.render(query, variables) == (
        "x{a='web',b='shop',c='web-canary',d='web-primary'}[30s] [43s]"
    )


def test_a_query_without_placeholders_is_used_as_it_is() -> None:
    assert templates.render("rate(x[1m]) > 0 and {a}", {}) == "rate(x[1m]) > 0 and {a}"


def test_the_window_without_a_weight_change_is_the_interval() -> None:
    variables = analysis.query_variables(
        "web", "shop", spec(trafficShiftUpdateInterval=7), CanaryAppStatus(), NOW
    )
    assert variables["window"] == "7s"


@pytest.mark.parametrize("field", ["prometheusQuery", "canaryTrafficQuery"])
def test_an_unknown_variable_is_an_invalid_spec_naming_it(field: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        spec(**{field: "rate(x{app='{{ app }}'}[{{ window }}])"})
    assert "unknown query variable 'app'" in str(invalid.value)
    assert "{{ canary }}" in str(invalid.value)


def test_the_default_traffic_query_counts_the_canary_workloads_requests() -> None:
    variables = analysis.query_variables("web", "shop", spec(), CanaryAppStatus(), NOW)
    queries = analysis.render_queries(spec(), variables)
    assert queries.traffic == (
        'sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",'
        'destination_workload="web-canary"}[30s]))'
    )
    assert analysis.render_queries(spec(minCanaryRequests=0), variables).traffic is None


QUERIES = RenderedQueries(errors="errors", traffic="traffic")
EMPTY = QueryResult(CheckOutcome.CLEAN, "query returned no result")
FAILED = QueryResult(CheckOutcome.QUERY_FAILED, "Prometheus unreachable")
ERRORS = QueryResult(CheckOutcome.ERRORS_FOUND, "1 series", (Series(labels={"code": "500"}, value="4"),), 1)


def requests(count: float) -> QueryResult:
    return QueryResult(CheckOutcome.ERRORS_FOUND, "", (Series(labels={}, value=str(count)),), 1)


@pytest.mark.parametrize(
    ("errors", "traffic", "minimum", "outcome", "canary_requests"),
    [
        pytest.param(EMPTY, requests(12), 1, CheckOutcome.CLEAN, 12, id="no errors and traffic: clean"),
        pytest.param(EMPTY, EMPTY, 1, CheckOutcome.NO_CANARY_TRAFFIC, 0, id="empty traffic query"),
        pytest.param(EMPTY, requests(0), 1, CheckOutcome.NO_CANARY_TRAFFIC, 0, id="zero requests"),
        pytest.param(EMPTY, requests(9), 10, CheckOutcome.NO_CANARY_TRAFFIC, 9, id="below the minimum"),
        pytest.param(ERRORS, EMPTY, 1, CheckOutcome.ERRORS_FOUND, 0, id="errors count without traffic"),
        pytest.param(FAILED, requests(5), 1, CheckOutcome.QUERY_FAILED, 5, id="error query failed"),
        pytest.param(EMPTY, FAILED, 1, CheckOutcome.QUERY_FAILED, None, id="traffic query failed"),
        pytest.param(EMPTY, None, 0, CheckOutcome.CLEAN, None, id="traffic check off"),
    ],
)
def test_assess(
    errors: QueryResult,
    traffic: QueryResult | None,
    minimum: int,
    outcome: CheckOutcome,
    canary_requests: float | None,
) -> None:
    result = analysis.assess(QUERIES, errors, traffic, minimum)
    assert result.outcome == outcome
    assert result.canary_requests == canary_requests
    assert result.query == "errors"
    assert result.series == errors.series


def test_no_traffic_says_what_it_saw_and_what_it_needs() -> None:
    result = analysis.assess(QUERIES, EMPTY, requests(2), 5)
    assert result.message == "no canary traffic observed: 2 canary requests in the window, at least 5 needed"


HOSTILE = "\x1b[2J\x1b[Hpromoted\r\x1b]8;;http://evil/\x07ok\x1b]8;;\x07\x07"


@pytest.mark.parametrize(
    ("errors", "traffic"),
    [
        pytest.param(
            QueryResult(CheckOutcome.QUERY_FAILED, f"query rejected: {HOSTILE}"), None, id="error body"
        ),
        pytest.param(EMPTY, QueryResult(CheckOutcome.QUERY_FAILED, HOSTILE), id="traffic query failed"),
    ],
)
def test_a_check_message_keeps_nothing_a_terminal_obeys(
    errors: QueryResult, traffic: QueryResult | None
) -> None:
    result = analysis.assess(QUERIES, errors, traffic, 1)
    assert result.outcome == CheckOutcome.QUERY_FAILED
    assert "promotedok" in result.message
    assert not any(character in result.message for character in "\x1b\r\x07")


def test_series_labels_and_values_keep_nothing_a_terminal_obeys() -> None:
    [series] = analysis.capped_series([({"pod\x1b[8m": f"web-1{HOSTILE}", "__name__": "x"}, "1\x1b[0m")])
    assert series.labels == {"pod": "web-1promotedok"}
    assert series.value == "1"
    described = analysis.describe_series(QueryResult(CheckOutcome.ERRORS_FOUND, "", (series,), 1))
    assert described == "query returned 1 series: {pod=web-1promotedok}=1"


@pytest.mark.parametrize(("seconds", "duration"), [(0.2, "1s"), (1, "1s"), (29.01, "30s"), (600, "600s")])
def test_promql_duration_rounds_up(seconds: float, duration: str) -> None:
    assert templates.promql_duration(seconds) == duration
