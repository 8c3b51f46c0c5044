"""A local stand-in for Istio's data plane, and for a Gateway API implementation, for the demo and the tests:
it is NOT part of the reconciler, and nothing in `reconciler/` or `stacks/` imports it.

The local cluster's pods are kwok fakes and there is no Envoy, so nothing would carry the traffic a
VirtualService routes, and no sidecar would produce the metrics the reconciler's Prometheus query reads. This
module plays that part with real processes and real HTTP:

- a watcher reads the VirtualService, the DestinationRules, Services and Deployments of its namespace every
  half second and resolves each weighted destination as Istio does: the host names a Service, the optional
  subset names a subset of the DestinationRule for that host, and the endpoints are the pods of the
  Deployments that match the Service's selector and the subset's labels together;
- one status-code-server process (`examples/status-code-server/server.py`) runs per backend the resolved
  Deployments use, started when a Deployment needs it and stopped when none does: a backend is the image tag
  (the version of the binary a pod runs) with the behaviour variables of the main container (`LATENCY_MS`,
  `SLOW_SHARE`, `SLOW_FACTOR`, `ERROR_SHARE`, `HEAVY_LATENCY_MS`: the server's README), so a canary whose
  template makes it slower runs apart from a primary of the same image; no other variable of a pod template
  reaches a local process;
- an ingress-like proxy picks a destination per request by the weights, then one of its Deployments in
  proportion to their available replicas (both by smooth weighted round-robin, so exact and deterministic),
  forwards the request to that Deployment's process and returns its answer;
- the proxy exports Istio's `istio_requests_total` and `istio_request_duration_milliseconds` on
  `/stats/prometheus` with the labels Istio's stats filter sets (`request_labels`): a request that reached a
  pod is counted by both sidecars of a mesh-internal call, `reporter="source"` and `reporter="destination"`;
- a load generator sends real requests through the proxy's own URL, the same path a curl takes, with exact
  shares of /nothello and /heavy, and spikes (a higher rate, a share of /heavy) for a while; a slow answer
  does not hold the next request back.

A baseline (spec.analysis.baseline) is one more destination and needs nothing of its own: Istio's route has
a third destination, the subset `baseline` of the apex host, which the DestinationRule defines by the track
label `baseline`, so its requests read `destination_workload="<name>-baseline"`,
`destination_service_name="<name>"` (the apex, as for the other tracks) and `destination_version="baseline"`
(the pods' `version` label); the Gateway API's has a third backendRef, the Service `<name>-baseline`, whose
name its requests carry.

With the Gateway API (`router="gateway-api"`) the watcher follows an HTTPRoute instead: each backendRef is a
Service (`<name>-primary`, `<name>-canary`, `<name>-baseline`) whose endpoints are the pods of the Deployments
it selects, served only while a Gateway of the local GatewayClass (`canaryapp-local`, created by
`devenv/cluster.py`) accepts the route. The proxy then plays that Gateway's pods, as Istio deploys them for a
Gateway (`<gateway>-<gatewayClassName>`, in the Gateway's namespace): they are the `source_workload` of every
request, and the backend Service the route names is its `destination_service` (so a canary request reads
`destination_service_name="<name>-canary"`, `destination_workload="<name>-canary"`). The `GatewayController`
writes what an implementation must: the GatewayClass Accepted, its Gateways Accepted and Programmed, and on
every HTTPRoute naming one of them `status.parents[]` with Accepted and ResolvedRefs at the route's generation
(`gateway` computes them, with the Gateway API's reasons). A backendRef that does not resolve is answered 500,
as the Gateway API requires.

Like Envoy, the proxy picks a destination by weight first and only then looks at its health. Its own refusals
are counted by the source reporter only, as no destination sidecar ever sees them:

- no VirtualService, or no weight on any destination: 503 `no route` (response flag NR);
- a subset that no DestinationRule defines: Envoy has no cluster for it, 503 with an empty body (NC);
- a chosen destination without available pods (no Service, no matching Deployment, none available): 503
  `no healthy upstream` (UH).

The package keeps those parts apart, each importing only the ones below it: `cluster` (the API server reader
and writer: `LocalMesh`, the whole, and `GatewayController`) → `proxy` and `load` → `backends` → `labels`
(Istio's labelling rule) and `gateway` (the Gateway API statuses, pure) → `routing` (the pure route
resolution and choice).

Run it on its own with `python -m devenv.mesh --kubeconfig … --namespace … --route … [--router gateway-api]`.
"""

from devenv.mesh.cluster import ROUTERS, GatewayController, LocalMesh
from devenv.mesh.labels import GENERATOR_WORKLOAD, Reporter, request_labels
from devenv.mesh.load import LoadGenerator, Mix, is_nothello, request_path
from devenv.mesh.proxy import METRICS_PATH, MeshProxy
from devenv.mesh.routing import (
    BEHAVIOUR_VARIABLES,
    INVALID_BACKEND,
    NO_CLUSTER,
    NO_HEALTHY_UPSTREAM,
    NO_ROUTE,
    Answer,
    Backend,
    Destination,
    RouteTable,
    Selection,
    SmoothWeightedRoundRobin,
    Workload,
    image_tag,
    resolve_http_route,
    resolve_routes,
)

__all__ = [
    "BEHAVIOUR_VARIABLES",
    "GENERATOR_WORKLOAD",
    "INVALID_BACKEND",
    "METRICS_PATH",
    "NO_CLUSTER",
    "NO_HEALTHY_UPSTREAM",
    "NO_ROUTE",
    "ROUTERS",
    "Answer",
    "Backend",
    "Destination",
    "GatewayController",
    "LoadGenerator",
    "LocalMesh",
    "MeshProxy",
    "Mix",
    "Reporter",
    "RouteTable",
    "Selection",
    "SmoothWeightedRoundRobin",
    "Workload",
    "image_tag",
    "is_nothello",
    "request_labels",
    "request_path",
    "resolve_http_route",
    "resolve_routes",
]
