"""Names of the objects a CanaryApp owns and of its Pulumi stack: one place, shared by the Pulumi program, the
reconciler's readiness reads and the ownership check.

A CanaryApp `web` in namespace `shop` owns the Deployments `web-primary` and (during a rollout) `web-canary`
and, with spec.analysis.baseline, `web-baseline`, the Service `web`, its router's objects (Istio: the
DestinationRule `web` and the VirtualService `web`; Gateway API: the Services `web-primary`, `web-canary` and
with a baseline `web-baseline`, and the HTTPRoute `web`), and with an autoscaler a HorizontalPodAutoscaler of
each Deployment's name; its stack is `shop.web`. The routers' object kinds
are data here, so the core checks ownership without knowing the Pulumi program (stacks/routers/ declares
them by these names).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

# Longest suffix added to a CanaryApp's name ("-primary"); Service and label values are DNS-1035 labels of at
# most 63 characters, so a CanaryApp's name may have at most 63 - 8 = 55.
LONGEST_SUFFIX = "-primary"
MAX_NAME_LENGTH = 63 - len(LONGEST_SUFFIX)

# The labels every pod of a CanaryApp carries: which CanaryApp, and which track (primary, canary, baseline).
APP_LABEL = "canary.atze.io/app"
TRACK_LABEL = "canary.atze.io/track"
# The revision (workload.revision) of the pod template a Deployment runs, on the Deployment itself.
REVISION_ANNOTATION = "canary.atze.io/revision"


class Router(enum.StrEnum):
    """Which objects split a CanaryApp's traffic (spec.router; stacks/routers/, docs/routing.md)."""

    ISTIO = "istio"  # a DestinationRule and a VirtualService: the original operator's layout
    GATEWAY_API = "gateway-api"  # an HTTPRoute with weighted backendRefs to per-track Services


@dataclass(frozen=True)
class ObjectRef:
    """An object in the CanaryApp's namespace, as the ownership check reads it."""

    kind: str
    api_version: str
    name: str

    def describe(self, namespace: str) -> str:
        return f"{self.kind} {namespace}/{self.name}"


DEPLOYMENT = ("Deployment", "apps/v1")
SERVICE = ("Service", "v1")
VIRTUAL_SERVICE = ("VirtualService", "networking.istio.io/v1")
DESTINATION_RULE = ("DestinationRule", "networking.istio.io/v1")
AUTOSCALER = ("HorizontalPodAutoscaler", "autoscaling/v2")
HTTP_ROUTE = ("HTTPRoute", "gateway.networking.k8s.io/v1")


def primary_name(name: str) -> str:
    return f"{name}-primary"


def canary_name(name: str) -> str:
    return f"{name}-canary"


def baseline_name(name: str) -> str:
    """The baseline (spec.analysis.baseline): the primary's release at the canary's size, beside it."""
    return f"{name}-baseline"


def track_name(name: str, track: str) -> str:
    """The Deployment of one track (`primary`, `canary`, `baseline`), and its gateway-api Service."""
    return {"primary": primary_name, "canary": canary_name, "baseline": baseline_name}[track](name)


def stack_name(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


def router_objects(name: str, router: Router, *, with_baseline: bool = False) -> tuple[ObjectRef, ...]:
    """The objects `router` declares for CanaryApp `name` besides the apex Service (gateway-api: a Service
    for the baseline too while one runs)."""
    if router == Router.GATEWAY_API:
        return (
            ObjectRef(*SERVICE, primary_name(name)),
            ObjectRef(*SERVICE, canary_name(name)),
            *((ObjectRef(*SERVICE, baseline_name(name)),) if with_baseline else ()),
            ObjectRef(*HTTP_ROUTE, name),
        )
    return ObjectRef(*DESTINATION_RULE, name), ObjectRef(*VIRTUAL_SERVICE, name)


def owned_objects(
    name: str,
    routers: Iterable[Router],
    *,
    with_canary: bool,
    autoscaled: bool = False,
    with_baseline: bool = False,
) -> tuple[ObjectRef, ...]:
    """Every object a CanaryApp's stack declares (the canary Deployment only while a canary runs, the
    baseline's only while a baseline runs beside it; an autoscaler per Deployment with spec.autoscaler), with
    the objects of each of `routers` (two while a stack moves from one router to another: it deletes the old
    one's)."""
    deployments = (
        primary_name(name),
        *((canary_name(name),) if with_canary else ()),
        *((baseline_name(name),) if with_baseline else ()),
    )
    routed = dict.fromkeys(
        ref
        for router in dict.fromkeys(routers)
        for ref in router_objects(name, router, with_baseline=with_baseline)
    )
    return (
        *(ObjectRef(*DEPLOYMENT, deployment) for deployment in deployments),
        *(ObjectRef(*AUTOSCALER, deployment) for deployment in deployments if autoscaled),
        ObjectRef(*SERVICE, name),
        *routed,
    )
