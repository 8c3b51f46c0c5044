"""The reconciler is a deputy: acting for a user who may only manage CanaryApps (examples/limited-user), a
CanaryApp never changes or deletes an object it does not own, never takes the API server's own Service, and
never binds a gateway or host the reconciler's operator did not allow. Real API server, real reconciler."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from devenv.cluster import LocalCluster
from devenv.kube import condition
from devenv.reconciler_process import ReconcilerProcess
from reconciler.core.model import GROUP, PLURAL, VERSION
from tests.integration.helpers import kubectl, wait_for

pytestmark = pytest.mark.integration

NAME_CONFLICT = "NameConflict"
NAMESPACE = "default"  # where the limited user may create CanaryApps
ISTIO = ("networking.istio.io", "v1")


@pytest.fixture(scope="module")
def default_reconciler(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    process = ReconcilerProcess(cluster.kubeconfig, NAMESPACE, tmp_path_factory.mktemp("reconciler"))
    process.start()
    yield
    process.stop()
    assert "Traceback" not in process.log()


def canary_app(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryApp",
        "metadata": {"name": name},
        "spec": {
            "image": "evil:v1",
            "imageListenPort": 8088,
            "prometheusQuery": "vector(1) > 2",
            "prometheusURL": "http://127.0.0.1:1",
            **spec,
        },
    }


class AsUser:
    """The limited user's own view: CanaryApps in `default`, created, read and deleted with their rights."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(client)

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)

    def status(self, name: str) -> dict[str, Any]:
        app: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        return dict(app.get("status") or {})

    def delete_and_wait(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)

        def gone() -> bool:
            try:
                self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
            except ApiException as error:
                return error.status == 404
            return False

        wait_for(gone, 60, f"CanaryApp {name} deleted (finalizer released)")


def warning_reasons(core: kubernetes.client.CoreV1Api, name: str) -> list[str]:
    events = core.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={name}").items
    return [event.reason for event in events if event.type == "Warning"]


def test_a_canaryapp_named_kubernetes_leaves_the_api_servers_service_alone(
    limited_user: kubernetes.client.ApiClient,
    kube: kubernetes.client.ApiClient,
    default_reconciler: None,
) -> None:
    core = kubernetes.client.CoreV1Api(kube)
    before = core.read_namespaced_service("kubernetes", NAMESPACE)
    slices_before = endpoint_slices(kube)
    user = AsUser(limited_user)
    user.create(canary_app("kubernetes"))
    status = wait_for(
        lambda: "reserved" in user.status("kubernetes").get("message", "") and user.status("kubernetes"),
        60,
        "the CanaryApp refused as reserved",
    )
    assert "metadata.name: the Service default/kubernetes is reserved" in status["message"]
    # The Event is written after the status: wait for it rather than read once.
    wait_for(lambda: "InvalidSpec" in warning_reasons(core, "kubernetes"), 30, "an InvalidSpec Warning Event")
    user.delete_and_wait("kubernetes")
    after = core.read_namespaced_service("kubernetes", NAMESPACE)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.spec.selector is None
    assert [port.port for port in after.spec.ports] == [443]
    # Had the Service gained a selector, the EndpointSlice controller would have written slices for it.
    assert endpoint_slices(kube) == slices_before


def endpoint_slices(kube: kubernetes.client.ApiClient) -> list[tuple[str, str]]:
    """The EndpointSlices of the `kubernetes` Service: (name, resourceVersion)."""
    slices = kubernetes.client.DiscoveryV1Api(kube).list_namespaced_endpoint_slice(
        NAMESPACE, label_selector="kubernetes.io/service-name=kubernetes"
    )
    return sorted((item.metadata.name, item.metadata.resource_version) for item in slices.items)


def settled(kind: str, found: dict[str, Any]) -> bool:
    """Whether the cluster's own controllers are done with a new object: the deployment controller writes a
    Deployment's revision annotation before its status's observedGeneration."""
    if kind != "Deployment":
        return True
    return bool((found.get("status") or {}).get("observedGeneration") == found["metadata"]["generation"])


def victim_objects(name: str) -> list[tuple[str, dict[str, Any]]]:
    """Objects someone else made, with the names a CanaryApp `name` would derive."""
    labels = {"app": "victim"}
    deployment = {
        "metadata": {"name": f"{name}-primary", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "victim:v1"}]},
            },
        },
    }
    service = {"metadata": {"name": name}, "spec": {"selector": labels, "ports": [{"port": 80}]}}
    virtual_service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": "victim-backend"}}]}]},
    }
    return [("Deployment", deployment), ("Service", service), ("VirtualService", virtual_service)]


