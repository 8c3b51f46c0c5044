"""Helpers for integration tests: CanaryApp objects, waiting on the world, and the reconciler process."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

from devenv.cluster import LOCAL_GATEWAY, LOCAL_GATEWAY_NAMESPACE, LocalCluster, write_kubeconfig
from devenv.kube import (
    DELETION_TIMEOUT_SECONDS,
    read_deployment,
    read_route,
    read_weights,
    stack_synced,
    wait_deployment_gone,
)
from devenv.processes import REPO_ROOT, tool
from reconciler.core.model import GROUP, PLURAL, VERSION
from reconciler.core.names import Router

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except ApiException as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


READY_TIMEOUT = 180
LIMITED_USER_EXAMPLE = REPO_ROOT / "examples" / "limited-user"
LIMITED_USER = "system:serviceaccount:default:limited-user"
SYSTEM_NAMESPACE = "canaryapp-system"
RECONCILER_ACCOUNT = "canaryapp-reconciler"


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("kubectl"), *args],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def plugin(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl canaryapp ARGS`: kubectl finds kubectl-canaryapp on PATH (the project's virtualenv)."""
    return subprocess.run(
        [tool("kubectl"), "canaryapp", *args],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def reconciler_token(kube: kubernetes.client.ApiClient, cluster: LocalCluster) -> str:
    """A token of the reconciler's ServiceAccount (TokenRequest API), with config/namespace and config/rbac
    applied: its namespace, the account and its roles, as installed."""
    for folder in ("namespace", "rbac"):
        applied = kubectl(cluster.kubeconfig, "apply", "-k", str(REPO_ROOT / "config" / folder))
        assert applied.returncode == 0, applied.stderr
    request = {"spec": {"expirationSeconds": 3600}}
    created = kubernetes.client.CoreV1Api(kube).create_namespaced_service_account_token(
        RECONCILER_ACCOUNT, SYSTEM_NAMESPACE, request
    )
    return str(created.status.token)


def service_account_kubeconfig(kube: kubernetes.client.ApiClient, cluster: LocalCluster, path: Path) -> Path:
    """A kubeconfig at `path` that acts as the reconciler's ServiceAccount (see reconciler_token)."""
    token = reconciler_token(kube, cluster)
    write_kubeconfig(path, cluster.server, cluster.info.ca_cert, None, token=token)
    return path


def error_query(namespace: str, name: str) -> str:
    """The test query: a result exactly when the test's exporter reports errors for this CanaryApp."""
    return f'canary_errors{{namespace="{namespace}", canaryapp="{name}"}} > 0'


def traffic_query() -> str:
    """The test traffic query: the canary requests the test's exporter reports for this CanaryApp (templated,
    as a user's query for another mesh would be)."""
    return 'canary_requests{namespace="{{ namespace }}", canaryapp="{{ name }}"}'


# The local Gateway (devenv/cluster.py) every gateway-api CanaryApp of the tests attaches to, and the flag
# that lets the reconciler attach to the Gateways of its namespace.
LOCAL_PARENT_REFS = [{"name": LOCAL_GATEWAY, "namespace": LOCAL_GATEWAY_NAMESPACE}]
ALLOW_LOCAL_GATEWAY = f"--allowed-gateways={LOCAL_GATEWAY_NAMESPACE}/*"


def router_spec(router: Router) -> dict[str, Any]:
    """The spec fields that route a test CanaryApp with `router`: none for Istio (the default), the router and
    the local Gateway as its parent for the Gateway API."""
    if router == Router.ISTIO:
        return {}
    return {"router": router.value, "parentRefs": LOCAL_PARENT_REFS}


def reconciler_flags(router: Router) -> tuple[str, ...]:
    """The reconciler's flags a test CanaryApp of `router` needs."""
    return () if router == Router.ISTIO else (ALLOW_LOCAL_GATEWAY,)


def canary_app(name: str, image: str, query: str, prometheus_url: str, **spec: Any) -> dict[str, Any]:
    """A test CanaryApp. Its traffic check is off (minCanaryRequests 0) unless the test sets one: most tests
    drive only the error gauge of the exporter, which reports no requests; test_rollouts.py and
    test_analysis.py run with the traffic check on."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryApp",
        "metadata": {"name": name},
        "spec": {
            "image": image,
            "imageListenPort": 8088,
            "replicas": 2,
            "testReplicas": 1,
            "prometheusQuery": query,
            "prometheusURL": prometheus_url,
            "trafficShiftUpdateInterval": 2,
            "deploymentReadyWaitTime": 60,
            "stepWeight": 20,
            "maxWeight": 40,
            "minCanaryRequests": 0,
            **spec,
        },
    }


class Apps:
    """CanaryApps and the objects they own in one namespace, routed by `router`."""

    def __init__(
        self, api: kubernetes.client.ApiClient, namespace: str, router: Router = Router.ISTIO
    ) -> None:
        self.namespace = namespace
        self.router = router
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.core = kubernetes.client.CoreV1Api(api)

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def create_ready(self, name: str, prometheus_url: str, **spec: Any) -> None:
        """Creates a CanaryApp on app:v1 with the test query, routed by the router, and waits until it is
        Ready."""
        spec = {**router_spec(self.router), **spec}
        self.create(canary_app(name, "app:v1", error_query(self.namespace, name), prometheus_url, **spec))
        wait_for(lambda: self.phase_is(name, "Ready"), READY_TIMEOUT, f"{name} Ready")

    def get(self, name: str) -> dict[str, Any]:
        app: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return dict(app)

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def patch_spec(self, name: str, **spec: Any) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def annotate(self, name: str, annotations: dict[str, str]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"metadata": {"annotations": annotations}}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def weights(self, name: str) -> tuple[int, int] | None:
        return read_weights(self.custom, self.namespace, name, self.router)

    def route(self, name: str) -> dict[str, Any] | None:
        """The CanaryApp's route object (VirtualService or HTTPRoute); None while it does not exist."""
        return read_route(self.custom, self.namespace, name, self.router)

    def route_accepted(self, name: str) -> bool:
        """Whether the HTTPRoute `name` is Accepted, with its references resolved, by every parent, at its
        current generation (what the reconciler waits for before it counts a weight)."""
        route = self.route(name)
        if route is None:
            return False
        generation = route["metadata"]["generation"]
        entries = (route.get("status") or {}).get("parents") or []
        wanted = {("Accepted", "True", generation), ("ResolvedRefs", "True", generation)}
        return len(entries) == len(route["spec"]["parentRefs"]) and all(
            wanted <= {(c["type"], c["status"], c["observedGeneration"]) for c in entry["conditions"]}
            for entry in entries
        )

    def deployment(self, name: str) -> Any | None:
        return read_deployment(self.apps, self.namespace, name)

    def wait_deleted(self, name: str, timeout: float = DELETION_TIMEOUT_SECONDS) -> None:
        """Waits until Deployment `name` is gone (see devenv.kube.wait_deployment_gone)."""
        left = wait_deployment_gone(self.apps, self.namespace, name, timeout)
        assert left is None, f"Deployment {name} not gone after {timeout:.0f}s: {left.metadata}"

    def deployment_image(self, name: str) -> str | None:
        deployment = self.deployment(name)
        return None if deployment is None else str(deployment.spec.template.spec.containers[0].image)

    def phase_is(self, name: str, phase: str) -> dict[str, Any] | None:
        """The status once it shows `phase` and the cluster matches it (StackSynced), else None."""
        status = self.status(name)
        return status if status.get("phase") == phase and stack_synced(status) else None


class WeightRecorder:
    """Polls a CanaryApp's route and records every distinct (primary, canary) weight pair, in order."""

    def __init__(self, apps: Apps, name: str, interval: float = 0.1) -> None:
        self.apps = apps
        self.name = name
        self.interval = interval
        self.seen: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WeightRecorder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        # One more reading after the stop: the caller stops once it saw the final state, which the last
        # reading before may have missed (on a loaded machine this thread can lag a whole step behind).
        while True:
            stopping = self._stop.is_set()
            try:
                weights = self.apps.weights(self.name)
            except ApiException:
                weights = None
            if weights is not None and (not self.seen or self.seen[-1] != weights):
                self.seen.append(weights)
            if stopping:
                return
            self._stop.wait(self.interval)

    @property
    def canary_weights(self) -> list[int]:
        return [canary for _, canary in self.seen]
