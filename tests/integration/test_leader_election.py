"""Two reconciler replicas with leader election: only the leader acts; when it dies, the standby takes over
the Lease and finishes the work."""

from __future__ import annotations

from pathlib import Path

import kubernetes
import pytest

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from tests.integration.helpers import Apps, wait_for

pytestmark = pytest.mark.integration


def lease_holder(kube: kubernetes.client.ApiClient, namespace: str) -> str | None:
    try:
        lease = kubernetes.client.CoordinationV1Api(kube).read_namespaced_lease(
            "canaryapp-reconciler", namespace
        )
    except kubernetes.client.exceptions.ApiException:
        return None
    return lease.spec.holder_identity or None


def test_standby_takes_over_when_the_leader_dies(
    kube: kubernetes.client.ApiClient,
    namespace: str,
    cluster: LocalCluster,
    exporter: ControlledExporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    state = tmp_path / "shared-state"

    def replica(identity: str) -> ReconcilerProcess:
        return ReconcilerProcess(
            cluster.kubeconfig,
            namespace,
            state,
            "--leader-elect",
            f"--lease-namespace={namespace}",
            f"--identity={identity}",
            log_name=f"{identity}.log",
        )

    first, second = replica("replica-a"), replica("replica-b")
    first.start()
    try:
        wait_for(lambda: lease_holder(kube, namespace) == "replica-a" or None, 60, "replica-a leads")
        second.start()
        apps = Apps(kube, namespace)
        apps.create_ready("web", prometheus.url)
        assert lease_holder(kube, namespace) == "replica-a"
        # Only the leader decides: its metrics show the CanaryApp's phase, the standby's show nothing of it.
        phase = f'canaryapp_phase{{name="web",namespace="{namespace}",phase="Ready"}}'
        assert first.metrics().get(phase) == 1.0
        assert phase not in second.metrics()

        first.kill()
        wait_for(lambda: lease_holder(kube, namespace) == "replica-b" or None, 90, "replica-b takes over")
        apps.patch_spec("web", image="app:v2")
        status = wait_for(lambda: apps.phase_is("web", "Succeeded"), 180, "v2 promoted by replica-b")
        assert status["primaryImage"] == "app:v2"
        assert second.metrics().get("canaryapp_rollouts_started_total") == 1.0
    finally:
        first.stop()
        second.stop()
