"""A local stand-in for Istio's data plane, for the demo and the tests: it is NOT part of the reconciler, and
nothing in `reconciler/` or `stacks/` imports it.

The local cluster's pods are kwok fakes and there is no Envoy, so nothing would carry the traffic a
VirtualService routes, and no sidecar would produce the metrics the reconciler's Prometheus query reads. This
module plays that part with real processes and real HTTP:

- a watcher reads the VirtualService, the DestinationRules, Services and Deployments of its namespace every
  half second and resolves each weighted destination as Istio does: the host names a Service, the optional
  subset names a subset of the DestinationRule for that host, and the endpoints are the pods of the
  Deployments that match the Service's selector and the subset's labels together;
- one status-code-server process (`examples/status-code-server/server.py`) runs per image tag the resolved
  Deployments use, started when a Deployment needs it and stopped when none does; the tag plays the version
  of the binary a pod runs;
- an ingress-like proxy picks a destination per request by the weights, then one of its Deployments in
  proportion to their available replicas (both by smooth weighted round-robin, so exact and deterministic),
  forwards the request to that Deployment's process and returns its answer;
- the proxy exports Istio's `istio_requests_total` and `istio_request_duration_milliseconds` on
  `/stats/prometheus` with the labels Istio's stats filter sets (`request_labels`): a request that reached a
  pod is counted by both sidecars of a mesh-internal call, `reporter="source"` and `reporter="destination"`;
- a load generator sends real requests through the proxy's own URL, the same path a curl takes.

Like Envoy, the proxy picks a destination by weight first and only then looks at its health. Its own refusals
are counted by the source reporter only, as no destination sidecar ever sees them:

- no VirtualService, or no weight on any destination: 503 `no route` (response flag NR);
- a subset that no DestinationRule defines: Envoy has no cluster for it, 503 with an empty body (NC);
- a chosen destination without available pods (no Service, no matching Deployment, none available): 503
  `no healthy upstream` (UH).

The package keeps those parts apart, each importing only the ones below it: `cluster` (the API server reader
and `LocalMesh`, the whole) → `proxy` and `load` → `backends` → `labels` (Istio's labelling rule) → `routing`
(the pure route resolution and choice).

Run it on its own with `python -m devenv.mesh --kubeconfig … --namespace … --virtual-service …`.
"""

from devenv.mesh.cluster import LocalMesh
from devenv.mesh.labels import GENERATOR_WORKLOAD, Reporter, request_labels
from devenv.mesh.load import LoadGenerator, is_nothello
from devenv.mesh.proxy import METRICS_PATH, MeshProxy
from devenv.mesh.routing import (
    NO_CLUSTER,
    NO_HEALTHY_UPSTREAM,
    NO_ROUTE,
    Answer,
    Destination,
    RouteTable,
    Selection,
    SmoothWeightedRoundRobin,
    Workload,
    image_tag,
    resolve_routes,
)

__all__ = [
    "GENERATOR_WORKLOAD",
    "METRICS_PATH",
    "NO_CLUSTER",
    "NO_HEALTHY_UPSTREAM",
    "NO_ROUTE",
    "Answer",
    "Destination",
    "LoadGenerator",
    "LocalMesh",
    "MeshProxy",
    "Reporter",
    "RouteTable",
    "Selection",
    "SmoothWeightedRoundRobin",
    "Workload",
    "image_tag",
    "is_nothello",
    "request_labels",
    "resolve_routes",
]
