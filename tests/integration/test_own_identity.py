"""The reconciler under its own identity: the ServiceAccount and RBAC of config/rbac are enough for a whole
rollout and a deletion (tests/envtest/test_own_identity.py: verbs it does not need are forbidden to it)."""

from __future__ import annotations

from pathlib import Path

import kubernetes
import pytest

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from tests.integration.helpers import SYSTEM_NAMESPACE, Apps, service_account_kubeconfig, wait_for

pytestmark = pytest.mark.integration


def test_rollout_and_deletion_with_the_reconcilers_own_rbac(
    kube: kubernetes.client.ApiClient,
    namespace: str,
    cluster: LocalCluster,
    exporter: ControlledExporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    kubeconfig = service_account_kubeconfig(kube, cluster, tmp_path / "sa.kubeconfig")
    reconciler = ReconcilerProcess(
        kubeconfig, namespace, tmp_path / "state", "--leader-elect", f"--lease-namespace={SYSTEM_NAMESPACE}"
    )
    reconciler.start()
    apps = Apps(kube, namespace)
    try:
        apps.create_ready("web", prometheus.url)
        apps.patch_spec("web", image="app:v2")
        status = wait_for(lambda: apps.phase_is("web", "Succeeded"), 180, "v2 promoted")
        assert status["primaryImage"] == "app:v2"
        assert apps.deployment_image("web-primary") == "app:v2"
        core = kubernetes.client.CoreV1Api(kube)
        wait_for(
            lambda: (
                {"CanaryStarted", "Promoted"}
                <= {e.reason for e in core.list_namespaced_event(namespace).items}
            ),
            30,
            "the CanaryStarted and Promoted Events",
        )
        apps.delete("web")
        wait_for(lambda: not apps.exists("web"), 120, "deleted through the finalizer")
        apps.wait_deleted("web-primary")
        # Every pass succeeded: no read, write or step was refused to the ServiceAccount.
        assert reconciler.metrics().get("canaryapp_reconcile_errors_total") == 0.0
    finally:
        reconciler.stop()
