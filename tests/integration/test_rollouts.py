"""Whole rollouts on the local cluster: the reconciler process, the Pulumi engine and Kubernetes provider,
and a real Prometheus scraping an exporter whose error gauge each test sets. Assertions read the world:
Deployments, the VirtualService's weights and the CanaryApp status."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from tests.integration.helpers import Apps, WeightRecorder, canary_app, error_query, wait_for

pytestmark = pytest.mark.integration

ROLLOUT_TIMEOUT = 180


def set_errors(exporter: ControlledExporter, namespace: str, name: str, value: float) -> None:
    exporter.set("canary_errors", {"namespace": namespace, "canaryapp": name}, value)


@pytest.fixture
def apps(kube: object, namespace: str) -> Apps:
    return Apps(kube, namespace)  # type: ignore[arg-type]


def create_ready(
    apps: Apps, exporter: ControlledExporter, prometheus_url: str, name: str, **spec: object
) -> None:
    set_errors(exporter, apps.namespace, name, 0)
    apps.create_ready(name, prometheus_url, **spec)


def test_create_makes_primary_ready_with_all_traffic(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    create_ready(apps, exporter, prometheus.url, "web")
    primary = apps.deployment("web-primary")
    assert primary is not None
    assert primary.status.available_replicas == 2
    assert apps.deployment_image("web-primary") == "app:v1"
    assert apps.deployment("web-canary") is None
    assert apps.weights("web") == (100, 0)
    status = apps.status("web")
    assert status["primaryImage"] == "app:v1"
    assert status["successfulRelease"] == "app:v1"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert apps.core.read_namespaced_service("web", apps.namespace).spec.ports[0].port == 8088


def test_clean_rollout_steps_up_and_promotes_then_failing_one_rolls_back(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    create_ready(apps, exporter, prometheus.url, "web")
    with WeightRecorder(apps, "web") as recorder:
        apps.patch_spec("web", image="app:v2")
        wait_for(lambda: apps.phase_is("web", "Succeeded"), ROLLOUT_TIMEOUT, "v2 promoted")
    assert recorder.canary_weights == [0, 20, 40, 0]
    assert all(primary + canary == 100 for primary, canary in recorder.seen)
    assert apps.deployment_image("web-primary") == "app:v2"
    assert apps.deployment("web-canary") is None
    assert apps.weights("web") == (100, 0)
    status = apps.status("web")
    assert status["primaryImage"] == "app:v2"
    assert status["successfulRelease"] == "app:v2"
    assert status.get("failedImages", []) == []
    assert {c["type"]: c["status"] for c in status["conditions"]}["Promoted"] == "True"

    set_errors(exporter, apps.namespace, "web", 1)
    wait_for(lambda: _prometheus_sees_errors(prometheus, apps.namespace, "web"), 30, "errors scraped")
    with WeightRecorder(apps, "web") as recorder:
        apps.patch_spec("web", image="app:v3")
        failed = wait_for(lambda: apps.phase_is("web", "Failed"), ROLLOUT_TIMEOUT, "v3 rolled back")
    assert recorder.canary_weights == [0, 20, 0]
    assert failed["failedImages"] == ["app:v3"]
    assert failed["lastFailedTag"] == "app:v3"
    assert failed["primaryImage"] == "app:v2"
    assert apps.deployment_image("web-primary") == "app:v2"
    assert apps.deployment("web-canary") is None
    assert apps.weights("web") == (100, 0)

    # Applying v3 again (here: touching the spec while it still names v3) starts no canary.
    apps.patch_spec("web", image="app:v3", replicas=3)
    wait_for(lambda: (apps.deployment("web-primary").spec.replicas == 3) or None, 60, "replicas applied")
    assert apps.deployment("web-canary") is None
    assert apps.status("web")["phase"] == "Failed"
    assert "not retried" in apps.status("web")["message"]

    # Retrying on purpose: a new value of the retry annotation clears v3 from failedImages once.
    set_errors(exporter, apps.namespace, "web", 0)
    wait_for(lambda: not _prometheus_sees_errors(prometheus, apps.namespace, "web"), 30, "errors gone")
    apps.annotate("web", {"canary.atze.io/retry": "1"})
    retried = wait_for(lambda: apps.phase_is("web", "Succeeded"), ROLLOUT_TIMEOUT, "v3 retried and promoted")
    assert retried["primaryImage"] == "app:v3"
    assert retried.get("failedImages", []) == []
    assert apps.deployment_image("web-primary") == "app:v3"


def _prometheus_sees_errors(prometheus: PrometheusServer, namespace: str, name: str) -> bool:
    return bool(prometheus.query(error_query(namespace, name)))


@pytest.mark.parametrize(
    ("fail_when_prometheus_fails", "final_phase"), [(True, "Failed"), (False, "Succeeded")]
)
def test_prometheus_down_mid_rollout(
    apps: Apps,
    reconciler: ReconcilerProcess,
    exporter: ControlledExporter,
    tmp_path: Path,
    fail_when_prometheus_fails: bool,
    final_phase: str,
) -> None:
    own = PrometheusServer(tmp_path / "prometheus", {"controlled": [exporter.address]})
    own.start()
    try:
        create_ready(
            apps,
            exporter,
            own.url,
            "api",
            failWhenPrometheusFails=fail_when_prometheus_fails,
            trafficShiftUpdateInterval=3,
        )
        apps.patch_spec("api", image="app:v2")
        wait_for(lambda: (apps.status("api").get("canaryWeight") == 20) or None, ROLLOUT_TIMEOUT, "weight 20")
    finally:
        own.stop()
    status = wait_for(lambda: apps.phase_is("api", final_phase), ROLLOUT_TIMEOUT, final_phase)
    assert status["lastCheckOutcome"] == "QueryFailed"
    assert apps.deployment("api-canary") is None
    assert apps.weights("api") == (100, 0)
    expected_primary = "app:v2" if final_phase == "Succeeded" else "app:v1"
    assert apps.deployment_image("api-primary") == expected_primary
    assert status.get("failedImages", []) == ([] if final_phase == "Succeeded" else ["app:v2"])


def test_newer_image_mid_canary_wins(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    create_ready(apps, exporter, prometheus.url, "cart", trafficShiftUpdateInterval=4)
    apps.patch_spec("cart", image="app:v2")
    wait_for(lambda: apps.deployment_image("cart-canary") == "app:v2" or None, ROLLOUT_TIMEOUT, "v2 canary")
    apps.patch_spec("cart", image="app:v3")
    status = wait_for(lambda: apps.phase_is("cart", "Succeeded"), ROLLOUT_TIMEOUT, "v3 promoted")
    assert status["primaryImage"] == "app:v3"
    assert status.get("failedImages", []) == []
    assert apps.deployment_image("cart-primary") == "app:v3"
    assert apps.deployment("cart-canary") is None
    assert apps.weights("cart") == (100, 0)


def test_delete_removes_everything_and_the_stack(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    create_ready(apps, exporter, prometheus.url, "gone")
    stack_file = (
        reconciler.state_dir / "state" / ".pulumi" / "stacks" / "canaryapp" / f"{apps.namespace}.gone.json"
    )
    assert stack_file.exists()
    apps.delete("gone")
    wait_for(lambda: not apps.exists("gone"), 120, "CanaryApp released by its finalizer")
    assert apps.deployment("gone-primary") is None
    assert apps.weights("gone") is None
    services = apps.core.list_namespaced_service(apps.namespace).items
    assert [s.metadata.name for s in services if s.metadata.name.startswith("gone")] == []
    assert not stack_file.exists()


def test_restart_mid_rollout_completes(
    apps: Apps,
    reconciler: ReconcilerProcess,
    exporter: ControlledExporter,
    prometheus: PrometheusServer,
    cluster: LocalCluster,
) -> None:
    create_ready(apps, exporter, prometheus.url, "shop", trafficShiftUpdateInterval=3)
    with WeightRecorder(apps, "shop") as recorder:
        apps.patch_spec("shop", image="app:v2")
        wait_for(
            lambda: (apps.status("shop").get("canaryWeight") == 20) or None, ROLLOUT_TIMEOUT, "weight 20"
        )
        reconciler.kill()
        successor = ReconcilerProcess(cluster.kubeconfig, apps.namespace, reconciler.state_dir)
        successor.start()
        try:
            status = wait_for(lambda: apps.phase_is("shop", "Succeeded"), ROLLOUT_TIMEOUT, "v2 promoted")
        finally:
            successor.stop()
    assert status["primaryImage"] == "app:v2"
    assert recorder.canary_weights == [0, 20, 40, 0]
    assert apps.deployment_image("shop-primary") == "app:v2"
    assert apps.deployment("shop-canary") is None


def test_bad_spec_is_rejected_with_the_field_named(apps: Apps) -> None:
    body = canary_app("bad", "app:v1", "q", "http://p:9090", stepWeight=60, maxWeight=50)
    with pytest.raises(ApiException) as caught:
        apps.create(body)
    assert caught.value.status == 422
    assert "stepWeight" in str(caught.value.body)
    body = canary_app(f"bad-{uuid.uuid4().hex[:4]}", "app:v1", "q", "prometheus:9090")
    with pytest.raises(ApiException) as caught:
        apps.create(body)
    assert "prometheusURL" in str(caught.value.body)
