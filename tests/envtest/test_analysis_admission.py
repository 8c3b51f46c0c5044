"""spec.analysis and the metric templates at admission, on a real kube-apiserver: the CRDs (with their CEL
rules) are accepted, cost and all; each bad CanaryApp, MetricTemplate and ClusterMetricTemplate is refused
with a message that names the field; the examples (examples/canaryapp-judge.yaml,
examples/metric-templates.yaml) and the other good objects are accepted. Every case also goes through the
model (reconciler/core/metrics.py), which must agree with the API server."""

from __future__ import annotations

import copy
import json
import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from devenv.cluster import LocalCluster
from reconciler.core.metrics import MetricTemplateSpec
from reconciler.core.model import GROUP, PLURAL, VERSION, CanaryApp
from tests.integration.helpers import kubectl

pytestmark = pytest.mark.envtest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = "metrictemplates"
CLUSTER_TEMPLATES = "clustermetrictemplates"
LATENCY = "histogram_quantile(0.5, sum by (le) (rate(latency_bucket{workload='{{ target }}'}[30s])))"
COUNTS = {
    "failures": "sum(errors{workload='{{ target }}'})",
    "trials": "sum(requests{workload='{{ target }}'})",
}


def example(name: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all((ROOT / "examples" / name).read_text()) if document]


def judged_app(name: str = "judged", **analysis: Any) -> dict[str, Any]:
    """A CanaryApp judged by one latency metric against its baseline, without prometheusQuery."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryApp",
        "metadata": {"name": name},
        "spec": {
            "image": "shop:v1",
            "imageListenPort": 8080,
            "prometheusURL": "http://prometheus.istio-system:9090",
            "analysis": {"baseline": True, "metrics": [{"name": "latency", "query": LATENCY}], **analysis},
        },
    }


def with_metric(**metric: Any) -> dict[str, Any]:
    return judged_app(metrics=[{"name": "m", **metric}])


def template(kind: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": f"t-{uuid.uuid4().hex[:6]}"},
        "spec": spec,
    }


def create_app(kube: kubernetes.client.ApiClient, namespace: str, body: dict[str, Any]) -> Any:
    return kubernetes.client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


def create_template(kube: kubernetes.client.ApiClient, namespace: str, body: dict[str, Any]) -> Any:
    custom = kubernetes.client.CustomObjectsApi(kube)
    if body["kind"] == "ClusterMetricTemplate":
        return custom.create_cluster_custom_object(GROUP, VERSION, CLUSTER_TEMPLATES, body)
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, TEMPLATES, body)


@pytest.fixture
def cluster_templates(kube: kubernetes.client.ApiClient) -> Iterator[list[str]]:
    """Names of ClusterMetricTemplates a test created: deleted after it (they outlive its namespace)."""
    created: list[str] = []
    yield created
    custom = kubernetes.client.CustomObjectsApi(kube)
    for name in created:
        custom.delete_cluster_custom_object(GROUP, VERSION, CLUSTER_TEMPLATES, name)


def refused(call: Any) -> str:
    """The API server's message of a refused create (every cause, each with its field)."""
    with pytest.raises(ApiException) as refusal:
        call()
    assert refusal.value.status == 422, refusal.value.body
    message: str = json.loads(refusal.value.body)["message"]
    return message


def test_the_api_server_accepts_the_crds_with_their_rules(kube: kubernetes.client.ApiClient) -> None:
    """A rule the cost estimator rejects, or one that does not compile, makes the API server refuse the whole
    CRD; the cluster fixture applied all three, and each is established with its names accepted."""
    extensions = kubernetes.client.ApiextensionsV1Api(kube)
    for plural in ("canaryapps", TEMPLATES, CLUSTER_TEMPLATES):
        crd = extensions.read_custom_resource_definition(f"{plural}.{GROUP}")
        conditions = {condition.type: condition.status for condition in crd.status.conditions}
        assert conditions["Established"] == "True", plural
        assert conditions["NamesAccepted"] == "True", plural


