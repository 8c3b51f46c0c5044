"""The whole stand-in for one route (a VirtualService, or an HTTPRoute of the Gateway API): the routes read
from the API server every half second, applied to the proxy, and the load generator sending through it; and
the Gateway API controller that writes the status of the local GatewayClasses, their Gateways and the
HTTPRoutes naming them. The only part that talks to the API server."""

from __future__ import annotations

import datetime
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from devenv.mesh import gateway
from devenv.mesh.load import LoadGenerator
from devenv.mesh.proxy import MeshProxy
from devenv.mesh.routing import Destination, resolve_http_route, resolve_routes

log = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 0.5
ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSION = "v1"
VIRTUAL_SERVICE_PLURAL = "virtualservices"
DESTINATION_RULE_PLURAL = "destinationrules"
HTTP_ROUTE_PLURAL = "httproutes"
# The values of CanaryApp's spec.router: the kind of route the stand-in follows.
ROUTERS = ("istio", "gateway-api")


@dataclass(frozen=True)
class Routing:
    """What one read of the cluster says: the weighted destinations (None: no route), and for the Gateway
    API the Gateway's workload the requests pass through, as (name, namespace)."""

    destinations: tuple[Destination, ...] | None
    gateway_workload: tuple[str, str] | None = None


def items(response: Any) -> list[Any]:
    """The items of a list call made with `_preload_content=False`: the API server's JSON as dicts. The
    client would otherwise build its typed models of every object, twice a second, only to turn them back
    into dicts (the Gateway API controller's reads were an eighth of the test processes' Python CPU in a
    `make test`, sampled with py-spy)."""
    return list(json.loads(response.data)["items"])


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ClusterRoutes:
    """Reads the route and the Services and Deployments of its namespace from the API server: a
    VirtualService with the DestinationRules (istio), or an HTTPRoute with the Gateways (gateway-api)."""

    def __init__(self, kubeconfig: Path, namespace: str, route: str, router: str = "istio") -> None:
        if router not in ROUTERS:
            raise ValueError(f"router must be one of {', '.join(ROUTERS)}, got {router!r}")
        self.namespace = namespace
        self.route = route
        self.router = router
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        self._api = kubernetes.client.ApiClient(configuration)
        self._custom = kubernetes.client.CustomObjectsApi(self._api)
        self._core = kubernetes.client.CoreV1Api(self._api)
        self._apps = kubernetes.client.AppsV1Api(self._api)

    def read(self) -> Routing:
        """The resolved routes; no destinations when the route does not exist (or, for an HTTPRoute, while
        no Gateway of the local traffic layer accepts it)."""
        # The client's custom-object calls are typed `object`; they return the objects as dicts.
        route: Any
        group, version, plural = (
            (ISTIO_GROUP, ISTIO_VERSION, VIRTUAL_SERVICE_PLURAL)
            if self.router == "istio"
            else (gateway.GROUP, gateway.VERSION, HTTP_ROUTE_PLURAL)
        )
        try:
            route = self._custom.get_namespaced_custom_object(
                group, version, self.namespace, plural, self.route
            )
        except ApiException as error:
            if error.status != 404:
                raise
            return Routing(None)
        services = items(self._core.list_namespaced_service(self.namespace, _preload_content=False))
        deployments = items(self._apps.list_namespaced_deployment(self.namespace, _preload_content=False))
        if self.router == "gateway-api":
            return self._read_http_route(route, services, deployments)
        destination_rules: Any = self._custom.list_namespaced_custom_object(
            ISTIO_GROUP, ISTIO_VERSION, self.namespace, DESTINATION_RULE_PLURAL
        )
        return Routing(resolve_routes(route, destination_rules["items"], services, deployments))

    def _read_http_route(
        self, route: Mapping[str, Any], services: list[Any], deployments: list[Any]
    ) -> Routing:
        """Like a Gateway API data plane, serves the route only through a Gateway of the local traffic layer
        that accepts it (the verdict the controller writes into its status, computed the same way)."""
        gateways, own_classes = read_gateways(self._custom)
        names = [service["metadata"]["name"] for service in services]
        parents = gateway.route_parents(
            route, gateways, own_classes, gateway.CONTROLLER_NAME, names, {}, _now()
        )
        accepting = [
            gateways[(entry["parentRef"].get("namespace") or self.namespace, entry["parentRef"]["name"])]
            for entry in parents
            if entry.get("controllerName") == gateway.CONTROLLER_NAME
            and gateway.accepted_by(
                [entry], gateway.CONTROLLER_NAME, int(route["metadata"].get("generation") or 0)
            )
        ]
        if not accepting:
            return Routing(None)
        serving = accepting[0]
        # Istio names the Deployment of a Gateway `<gateway>-<gatewayClassName>`: its pods are the source.
        workload = f"{serving['metadata']['name']}-{serving['spec']['gatewayClassName']}"
        return Routing(
            resolve_http_route(route, services, deployments), (workload, serving["metadata"]["namespace"])
        )

    def close(self) -> None:
        self._api.close()


