"""The whole stand-in for one VirtualService: the routes read from the API server every half second, applied
to the proxy, and the load generator sending through it. The only part that talks to the API server."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from devenv.mesh.load import LoadGenerator
from devenv.mesh.proxy import MeshProxy
from devenv.mesh.routing import Destination, resolve_routes

log = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 0.5
ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSION = "v1"
VIRTUAL_SERVICE_PLURAL = "virtualservices"
DESTINATION_RULE_PLURAL = "destinationrules"


class ClusterRoutes:
    """Reads a VirtualService and the DestinationRules, Services and Deployments of its namespace from the API
    server."""

    def __init__(self, kubeconfig: Path, namespace: str, virtual_service: str) -> None:
        self.namespace = namespace
        self.virtual_service = virtual_service
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        self._api = kubernetes.client.ApiClient(configuration)
        self._custom = kubernetes.client.CustomObjectsApi(self._api)
        self._core = kubernetes.client.CoreV1Api(self._api)
        self._apps = kubernetes.client.AppsV1Api(self._api)

    def read(self) -> tuple[Destination, ...] | None:
        """The resolved routes; None when the VirtualService does not exist."""
        # The client's custom-object calls are typed `object`; they return the objects as dicts.
        virtual_service: Any
        destination_rules: Any
        try:
            virtual_service = self._custom.get_namespaced_custom_object(
                ISTIO_GROUP, ISTIO_VERSION, self.namespace, VIRTUAL_SERVICE_PLURAL, self.virtual_service
            )
        except ApiException as error:
            if error.status != 404:
                raise
            return None
        destination_rules = self._custom.list_namespaced_custom_object(
            ISTIO_GROUP, ISTIO_VERSION, self.namespace, DESTINATION_RULE_PLURAL
        )
        services = self._core.list_namespaced_service(self.namespace).items
        deployments = self._apps.list_namespaced_deployment(self.namespace).items
        return resolve_routes(
            virtual_service,
            destination_rules["items"],
            [self._api.sanitize_for_serialization(service) for service in services],
            [self._api.sanitize_for_serialization(deployment) for deployment in deployments],
        )

    def close(self) -> None:
        self._api.close()


class LocalMesh:
    """The whole stand-in: watcher, backends, proxy and load generator for one VirtualService."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        virtual_service: str,
        workdir: Path,
        *,
        listen_port: int = 0,
        request_rate: float = 20.0,
        nothello_fraction: float = 0.0,
    ) -> None:
        self.namespace = namespace
        self.virtual_service = virtual_service
        self.proxy = MeshProxy(workdir, namespace, listen_port)
        self._generator = LoadGenerator(request_rate, nothello_fraction)
        self._cluster = ClusterRoutes(kubeconfig, namespace, virtual_service)
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

    def set_mix(self, nothello_fraction: float) -> None:
        self._generator.set_mix(nothello_fraction)

    def routes(self) -> dict[str, int]:
        """The applied weights by `Destination.name`, e.g. `{"web-primary": 100, "web-canary": 0}`."""
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
            self.proxy.apply(self._cluster.read())
        except Exception as error:
            if str(error) != self._last_failure:
                log.warning(
                    "Failed to refresh local mesh routes; kept the last ones",
                    extra={
                        "virtual_service": self.virtual_service,
                        "namespace": self.namespace,
                        "error": str(error),
                    },
                )
            self._last_failure = str(error)
        else:
            self._last_failure = ""
