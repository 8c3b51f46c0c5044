"""The metric template read of the Kubernetes adapter: a MetricTemplate by namespace and name, a
ClusterMetricTemplate by name, None when it does not exist, a spec that does not parse a TemplateError naming
the object and the field, any other failure transient."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from reconciler.adapters.kube import KubeCluster
from reconciler.core.errors import TransientError
from reconciler.core.metrics import MetricTemplateSpec, TemplateError, TemplateRef

SPEC = {"query": 'rate(latency{workload="{{ target }}"}[1m])', "direction": "increase"}


class FakeCustomObjects:
    def __init__(self, answer: dict[str, Any] | ApiException) -> None:
        self.answer = answer
        self.calls: list[tuple[str, ...]] = []

    def _answer(self, args: tuple[str, ...]) -> dict[str, Any]:
        self.calls.append(args)
        if isinstance(self.answer, ApiException):
            raise self.answer
        return self.answer

    def get_namespaced_custom_object(self, *args: str) -> dict[str, Any]:
        return self._answer(args)

    def get_cluster_custom_object(self, *args: str) -> dict[str, Any]:
        return self._answer(args)


def cluster_answering(answer: dict[str, Any] | ApiException) -> tuple[KubeCluster, FakeCustomObjects]:
    cluster = KubeCluster(kubernetes.client.ApiClient())
    fake = FakeCustomObjects(answer)
    cluster.custom = fake  # type: ignore[assignment]
    return cluster, fake


def test_a_metric_template_is_read_by_namespace_and_name() -> None:
    cluster, fake = cluster_answering({"metadata": {"name": "p99"}, "spec": SPEC})
    assert cluster.metric_template("shop", TemplateRef(name="p99")) == MetricTemplateSpec.model_validate(SPEC)
    assert fake.calls == [("canary.atze.io", "v1", "shop", "metrictemplates", "p99")]


def test_a_cluster_metric_template_is_read_by_name() -> None:
    cluster, fake = cluster_answering({"metadata": {"name": "p99"}, "spec": SPEC})
    ref = TemplateRef(name="p99", kind="ClusterMetricTemplate")
    assert cluster.metric_template("shop", ref) == MetricTemplateSpec.model_validate(SPEC)
    assert fake.calls == [("canary.atze.io", "v1", "clustermetrictemplates", "p99")]


def test_a_missing_template_is_none() -> None:
    cluster, _ = cluster_answering(ApiException(status=404, reason="Not Found"))
    assert cluster.metric_template("shop", TemplateRef(name="p99")) is None


def test_a_spec_that_does_not_parse_names_the_object_the_field_and_the_fix() -> None:
    cluster, _ = cluster_answering({"spec": {"query": "up", "counts": {"failures": "a", "trials": "b"}}})
    with pytest.raises(TemplateError) as invalid:
        cluster.metric_template("shop", TemplateRef(name="p99"))
    message = str(invalid.value)
    assert message.startswith("MetricTemplate shop/p99 is invalid: spec: ")
    assert "give exactly one of query" in message
    assert message.endswith(": fix its spec")
    cluster, _ = cluster_answering({"spec": {"query": "up", "directon": "increase"}})
    with pytest.raises(TemplateError, match=r"ClusterMetricTemplate p99 is invalid: spec\.directon: "):
        cluster.metric_template("shop", TemplateRef(name="p99", kind="ClusterMetricTemplate"))


def test_any_other_failure_is_transient_and_names_the_template() -> None:
    cluster, _ = cluster_answering(ApiException(status=403, reason="Forbidden"))
    with pytest.raises(TransientError, match="reading ClusterMetricTemplate p99"):
        cluster.metric_template("shop", TemplateRef(name="p99", kind="ClusterMetricTemplate"))
