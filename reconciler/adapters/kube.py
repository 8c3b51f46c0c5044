"""The Kubernetes API through the official client: CanaryApp lists, watches, status and finalizer writes,
Deployment readiness (an informer of its own), the reads by name a pass makes, and Events. The client is
untyped, so this module is the one place that handles its objects."""

from __future__ import annotations

import base64
import datetime
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import kubernetes
from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from reconciler.core import pod_security
from reconciler.core.endpoints import SecretData
from reconciler.core.errors import TransientError
from reconciler.core.metrics import MetricTemplateSpec, TemplateError, TemplateRef
from reconciler.core.model import GROUP, PLURAL, VERSION
from reconciler.core.names import HTTP_ROUTE, ObjectRef
from reconciler.core.ports import EventHandler
from reconciler.core.readiness import DeploymentState, deployment_state
from reconciler.core.selectors import LabelSelector

log = logging.getLogger(__name__)
COMPONENT = "canaryapp-reconciler"


# Every call to the API server ends: connecting within CONNECT_TIMEOUT, and each read within READ_TIMEOUT
# (a frozen API server or a network that drops packets costs one failed call, never a thread forever).
# Watches read for as long as the server-side timeout they ask for, plus WATCH_READ_MARGIN.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 30.0
WATCH_READ_MARGIN_SECONDS = 15.0


class BoundedApiClient(kubernetes.client.ApiClient):
    """An ApiClient whose every request has a timeout unless the caller gives its own."""

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
        return super().call_api(*args, **kwargs)


def load_client_config(kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """In-cluster config when running in a pod, else the given (or default) kubeconfig; every request
    bounded (BoundedApiClient)."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return BoundedApiClient(configuration)


# (list function, its arguments, resourceVersion, timeout seconds) -> watch events
WatchStream = Callable[[Any, tuple[Any, ...], str, int], Iterable[dict[str, Any]]]
# The label every object of a CanaryApp's stack carries (stacks/program.py) and the one naming its CanaryApp.
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=canaryapp"
APP_LABEL = "canary.atze.io/app"
# CanaryApps per LIST answer: a page of maximum-size objects stays a few MiB.
LIST_PAGE_SIZE = 50


def watch_stream(
    function: Any, args: tuple[Any, ...], resource_version: str, timeout_seconds: int
) -> Iterable[dict[str, Any]]:
    """A watch from `resource_version` of what `function(*args)` lists, with bookmarks."""
    events: Iterable[dict[str, Any]] = watch.Watch().stream(
        function,
        *args,
        resource_version=resource_version,
        timeout_seconds=timeout_seconds,
        allow_watch_bookmarks=True,
        _request_timeout=(CONNECT_TIMEOUT_SECONDS, timeout_seconds + WATCH_READ_MARGIN_SECONDS),
    )
    return events


def follow_watch(
    function: Any,
    args: tuple[Any, ...],
    resource_version: str,
    stream: WatchStream,
    on_event: Callable[[str, dict[str, Any]], None],
    *,
    until: Callable[[], bool],
    timeout_seconds: int,
) -> None:
    """Watches what `function(*args)` lists from `resource_version` until `until()` is true or the API server
    answers 410 Gone (the caller then lists again). Each event but bookmarks goes to `on_event(type, object)`,
    the object as JSON; any other watch error raises."""
    while not until():
        try:
            for event in stream(function, args, resource_version, timeout_seconds):
                obj: dict[str, Any] = event["raw_object"] if "raw_object" in event else event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:
                        return  # the resourceVersion is too old: list again
                    raise RuntimeError(f"watch error: {obj}")
                resource_version = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    on_event(event["type"], obj)
                if until():
                    break
        except ApiException as error:
            if error.status == 410:
                return
            raise


def _status_message(error: ApiException) -> str:
    """The message of the API server's Status answer (the fields and what is wrong with them)."""
    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or error.reason or f"HTTP {error.status}")[:1024]


def _warning_text(header: str) -> str:
    """The text of an HTTP Warning header (`299 - "text"`, RFC 7234), unquoted."""
    parts = header.split(" ", 2)
    text = parts[2] if len(parts) == 3 and parts[0].isdigit() else header
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('\\"', '"')
    return text


