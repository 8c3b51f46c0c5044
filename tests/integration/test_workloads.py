"""Production workloads on the local cluster: a full pod template reaches both Deployments, a change to the
template alone (an env var) is a canary that is promoted or rolled back and not retried, and autoscalers
exist per Deployment, keep the primary's capacity during a rollout and survive the promotion. Real API server
and controllers (the HPA controller included), reconciler process, Pulumi engine and provider, Prometheus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from tests.integration.helpers import Apps, error_query, traffic_query, wait_for

pytestmark = pytest.mark.integration

ROLLOUT_TIMEOUT = 180
# The template's own label and annotation keys, which the operator permits (by default a template has none).
TEMPLATE_METADATA_FLAGS = ("--allowed-pod-labels=team", "--allowed-pod-annotations=owner")


@pytest.fixture
def reconciler(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[ReconcilerProcess]:
    process = ReconcilerProcess(
        cluster.kubeconfig, namespace, tmp_path / "reconciler", *TEMPLATE_METADATA_FLAGS
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def apps(kube: kubernetes.client.ApiClient, namespace: str) -> Apps:
    return Apps(kube, namespace)


PROBE = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 3}


def pod_template(foo: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"team": "shop"}, "annotations": {"owner": "shop@example.com"}},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "env": [{"name": "FOO", "value": foo}, {"name": "MODE", "value": "prod"}],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"memory": "128Mi"},
                    },
                    "readinessProbe": PROBE,
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/web"}],
                }
            ],
            "volumes": [{"name": "config", "configMap": {"name": "web-config"}}],
        },
    }


def env(deployment: Any) -> dict[str, str]:
    return {item.name: item.value for item in deployment.spec.template.spec.containers[0].env or []}


def set_gauges(exporter: ControlledExporter, namespace: str, name: str, errors: float) -> None:
    exporter.set("canary_errors", {"namespace": namespace, "canaryapp": name}, errors)
    exporter.set("canary_requests", {"namespace": namespace, "canaryapp": name}, 50)


def create(apps: Apps, prometheus: PrometheusServer, name: str, **spec: Any) -> None:
    """A CanaryApp on app:v1 with the traffic check on, Ready."""
    apps.create_ready(
        name, prometheus.url, **{"canaryTrafficQuery": traffic_query(), "minCanaryRequests": 1, **spec}
    )


def test_a_full_template_rolls_out_and_an_env_change_alone_is_a_canary(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    apps.core.create_namespaced_config_map(
        apps.namespace, {"metadata": {"name": "web-config"}, "data": {"web.conf": "x"}}
    )
    set_gauges(exporter, apps.namespace, "web", 0)
    create(apps, prometheus, "web", template=pod_template("1"))

    primary = apps.deployment("web-primary")
    container = primary.spec.template.spec.containers[0]
    assert (container.name, container.image) == ("web", "app:v1")
    assert env(primary) == {"FOO": "1", "MODE": "prod"}
    assert container.resources.requests == {"cpu": "100m", "memory": "64Mi"}
    assert container.readiness_probe.http_get.port == "http"
    assert [(p.name, p.container_port) for p in container.ports] == [("http", 8088)]
    assert container.volume_mounts[0].mount_path == "/etc/web"
    assert primary.spec.template.spec.volumes[0].config_map.name == "web-config"
    assert primary.spec.template.metadata.labels["team"] == "shop"
    assert primary.spec.template.metadata.annotations["owner"] == "shop@example.com"
    first = apps.status("web")
    assert first["primaryRevision"] == primary.metadata.annotations["canary.atze.io/revision"]

    # Only an env var changes: a canary runs it, then the primary.
    apps.patch_spec("web", template=pod_template("2"))
    canary = wait_for(lambda: apps.deployment("web-canary"), 60, "the canary Deployment")
    assert env(canary) == {"FOO": "2", "MODE": "prod"}
    assert env(apps.deployment("web-primary")) == {"FOO": "1", "MODE": "prod"}
    promoted = wait_for(lambda: apps.phase_is("web", "Succeeded"), ROLLOUT_TIMEOUT, "FOO=2 promoted")
    assert env(apps.deployment("web-primary")) == {"FOO": "2", "MODE": "prod"}
    rollout = promoted["rollouts"][-1]
    assert (rollout["result"], rollout["changes"], rollout["image"]) == (
        "Promoted",
        ["env FOO changed"],
        "app:v1",
    )
    assert promoted["primaryRevision"] == rollout["revision"] != first["primaryRevision"]
    apps.wait_deleted("web-canary")

    # A failing env change is rolled back, remembered by revision, and not retried.
    set_gauges(exporter, apps.namespace, "web", 1)
    wait_for(lambda: prometheus.query(error_query(apps.namespace, "web")), 30, "errors scraped")
    apps.patch_spec("web", template=pod_template("3"))
    failed = wait_for(lambda: apps.phase_is("web", "Failed"), ROLLOUT_TIMEOUT, "FOO=3 rolled back")
    assert failed["rollouts"][-1]["changes"] == ["env FOO changed"]
    assert failed["failedRevisions"] == [failed["rollouts"][-1]["revision"]]
    assert failed.get("failedImages", []) == []  # app:v1 still serves: the image is not what failed
    assert env(apps.deployment("web-primary")) == {"FOO": "2", "MODE": "prod"}
    apps.wait_deleted("web-canary")
    rollouts = len(failed["rollouts"])
    apps.patch_spec("web", replicas=3)  # a new generation with the failed template: no new canary
    wait_for(lambda: apps.deployment("web-primary").spec.replicas == 3, 60, "replicas applied")
    assert apps.deployment("web-canary") is None
    assert len(apps.status("web")["rollouts"]) == rollouts
    assert "not retried" in apps.status("web")["message"]
    events = apps.core.list_namespaced_event(apps.namespace, field_selector="involvedObject.name=web").items
    assert any(
        "env FOO changed" in (event.message or "") for event in events if event.reason == "CanaryStarted"
    )


def autoscaler(apps: Apps, name: str) -> Any | None:
    try:
        return kubernetes.client.AutoscalingV2Api(
            apps.apps.api_client
        ).read_namespaced_horizontal_pod_autoscaler(name, apps.namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def test_autoscalers_own_the_replicas_keep_the_primary_during_a_rollout_and_survive_the_promotion(
    apps: Apps, reconciler: ReconcilerProcess, exporter: ControlledExporter, prometheus: PrometheusServer
) -> None:
    set_gauges(exporter, apps.namespace, "api", 0)
    create(
        apps,
        prometheus,
        "api",
        autoscaler={"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70},
        # A check every 5 s: the rollout runs long enough to look at the primary's HPA while it is under way.
        trafficShiftUpdateInterval=5,
    )
    hpa = autoscaler(apps, "api-primary")
    assert hpa is not None
    assert hpa.spec.scale_target_ref.name == "api-primary"
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 6)
    assert hpa.spec.metrics[0].resource.target.average_utilization == 70
    # The HPA controller owns the replicas: it raises the Deployment to minReplicas.
    wait_for(lambda: apps.deployment("api-primary").spec.replicas == 2, 90, "the HPA scaled the primary to 2")

    # As if the HPA had scaled up under load: the rollout must not let the primary shrink below that.
    apps.apps.patch_namespaced_deployment_scale("api-primary", apps.namespace, {"spec": {"replicas": 4}})
    wait_for(lambda: apps.deployment("api-primary").status.ready_replicas == 4, 60, "4 primary pods ready")
    apps.patch_spec("api", image="app:v2")
    canary = wait_for(lambda: autoscaler(apps, "api-canary"), 60, "the canary's HPA")
    assert canary.spec.scale_target_ref.name == "api-canary"
    # One step declares both: the canary's HPA and the primary's raised floor (applied in parallel by Pulumi).
    started = wait_for(lambda: apps.status("api").get("primaryMinReplicas"), 30, "the floor recorded")
    assert started == 4
    during = wait_for(
        lambda: (hpa := autoscaler(apps, "api-primary")) is not None and hpa.spec.min_replicas == 4 and hpa,
        30,
        "the primary's HPA floor at 4 during the rollout",
    )
    assert apps.status("api")["phase"] == "Progressing", "the floor held while the rollout ran"
    assert during.spec.max_replicas == 6
    wait_for(lambda: apps.phase_is("api", "Succeeded"), ROLLOUT_TIMEOUT, "v2 promoted")
    apps.wait_deleted("api-canary")
    wait_for(lambda: autoscaler(apps, "api-canary") is None, 60, "the canary's HPA deleted")
    after = autoscaler(apps, "api-primary")
    assert after is not None
    assert (after.spec.min_replicas, after.spec.max_replicas) == (2, 6)
    assert apps.deployment_image("api-primary") == "app:v2"
    assert apps.deployment("api-primary").spec.replicas >= 2
