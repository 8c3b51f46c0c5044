"""Gateway API's router: an HTTPRoute splits the traffic between per-track Services by weight.

The Gateway API has no subsets: a backendRef names a Service. So beside the apex Service `<name>` (both
tracks' pods, declared by the program) this router declares the Services `<name>-primary` and `<name>-canary`,
each selecting one track's pods by the track label on the apex Service's port, and the HTTPRoute `<name>`
(gateway.networking.k8s.io/v1) attached to the spec's parent Gateways, whose one rule sends each backendRef
its percentage (the canary's is there at weight 0 when no canary runs, so a step changes weights only). While
a baseline runs (spec.analysis.baseline) there is a third Service `<name>-baseline` and a third backendRef.

Every Gateway API implementation labels a request's metrics with the backend Service it chose, so a canary's
requests carry `<name>-canary`, never `<name>` (docs/routing.md: how to write the query). The reconciler
counts a weight as applied only when every parent accepted the route at its generation
(reconciler/core/routes.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from reconciler.core.names import APP_LABEL, HTTP_ROUTE, TRACK_LABEL, track_name
from reconciler.core.routes import GATEWAY_GROUP, GATEWAY_KIND, GatewayRef
from reconciler.core.workload import PORT_NAME
from stacks.routing import SKIP_AWAIT, Route


def declare(route: Route, opts: pulumi.ResourceOptions) -> None:
    services = [
        k8s.core.v1.Service(
            f"{track}-service",
            metadata=track_metadata(route, track),
            spec=track_service_spec(route, track),
            opts=opts,
        )
        for track in route.tracks
    ]
    kind, api_version = HTTP_ROUTE
    k8s.apiextensions.CustomResource(
        "httproute",
        api_version=api_version,
        kind=kind,
        metadata=_with_skip_await(route.metadata),
        spec=http_route_spec(route),
        # A backendRef to a Service that does not exist yet would answer 500 (ResolvedRefs=False).
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=services)),
    )


def track_service_name(route: Route, track: str) -> str:
    return track_name(route.service, track)


def track_metadata(route: Route, track: str) -> dict[str, Any]:
    metadata = _with_skip_await(route.metadata)
    return {
        **metadata,
        "name": track_service_name(route, track),
        "labels": {**(route.metadata.get("labels") or {}), TRACK_LABEL: track},
    }


def track_service_spec(route: Route, track: str) -> dict[str, Any]:
    """The apex Service's selector and port, narrowed to one track's pods."""
    return {
        "selector": {APP_LABEL: route.service, TRACK_LABEL: track},
        "ports": [{"name": "http", "port": route.port, "targetPort": PORT_NAME}],
    }


def parent_ref(parent: GatewayRef) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "group": GATEWAY_GROUP,
        "kind": GATEWAY_KIND,
        "namespace": parent.namespace,
        "name": parent.name,
    }
    if parent.section_name:
        ref["sectionName"] = parent.section_name
    if parent.port:
        ref["port"] = parent.port
    return ref


def http_route_spec(route: Route) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "parentRefs": [parent_ref(parent) for parent in route.parent_refs],
        "rules": [
            {
                "backendRefs": [
                    {
                        "name": track_service_name(route, track),
                        "port": route.port,
                        "weight": route.weight(track),
                    }
                    for track in route.tracks
                ]
            }
        ],
    }
    if route.hosts:
        spec["hostnames"] = list(route.hosts)
    return spec


def _with_skip_await(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {**metadata, "annotations": {**(metadata.get("annotations") or {}), **SKIP_AWAIT}}