# CanaryApps ---------------------------------------------------------------------------------------------

BAD_APPS = [
    pytest.param(
        {**judged_app(), "spec": {**judged_app()["spec"], "analysis": {"baseline": True}}},
        "spec: Required value: prometheusQuery: required unless spec.analysis.metrics",
        id="no-query-and-no-metrics",
    ),
    pytest.param(
        {**judged_app(), "spec": {**judged_app()["spec"], "maxWeight": 60}},
        "spec: Invalid value: maxWeight must be at most 50 with analysis.baseline",
        id="max-weight-above-50-with-baseline",
    ),
    pytest.param(
        judged_app("a" * 55),
        "spec.analysis.baseline: Invalid value: spec.analysis.baseline: the baseline's name <name>-baseline",
        id="name-too-long-for-the-baseline",
    ),
    pytest.param(
        judged_app(baseline=False, metrics=[{"name": "m", "query": LATENCY, "compareToBaseline": True}]),
        "spec.analysis: Invalid value: analysis.metrics: a metric compares to a baseline, but "
        "analysis.baseline is false",
        id="compare-without-baseline",
    ),
    pytest.param(
        with_metric(query=LATENCY, templateRef={"name": "latency"}),
        "spec.analysis.metrics[0]: Invalid value: give templateRef, or the metric's own query",
        id="template-and-query",
    ),
    pytest.param(
        with_metric(),
        "spec.analysis.metrics[0]: Invalid value: give templateRef, or the metric's own query",
        id="neither-template-nor-query",
    ),
    pytest.param(
        with_metric(query=LATENCY, counts=COUNTS),
        "spec.analysis.metrics[0]: Invalid value: give query (a continuous metric) or counts",
        id="query-and-counts",
    ),
    pytest.param(
        with_metric(query=LATENCY, args={"quantile": "0.9"}),
        "spec.analysis.metrics[0]: Invalid value: args are for a template's queries",
        id="args-without-template",
    ),
    pytest.param(
        with_metric(query=LATENCY, critical=True, optional=True),
        "spec.analysis.metrics[0]: Invalid value: a critical metric cannot be optional",
        id="critical-and-optional",
    ),
    pytest.param(
        with_metric(templateRef={"name": "latency"}, args={"quantile": "0.9) or vector(1"}),
        'spec.analysis.metrics[0].args.quantile: Invalid value: "0.9) or vector(1": spec.analysis.metrics[0]'
        ".args.quantile in body should match",
        id="arg-value-with-promql-syntax",
    ),
    pytest.param(
        with_metric(templateRef={"name": "latency"}, args={"1st": "0.9"}),
        "spec.analysis.metrics[0].args: Invalid value: args: a name holds letters, digits and _",
        id="arg-name",
    ),
    pytest.param(
        with_metric(templateRef={"name": "latency", "kind": "Template"}),
        'spec.analysis.metrics[0].templateRef.kind: Unsupported value: "Template"',
        id="template-kind",
    ),
    pytest.param(
        with_metric(query=LATENCY, threshold={"min": 2, "max": 1}),
        "spec.analysis.metrics[0].threshold: Invalid value: threshold: min is above max",
        id="threshold-min-above-max",
    ),
    pytest.param(
        with_metric(query=LATENCY, threshold={}),
        "spec.analysis.metrics[0].threshold: Invalid value: threshold: give min, max or both",
        id="empty-threshold",
    ),
    pytest.param(
        with_metric(name="Latency", query=LATENCY),
        'spec.analysis.metrics[0].name: Invalid value: "Latency"',
        id="metric-name",
    ),
    pytest.param(
        judged_app(metrics=[{"name": "m", "query": LATENCY}, {"name": "m", "counts": COUNTS}]),
        'spec.analysis.metrics[1]: Duplicate value: {"name":"m"}',
        id="metric-names-twice",
    ),
    pytest.param(
        judged_app(scoreThresholds={"marginal": 90, "pass": 80}),
        "spec.analysis.scoreThresholds: Invalid value: scoreThresholds: marginal must not exceed pass",
        id="marginal-above-pass",
    ),
    pytest.param(
        judged_app(confidence=1),
        "spec.analysis.confidence: Invalid value: 1: spec.analysis.confidence in body should be less than 1",
        id="confidence-1",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_APPS)
def test_a_bad_analysis_is_refused_naming_the_field(
    kube: kubernetes.client.ApiClient, namespace: str, body: dict[str, Any], message: str
) -> None:
    refusal = refused(lambda: create_app(kube, namespace, body))
    assert message in refusal, refusal
    with pytest.raises(ValidationError):
        CanaryApp.model_validate(body)


GOOD_APPS = [
    pytest.param(judged_app(), id="metrics-without-prometheus-query"),
    pytest.param(judged_app("a" * 54), id="name-of-54-with-baseline"),
    pytest.param(
        {
            **judged_app("a" * 55),
            "spec": {
                **judged_app()["spec"],
                "analysis": {"metrics": [{"name": "latency", "query": LATENCY, "threshold": {"max": 250}}]},
            },
        },
        id="name-of-55-without-baseline",
    ),
    pytest.param(
        {**judged_app(), "spec": {**judged_app()["spec"], "prometheusQuery": "vector(0) > 1"}},
        id="metrics-beside-prometheus-query",
    ),
    pytest.param(
        with_metric(
            templateRef={"name": "latency", "kind": "ClusterMetricTemplate"}, args={"quantile": "0.99"}
        ),
        id="template-with-args",
    ),
    pytest.param(
        with_metric(counts=COUNTS, threshold={"max": 0.05}, critical=True, direction="either", weight=2.5),
        id="counts-critical",
    ),
    pytest.param(*example("canaryapp-judge.yaml"), id="examples/canaryapp-judge.yaml"),
]


@pytest.mark.parametrize("body", GOOD_APPS)
def test_a_good_analysis_is_accepted_and_defaulted(
    kube: kubernetes.client.ApiClient, namespace: str, body: dict[str, Any]
) -> None:
    created = create_app(kube, namespace, copy.deepcopy(body))
    analysis = created["spec"]["analysis"]
    assert (analysis["confidence"], analysis["sampleStepSeconds"]) == (0.98, 2)
    for metric in analysis["metrics"]:
        assert (metric["weight"] > 0, metric["critical"] in (True, False)) == (True, True)
    assert CanaryApp.model_validate(created).spec.metrics


# MetricTemplates and ClusterMetricTemplates --------------------------------------------------------------

BAD_TEMPLATES = [
    pytest.param(
        {"query": LATENCY, "counts": COUNTS},
        "spec: Required value: give exactly one of query",
        id="query-and-counts",
    ),
    pytest.param({"direction": "increase"}, "spec: Required value: give exactly one of query", id="neither"),
    pytest.param(
        {"query": "histogram_quantile({{ args.quantile }}, latency{workload='{{ target }}'})"},
        "spec: Invalid value: unknown query variable: use {{ name }}",
        id="undeclared-argument",
    ),
    pytest.param(
        {"counts": {**COUNTS, "trials": "sum(requests{workload='{{ tagret }}'})"}},
        "spec: Invalid value: unknown query variable",
        id="unknown-variable-in-counts",
    ),
    pytest.param(
        {"query": "latency{workload='{{ args.other }}'}", "args": [{"name": "quantile"}]},
        "spec: Invalid value: unknown query variable",
        id="argument-not-the-declared-one",
    ),
    pytest.param(
        {"query": LATENCY, "args": [{"name": "1st"}]},
        'spec.args[0].name: Invalid value: "1st": spec.args[0].name in body should match',
        id="arg-name",
    ),
    pytest.param(
        {"query": LATENCY, "args": [{"name": "q", "default": "0.9}"}]},
        'spec.args[0].default: Invalid value: "0.9}": spec.args[0].default in body should match',
        id="arg-default-with-promql-syntax",
    ),
    pytest.param(
        {"query": LATENCY, "args": [{"name": "q"}, {"name": "q", "default": "1"}]},
        'spec.args[1]: Duplicate value: {"name":"q"}',
        id="arg-declared-twice",
    ),
    pytest.param(
        {"query": LATENCY, "threshold": {"min": 2, "max": 1}},
        "spec.threshold: Invalid value: threshold: min is above max",
        id="threshold-min-above-max",
    ),
    pytest.param(
        {"query": LATENCY, "direction": "up"},
        'spec.direction: Unsupported value: "up"',
        id="direction",
    ),
    pytest.param(
        {"query": LATENCY, "allowedEffect": -0.1},
        "spec.allowedEffect: Invalid value: -0.1: spec.allowedEffect in body should be greater than or equal",
        id="negative-allowed-effect",
    ),
]


@pytest.mark.parametrize("kind", ["MetricTemplate", "ClusterMetricTemplate"])
@pytest.mark.parametrize(("spec", "message"), BAD_TEMPLATES)
def test_a_bad_template_is_refused_naming_the_field(
    kube: kubernetes.client.ApiClient,
    namespace: str,
    cluster_templates: list[str],
    kind: str,
    spec: dict[str, Any],
    message: str,
) -> None:
    body = template(kind, **spec)
    refusal = refused(lambda: create_template(kube, namespace, body))
    assert message in refusal, refusal
    with pytest.raises(ValidationError):
        MetricTemplateSpec.model_validate(spec)


GOOD_TEMPLATES = [
    pytest.param(template("MetricTemplate", query=LATENCY), id="query"),
    pytest.param(
        template(
            "ClusterMetricTemplate",
            counts=COUNTS,
            threshold={"max": 0.01},
            compareToBaseline=False,
            direction="either",
            allowedEffect=0.5,
        ),
        id="counts-with-rules",
    ),
    pytest.param(
        template(
            "MetricTemplate",
            query="q{ns='{{namespace}}',w='{{ target }}',b='{{ baseline }}'}[{{ args.w }}] > {{args.min}}",
            args=[{"name": "w", "default": "1m"}, {"name": "min"}],
        ),
        id="every-spelling-of-variables",
    ),
    # Under a name of their own: the e2e tier's judge test applies the examples as they are to the cluster
    # this tier shares (cluster-scoped, they outlive its namespace).
    *(
        pytest.param(
            {**document, "metadata": {"name": f"{document['metadata']['name']}-{uuid.uuid4().hex[:6]}"}},
            id=f"examples/metric-templates.yaml:{document['metadata']['name']}",
        )
        for document in example("metric-templates.yaml")
    ),
]


@pytest.mark.parametrize("body", GOOD_TEMPLATES)
def test_a_good_template_is_accepted(
    kube: kubernetes.client.ApiClient, namespace: str, cluster_templates: list[str], body: dict[str, Any]
) -> None:
    created = create_template(kube, namespace, copy.deepcopy(body))
    if body["kind"] == "ClusterMetricTemplate":
        cluster_templates.append(created["metadata"]["name"])
        assert "namespace" not in created["metadata"]
    else:
        assert created["metadata"]["namespace"] == namespace
    assert created["spec"] == body["spec"]
    MetricTemplateSpec.model_validate(created["spec"])


# RBAC: examples/limited-user ------------------------------------------------------------------------------

LIMITED_NAMESPACE = "default"  # where examples/limited-user's user may work


def test_the_limited_user_manages_metric_templates_in_their_namespace(
    limited_user: kubernetes.client.ApiClient, kube: kubernetes.client.ApiClient
) -> None:
    as_user = kubernetes.client.CustomObjectsApi(limited_user)
    body = template("MetricTemplate", query=LATENCY, threshold={"max": 250})
    name = body["metadata"]["name"]
    create_template(limited_user, LIMITED_NAMESPACE, body)
    try:
        as_user.patch_namespaced_custom_object(
            GROUP, VERSION, LIMITED_NAMESPACE, TEMPLATES, name, {"spec": {"direction": "either"}}
        )
        listed = as_user.list_namespaced_custom_object(GROUP, VERSION, LIMITED_NAMESPACE, TEMPLATES)
        assert [
            item["spec"]["direction"] for item in listed["items"] if item["metadata"]["name"] == name
        ] == ["either"]
    finally:
        as_user.delete_namespaced_custom_object(GROUP, VERSION, LIMITED_NAMESPACE, TEMPLATES, name)
    with pytest.raises(ApiException) as gone:
        kubernetes.client.CustomObjectsApi(kube).get_namespaced_custom_object(
            GROUP, VERSION, LIMITED_NAMESPACE, TEMPLATES, name
        )
    assert gone.value.status == 404


def test_the_limited_user_reads_cluster_metric_templates_but_cannot_create_or_change_them(
    limited_user: kubernetes.client.ApiClient, kube: kubernetes.client.ApiClient, cluster_templates: list[str]
) -> None:
    shared = create_template(kube, LIMITED_NAMESPACE, template("ClusterMetricTemplate", query=LATENCY))
    name = shared["metadata"]["name"]
    cluster_templates.append(name)
    as_user = kubernetes.client.CustomObjectsApi(limited_user)
    listed = as_user.list_cluster_custom_object(GROUP, VERSION, CLUSTER_TEMPLATES)
    assert name in [item["metadata"]["name"] for item in listed["items"]]
    assert (
        as_user.get_cluster_custom_object(GROUP, VERSION, CLUSTER_TEMPLATES, name)["spec"]["query"] == LATENCY
    )
    attempts = {
        "create": lambda: create_template(
            limited_user, LIMITED_NAMESPACE, template("ClusterMetricTemplate", query=LATENCY)
        ),
        "patch": lambda: as_user.patch_cluster_custom_object(
            GROUP, VERSION, CLUSTER_TEMPLATES, name, {"spec": {"query": "vector(1)"}}
        ),
        "delete": lambda: as_user.delete_cluster_custom_object(GROUP, VERSION, CLUSTER_TEMPLATES, name),
        "create-in-another-namespace": lambda: create_template(
            limited_user, "kube-system", template("MetricTemplate", query=LATENCY)
        ),
    }
    for attempt, call in attempts.items():
        with pytest.raises(ApiException) as forbidden:
            call()
        assert forbidden.value.status == 403, (attempt, forbidden.value.body)
    assert (
        kubernetes.client.CustomObjectsApi(kube).get_cluster_custom_object(
            GROUP, VERSION, CLUSTER_TEMPLATES, name
        )["spec"]
        == shared["spec"]
    )


def readme_checks() -> list[tuple[str, str]]:
    """examples/limited-user/README.md's `kubectl auth can-i` lines with the answer their comments give."""
    checks = []
    for line in (ROOT / "examples" / "limited-user" / "README.md").read_text().splitlines():
        if line.startswith("kubectl auth can-i "):
            command, _, expected = line.partition("#")
            checks.append((command.strip(), expected.strip()))
    return checks


def test_the_readme_shows_the_template_checks() -> None:
    assert [expected for _, expected in readme_checks()] == ["yes", "yes", "no", "no"]


@pytest.mark.parametrize(("command", "expected"), readme_checks())
def test_the_readmes_template_checks_answer_what_their_comments_say(
    limited_user: kubernetes.client.ApiClient, cluster: LocalCluster, command: str, expected: str
) -> None:
    result = kubectl(cluster.kubeconfig, *shlex.split(command)[1:])
    assert (result.stdout.strip(), result.returncode) == (expected, 0 if expected == "yes" else 1), (
        result.stderr
    )
