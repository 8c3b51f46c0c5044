"""Small Kubernetes helpers shared by the demo, the benchmarks and the tests: one place to build a client
from a kubeconfig, read a VirtualService's weights and look at a CanaryApp's conditions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from reconciler.adapters.kube import load_client_config
from reconciler.reasons import CONDITION_STACK_SYNCED

ISTIO = ("networking.istio.io", "v1")


def api_client(kubeconfig: Path) -> kubernetes.client.ApiClient:
    return load_client_config(str(kubeconfig))


def route_weights(virtual_service: dict[str, Any]) -> tuple[int, int]:
    """(primary, canary) weights of the route a CanaryApp's VirtualService carries."""
    route = virtual_service["spec"]["http"][0]["route"]
    return int(route[0].get("weight", 0)), int(route[1].get("weight", 0))


def read_weights(
    custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str
) -> tuple[int, int] | None:
    """The weights of VirtualService `name`; None while it does not exist."""
    try:
        found: Any = custom.get_namespaced_custom_object(*ISTIO, namespace, "virtualservices", name)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return route_weights(found)


def condition(status: dict[str, Any], condition_type: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == condition_type), None)


def stack_synced(status: dict[str, Any]) -> bool:
    """Whether the cluster matches the status (the StackSynced condition is True)."""
    synced = condition(status, CONDITION_STACK_SYNCED)
    return synced is not None and synced["status"] == "True"
