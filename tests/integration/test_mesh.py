"""The local mesh against a real local cluster: it follows a VirtualService's weights over the DestinationRule
subsets of one Service, to the Deployments behind them, with real status-code-server processes; and, as a
Gateway API implementation, an HTTPRoute's backendRef weights, with the route's status written.

The objects follow CanaryApp's layout: the Service `web` selects the pods of both Deployments `web-primary`
and `web-canary`, the DestinationRule `web` splits them into the subsets `primary` and `canary` by the track
label, and the VirtualService `web` sends a weighted share to each subset. For the Gateway API, the Services
`web-primary` and `web-canary` select one track each and the HTTPRoute `web` on the local Gateway sends a
weighted share to each."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devenv.cluster import LOCAL_GATEWAY, LOCAL_GATEWAY_NAMESPACE, LocalCluster
from devenv.mesh import GatewayController, LocalMesh
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration

APP = "web"
APP_LABEL = "canary.atze.io/app"
TRACK_LABEL = "canary.atze.io/track"
ISTIO = ("networking.istio.io", "v1")


def pod_labels(track: str) -> dict[str, str]:
    return {APP_LABEL: APP, TRACK_LABEL: track, "app": APP, "version": track}


def deployment(track: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{APP}-{track}"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {APP_LABEL: APP, TRACK_LABEL: track}},
            "template": {
                "metadata": {"labels": pod_labels(track)},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8088}]}]},
            },
        },
    }


def host(namespace: str) -> str:
    return f"{APP}.{namespace}.svc.cluster.local"


def destination_rule_spec(namespace: str, *subsets: str) -> dict[str, Any]:
    return {
        "host": host(namespace),
        "subsets": [{"name": subset, "labels": {TRACK_LABEL: subset}} for subset in subsets],
    }


def virtual_service_spec(namespace: str, *weights: tuple[str | None, int]) -> dict[str, Any]:
    """A VirtualService to the apex host with a (subset, weight) destination each; subset None: every pod of
    the Service."""

    def route(subset: str | None, weight: int) -> dict[str, Any]:
        named_subset = {} if subset is None else {"subset": subset}
        destination = {"host": host(namespace), **named_subset, "port": {"number": 8088}}
        return {"destination": destination, "weight": weight}

    routes = [route(subset, weight) for subset, weight in weights]
    return {"hosts": [APP], "http": [{"name": "canary-split", "route": routes}]}


def patch_spec(kube: kubernetes.client.ApiClient, namespace: str, plural: str, spec: dict[str, Any]) -> None:
    kubernetes.client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        *ISTIO, namespace, plural, APP, {"spec": spec}
    )


@pytest.fixture
def web_objects(kube: kubernetes.client.ApiClient, namespace: str) -> None:
    apps = kubernetes.client.AppsV1Api(kube)
    core = kubernetes.client.CoreV1Api(kube)
    custom = kubernetes.client.CustomObjectsApi(kube)
    apps.create_namespaced_deployment(namespace, deployment("primary", "status-code-server:v1"))
    apps.create_namespaced_deployment(namespace, deployment("canary", "status-code-server:v2"))
    apex: dict[str, Any] = {
        "metadata": {"name": APP},
        "spec": {"selector": {APP_LABEL: APP}, "ports": [{"name": "http", "port": 8088, "targetPort": 8088}]},
    }
    core.create_namespaced_service(namespace, apex)
    for kind, plural, spec in (
        ("DestinationRule", "destinationrules", destination_rule_spec(namespace, "primary", "canary")),
        (
            "VirtualService",
            "virtualservices",
            virtual_service_spec(namespace, ("primary", 50), ("canary", 50)),
        ),
    ):
        body = {"apiVersion": "/".join(ISTIO), "kind": kind, "metadata": {"name": APP}, "spec": spec}
        custom.create_namespaced_custom_object(*ISTIO, namespace, plural, body)
    for track in ("primary", "canary"):
        wait_for(
            lambda track=track: (
                apps.read_namespaced_deployment(f"{APP}-{track}", namespace).status.available_replicas
            ),
            60,
            f"{APP}-{track} available",
        )


@pytest.fixture
def mesh(cluster: LocalCluster, namespace: str, web_objects: None, tmp_path: Path) -> Iterator[LocalMesh]:
    local_mesh = LocalMesh(cluster.kubeconfig, namespace, APP, tmp_path, request_rate=0)
    local_mesh.start()
    yield local_mesh
    local_mesh.stop()


def answers(url: str, count: int) -> Counter[tuple[int, str]]:
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        return Counter(
            (response.status_code, response.text) for response in (client.get("/hello") for _ in range(count))
        )


def requests_total(mesh: LocalMesh, **labels: str) -> float:
    """The sum of istio_requests_total over the series whose labels include `labels`."""
    text = httpx.get(f"http://{mesh.metrics_address}/stats/prometheus", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "istio_requests_total" and labels.items() <= sample.labels.items()
    )


def test_mesh_follows_the_virtual_service_weights(
    mesh: LocalMesh, kube: kubernetes.client.ApiClient, namespace: str
) -> None:
    assert mesh.routes() == {f"{APP}-primary": 50, f"{APP}-canary": 50}
    assert answers(mesh.url, 20) == {(200, "Hello! v1"): 10, (200, "Hello! v2"): 10}
    for reporter in ("source", "destination"):
        for track in ("primary", "canary"):
            answered = {
                "destination_service": host(namespace),
                "destination_service_name": APP,
                "destination_workload": f"{APP}-{track}",
                "destination_version": track,
                "destination_app": APP,
            }
            assert requests_total(mesh, reporter=reporter, response_code="200", **answered) == 10

    patch_spec(
        kube, namespace, "virtualservices", virtual_service_spec(namespace, ("primary", 100), ("canary", 0))
    )
    wait_for(lambda: mesh.routes() == {f"{APP}-primary": 100, f"{APP}-canary": 0}, 10, "the 100/0 routes")
    assert answers(mesh.url, 20) == {(200, "Hello! v1"): 20}


def test_mesh_answers_no_healthy_upstream_when_the_canary_is_gone(
    mesh: LocalMesh, kube: kubernetes.client.ApiClient, namespace: str
) -> None:
    kubernetes.client.AppsV1Api(kube).delete_namespaced_deployment(f"{APP}-canary", namespace)
    wait_for(
        lambda: answers(mesh.url, 2) == {(200, "Hello! v1"): 1, (503, "no healthy upstream"): 1}, 10, "503 UH"
    )
    assert mesh.routes() == {f"{APP}-primary": 50, f"{APP}-canary": 50}
    no_healthy_upstream = {"response_code": "503", "response_flags": "UH", "destination_service_name": APP}
    assert requests_total(mesh, reporter="source", destination_workload="unknown", **no_healthy_upstream) >= 1
    assert requests_total(mesh, reporter="destination", response_code="503") == 0


def test_mesh_follows_the_destination_rule_subsets(
    mesh: LocalMesh, kube: kubernetes.client.ApiClient, namespace: str
) -> None:
    patch_spec(kube, namespace, "destinationrules", destination_rule_spec(namespace, "primary"))
    wait_for(lambda: answers(mesh.url, 2) == {(200, "Hello! v1"): 1, (503, ""): 1}, 10, "503 NC")
    assert requests_total(mesh, reporter="source", response_flags="NC", destination_service_name=APP) >= 1

    patch_spec(kube, namespace, "virtualservices", virtual_service_spec(namespace, (None, 100)))
    wait_for(lambda: mesh.routes() == {APP: 100}, 10, "the route to the whole Service")
    assert answers(mesh.url, 20) == {(200, "Hello! v1"): 10, (200, "Hello! v2"): 10}


GATEWAY_API = ("gateway.networking.k8s.io", "v1")


def http_route_spec(*weights: tuple[str, int], gateway: str = LOCAL_GATEWAY) -> dict[str, Any]:
    backends = [{"name": f"{APP}-{track}", "port": 8088, "weight": weight} for track, weight in weights]
    parent = {"name": gateway, "namespace": LOCAL_GATEWAY_NAMESPACE}
    return {"parentRefs": [parent], "rules": [{"backendRefs": backends}]}


def route_verdicts(
    kube: kubernetes.client.ApiClient, namespace: str
) -> dict[str, tuple[str, str, int]] | None:
    """The local traffic layer's conditions on HTTPRoute `web`, once they are about its current generation."""
    found: Any = kubernetes.client.CustomObjectsApi(kube).get_namespaced_custom_object(
        *GATEWAY_API, namespace, "httproutes", APP
    )
    entries = (found.get("status") or {}).get("parents") or []
    generation = found["metadata"]["generation"]
    verdicts = {c["type"]: (c["status"], c["reason"]) for e in entries for c in e["conditions"]}
    current = all(c["observedGeneration"] == generation for e in entries for c in e["conditions"])
    return verdicts if entries and current else None


