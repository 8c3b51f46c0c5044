"""The Kubernetes API through the official client: CanaryApp reads and status writes, Deployment readiness,
finalizers and Events. The client is untyped, so this module is the one place that handles its objects."""

from __future__ import annotations

import datetime
import functools
import logging
import os
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from reconciler.errors import TransientError
from reconciler.model import GROUP, PLURAL, VERSION
from reconciler.names import ObjectRef
from reconciler.readiness import DeploymentState, deployment_state
from reconciler.selectors import LabelSelector

log = logging.getLogger(__name__)
COMPONENT = "canaryapp-reconciler"


def load_client_config(kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """In-cluster config when running in a pod, else the given (or default) kubeconfig."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


def _transient(error: ApiException, what: str) -> TransientError:
    return TransientError(f"{what} failed with HTTP {error.status}: {error.reason}", retry_after=2.0)


class KubeCluster:
    """`namespace` and `selector` (a shard's label selector) limit which CanaryApps this reconciler sees:
    lists and watches ask the API server for them only, and a read by name of any other answers "not found".
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespace: str | None = None,
        selector: LabelSelector | None = None,
    ) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.selector = selector
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.apps = kubernetes.client.AppsV1Api(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)

    # CanaryApps ----------------------------------------------------------------------------------------

    def get_canary_app(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            app: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _transient(error, f"reading CanaryApp {namespace}/{name}") from error
        if self.selector is not None and not self.selector.matches(app.get("metadata", {}).get("labels")):
            return None  # another shard's: as if it did not exist here
        return dict(app)

    def list_canary_apps(self) -> tuple[list[dict[str, Any]], str]:
        function, args = self.watch_function()
        listing: Any = function(*args)
        return list(listing.get("items", [])), str(listing["metadata"]["resourceVersion"])

    def watch_function(self) -> tuple[Any, tuple[Any, ...]]:
        """The list call of this reconciler's CanaryApps; the selector rides along as a bound argument."""
        if self.namespace:
            function: Any = self.custom.list_namespaced_custom_object
            args: tuple[Any, ...] = (GROUP, VERSION, self.namespace, PLURAL)
        else:
            function, args = self.custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        if self.selector is None:
            return function, args
        return functools.partial(function, label_selector=str(self.selector)), args

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status}
            )
        except ApiException as error:
            raise _transient(error, f"writing the status of CanaryApp {namespace}/{name}") from error

    def set_finalizers(self, namespace: str, name: str, finalizers: list[str], resource_version: str) -> None:
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        try:
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
        except ApiException as error:
            raise _transient(error, f"updating the finalizers of CanaryApp {namespace}/{name}") from error

    # Deployments -----------------------------------------------------------------------------------------

    def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        try:
            deployment = self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _transient(error, f"reading Deployment {namespace}/{name}") from error
        return deployment_state(self.api_client.sanitize_for_serialization(deployment))

    # Ownership -------------------------------------------------------------------------------------------

    def owner_uids(self, namespace: str, ref: ObjectRef) -> frozenset[str] | None:
        try:
            found: Any = self._read(namespace, ref)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _transient(error, f"reading {ref.describe(namespace)}") from error
        metadata = found.get("metadata") or {}
        owners = metadata.get("ownerReferences") or metadata.get("owner_references") or []
        return frozenset(str(owner.get("uid")) for owner in owners)

    def _read(self, namespace: str, ref: ObjectRef) -> dict[str, Any]:
        if ref.kind == "Deployment":
            found: Any = self.apps.read_namespaced_deployment(ref.name, namespace)
        elif ref.kind == "Service":
            found = self.core.read_namespaced_service(ref.name, namespace)
        else:
            group, version = ref.api_version.split("/")
            plural = f"{ref.kind.lower()}s"
            found = self.custom.get_namespaced_custom_object(group, version, namespace, plural, ref.name)
            return dict(found)
        return dict(found.to_dict())

    # Events -----------------------------------------------------------------------------------------------

    def emit(self, app: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        metadata = app["metadata"]
        now = datetime.datetime.now(datetime.UTC)
        event = kubernetes.client.CoreV1Event(
            metadata=kubernetes.client.V1ObjectMeta(
                generate_name=f"{metadata['name']}.", namespace=metadata["namespace"]
            ),
            involved_object=kubernetes.client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind="CanaryApp",
                name=metadata["name"],
                namespace=metadata["namespace"],
                uid=metadata.get("uid"),
                resource_version=metadata.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=kubernetes.client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=os.environ.get("HOSTNAME", COMPONENT),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self.core.create_namespaced_event(metadata["namespace"], event)
        except ApiException as error:
            # An Event is a courtesy: losing one must never fail the pass that made the decision.
            log.warning(
                "Failed to record Event",
                extra={"canaryapp": metadata["name"], "reason": reason, "status": error.status},
            )
