"""Routes for the local mesh's tests. They follow CanaryApp's layout: one Service `x` selecting the pods of
both Deployments `x-primary` and `x-canary`, a DestinationRule `x` with the subsets `primary` and `canary`, a
VirtualService sending a weighted share to each subset."""

from __future__ import annotations

from devenv.mesh.labels import Reporter
from devenv.mesh.routing import Destination, Workload

NAMESPACE = "shop"
APP_SELECTOR = {"canary.atze.io/app": "x"}


def host(service: str) -> str:
    return f"{service}.{NAMESPACE}.svc.cluster.local"


def pod_labels(track: str) -> dict[str, str]:
    return {**APP_SELECTOR, "canary.atze.io/track": track, "app": "x", "version": track}


def workload(track: str, tag: str, available: int = 1, services: tuple[str, ...] = ("x",)) -> Workload:
    return Workload(f"x-{track}", NAMESPACE, pod_labels(track), tag, available, services)


def subset(name: str, weight: int, *workloads: Workload) -> Destination:
    return Destination("x", NAMESPACE, weight, name, workloads)


REPORTERS: tuple[Reporter, ...] = ("source", "destination")
