"""The local mesh against a real local cluster: it follows a VirtualService's weights and the Deployments
behind it with real status-code-server processes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest

from devenv.cluster import LocalCluster
from devenv.mesh import LocalMesh
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration

APP = "web"


def labels(track: str) -> dict[str, str]:
    return {"canary.atze.io/app": APP, "canary.atze.io/track": track}


def deployment(track: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{APP}-{track}"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels(track)},
            "template": {
                "metadata": {"labels": {**labels(track), "app": APP}},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8088}]}]},
            },
        },
    }


def service(name: str, track: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"selector": labels(track), "ports": [{"name": "http", "port": 8088, "targetPort": 8088}]},
    }


def virtual_service_spec(namespace: str, primary_weight: int) -> dict[str, Any]:
    def route(track: str, weight: int) -> dict[str, Any]:
        host = f"{APP}-{track}.{namespace}.svc.cluster.local"
        return {"destination": {"host": host, "port": {"number": 8088}}, "weight": weight}

    return {
        "hosts": [APP],
        "http": [
            {
                "name": "canary-split",
                "route": [route("primary", primary_weight), route("canary", 100 - primary_weight)],
            }
        ],
    }


@pytest.fixture
def web_objects(kube: kubernetes.client.ApiClient, namespace: str) -> None:
    apps = kubernetes.client.AppsV1Api(kube)
    core = kubernetes.client.CoreV1Api(kube)
    custom = kubernetes.client.CustomObjectsApi(kube)
    apps.create_namespaced_deployment(namespace, deployment("primary", "status-code-server:v1"))
    apps.create_namespaced_deployment(namespace, deployment("canary", "status-code-server:v2"))
    core.create_namespaced_service(namespace, service(APP, "primary"))
    core.create_namespaced_service(namespace, service(f"{APP}-primary", "primary"))
    core.create_namespaced_service(namespace, service(f"{APP}-canary", "canary"))
    body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": APP},
        "spec": virtual_service_spec(namespace, 50),
    }
    custom.create_namespaced_custom_object("networking.istio.io", "v1", namespace, "virtualservices", body)
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


def test_mesh_follows_the_virtual_service_weights(
    mesh: LocalMesh, kube: kubernetes.client.ApiClient, namespace: str
) -> None:
    assert mesh.routes() == {f"{APP}-primary": 50, f"{APP}-canary": 50}
    assert answers(mesh.url, 20) == {(200, "Hello! v1"): 10, (200, "Hello! v2"): 10}

    kubernetes.client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        "networking.istio.io",
        "v1",
        namespace,
        "virtualservices",
        APP,
        {"spec": virtual_service_spec(namespace, 100)},
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
    metrics = httpx.get(f"http://{mesh.metrics_address}/stats/prometheus", timeout=5).text
    assert 'destination_service_name="web-canary"' in metrics
    assert 'response_flags="UH"' in metrics