def _transient(error: ApiException, what: str) -> TransientError:
    return TransientError(f"{what} failed with HTTP {error.status}: {error.reason}", retry_after=2.0)


@dataclass(frozen=True)
class _CachedDeployment:
    state: DeploymentState
    owner_uids: frozenset[str]
    canary_app: str | None


class DeploymentCache:
    """An informer for the Deployments of CanaryApp stacks: one list, then one watch, for the whole
    reconciler, instead of a GET per waiting CanaryApp per second. `follow` keeps it current and reports
    each CanaryApp whose Deployment changed readiness or image, so a rollout waiting for one is woken by the
    change itself. A Deployment that is not in the cache (not synced yet, or without the managed-by label)
    is read from the API server: the cache never answers "absent" for an object it does not select."""

    def __init__(
        self,
        apps: kubernetes.client.AppsV1Api,
        api_client: kubernetes.client.ApiClient,
        namespace: str | None,
        *,
        stream: WatchStream = watch_stream,
        resync_seconds: float = 300.0,
        watch_timeout_seconds: int = 60,
    ) -> None:
        self._apps = apps
        self._api_client = api_client
        self._namespace = namespace
        self._stream = stream
        self._resync_seconds = resync_seconds
        self._watch_timeout_seconds = watch_timeout_seconds
        self._entries: dict[tuple[str, str], _CachedDeployment] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()

    def lookup(self, namespace: str, name: str) -> _CachedDeployment | None:
        if not self.synced.is_set():
            return None
        with self._lock:
            return self._entries.get((namespace, name))

    def follow(self, stop: threading.Event, on_change: Callable[[str, str], None]) -> None:
        """Lists and watches until `stop`; calls `on_change(namespace, canaryapp)` for every change that
        matters to a rollout. Errors are logged and followed by a new list."""
        failures = 0
        while not stop.is_set():
            try:
                self._list_and_watch(stop, on_change)
                failures = 0
            except Exception:
                # Until it lists again, readings come from the API server, not from a cache that may be stale.
                self.synced.clear()
                failures += 1
                log.exception(
                    "Failed to watch Deployments; listing again shortly", extra={"failures": failures}
                )
                stop.wait(min(2.0 * 2 ** (failures - 1), 60.0))

    def _function(self) -> tuple[Any, tuple[Any, ...]]:
        if self._namespace:
            function: Any = self._apps.list_namespaced_deployment
            args: tuple[Any, ...] = (self._namespace,)
        else:
            function, args = self._apps.list_deployment_for_all_namespaces, ()
        return functools.partial(function, label_selector=MANAGED_SELECTOR), args

    def _list_and_watch(self, stop: threading.Event, on_change: Callable[[str, str], None]) -> None:
        function, args = self._function()
        resource_version = self._relist(function, args, on_change)
        resync_at = time.monotonic() + self._resync_seconds
        follow_watch(
            function,
            args,
            resource_version,
            self._stream,
            lambda event_type, raw: self._apply(event_type, raw, on_change),
            until=lambda: stop.is_set() or time.monotonic() >= resync_at,
            timeout_seconds=self._watch_timeout_seconds,
        )

    def _relist(self, function: Any, args: tuple[Any, ...], on_change: Callable[[str, str], None]) -> str:
        listing = function(*args)
        fresh = dict(self._entry(self._api_client.sanitize_for_serialization(item)) for item in listing.items)
        with self._lock:
            previous, self._entries = self._entries, fresh
        for key in set(previous) | set(fresh):
            self._report(on_change, key, previous.get(key), fresh.get(key))
        self.synced.set()
        return str(listing.metadata.resource_version)

    def _apply(self, event_type: str, raw: dict[str, Any], on_change: Callable[[str, str], None]) -> None:
        key, entry = self._entry(raw)
        with self._lock:
            old = self._entries.get(key)
            if event_type == "DELETED":
                self._entries.pop(key, None)
            else:
                self._entries[key] = entry
        self._report(on_change, key, old, None if event_type == "DELETED" else entry)

    @staticmethod
    def _entry(raw: dict[str, Any]) -> tuple[tuple[str, str], _CachedDeployment]:
        metadata = raw.get("metadata") or {}
        owners = metadata.get("ownerReferences") or []
        entry = _CachedDeployment(
            state=deployment_state(raw),
            owner_uids=frozenset(str(owner.get("uid")) for owner in owners),
            canary_app=(metadata.get("labels") or {}).get(APP_LABEL),
        )
        return (str(metadata.get("namespace")), str(metadata.get("name"))), entry

    @staticmethod
    def _report(
        on_change: Callable[[str, str], None],
        key: tuple[str, str],
        old: _CachedDeployment | None,
        new: _CachedDeployment | None,
    ) -> None:
        known = new or old
        if known is not None and known.canary_app and (old and old.state) != (new and new.state):
            on_change(key[0], known.canary_app)


