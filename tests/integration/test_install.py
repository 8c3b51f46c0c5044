"""`kubectl kustomize config/default | kubectl apply -f -` (and `config/shards`), as the READMEs say, on a
real API server: every object is accepted, and the reconciler's pods pass admission under Pod Security
"restricted"."""

from __future__ import annotations

import subprocess
from typing import Any

import kubernetes
import pytest

from devenv.cluster import LocalCluster
from devenv.processes import REPO_ROOT, tool
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


def apply_config(cluster: LocalCluster, folder: str) -> str:
    """`kubectl kustomize config/<folder> | kubectl apply -f -`; kubectl's report of what it applied."""
    rendered = subprocess.run(
        [tool("kubectl"), "kustomize", str(REPO_ROOT / "config" / folder)],
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
    return applied.stdout


def test_config_default_installs(cluster: LocalCluster, kube: kubernetes.client.ApiClient) -> None:
    applied = apply_config(cluster, "default")
    for kind_and_name in (
        "customresourcedefinition.apiextensions.k8s.io/canaryapps.canary.atze.io",
        "clusterrole.rbac.authorization.k8s.io/canaryapp-reconciler",
        "deployment.apps/canaryapp-reconciler",
        "service/canaryapp-reconciler-metrics",
    ):
        assert kind_and_name in applied
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


def two_pods(core: kubernetes.client.CoreV1Api, shard: str) -> list[Any] | None:
    selector = f"canary.atze.io/shard={shard}"
    pods: list[Any] = core.list_namespaced_pod("canaryapp-system", label_selector=selector).items
    return pods if len(pods) == 2 else None


def test_config_shards_installs_a_leader_and_a_standby_per_shard(
    cluster: LocalCluster, kube: kubernetes.client.ApiClient
) -> None:
    applied = apply_config(cluster, "shards")
    core = kubernetes.client.CoreV1Api(kube)
    for shard in "abc":
        assert f"deployment.apps/canaryapp-reconciler-{shard}" in applied
        pods = wait_for(lambda shard=shard: two_pods(core, shard), 60, f"shard {shard}'s two pods admitted")
        for pod in pods:
            assert pod.metadata.labels["canary.atze.io/shard"] == shard
            env = {item.name: item for item in pod.spec.containers[0].env}
            assert env["SHARD"].value_from.field_ref.field_path == "metadata.labels['canary.atze.io/shard']"
            assert env["CANARYAPP_SHARD_SELECTOR"].value == "canary.atze.io/shard=$(SHARD)"
            assert pod.spec.containers[0].security_context.read_only_root_filesystem is True
