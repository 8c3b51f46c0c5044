"""`kubectl kustomize config/default | kubectl apply -f -`, as the README says, on a real API server: every
object is accepted, and the reconciler's pod passes admission under Pod Security "restricted"."""

from __future__ import annotations

import subprocess

import kubernetes
import pytest

from devenv.cluster import LocalCluster
from devenv.processes import REPO_ROOT, tool
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


def test_config_default_installs(cluster: LocalCluster, kube: kubernetes.client.ApiClient) -> None:
    rendered = subprocess.run(
        [tool("kubectl"), "kustomize", str(REPO_ROOT / "config" / "default")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    applied = subprocess.run(
        [tool("kubectl"), "--kubeconfig", str(cluster.kubeconfig), "apply", "-f", "-"],
        input=rendered,
        capture_output=True,
        text=True,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    for kind_and_name in (
        "customresourcedefinition.apiextensions.k8s.io/canaryapps.canary.atze.io",
        "clusterrole.rbac.authorization.k8s.io/canaryapp-reconciler",
        "deployment.apps/canaryapp-reconciler",
        "service/canaryapp-reconciler-metrics",
    ):
        assert kind_and_name in applied.stdout
    core = kubernetes.client.CoreV1Api(kube)
    namespace = core.read_namespace("canaryapp-system")
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = wait_for(
        lambda: (
            core.list_namespaced_pod(
                "canaryapp-system", label_selector="app.kubernetes.io/name=canaryapp"
            ).items
        ),
        60,
        "the reconciler pod to be admitted",
    )
    container = pods[0].spec.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.run_as_non_root is True
    env = {item.name: item for item in container.env}
    assert env["PULUMI_CONFIG_PASSPHRASE"].value_from.secret_key_ref.name == "canaryapp-pulumi"
