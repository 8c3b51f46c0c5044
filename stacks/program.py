"""The Pulumi program of one CanaryApp: it declares, from a `DesiredStack`, the primary and canary
Deployments (and the baseline's, when one runs), the apex Service `<name>` that selects every track's pods,
and asks a router (stacks/routers/) for the objects that split the Service's traffic at the current weights.
It never decides anything.

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
from reconciler.core.names import APP_LABEL, REVISION_ANNOTATION, TRACK_LABEL, track_name
from stacks.routers import router_named
from stacks.routing import SKIP_AWAIT, Route, Router

MANAGED_BY = {"app.kubernetes.io/managed-by": "canaryapp"}
# Server-side apply wins field conflicts, so a stack whose state was lost (or a field someone edited by hand)
# is taken back instead of failing the step. It is safe only because the reconciler runs no step while any
# object of the stack exists without this CanaryApp's owner reference (reconciler/ownership.py).
PATCH_FORCE = {"pulumi.com/patchForce": "true"}
# A Deployment rolls out a new template without losing capacity: no pod is taken down before its replacement
# is available (the primary rolls out the canary's template at promotion while it carries all other traffic).
STRATEGY = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}


def build_program(desired: DesiredStack) -> Callable[[], None]:
    def program() -> None:
        declare(desired)

    return program


def declare(desired: DesiredStack, router: Router | None = None) -> None:
    """Declares every resource of `desired` in the current Pulumi program; the traffic objects are `router`'s,
    by default those of the router the CanaryApp names (`desired.router`)."""
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
    if desired.baseline_template is not None:
        _deployment(
            desired,
            "baseline",
            desired.baseline_template,
            desired.baseline_revision or "",
            desired.test_replicas,
            desired.baseline_autoscaler,
        )
    _service(desired)
    (router or router_named(desired.router)).declare(route_of(desired), pulumi.ResourceOptions())
    pulumi.export("primaryImage", desired.primary_image)
    pulumi.export("canaryImage", desired.canary_image or "")
    pulumi.export("canaryWeight", desired.canary_weight)


def route_of(desired: DesiredStack) -> Route:
    """What the router is asked for: the apex Service split between the tracks at the desired weights (a
    baseline's weight only when one runs)."""
    return Route(
        service=desired.name,
        namespace=desired.namespace,
        port=desired.port,
        hosts=desired.hosts,
        gateways=desired.gateways,
        parent_refs=desired.parent_refs,
        primary_weight=desired.primary_weight,
        canary_weight=desired.canary_weight,
        metadata=_metadata(desired, desired.name, {APP_LABEL: desired.name}),
        baseline_weight=desired.baseline_weight if desired.baseline_template is not None else None,
    )


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
    name = track_name(desired.name, track)
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
    """The apex Service: it selects every track's pods; the router's objects tell them apart."""
    k8s.core.v1.Service(
        "apex-service",
        metadata=_metadata(desired, desired.name, {APP_LABEL: desired.name}, SKIP_AWAIT),
        spec={
            "selector": {APP_LABEL: desired.name},
            # By name: each track's pods may listen on their own port (a canary may change imageListenPort).
            "ports": [{"name": "http", "port": desired.port, "targetPort": workload.PORT_NAME}],
        },
    )