def read_gateways(
    custom: kubernetes.client.CustomObjectsApi,
) -> tuple[dict[gateway.GatewayKey, Any], list[str]]:
    """Every Gateway of the cluster by (namespace, name), and the names of the GatewayClasses whose
    controllerName is the local traffic layer's."""
    classes: Any = custom.list_cluster_custom_object(gateway.GROUP, gateway.VERSION, "gatewayclasses")
    gateways: Any = custom.list_cluster_custom_object(gateway.GROUP, gateway.VERSION, "gateways")
    own_classes = [
        item["metadata"]["name"]
        for item in classes["items"]
        if item["spec"].get("controllerName") == gateway.CONTROLLER_NAME
    ]
    by_key = {(item["metadata"]["namespace"], item["metadata"]["name"]): item for item in gateways["items"]}
    return by_key, own_classes


class GatewayController:
    """The local traffic layer's Gateway API controller: every half second it reads the GatewayClasses,
    Gateways, HTTPRoutes, Services and Namespaces of the cluster and writes, through the status subresource,
    the status `devenv.mesh.gateway` computes where it differs from the one the object has (a merge patch
    carrying the resourceVersion read, so a write over a newer object is refused and made again next pass).
    """

    def __init__(self, kubeconfig: Path) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        self._api = kubernetes.client.ApiClient(configuration)
        self._custom = kubernetes.client.CustomObjectsApi(self._api)
        self._core = kubernetes.client.CoreV1Api(self._api)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-controller", daemon=True)
        self._last_failure = ""
        self.writes = 0

    def start(self) -> None:
        """Returns after one first pass, so the statuses of what exists already are written."""
        self.reconcile()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self._api.close()

    def _run(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_SECONDS):
            try:
                self.reconcile()
            except Exception as error:
                # Like a controller's work queue: the next pass tries again; one line per new failure.
                if str(error) != self._last_failure:
                    log.warning("Failed to write Gateway API statuses", extra={"error": str(error)})
                self._last_failure = str(error)
            else:
                self._last_failure = ""

    def reconcile(self) -> None:
        now = _now()
        gateways, own_classes = read_gateways(self._custom)
        classes: Any = self._custom.list_cluster_custom_object(
            gateway.GROUP, gateway.VERSION, "gatewayclasses"
        )
        routes: Any = self._custom.list_cluster_custom_object(
            gateway.GROUP, gateway.VERSION, HTTP_ROUTE_PLURAL
        )
        namespaces = items(self._core.list_namespace(_preload_content=False))
        namespace_labels = {
            item["metadata"]["name"]: item["metadata"].get("labels") or {} for item in namespaces
        }
        services: dict[str, list[str]] = {}
        for service in items(self._core.list_service_for_all_namespaces(_preload_content=False)):
            services.setdefault(service["metadata"]["namespace"], []).append(service["metadata"]["name"])
        for item in classes["items"]:
            if item["metadata"]["name"] in own_classes:
                self._write(item, "gatewayclasses", gateway.gateway_class_status(item, now))
        for item in gateways.values():
            if item["spec"].get("gatewayClassName") in own_classes:
                attached = gateway.attached_routes(item, routes["items"], namespace_labels)
                self._write(item, "gateways", gateway.gateway_status(item, attached, now))
        for item in routes["items"]:
            namespace = item["metadata"]["namespace"]
            parents = gateway.route_parents(
                item,
                gateways,
                own_classes,
                gateway.CONTROLLER_NAME,
                services.get(namespace, []),
                namespace_labels,
                now,
            )
            if parents != ((item.get("status") or {}).get("parents") or []):
                self._write(item, HTTP_ROUTE_PLURAL, {"parents": parents})

    def _write(self, item: Mapping[str, Any], plural: str, status: Mapping[str, Any]) -> None:
        current = item.get("status") or {}
        if all(current.get(key) == value for key, value in status.items()):
            return
        metadata = item["metadata"]
        body = {"metadata": {"resourceVersion": metadata["resourceVersion"]}, "status": status}
        try:
            if "namespace" in metadata:
                self._custom.patch_namespaced_custom_object_status(
                    gateway.GROUP, gateway.VERSION, metadata["namespace"], plural, metadata["name"], body
                )
            else:
                self._custom.patch_cluster_custom_object_status(
                    gateway.GROUP, gateway.VERSION, plural, metadata["name"], body
                )
        except ApiException as error:
            # Changed or gone since it was read: the next pass reads it again.
            if error.status in (404, 409):
                return
            raise
        self.writes += 1
        log.info(
            "Wrote Gateway API status",
            extra={"plural": plural, "namespace": metadata.get("namespace", ""), "name": metadata["name"]},
        )