class KubeCluster:
    """`namespace` and `selector` (a shard's label selector) limit which CanaryApps this reconciler sees:
    lists and watches ask the API server for them only, and a read by name of any other answers "not found".
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespace: str | None = None,
        selector: LabelSelector | None = None,
        fence: Callable[[], None] | None = None,
        *,
        stream: WatchStream = watch_stream,
        watch_timeout_seconds: int = 60,
    ) -> None:
        self.api_client = api_client
        # Called before every write of a CanaryApp (status, finalizers): raises when this replica no longer
        # provably leads (reconciler/runtime/leader.py), so a fenced leader writes nothing.
        self.fence = fence or (lambda: None)
        self.namespace = namespace
        self.selector = selector
        self.stream = stream
        self.watch_timeout_seconds = watch_timeout_seconds
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.apps = kubernetes.client.AppsV1Api(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.deployments = DeploymentCache(self.apps, api_client, namespace)

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
        """Every CanaryApp this reconciler sees, read in pages of LIST_PAGE_SIZE (one answer never holds
        more), with the resourceVersion of the list's snapshot (a paged list is one consistent snapshot)."""
        function, args = self._list_function()
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page: Any = function(*args, limit=LIST_PAGE_SIZE, **({"_continue": token} if token else {}))
            items.extend(page.get("items", []))
            token = page["metadata"].get("continue")
            if not token:
                return items, str(page["metadata"]["resourceVersion"])

    def watch_canary_apps(
        self, resource_version: str, on_event: EventHandler, until: Callable[[], bool]
    ) -> None:
        function, args = self._list_function()
        follow_watch(
            function,
            args,
            resource_version,
            self.stream,
            on_event,
            until=until,
            timeout_seconds=self.watch_timeout_seconds,
        )

    def _list_function(self) -> tuple[Any, tuple[Any, ...]]:
        """The list call of this reconciler's CanaryApps; the selector rides along as a bound argument."""
        if self.namespace:
            function: Any = self.custom.list_namespaced_custom_object
            args: tuple[Any, ...] = (GROUP, VERSION, self.namespace, PLURAL)
        else:
            function, args = self.custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)
        if self.selector is None:
            return function, args
        return functools.partial(function, label_selector=str(self.selector)), args

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.fence()
        try:
            stored: Any = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status}
            )
        except ApiException as error:
            raise _transient(error, f"writing the status of CanaryApp {namespace}/{name}") from error
        return dict(stored)

    def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        self.fence()
        try:
            stored: Any = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch
            )
        except ApiException as error:
            raise _transient(error, f"updating the finalizers of CanaryApp {namespace}/{name}") from error
        return dict(stored)

    # Deployments -----------------------------------------------------------------------------------------

    def follow_deployments(self, stop: threading.Event, on_change: Callable[[str, str], None]) -> None:
        self.deployments.follow(stop, on_change)

    def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        cached = self.deployments.lookup(namespace, name)
        if cached is not None:
            return cached.state
        try:
            deployment = self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _transient(error, f"reading Deployment {namespace}/{name}") from error
        return deployment_state(self.api_client.sanitize_for_serialization(deployment))

    # HTTPRoutes ------------------------------------------------------------------------------------------

    def http_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One HTTPRoute by name (RBAC: `get` on httproutes), read live: its status.parents says whether its
        Gateways accepted the weights the last step declared (one read per pass while a canary carries
        weight, bounded like every call)."""
        group, version = HTTP_ROUTE[1].split("/")
        try:
            found: Any = self.custom.get_namespaced_custom_object(
                group, version, namespace, "httproutes", name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise _transient(error, f"reading HTTPRoute {namespace}/{name}") from error
        return dict(found)

    # Metric templates -----------------------------------------------------------------------------------

    def metric_template(self, namespace: str, ref: TemplateRef) -> MetricTemplateSpec | None:
        """The spec of the MetricTemplate `ref.name` in `namespace` or of the ClusterMetricTemplate, by name
        (RBAC: `get` on both), read live at each check: a fixed template counts at once."""
        shown = ref.name if ref.kind == "ClusterMetricTemplate" else f"{namespace}/{ref.name}"
        try:
            if ref.kind == "ClusterMetricTemplate":
                found: Any = self.custom.get_cluster_custom_object(
                    GROUP, VERSION, "clustermetrictemplates", ref.name
                )
            else:
                found = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, "metrictemplates", ref.name
                )
        except ApiException as error:
            if error.status == 404:
                return None
            raise _transient(error, f"reading {ref.kind} {shown}") from error
        try:
            return MetricTemplateSpec.model_validate((found or {}).get("spec") or {})
        except ValidationError as error:
            problems = "; ".join(
                ".".join(("spec", *(str(part) for part in problem["loc"]))) + f": {problem['msg']}"
                for problem in error.errors()
            )
            raise TemplateError(f"{ref.kind} {shown} is invalid: {problems[:512]}: fix its spec") from error

    # Secrets ---------------------------------------------------------------------------------------------

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        """One Secret, by name, decoded (RBAC: `get` on Secrets, never `list` or `watch`)."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _transient(error, f"reading the Secret {namespace}/{name}") from error
        data = {}
        for key, value in (secret.data or {}).items():
            try:
                data[key] = base64.b64decode(value).decode()
            except (ValueError, UnicodeDecodeError):
                continue  # not text: no credential this reconciler uses
        metadata = secret.metadata
        labels = metadata.labels if metadata is not None else None
        annotations = metadata.annotations if metadata is not None else None
        return SecretData(labels=dict(labels or {}), data=data, annotations=dict(annotations or {}))

    # Pod Security and grants ----------------------------------------------------------------------------

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        try:
            found = self.core.read_namespace(namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _transient(error, f"reading the namespace {namespace}") from error
        return dict((found.metadata.labels if found.metadata is not None else None) or {})

    def object_annotations(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        if kind == "Secret":
            secret = self.read_secret(namespace, name)
            return None if secret is None else dict(secret.annotations)
        if kind != "ServiceAccount":
            raise ValueError(f"no grants are read from a {kind}")
        try:
            account = self.core.read_namespaced_service_account(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _transient(error, f"reading the ServiceAccount {namespace}/{name}") from error
        return dict((account.metadata.annotations if account.metadata is not None else None) or {})

    def pod_security_warnings(self, namespace: str, deployment: dict[str, Any]) -> list[str]:
        try:
            response: Any = self.apps.create_namespaced_deployment_with_http_info(
                namespace, cast(Any, deployment), dry_run="All", _preload_content=False, _request_timeout=30
            )
        except ApiException as error:
            if error.status in (400, 422):  # the template itself is invalid: a refusal, not a retry
                return [f"{pod_security.REFUSED_PREFIX}{_status_message(error)}"]
            raise _transient(error, f"dry-running a Deployment in {namespace}") from error
        raw = response[0] if isinstance(response, tuple) else response
        try:
            return [_warning_text(value) for value in raw.headers.getlist("Warning")]
        finally:
            raw.release_conn()

    # Ownership -------------------------------------------------------------------------------------------

    def owner_uids(self, namespace: str, ref: ObjectRef) -> frozenset[str] | None:
        cached = self.deployments.lookup(namespace, ref.name) if ref.kind == "Deployment" else None
        if cached is not None:
            return cached.owner_uids
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