class Objects:
    def __init__(self, kube: kubernetes.client.ApiClient) -> None:
        self.kube = kube
        self.apps = kubernetes.client.AppsV1Api(kube)
        self.core = kubernetes.client.CoreV1Api(kube)
        self.custom = kubernetes.client.CustomObjectsApi(kube)

    def create(self, kind: str, body: dict[str, Any]) -> None:
        if kind == "Deployment":
            self.apps.create_namespaced_deployment(NAMESPACE, body)
        elif kind == "Service":
            self.core.create_namespaced_service(NAMESPACE, body)
        else:
            self.custom.create_namespaced_custom_object(*ISTIO, NAMESPACE, "virtualservices", body)

    def read(self, kind: str, name: str) -> dict[str, Any]:
        """The object as the API server serves it (camelCase)."""
        if kind == "Deployment":
            found: Any = self.apps.read_namespaced_deployment(name, NAMESPACE)
        elif kind == "Service":
            found = self.core.read_namespaced_service(name, NAMESPACE)
        else:
            found = self.custom.get_namespaced_custom_object(*ISTIO, NAMESPACE, "virtualservices", name)
        return dict(self.kube.sanitize_for_serialization(found))

    def delete(self, kind: str, name: str) -> None:
        if kind == "Deployment":
            self.apps.delete_namespaced_deployment(name, NAMESPACE)
        elif kind == "Service":
            self.core.delete_namespaced_service(name, NAMESPACE)
        else:
            self.custom.delete_namespaced_custom_object(*ISTIO, NAMESPACE, "virtualservices", name)


def test_objects_it_does_not_own_are_never_changed_or_deleted(
    limited_user: kubernetes.client.ApiClient,
    kube: kubernetes.client.ApiClient,
    cluster: LocalCluster,
    default_reconciler: None,
) -> None:
    name = f"victim-{uuid.uuid4().hex[:6]}"
    objects = Objects(kube)
    victims = victim_objects(name)
    for kind, body in victims:
        objects.create(kind, body)
    # The deployment controller annotates a new Deployment with its revision; the snapshot waits for it (the
    # cluster's own change, not the reconciler's).
    wait_for(
        lambda: all(settled(kind, objects.read(kind, body["metadata"]["name"])) for kind, body in victims),
        30,
        "the cluster's controllers done with the victims",
    )
    before = {kind: objects.read(kind, body["metadata"]["name"]) for kind, body in victims}
    user = AsUser(limited_user)
    user.create(canary_app(name))
    try:
        conflict = wait_for(
            lambda: (c := condition(user.status(name), "StackSynced")) and c["reason"] == NAME_CONFLICT and c,
            60,
            "the name conflict reported",
        )
        for kind, body in victims:
            assert f"{kind} {NAMESPACE}/{body['metadata']['name']}" in conflict["message"]
        assert conflict["status"] == "False"
        listed = kubectl(cluster.kubeconfig, "get", "canaryapp", name, "--namespace", NAMESPACE)
        assert "NameConflict" in listed.stdout, listed.stdout + listed.stderr
        described = kubectl(cluster.kubeconfig, "describe", "canaryapp", name, "--namespace", NAMESPACE)
        assert "NameConflict" in described.stdout
        wait_for(
            lambda: "NameConflict" in warning_reasons(objects.core, name), 30, "a NameConflict Warning Event"
        )
        assert warning_reasons(objects.core, name).count("NameConflict") == 1
        user.delete_and_wait(name)
        for kind, body in victims:
            after = objects.read(kind, body["metadata"]["name"])
            # Status updates by the cluster's own controllers change resourceVersion; what the reconciler
            # would change is the spec, the labels and annotations, the owners and the field managers.
            assert after["spec"] == before[kind]["spec"], kind
            for field in ("labels", "annotations", "ownerReferences"):
                assert after["metadata"].get(field) == before[kind]["metadata"].get(field), (kind, field)
            managers = {entry["manager"] for entry in after["metadata"].get("managedFields", [])}
            assert not any("pulumi" in manager for manager in managers), (kind, managers)
    finally:
        for kind, body in victims:
            objects.delete(kind, body["metadata"]["name"])


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        pytest.param({"gateways": ["istio-system/public-gateway"]}, "spec.gateways", id="gateway"),
        pytest.param({"hosts": ["www.example.com"]}, "spec.hosts", id="host"),
    ],
)
def test_a_gateway_or_host_the_operator_did_not_allow_is_refused(
    limited_user: kubernetes.client.ApiClient,
    kube: kubernetes.client.ApiClient,
    default_reconciler: None,
    spec: dict[str, Any],
    field: str,
) -> None:
    name = f"route-{uuid.uuid4().hex[:6]}"
    user = AsUser(limited_user)
    user.create(canary_app(name, **spec))
    try:
        status = wait_for(
            lambda: "is invalid" in user.status(name).get("message", "") and user.status(name),
            60,
            "the CanaryApp refused",
        )
        assert f"{field}:" in status["message"]
        assert "--allowed-" in status["message"]
        objects = Objects(kube)
        with pytest.raises(ApiException) as missing:
            objects.read("VirtualService", name)
        assert missing.value.status == 404
    finally:
        user.delete_and_wait(name)


