"""Whole rollouts on the local cluster: the reconciler process, the Pulumi engine and Kubernetes provider,
and a real Prometheus scraping an exporter whose error and canary-request gauges each test sets (the traffic
check is on: a check is clean only with canary requests). Assertions read the world: Deployments, the
route's weights (Istio's VirtualService, or the Gateway API's HTTPRoute) and the CanaryApp status.

The whole story (create, advance, promote, roll back, retry) and the deletion run with both routers; under
the Gateway API the local traffic layer's controller accepts the HTTPRoute on the local Gateway, as an
implementation would, and a route no Gateway accepts never counts. The other tests are about the rollout,
not the router, and run with Istio."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.kube import read_route
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from reconciler.core.names import Router
from tests.integration.helpers import (
    LOCAL_PARENT_REFS,
    Apps,
    WeightRecorder,
    canary_app,
    error_query,
    traffic_query,
    wait_for,
)

pytestmark = pytest.mark.integration

ROLLOUT_TIMEOUT = 180
BOTH_ROUTERS = pytest.mark.parametrize("router", list(Router), ids=[router.value for router in Router])


def set_errors(exporter: ControlledExporter, namespace: str, name: str, value: float) -> None:
    exporter.set("canary_errors", {"namespace": namespace, "canaryapp": name}, value)


@pytest.fixture
def apps(kube: object, namespace: str, router: Router) -> Apps:
    return Apps(kube, namespace, router)  # type: ignore[arg-type]


def set_requests(exporter: ControlledExporter, namespace: str, name: str, value: float) -> None:
    exporter.set("canary_requests", {"namespace": namespace, "canaryapp": name}, value)


def create_ready(
    apps: Apps, exporter: ControlledExporter, prometheus_url: str, name: str, **spec: object
) -> None:
    set_errors(exporter, apps.namespace, name, 0)
    set_requests(exporter, apps.namespace, name, 50)
    spec = {"canaryTrafficQuery": traffic_query(), "minCanaryRequests": 1, **spec}
    apps.create_ready(name, prometheus_url, **spec)


def test_create_makes_primary_ready_with_all_traffic(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    create_ready(apps, exporter, prometheus.url, "web")
    primary = apps.deployment("web-primary")
    assert primary is not None
    assert primary.status.available_replicas == 2
    assert apps.deployment_image("web-primary") == "app:v1"
    apps.wait_deleted("web-canary")
    assert apps.weights("web") == (100, 0)
    status = apps.status("web")
    assert status["primaryImage"] == "app:v1"
    assert status["successfulRelease"] == "app:v1"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert apps.core.read_namespaced_service("web", apps.namespace).spec.ports[0].port == 8088


def assert_routed(apps: Apps, name: str) -> None:
    """The route carries all traffic to the primary; under the Gateway API each track has its Service and the
    HTTPRoute is accepted by its Gateway at its current generation."""
    assert apps.weights(name) == (100, 0)
    if apps.router == Router.GATEWAY_API:
        assert wait_for(lambda: apps.route_accepted(name), 10, f"HTTPRoute {name} accepted")
        services = {s.metadata.name for s in apps.core.list_namespaced_service(apps.namespace).items}
        assert {name, f"{name}-primary", f"{name}-canary"} <= services
        assert read_route(apps.custom, apps.namespace, name, Router.ISTIO) is None, "no VirtualService"


@BOTH_ROUTERS
def test_clean_rollout_steps_up_and_promotes_then_failing_one_rolls_back(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    create_ready(apps, exporter, prometheus.url, "web")
    assert_routed(apps, "web")
    with WeightRecorder(apps, "web") as recorder:
        apps.patch_spec("web", image="app:v2")
        wait_for(lambda: apps.phase_is("web", "Succeeded"), ROLLOUT_TIMEOUT, "v2 promoted")
    assert recorder.canary_weights == [0, 20, 40, 0]
    assert all(primary + canary == 100 for primary, canary in recorder.seen)
    assert apps.deployment_image("web-primary") == "app:v2"
    apps.wait_deleted("web-canary")
    assert apps.weights("web") == (100, 0)
    status = apps.status("web")
    assert status["primaryImage"] == "app:v2"
    assert status["successfulRelease"] == "app:v2"
    assert status.get("failedImages", []) == []
    assert {c["type"]: c["status"] for c in status["conditions"]}["Promoted"] == "True"
    # The evidence: every check with its rendered query and the canary's requests; the rollout's record.
    last_check = status["checks"][-1]
    assert (last_check["outcome"], last_check["weight"], last_check["canaryRequests"]) == ("Clean", 40, 50)
    assert last_check["query"] == error_query(apps.namespace, "web")
    rollout = status["rollouts"][-1]
    assert (rollout["image"], rollout["result"], rollout["weights"]) == ("app:v2", "Promoted", [20, 40])
    assert_routed(apps, "web")

    set_errors(exporter, apps.namespace, "web", 1)
    wait_for(lambda: _prometheus_sees_errors(prometheus, apps.namespace, "web"), 30, "errors scraped")
    with WeightRecorder(apps, "web") as recorder:
        apps.patch_spec("web", image="app:v3")
        failed = wait_for(lambda: apps.phase_is("web", "Failed"), ROLLOUT_TIMEOUT, "v3 rolled back")
    assert recorder.canary_weights == [0, 20, 0]
    assert failed["failedImages"] == ["app:v3"]
    assert failed["lastFailedTag"] == "app:v3"
    assert failed["primaryImage"] == "app:v2"
    failed_check = failed["checks"][-1]
    assert failed_check["outcome"] == "ErrorsFound"
    assert failed_check["series"][0]["labels"]["canaryapp"] == "web"
    assert failed_check["series"][0]["value"] == "1"
    assert failed["rollouts"][-1]["result"] == "RolledBack"
    assert apps.deployment_image("web-primary") == "app:v2"
    apps.wait_deleted("web-canary")
    assert_routed(apps, "web")

    # Applying v3 again (here: touching the spec while it still names v3) starts no canary.
    apps.patch_spec("web", image="app:v3", replicas=3)
    wait_for(lambda: (apps.deployment("web-primary").spec.replicas == 3) or None, 60, "replicas applied")
    apps.wait_deleted("web-canary")
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


def test_prometheus_down_mid_rollout_fails_it_by_default(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, tmp_path: Path
) -> None:
    own = PrometheusServer(tmp_path / "prometheus", {"controlled": [exporter.address]})
    own.start()
    try:
        create_ready(apps, exporter, own.url, "api", trafficShiftUpdateInterval=3)
        apps.patch_spec("api", image="app:v2")
        wait_for(lambda: (apps.status("api").get("canaryWeight") == 20) or None, ROLLOUT_TIMEOUT, "weight 20")
    finally:
        own.stop()
    status = wait_for(lambda: apps.phase_is("api", "Failed"), ROLLOUT_TIMEOUT, "Failed")
    assert status["lastCheckOutcome"] == "QueryFailed"
    apps.wait_deleted("api-canary")
    assert apps.weights("api") == (100, 0)
    assert apps.deployment_image("api-primary") == "app:v1"
    assert status["failedImages"] == ["app:v2"]
    assert status["rollouts"][-1]["reason"].startswith("ChecksFailed")


def test_prometheus_down_holds_the_weight_when_failures_are_ignored(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, tmp_path: Path
) -> None:
    """failWhenPrometheusFails: false keeps a rollout from failing, but no answer is no evidence either: the
    weight holds until Prometheus is back, then the rollout goes on."""
    own = PrometheusServer(tmp_path / "prometheus", {"controlled": [exporter.address]})
    own.start()
    create_ready(apps, exporter, own.url, "api", failWhenPrometheusFails=False, trafficShiftUpdateInterval=3)
    apps.patch_spec("api", image="app:v2")
    wait_for(lambda: (apps.status("api").get("canaryWeight") == 20) or None, ROLLOUT_TIMEOUT, "weight 20")
    own.stop()
    try:
        status = wait_for(
            lambda: (
                (s := apps.status("api"))
                and sum(c["outcome"] == "QueryFailed" for c in s.get("checks", [])) >= 3
                and s
            ),
            ROLLOUT_TIMEOUT,
            "three ignored failed checks",
        )
        assert status["canaryWeight"] == 20
        assert status["failedChecks"] == 0
        assert status["phase"] == "Progressing"
        assert apps.weights("api") == (80, 20)
    finally:
        own.start()
    status = wait_for(lambda: apps.phase_is("api", "Succeeded"), ROLLOUT_TIMEOUT, "Succeeded")
    assert apps.deployment_image("api-primary") == "app:v2"
    assert status.get("failedImages", []) == []
    own.stop()


def test_no_canary_traffic_holds_then_rolls_back_at_the_progress_deadline(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    create_ready(apps, exporter, prometheus.url, "quiet", progressDeadlineSeconds=12)
    set_requests(exporter, apps.namespace, "quiet", 0)
    apps.patch_spec("quiet", image="app:v2")
    held = wait_for(
        lambda: (s := apps.status("quiet")).get("lastCheckOutcome") == "NoCanaryTraffic" and s,
        ROLLOUT_TIMEOUT,
        "a check without canary traffic",
    )
    assert held["canaryWeight"] == 20
    assert held["failedChecks"] == 0
    assert "no canary traffic observed: 0 canary requests" in held["message"]
    status = wait_for(lambda: apps.phase_is("quiet", "Failed"), ROLLOUT_TIMEOUT, "Failed")
    assert status["rollouts"][-1]["result"] == "RolledBack"
    assert status["rollouts"][-1]["reason"].startswith("NoCanaryTraffic: no canary traffic for")
    assert status["rollouts"][-1]["weights"] == [20]
    assert status["failedImages"] == ["app:v2"]
    assert apps.weights("quiet") == (100, 0)
    assert apps.deployment_image("quiet-primary") == "app:v1"
    apps.wait_deleted("quiet-canary")


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
    apps.wait_deleted("cart-canary")
    assert apps.weights("cart") == (100, 0)


@BOTH_ROUTERS
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
    apps.wait_deleted("gone-primary")
    assert apps.route("gone") is None
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
    apps.wait_deleted("shop-canary")


@pytest.mark.parametrize("router", [Router.GATEWAY_API], ids=["gateway-api"])
def test_a_weight_no_gateway_accepts_never_counts_and_the_canary_is_rolled_back(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    """The parent named is no Gateway of the cluster: the local traffic layer's controller answers
    Accepted=False (NoMatchingParent) for it, the weight never counts (no check is judged at it), and the
    canary is rolled back at the progress deadline with the parent's own reason as evidence."""
    missing = [{**LOCAL_PARENT_REFS[0], "name": "missing"}]
    create_ready(apps, exporter, prometheus.url, "lost", parentRefs=missing, progressDeadlineSeconds=12)
    apps.patch_spec("lost", image="app:v2")
    held = wait_for(
        lambda: (
            (s := apps.status("lost")).get("routePendingSince") and "NoMatchingParent" in s["message"] and s
        ),
        ROLLOUT_TIMEOUT,
        "the weight held for a route no Gateway accepts",
    )
    assert held["canaryWeight"] == 20
    status = wait_for(lambda: apps.phase_is("lost", "Failed"), ROLLOUT_TIMEOUT, "rolled back")
    rollout = status["rollouts"][-1]
    assert (rollout["result"], rollout["weights"]) == ("RolledBack", [20])
    assert rollout["reason"].startswith("RouteNotAccepted")
    assert "NoMatchingParent" in rollout["reason"]
    assert [check for check in status.get("checks", []) if check["weight"] == 20] == []
    assert apps.weights("lost") == (100, 0)
    assert apps.deployment_image("lost-primary") == "app:v1"
    apps.wait_deleted("lost-canary")


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
