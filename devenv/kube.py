"""Small Kubernetes helpers shared by the demo, the benchmarks and the tests: one place to build a client
from a kubeconfig, read a CanaryApp's route (VirtualService or HTTPRoute) and its weights (the baseline's
too), look at a CanaryApp's conditions and wait for a Deployment a step deleted to be gone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from reconciler.adapters.kube import load_client_config
from reconciler.core.names import Router, baseline_name
from reconciler.core.reasons import CONDITION_STACK_SYNCED

ISTIO = ("networking.istio.io", "v1")
GATEWAY_API = ("gateway.networking.k8s.io", "v1")
# The route object of each router: (group, version) and plural.
ROUTE_RESOURCES = {Router.ISTIO: (ISTIO, "virtualservices"), Router.GATEWAY_API: (GATEWAY_API, "httproutes")}


def api_client(kubeconfig: Path) -> kubernetes.client.ApiClient:
    return load_client_config(str(kubeconfig))


def route_weights(route: dict[str, Any]) -> tuple[int, int]:
    """(primary, canary) weights of a CanaryApp's route: its VirtualService's HTTP route, or its HTTPRoute's
    rule (backendRefs `<name>-primary`, `<name>-canary`)."""
    spec = route["spec"]
    entries = spec["http"][0]["route"] if "http" in spec else spec["rules"][0]["backendRefs"]
    return int(entries[0].get("weight", 0)), int(entries[1].get("weight", 0))


def route_baseline_weight(route: dict[str, Any]) -> int | None:
    """The baseline's weight on a CanaryApp's route (its VirtualService's destination to the subset
    `baseline`, or its HTTPRoute's backendRef `<name>-baseline`); None while the route has no baseline."""
    spec = route["spec"]
    if "http" in spec:
        entries = [e for e in spec["http"][0]["route"] if e["destination"].get("subset") == "baseline"]
    else:
        baseline = baseline_name(route["metadata"]["name"])
        entries = [ref for ref in spec["rules"][0]["backendRefs"] if ref["name"] == baseline]
    return int(entries[0].get("weight", 0)) if entries else None


def read_route(
    custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str, router: Router = Router.ISTIO
) -> dict[str, Any] | None:
    """The route object `name` of `router` (VirtualService or HTTPRoute); None while it does not exist."""
    (group, version), plural = ROUTE_RESOURCES[router]
    try:
        found: Any = custom.get_namespaced_custom_object(group, version, namespace, plural, name)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return dict(found)


def read_weights(
    custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str, router: Router = Router.ISTIO
) -> tuple[int, int] | None:
    """The weights of the route `name` of `router`; None while it does not exist."""
    found = read_route(custom, namespace, name, router)
    return None if found is None else route_weights(found)


def read_baseline_weight(
    custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str, router: Router = Router.ISTIO
) -> int | None:
    """The baseline's weight on the route `name` of `router`; None while the route or its baseline does not
    exist."""
    found = read_route(custom, namespace, name, router)
    return None if found is None else route_baseline_weight(found)


def condition(status: dict[str, Any], condition_type: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == condition_type), None)


def stack_synced(status: dict[str, Any]) -> bool:
    """Whether the cluster matches the status (the StackSynced condition is True)."""
    synced = condition(status, CONDITION_STACK_SYNCED)
    return synced is not None and synced["status"] == "True"


# A step that deletes a Deployment returns once the API server has the deletion (the program's skipAwait):
# the garbage collector then removes its ReplicaSets and pods, and the Deployment itself goes last. On a busy
# machine that takes seconds; a minute means something is wrong.
DELETION_TIMEOUT_SECONDS = 60.0


def read_deployment(apps: kubernetes.client.AppsV1Api, namespace: str, name: str) -> Any | None:
    """Deployment `name`, or None when the API server has none (a Deployment being deleted is still one)."""
    try:
        return apps.read_namespaced_deployment(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def wait_deployment_gone(
    apps: kubernetes.client.AppsV1Api, namespace: str, name: str, timeout: float = DELETION_TIMEOUT_SECONDS
) -> Any | None:
    """Waits until Deployment `name` is gone, at most `timeout` seconds; returns None once it is, else the
    Deployment as last read (its deletionTimestamp says whether its deletion is under way)."""
    deadline = time.monotonic() + timeout
    while (found := read_deployment(apps, namespace, name)) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    return found
