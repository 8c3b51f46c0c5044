"""The reconciler reads the metric templates its CanaryApps name on a real kube-apiserver, with the rights of
its ClusterRole alone (config/rbac/cluster_role.yaml, bound to an impersonated user): the examples'
MetricTemplate and ClusterMetricTemplate parse into the spec the check resolves, a missing one is None."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from devenv.cluster import LocalCluster
from devenv.kube import api_client
from reconciler.adapters.kube import KubeCluster
from reconciler.core.metrics import MetricTemplateSpec, TemplateRef
from reconciler.core.model import GROUP, VERSION

pytestmark = pytest.mark.envtest

ROOT = Path(__file__).resolve().parents[2]


def examples() -> list[dict[str, Any]]:
    text = (ROOT / "examples" / "metric-templates.yaml").read_text()
    return [document for document in yaml.safe_load_all(text) if document]


@pytest.fixture
def as_the_reconciler(
    cluster: LocalCluster, kube: kubernetes.client.ApiClient
) -> Iterator[kubernetes.client.ApiClient]:
    """An API client acting as a user bound to the reconciler's ClusterRole (a copy under its own name)."""
    role = yaml.safe_load((ROOT / "config" / "rbac" / "cluster_role.yaml").read_text())
    name = f"reconciler-{uuid.uuid4().hex[:6]}"
    role["metadata"] = {"name": name}
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube)
    rbac.create_cluster_role(role)
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}],
        }
    )
    client = api_client(cluster.kubeconfig)
    client.set_default_header("Impersonate-User", name)
    yield client
    client.close()
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


def test_the_reconciler_reads_both_kinds_of_template_with_its_own_rights(
    kube: kubernetes.client.ApiClient, namespace: str, as_the_reconciler: kubernetes.client.ApiClient
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube)
    cluster_name = f"latency-{uuid.uuid4().hex[:6]}"
    expected: dict[TemplateRef, MetricTemplateSpec] = {}
    for document in examples():
        if document["kind"] == "ClusterMetricTemplate":
            document["metadata"]["name"] = cluster_name
            custom.create_cluster_custom_object(GROUP, VERSION, "clustermetrictemplates", document)
        else:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "metrictemplates", document)
        ref = TemplateRef(name=document["metadata"]["name"], kind=document["kind"])
        expected[ref] = MetricTemplateSpec.model_validate(document["spec"])
    try:
        reader = KubeCluster(as_the_reconciler)
        assert {ref: reader.metric_template(namespace, ref) for ref in expected} == expected
        assert reader.metric_template(namespace, TemplateRef(name="absent")) is None
        absent = TemplateRef(name="absent", kind="ClusterMetricTemplate")
        assert reader.metric_template(namespace, absent) is None
        # A MetricTemplate is its namespace's own: another namespace does not see it. Not "default", where
        # another test of the tier (they share a cluster) may have created the examples.
        namespaced = next(ref for ref in expected if ref.kind == "MetricTemplate")
        assert reader.metric_template(f"other-{uuid.uuid4().hex[:6]}", namespaced) is None
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "clustermetrictemplates", cluster_name)
