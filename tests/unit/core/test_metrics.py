"""spec.analysis and metric templates: what parses, what is refused with which message, and how a metric and
its template resolve into the rules the judge applies."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.core import templates
from reconciler.core.judge.inputs import Direction, MetricKind
from reconciler.core.metrics import (
    AnalysisSpec,
    MetricSpec,
    MetricTemplateSpec,
    TemplateError,
    Threshold,
    resolve,
)
from reconciler.core.model import CanaryApp, CanaryAppSpec

LATENCY = (
    "histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket{"
    'reporter="destination", destination_workload="{{ target }}"}[{{ args.window }}])))'
)
TEMPLATE = MetricTemplateSpec.model_validate(
    {
        "query": LATENCY,
        "args": [{"name": "window", "default": "30s"}],
        "direction": "increase",
        "allowedEffect": 0.2,
    }
)
SPEC = {"image": "app:v1", "imageListenPort": 8080, "prometheusURL": "http://prometheus:9090"}


def metric(**fields: Any) -> MetricSpec:
    return MetricSpec.model_validate({"name": "m", **fields})


def test_a_template_metric_takes_the_templates_rules_and_fills_its_arguments() -> None:
    resolved = resolve(
        metric(templateRef={"name": "latency"}, args={"window": "1m"}), TEMPLATE, baseline=True
    )
    assert resolved.kind is MetricKind.CONTINUOUS
    assert resolved.query is not None
    assert "[1m]" in resolved.query
    assert "{{ target }}" in resolved.query
    assert resolved.allowed_effect == 0.2
    assert resolved.direction is Direction.INCREASE
    assert resolved.compare_to_baseline


def test_the_metrics_own_rules_win_over_its_templates() -> None:
    resolved = resolve(
        metric(templateRef={"name": "latency"}, direction="either", allowedEffect=0.05),
        TEMPLATE,
        baseline=True,
    )
    assert (resolved.direction, resolved.allowed_effect) == (Direction.EITHER, 0.05)
    assert resolved.query is not None
    assert "[30s]" in resolved.query


def test_without_a_baseline_a_metric_needs_a_threshold() -> None:
    with pytest.raises(TemplateError, match="judges nothing"):
        resolve(metric(templateRef={"name": "latency"}), TEMPLATE, baseline=False)
    resolved = resolve(
        metric(templateRef={"name": "latency"}, threshold={"max": 250}), TEMPLATE, baseline=False
    )
    assert resolved.threshold == Threshold(max=250)
    assert not resolved.compare_to_baseline


@pytest.mark.parametrize(
    ("fields", "template", "message"),
    [
        ({"templateRef": {"name": "latency"}}, None, "MetricTemplate 'latency' not found"),
        (
            {"templateRef": {"name": "latency", "kind": "ClusterMetricTemplate"}},
            None,
            "ClusterMetricTemplate 'latency' not found",
        ),
        (
            {"templateRef": {"name": "latency"}, "args": {"quantile": "0.9"}},
            TEMPLATE,
            "has no argument quantile",
        ),
        (
            {"templateRef": {"name": "q"}},
            MetricTemplateSpec.model_validate(
                {"query": "up{job='{{ args.job }}'}", "args": [{"name": "job"}]}
            ),
            "needs the argument job",
        ),
    ],
)
def test_a_template_that_does_not_fit_names_the_metric_and_the_fix(
    fields: dict[str, Any], template: MetricTemplateSpec | None, message: str
) -> None:
    with pytest.raises(TemplateError, match=message) as caught:
        resolve(metric(**fields), template, baseline=True)
    assert "metric 'm'" in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "give exactly one of query"),
        ({"query": "q", "counts": {"failures": "f", "trials": "t"}}, "give exactly one of query"),
        ({"query": "q", "templateRef": {"name": "t"}}, "not both"),
        ({"query": "q", "args": {"a": "b"}}, "args are for a template"),
        ({"query": "q", "critical": True, "optional": True}, "cannot be optional"),
        ({"query": "rate(x{pod='{{ pod }}'}[1m])"}, "unknown query variable 'pod'"),
        ({"templateRef": {"name": "t"}, "args": {"a": 'x"} or vector(1)'}}, "never PromQL syntax"),
        ({"templateRef": {"name": "t"}, "args": {"1a": "b"}}, "is not a name"),
        ({"query": "q", "threshold": {}}, "give min, max or both"),
        ({"query": "q", "threshold": {"min": 2, "max": 1}}, "swap them"),
    ],
)
def test_a_bad_metric_is_refused_naming_the_problem(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        metric(**fields)


def test_a_metric_name_is_a_dns_label() -> None:
    with pytest.raises(ValidationError, match="lower-case letters"):
        MetricSpec.model_validate({"name": "Error Rate", "query": "q"})


def test_metric_queries_may_use_target_baseline_and_the_canaryapps_variables() -> None:
    query = 'x{w="{{ target }}", b="{{ baseline }}", c="{{ canary }}", n="{{ namespace }}"}[{{ window }}]'
    assert metric(query=query).query == query


def test_a_template_refuses_undeclared_arguments_and_doubled_ones() -> None:
    with pytest.raises(ValidationError, match=re.escape("unknown query variable 'args.window'")):
        MetricTemplateSpec.model_validate({"query": LATENCY})
    with pytest.raises(ValidationError, match="declared twice"):
        MetricTemplateSpec.model_validate(
            {"query": LATENCY, "args": [{"name": "window"}, {"name": "window", "default": "1m"}]}
        )


def test_analysis_refuses_doubled_names_and_comparisons_without_a_baseline() -> None:
    with pytest.raises(ValidationError, match="used twice"):
        AnalysisSpec.model_validate({"baseline": True, "metrics": [{"name": "m", "query": "q"}] * 2})
    with pytest.raises(ValidationError, match=re.escape("set analysis.baseline: true")):
        AnalysisSpec.model_validate({"metrics": [{"name": "m", "query": "q", "compareToBaseline": True}]})
    with pytest.raises(ValidationError, match="must not exceed pass"):
        AnalysisSpec.model_validate({"scoreThresholds": {"marginal": 96}})


def test_the_spec_needs_prometheus_query_or_metrics() -> None:
    with pytest.raises(
        ValidationError, match=re.escape("prometheusQuery: required unless spec.analysis.metrics")
    ):
        CanaryAppSpec.model_validate(SPEC)
    spec = CanaryAppSpec.model_validate(
        {**SPEC, "analysis": {"baseline": True, "metrics": [{"name": "latency", "query": "q"}]}}
    )
    assert spec.baseline
    assert [m.name for m in spec.metrics] == ["latency"]
    assert CanaryAppSpec.model_validate({**SPEC, "prometheusQuery": "q"}).metrics == ()


def test_a_baseline_keeps_half_the_traffic_for_the_primary() -> None:
    analysis = {"baseline": True, "metrics": [{"name": "latency", "query": "q"}]}
    with pytest.raises(
        ValidationError, match=re.escape("maxWeight (60) must be at most 50 with analysis.baseline")
    ):
        CanaryAppSpec.model_validate({**SPEC, "maxWeight": 60, "analysis": analysis})


def test_a_baseline_needs_a_name_short_enough_for_its_deployment() -> None:
    spec = {**SPEC, "analysis": {"baseline": True, "metrics": [{"name": "latency", "query": "q"}]}}
    CanaryApp.model_validate({"metadata": {"name": "a" * 54}, "spec": spec})
    with pytest.raises(ValidationError, match="at most 54"):
        CanaryApp.model_validate({"metadata": {"name": "a" * 55}, "spec": spec})


def test_render_partial_leaves_the_check_variables_for_later() -> None:
    assert (
        templates.render_partial("{{ args.q }} {{ target }} {{ window }}", {"args.q": "0.9"})
        == "0.9 {{ target }} {{ window }}"
    )


@pytest.mark.parametrize(
    ("module", "loaded"), [("reconciler.core.model", "[]"), ("reconciler.plugin", "['numpy']")]
)
def test_reading_a_canaryapp_does_not_load_the_statistics(module: str, loaded: str) -> None:
    """The plugin and the Pulumi workers parse CanaryApps; scipy would add about a second to each (numpy,
    0.15 s, comes with the plugin's commands)."""
    code = f"import sys, {module}; print(sorted({{'numpy', 'scipy'}} & set(sys.modules)))"
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert shown.stdout.strip() == loaded
