"""The Pulumi program of one CanaryApp: it declares, from a `DesiredStack`, the primary and canary
Deployments, the Services and the Istio VirtualService with the current weights. It never decides anything.

Routing follows Flagger's layout rather than the original operator's DestinationRule subsets: the apex
Service `<name>` (the VirtualService host), `<name>-primary` and `<name>-canary` Services, and a weighted
route between the two. The canary Service stays when no canary runs (weight 0, no endpoints), so starting a
canary changes one Deployment and nothing else.

Deployments and Services carry `pulumi.com/skipAwait`: every `up` returns as soon as the API server
accepted the change, and the reconciler loop watches readiness itself. A step is then seconds long, a
killed reconciler never leaves a long update holding the stack lock, and the decision to wait stays in
`decide()`. Every object also carries `pulumi.com/patchForce` (see PATCH_FORCE).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from reconciler.desired import DesiredStack
from reconciler.model import API_VERSION, KIND
from stacks.names import canary_name, primary_name

APP_LABEL = "canary.atze.io/app"
TRACK_LABEL = "canary.atze.io/track"
MANAGED_BY = {"app.kubernetes.io/managed-by": "canaryapp"}
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
# The reconciler owns these objects: its server-side apply wins field conflicts, so a stack whose state was
# lost (or a field someone edited by hand) is taken back instead of failing the step.
PATCH_FORCE = {"pulumi.com/patchForce": "true"}
VIRTUAL_SERVICE_API_VERSION = "networking.istio.io/v1"
ROUTE_NAME = "canary-split"


def build_program(desired: DesiredStack) -> Callable[[], None]:
    def program() -> None:
        declare(desired)

    return program


def declare(desired: DesiredStack) -> None:
    """Declares every resource of `desired` in the current Pulumi program."""
    _deployment(desired, "primary", desired.primary_image, desired.replicas)
    if desired.canary_image is not None:
        _deployment(desired, "canary", desired.canary_image, desired.test_replicas)
    _service(desired, "apex", desired.name, "primary")
    _service(desired, "primary", primary_name(desired.name), "primary")
    _service(desired, "canary", canary_name(desired.name), "canary")
    k8s.apiextensions.CustomResource(
        "virtualservice",
        api_version=VIRTUAL_SERVICE_API_VERSION,
        kind="VirtualService",
        metadata=_metadata(desired, desired.name, {APP_LABEL: desired.name}),
        spec=virtual_service_spec(desired),
    )
    pulumi.export("primaryImage", desired.primary_image)
    pulumi.export("canaryImage", desired.canary_image or "")
    pulumi.export("canaryWeight", desired.canary_weight)


def virtual_service_spec(desired: DesiredStack) -> dict[str, Any]:
    def destination(service: str, weight: int) -> dict[str, Any]:
        host = f"{service}.{desired.namespace}.svc.cluster.local"
        return {"destination": {"host": host, "port": {"number": desired.port}}, "weight": weight}

    spec: dict[str, Any] = {
        "hosts": list(desired.hosts),
        "http": [
            {
                "name": ROUTE_NAME,
                "route": [
                    destination(primary_name(desired.name), desired.primary_weight),
                    destination(canary_name(desired.name), desired.canary_weight),
                ],
            }
        ],
    }
    if desired.gateways:
        spec["gateways"] = list(desired.gateways)
    return spec


def _metadata(
    desired: DesiredStack, name: str, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": desired.namespace,
        "labels": {**MANAGED_BY, **labels},
        "annotations": {**PATCH_FORCE, **(annotations or {})},
    }
    if desired.owner_uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": desired.name,
                "uid": desired.owner_uid,
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ]
    return metadata


def _deployment(desired: DesiredStack, track: str, image: str, replicas: int) -> None:
    name = primary_name(desired.name) if track == "primary" else canary_name(desired.name)
    pod_labels = {APP_LABEL: desired.name, TRACK_LABEL: track}
    k8s.apps.v1.Deployment(
        f"{track}-deployment",
        metadata=_metadata(desired, name, pod_labels, SKIP_AWAIT),
        spec={
            "replicas": replicas,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": {**pod_labels, "app": desired.name, "version": track}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": desired.port}],
                            "readinessProbe": {"tcpSocket": {"port": desired.port}, "periodSeconds": 5},
                        }
                    ]
                },
            },
        },
    )


def _service(desired: DesiredStack, role: str, name: str, track: str) -> None:
    k8s.core.v1.Service(
        f"{role}-service",
        metadata=_metadata(desired, name, {APP_LABEL: desired.name}, SKIP_AWAIT),
        spec={
            "selector": {APP_LABEL: desired.name, TRACK_LABEL: track},
            "ports": [{"name": "http", "port": desired.port, "targetPort": desired.port}],
        },
    )
