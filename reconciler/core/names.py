"""Names of the objects a CanaryApp owns and of its Pulumi stack: one place, shared by the Pulumi program, the
reconciler's readiness reads and the ownership check.

A CanaryApp `web` in namespace `shop` owns the Deployments `web-primary` and (during a rollout) `web-canary`,
the Service `web`, the DestinationRule `web` and the VirtualService `web`, and with an autoscaler the
HorizontalPodAutoscalers `web-primary` and `web-canary`; its stack is `shop.web`.
"""

from __future__ import annotations

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


def primary_name(name: str) -> str:
    return f"{name}-primary"


def canary_name(name: str) -> str:
    return f"{name}-canary"


def stack_name(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


def owned_objects(name: str, *, with_canary: bool, autoscaled: bool = False) -> tuple[ObjectRef, ...]:
    """Every object a CanaryApp's stack declares (the canary Deployment only while a canary runs; an
    autoscaler per Deployment with spec.autoscaler)."""
    deployments = (primary_name(name), *((canary_name(name),) if with_canary else ()))
    return (
        *(ObjectRef(*DEPLOYMENT, deployment) for deployment in deployments),
        *(ObjectRef(*AUTOSCALER, deployment) for deployment in deployments if autoscaled),
        ObjectRef(*SERVICE, name),
        ObjectRef(*DESTINATION_RULE, name),
        ObjectRef(*VIRTUAL_SERVICE, name),
    )
