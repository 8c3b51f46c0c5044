"""Losing the Pulumi state loses no decision: the CanaryApp status is the source of truth, and the next step
adopts the objects that already exist (the provider applies server-side), so rollouts and deletion go on."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import pytest

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from tests.integration.helpers import Apps, wait_for

pytestmark = pytest.mark.integration


def test_reconciler_recovers_after_its_pulumi_state_is_lost(
    kube: object,
    namespace: str,
    cluster: LocalCluster,
    exporter: ControlledExporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    apps = Apps(kube, namespace)  # type: ignore[arg-type]
    state = tmp_path / "state"
    first = ReconcilerProcess(cluster.kubeconfig, namespace, state)
    first.start()
    try:
        apps.create_ready("web", prometheus.url)
    finally:
        first.stop()
    shutil.rmtree(state)

    second = ReconcilerProcess(cluster.kubeconfig, namespace, state)
    second.start()
    try:
        apps.patch_spec("web", image="app:v2")
        status = wait_for(lambda: apps.phase_is("web", "Succeeded"), 180, "v2 promoted on a fresh state")
        assert status["primaryImage"] == "app:v2"
        assert apps.deployment_image("web-primary") == "app:v2"
        assert apps.weights("web") == (100, 0)
        with urllib.request.urlopen(f"http://127.0.0.1:{second.metrics_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'canaryapp_rollouts_finished_total{result="promoted"} 1.0' in metrics
        for probe in ("healthz", "readyz"):
            with urllib.request.urlopen(
                f"http://127.0.0.1:{second.metrics_port}/{probe}", timeout=5
            ) as response:
                assert response.status == 200

        apps.delete("web")
        wait_for(lambda: not apps.exists("web"), 120, "deleted through the finalizer")
        apps.wait_deleted("web-primary")
        assert apps.weights("web") is None
    finally:
        second.stop()