@pytest.fixture
def gateway_mesh(
    cluster: LocalCluster,
    kube: kubernetes.client.ApiClient,
    namespace: str,
    web_objects: None,
    gateway_controller: GatewayController,
    tmp_path: Path,
) -> Iterator[LocalMesh]:
    core = kubernetes.client.CoreV1Api(kube)
    for track in ("primary", "canary"):
        selector = {APP_LABEL: APP, TRACK_LABEL: track}
        ports = [{"name": "http", "port": 8088, "targetPort": 8088}]
        core.create_namespaced_service(
            namespace,
            {"metadata": {"name": f"{APP}-{track}"}, "spec": {"selector": selector, "ports": ports}},
        )
    body = {
        "apiVersion": "/".join(GATEWAY_API),
        "kind": "HTTPRoute",
        "metadata": {"name": APP},
        "spec": http_route_spec(("primary", 75), ("canary", 25)),
    }
    kubernetes.client.CustomObjectsApi(kube).create_namespaced_custom_object(
        *GATEWAY_API, namespace, "httproutes", body
    )
    local_mesh = LocalMesh(cluster.kubeconfig, namespace, APP, tmp_path, router="gateway-api", request_rate=0)
    local_mesh.start()
    yield local_mesh
    local_mesh.stop()


def test_gateway_accepts_the_route_and_the_mesh_follows_its_backend_weights(
    gateway_mesh: LocalMesh, kube: kubernetes.client.ApiClient, namespace: str
) -> None:
    accepted = {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    wait_for(lambda: route_verdicts(kube, namespace) == accepted, 10, "the route accepted")
    assert gateway_mesh.routes() == {f"{APP}-primary": 75, f"{APP}-canary": 25}
    assert answers(gateway_mesh.url, 20) == {(200, "Hello! v1"): 15, (200, "Hello! v2"): 5}
    for reporter in ("source", "destination"):
        canary = {
            "reporter": reporter,
            "source_workload": f"{LOCAL_GATEWAY}-canaryapp-local",
            "source_workload_namespace": LOCAL_GATEWAY_NAMESPACE,
            "destination_service_name": f"{APP}-canary",
            "destination_workload": f"{APP}-canary",
        }
        assert requests_total(gateway_mesh, response_code="200", **canary) == 5

    custom = kubernetes.client.CustomObjectsApi(kube)
    spec = http_route_spec(("primary", 100), ("canary", 0))
    custom.patch_namespaced_custom_object(*GATEWAY_API, namespace, "httproutes", APP, {"spec": spec})
    wait_for(lambda: gateway_mesh.routes() == {f"{APP}-primary": 100, f"{APP}-canary": 0}, 10, "100/0")
    wait_for(lambda: route_verdicts(kube, namespace) == accepted, 10, "the new generation accepted")
    assert answers(gateway_mesh.url, 10) == {(200, "Hello! v1"): 10}


def test_gateway_reports_a_missing_backend_and_a_parent_it_does_not_have(
    gateway_mesh: LocalMesh, kube: kubernetes.client.ApiClient, namespace: str
) -> None:
    kubernetes.client.CoreV1Api(kube).delete_namespaced_service(f"{APP}-canary", namespace)
    missing_backend = {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")}
    wait_for(lambda: route_verdicts(kube, namespace) == missing_backend, 10, "BackendNotFound")
    wait_for(lambda: answers(gateway_mesh.url, 4) == {(200, "Hello! v1"): 3, (500, ""): 1}, 10, "500")

    custom = kubernetes.client.CustomObjectsApi(kube)
    spec = http_route_spec(("primary", 100), ("canary", 0), gateway="elsewhere")
    custom.patch_namespaced_custom_object(*GATEWAY_API, namespace, "httproutes", APP, {"spec": spec})
    no_parent = {"Accepted": ("False", "NoMatchingParent"), "ResolvedRefs": ("False", "BackendNotFound")}
    wait_for(lambda: route_verdicts(kube, namespace) == no_parent, 10, "NoMatchingParent")
    wait_for(lambda: gateway_mesh.routes() == {}, 10, "no route served without an accepting Gateway")
    assert answers(gateway_mesh.url, 2) == {(503, "no route"): 2}
