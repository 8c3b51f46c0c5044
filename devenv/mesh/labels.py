"""Istio's standard metric labels, as its stats filter sets them per reporting sidecar (`request_labels`), and
how the proxy learns who sent a request. Pure: it only reads the routes' value types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from devenv.mesh.routing import Destination, Workload

CLUSTER_DOMAIN = "svc.cluster.local"
GENERATOR_WORKLOAD = "local-traffic-generator"
# The generator names itself in a header, as Istio's peer-metadata exchange would; the proxy drops it.
SOURCE_HEADER = "X-Local-Mesh-Source-Workload"
UNKNOWN = "unknown"
Reporter = Literal["source", "destination"]
ISTIO_LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "destination_version",
    "destination_app",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
)


def _service_host(service: str, namespace: str) -> str:
    """A Service's fully qualified host name, as Istio's `destination_service` label spells it."""
    return f"{service}.{namespace}.{CLUSTER_DOMAIN}"


def request_labels(
    reporter: Reporter,
    route: Destination | None,
    answered_by: Workload | None,
    *,
    source_workload: str,
    source_namespace: str,
    response_code: int,
    response_flags: str,
) -> dict[str, str]:
    """Istio's standard metric labels for one request, as the stats filter of `reporter`'s sidecar sets them.

    `route` is the VirtualService destination chosen for the request (None: no route), `answered_by` the
    Deployment whose pod answered (None: no pod did, as with NR, NC and UH).

    - `destination_service`, `_name`, `_namespace`: the Service as a FQDN, its name and its namespace.
      reporter="source" takes the Service the route's host names. reporter="destination" takes the Service
      that selects the answering pod, from the inbound cluster's metadata (`Workload.services`: the Services
      whose selector is a non-empty subset of the pod's labels): the one the route's host names if it is among
      them, else the first by name; when none selects the pod, or no pod answered, the route's host as for the
      source. Without a route, "unknown".
    - `destination_workload`, `destination_workload_namespace`: the answering Deployment and its namespace.
    - `destination_version`: the pod's label `version`, else `app.kubernetes.io/version`; `destination_app`:
      `app`, else `app.kubernetes.io/name`. Never the image tag.
    - Every destination_* label not determined so, for want of a route or an answering pod, is "unknown".
    """
    service = (route.service, route.namespace) if route is not None else None
    if reporter == "destination" and answered_by is not None and answered_by.services:
        selecting = [(name, answered_by.namespace) for name in answered_by.services]
        if service not in selecting:
            service = selecting[0]
    pod_labels = answered_by.pod_labels if answered_by is not None else {}
    return {
        "reporter": reporter,
        "source_workload": source_workload,
        "source_workload_namespace": source_namespace,
        "destination_service": _service_host(*service) if service else UNKNOWN,
        "destination_service_name": service[0] if service else UNKNOWN,
        "destination_service_namespace": service[1] if service else UNKNOWN,
        "destination_workload": answered_by.name if answered_by else UNKNOWN,
        "destination_workload_namespace": answered_by.namespace if answered_by else UNKNOWN,
        "destination_version": _first_label(pod_labels, "version", "app.kubernetes.io/version"),
        "destination_app": _first_label(pod_labels, "app", "app.kubernetes.io/name"),
        "request_protocol": "http",
        "response_code": str(response_code),
        "response_flags": response_flags,
        "connection_security_policy": UNKNOWN,
    }


def _first_label(labels: Mapping[str, str], *keys: str) -> str:
    return next((labels[key] for key in keys if key in labels), UNKNOWN)
