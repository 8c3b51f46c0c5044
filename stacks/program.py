"""The Pulumi program of one CanaryApp: it declares, from a `DesiredStack`, the primary and canary
Deployments, the Service, the Istio DestinationRule and the VirtualService with the current weights. It never
decides anything.

Routing follows the original operator: one Service `<name>` selects the pods of both Deployments, a
DestinationRule `<name>` splits them into the subsets `primary` and `canary` by the track label, and the
VirtualService `<name>` sends a weighted share of the traffic to each subset. Istio's stats filter labels a
request with the Service it was routed to, so both tracks' requests carry `destination_service_name="<name>"`
— what every query written for the original operator filters on — while `destination_workload` still tells
`<name>-primary` from `<name>-canary` (Flagger-style queries).

Deployments and Services carry `pulumi.com/skipAwait`: every `up` returns as soon as the API server
accepted the change, and the reconciler loop watches readiness itself. A step is then seconds long, a
killed reconciler never leaves a long update holding the stack lock, and the decision to wait stays in
`decide()`. Every object also carries `pulumi.com/patchForce` (see PATCH_FORCE).

Nothing is declared from a desired stack with a map holding Pulumi's signature key (see
reconciler/core/reserved_keys.py): the engine would read it as an asset, a secret or a reference, not as data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from reconciler.core import reserved_keys, workload
from reconciler.core.desired import AutoscalerSpec, DesiredStack
from reconciler.core.model import API_VERSION, KIND
from reconciler.core.names import APP_LABEL, REVISION_ANNOTATION, TRACK_LABEL, canary_name, primary_name

MANAGED_BY = {"app.kubernetes.io/managed-by": "canaryapp"}
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
# Server-side apply wins field conflicts, so a stack whose state was lost (or a field someone edited by hand)
# is taken back instead of failing the step. It is safe only because the reconciler runs no step while any
# object of the stack exists without this CanaryApp's owner reference (reconciler/ownership.py).
PATCH_FORCE = {"pulumi.com/patchForce": "true"}
ISTIO_API_VERSION = "networking.istio.io/v1"
TRACKS = ("primary", "canary")
ROUTE_NAME = "canary-split"
# A Deployment rolls out a new template without losing capacity: no pod is taken down before its replacement
# is available (the primary rolls out the canary's template at promotion while it carries all other traffic).
STRATEGY = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}


def build_program(desired: DesiredStack) -> Callable[[], None]:
    def program() -> None:
        declare(desired)

    return program


def declare(desired: DesiredStack) -> None:
    """Declares every resource of `desired` in the current Pulumi program."""
    # The CRD and the model refuse the key in a spec; the pod templates come from the status too.
    reserved_keys.refuse_reserved_key(
        dataclasses.asdict(desired),
        "desired",
        f"remove it from CanaryApp {desired.namespace}/{desired.name} (spec.template, or the revision's "
        "template in status.podTemplates)",
    )
    _deployment(
        desired,
        "primary",
        desired.primary_template,
        desired.primary_revision,
        desired.replicas,
        desired.primary_autoscaler,
    )
    if desired.canary_template is not None:
        _deployment(
            desired,
            "canary",
            desired.canary_template,
            desired.canary_revision or "",
            desired.test_replicas,
            desired.canary_autoscaler,
        )
    _service(desired)
    destination_rule = k8s.apiextensions.CustomResource(
        "destinationrule",
        api_version=ISTIO_API_VERSION,
        kind="DestinationRule",
        metadata=_metadata(desired, desired.name, {APP_LABEL: desired.name}),
        spec=destination_rule_spec(desired),
    )
    k8s.apiextensions.CustomResource(
        "virtualservice",
        api_version=ISTIO_API_VERSION,
        kind="VirtualService",
        metadata=_metadata(desired, desired.name, {APP_LABEL: desired.name}),
        spec=virtual_service_spec(desired),
        # A route to a subset the DestinationRule does not define yet would answer 503 (Envoy's NC).
        opts=pulumi.ResourceOptions(depends_on=[destination_rule]),
    )
    pulumi.export("primaryImage", desired.primary_image)
    pulumi.export("canaryImage", desired.canary_image or "")
    pulumi.export("canaryWeight", desired.canary_weight)


def service_host(desired: DesiredStack) -> str:
    return f"{desired.name}.{desired.namespace}.svc.cluster.local"


def destination_rule_spec(desired: DesiredStack) -> dict[str, Any]:
    return {
        "host": service_host(desired),
        "subsets": [{"name": track, "labels": {TRACK_LABEL: track}} for track in TRACKS],
    }


def virtual_service_spec(desired: DesiredStack) -> dict[str, Any]:
    def destination(subset: str, weight: int) -> dict[str, Any]:
        target = {"host": service_host(desired), "subset": subset, "port": {"number": desired.port}}
        return {"destination": target, "weight": weight}

    spec: dict[str, Any] = {
        "hosts": list(desired.hosts),
        "http": [
            {
                "name": ROUTE_NAME,
                "route": [
                    destination("primary", desired.primary_weight),
                    destination("canary", desired.canary_weight),
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


def _deployment(
    desired: DesiredStack,
    track: str,
    template: dict[str, Any],
    revision: str,
    replicas: int,
    autoscaler: AutoscalerSpec | None,
) -> None:
    name = primary_name(desired.name) if track == "primary" else canary_name(desired.name)
    pod_labels = {APP_LABEL: desired.name, TRACK_LABEL: track}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": pod_labels},
        "strategy": STRATEGY,
        "template": workload.pod_template(desired.name, track, template),
    }
    if autoscaler is None:
        # With an autoscaler the replicas are its own: declaring them would undo its scaling at every step.
        spec["replicas"] = replicas
    deployment = k8s.apps.v1.Deployment(
        f"{track}-deployment",
        metadata=_metadata(desired, name, pod_labels, {**SKIP_AWAIT, REVISION_ANNOTATION: revision}),
        spec=spec,
    )
    if autoscaler is not None:
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{track}-autoscaler",
            metadata=_metadata(desired, name, pod_labels),
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": autoscaler.min_replicas,
                "maxReplicas": autoscaler.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": autoscaler.target_cpu_percent,
                            },
                        },
                    }
                ],
            },
            opts=pulumi.ResourceOptions(depends_on=[deployment]),
        )


def _service(desired: DesiredStack) -> None:
    """The apex Service: it selects both tracks' pods; the DestinationRule's subsets tell them apart."""
    k8s.core.v1.Service(
        "apex-service",
        metadata=_metadata(desired, desired.name, {APP_LABEL: desired.name}, SKIP_AWAIT),
        spec={
            "selector": {APP_LABEL: desired.name},
            # By name: each track's pods may listen on their own port (a canary may change imageListenPort).
            "ports": [{"name": "http", "port": desired.port, "targetPort": workload.PORT_NAME}],
        },
    )