def test_names_too_long_for_its_objects_are_refused_at_admission(
    limited_user: kubernetes.client.ApiClient,
) -> None:
    with pytest.raises(ApiException) as refused:
        AsUser(limited_user).create(canary_app("a" * 56))
    assert refused.value.status == 422
    assert "at most 55 characters" in str(refused.value.body)


@pytest.mark.parametrize(
    ("pod", "refused"),
    [
        pytest.param(
            {"serviceAccountName": "admin", "containers": [{"name": "app"}]},
            "spec.template.spec.serviceAccountName: running as the ServiceAccount default/admin",
            id="another ServiceAccount",
        ),
        pytest.param(
            {"containers": [{"name": "app", "securityContext": {"privileged": True}}]},
            "spec.template: the API server's Pod Security admission would violate PodSecurity "
            '"baseline:latest": privileged (container "app" must not set securityContext.privileged=true)',
            id="a privileged container (Pod Security's own verdict)",
        ),
    ],
)
def test_a_template_asking_for_more_than_its_author_may_have_is_refused(
    limited_user: kubernetes.client.ApiClient,
    kube: kubernetes.client.ApiClient,
    default_reconciler: None,
    pod: dict[str, Any],
    refused: str,
) -> None:
    """The limited user may not create pods; through a CanaryApp they get only what the reconciler's pod
    policy allows (by default: the namespace's default ServiceAccount) and what the namespace's Pod Security
    level allows (the API server's own verdict, asked by a dry run: nothing privileged)."""
    name = f"pod-{uuid.uuid4().hex[:6]}"
    user = AsUser(limited_user)
    user.create(canary_app(name, template={"spec": pod}))
    try:
        status = wait_for(
            lambda: refused in user.status(name).get("message", "") and user.status(name), 60, "the refusal"
        )
        assert "ask its operator" in status["message"] or "change the template" in status["message"]
        wait_for(
            lambda: "InvalidSpec" in warning_reasons(kubernetes.client.CoreV1Api(kube), name), 30, "an Event"
        )
        with pytest.raises(ApiException) as missing:
            kubernetes.client.AppsV1Api(kube).read_namespaced_deployment(f"{name}-primary", NAMESPACE)
        assert missing.value.status == 404
    finally:
        user.delete_and_wait(name)


def test_deleting_a_canaryapp_leaves_an_object_that_stopped_being_its_own_alone(
    limited_user: kubernetes.client.ApiClient, kube: kubernetes.client.ApiClient, default_reconciler: None
) -> None:
    """Its stack created web-primary; then someone took the name over (here: the owner reference removed, as
    if the object had been deleted and made again by someone else). Deleting the CanaryApp destroys the rest
    of its stack, never that object."""
    name = f"handover-{uuid.uuid4().hex[:6]}"
    user = AsUser(limited_user)
    user.create(canary_app(name))
    wait_for(lambda: user.status(name).get("phase") == "Ready", 120, f"{name} Ready")
    apps = kubernetes.client.AppsV1Api(kube)
    primary = f"{name}-primary"
    apps.patch_namespaced_deployment(
        primary, NAMESPACE, [{"op": "remove", "path": "/metadata/ownerReferences"}]
    )
    user.delete_and_wait(name)
    kept = apps.read_namespaced_deployment(primary, NAMESPACE)
    assert kept.metadata.deletion_timestamp is None
    assert "NameConflict" in warning_reasons(kubernetes.client.CoreV1Api(kube), name)
    with pytest.raises(ApiException) as gone:
        kubernetes.client.CoreV1Api(kube).read_namespaced_service(name, NAMESPACE)
    assert gone.value.status == 404
    apps.delete_namespaced_deployment(primary, NAMESPACE)