class LocalMesh:
    """The whole stand-in: watcher, backends, proxy and load generator for one route: VirtualService `route`
    (router istio) or HTTPRoute `route` (router gateway-api, served while a Gateway of the local traffic layer
    accepts it; the `GatewayController` writes the statuses)."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        route: str,
        workdir: Path,
        *,
        router: str = "istio",
        listen_port: int = 0,
        request_rate: float = 20.0,
        nothello_fraction: float = 0.0,
        heavy_fraction: float = 0.0,
    ) -> None:
        self.namespace = namespace
        self.route = route
        self.router = router
        self.proxy = MeshProxy(workdir, namespace, listen_port)
        self._generator = LoadGenerator(request_rate, nothello_fraction, heavy_fraction)
        self._cluster = ClusterRoutes(kubeconfig, namespace, route, router)
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="mesh-watcher", daemon=True)
        self._last_failure = ""

    def start(self) -> None:
        """Returns once the proxy listens, with the routes of one first read of the cluster applied."""
        try:
            self.proxy.start()
            self._refresh()
            self._watcher.start()
            self._generator.start(self.proxy.url)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stopping.set()
        self._generator.stop()
        if self._watcher.is_alive():
            self._watcher.join()
        self.proxy.stop()
        self._cluster.close()

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def metrics_address(self) -> str:
        return self.proxy.metrics_address

    def set_mix(self, nothello_fraction: float, heavy_fraction: float = 0.0) -> None:
        self._generator.set_mix(nothello_fraction, heavy_fraction)

    def spike(self, seconds: float, *, rate: float | None = None, heavy_fraction: float = 0.0) -> None:
        """A traffic spike for `seconds` (LoadGenerator.spike): every destination sees the same mix."""
        self._generator.spike(seconds, rate=rate, heavy_fraction=heavy_fraction)

    def calm(self) -> None:
        self._generator.calm()

    def routes(self) -> dict[str, int]:
        """The applied weights by `Destination.name`, e.g. `{"web-primary": 100, "web-canary": 0}`, with a
        baseline `{"web-primary": 80, "web-canary": 10, "web-baseline": 10}`."""
        return self.proxy.table.weights()

    def requests_sent(self) -> int:
        return self._generator.requests_sent()

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_SECONDS):
            self._refresh()

    def _refresh(self) -> None:
        # Any failure of one pass (API server away, a backend that would not start) must not end the watcher:
        # the routes applied last stay in force and the next pass tries again.
        try:
            routing = self._cluster.read()
            self.proxy.apply(routing.destinations, routing.gateway_workload)
        except Exception as error:
            if str(error) != self._last_failure:
                log.warning(
                    "Failed to refresh local mesh routes; kept the last ones",
                    extra={
                        "route": self.route,
                        "router": self.router,
                        "namespace": self.namespace,
                        "error": str(error),
                    },
                )
            self._last_failure = str(error)
        else:
            self._last_failure = ""
