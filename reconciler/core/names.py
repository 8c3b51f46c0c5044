"""Names of the objects a CanaryApp owns and of its Pulumi stack: one place, shared by the Pulumi program, the
reconciler's readiness reads and the ownership check.

A CanaryApp `web` in namespace `shop` owns the Deployments `web-primary` and (during a rollout) `web-canary`,
the Service `web`, its router's objects (Istio: the DestinationRule `web` and the VirtualService `web`;
Gateway API: the Services `web-primary` and `web-canary` and the HTTPRoute `web`), and with an autoscaler the
HorizontalPodAutoscalers `web-primary` and `web-canary`; its stack is `shop.web`. The routers' object kinds
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

# The labels every pod of a CanaryApp carries: which CanaryApp, and which track (primary or canary).
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


def stack_name(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


def router_objects(name: str, router: Router) -> tuple[ObjectRef, ...]:
    """The objects `router` declares for CanaryApp `name` besides the apex Service."""
    if router == Router.GATEWAY_API:
        return (
            ObjectRef(*SERVICE, primary_name(name)),
            ObjectRef(*SERVICE, canary_name(name)),
            ObjectRef(*HTTP_ROUTE, name),
        )
    return ObjectRef(*DESTINATION_RULE, name), ObjectRef(*VIRTUAL_SERVICE, name)


def owned_objects(
    name: str, routers: Iterable[Router], *, with_canary: bool, autoscaled: bool = False
) -> tuple[ObjectRef, ...]:
    """Every object a CanaryApp's stack declares (the canary Deployment only while a canary runs; an
    autoscaler per Deployment with spec.autoscaler), with the objects of each of `routers` (two while a
    stack moves from one router to another: it deletes the old one's)."""
    deployments = (primary_name(name), *((canary_name(name),) if with_canary else ()))
    routed = dict.fromkeys(ref for router in dict.fromkeys(routers) for ref in router_objects(name, router))
    return (
        *(ObjectRef(*DEPLOYMENT, deployment) for deployment in deployments),
        *(ObjectRef(*AUTOSCALER, deployment) for deployment in deployments if autoscaled),
        ObjectRef(*SERVICE, name),
        *routed,
    )
