"""Istio's router: a DestinationRule and a VirtualService split the apex Service between the tracks.

Routing follows the original operator: one Service `<name>` selects the pods of both Deployments, a
DestinationRule `<name>` splits them into the subsets `primary` and `canary` by the track label, and the
VirtualService `<name>` sends a weighted share of the traffic to each subset. While a baseline runs
(spec.analysis.baseline) the rule has a third subset `baseline` and the route a third destination. Istio's
stats filter labels a request with the Service it was routed to, so every track's requests carry
`destination_service_name="<name>"` — what every query written for the original operator filters on — while
`destination_workload` still tells `<name>-primary`, `<name>-canary` and `<name>-baseline` apart
(Flagger-style queries).

The logical names `destinationrule` and `virtualservice` are those of every existing stack: renamed, they
would replace both objects of every CanaryApp.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from reconciler.core.names import DESTINATION_RULE, TRACK_LABEL, VIRTUAL_SERVICE
from stacks.routing import Route

ROUTE_NAME = "canary-split"


def declare(route: Route, opts: pulumi.ResourceOptions) -> None:
    kind, api_version = DESTINATION_RULE
    destination_rule = k8s.apiextensions.CustomResource(
        "destinationrule",
        api_version=api_version,
        kind=kind,
        metadata=route.metadata,
        spec=destination_rule_spec(route),
        opts=opts,
    )
    kind, api_version = VIRTUAL_SERVICE
    k8s.apiextensions.CustomResource(
        "virtualservice",
        api_version=api_version,
        kind=kind,
        metadata=route.metadata,
        spec=virtual_service_spec(route),
        # A route to a subset the DestinationRule does not define yet would answer 503 (Envoy's NC).
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[destination_rule])),
    )


def service_host(route: Route) -> str:
    return f"{route.service}.{route.namespace}.svc.cluster.local"


def destination_rule_spec(route: Route) -> dict[str, Any]:
    return {
        "host": service_host(route),
        "subsets": [{"name": track, "labels": {TRACK_LABEL: track}} for track in route.tracks],
    }


def virtual_service_spec(route: Route) -> dict[str, Any]:
    def destination(subset: str) -> dict[str, Any]:
        target = {"host": service_host(route), "subset": subset, "port": {"number": route.port}}
        return {"destination": target, "weight": route.weight(subset)}

    spec: dict[str, Any] = {
        "hosts": list(route.hosts),
        "http": [
            {
                "name": ROUTE_NAME,
                "route": [destination(track) for track in route.tracks],
            }
        ],
    }
    if route.gateways:
        spec["gateways"] = list(route.gateways)
    return spec
