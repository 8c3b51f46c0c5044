"""Where a request goes, as Istio's VirtualService and DestinationRule say, or a Gateway API HTTPRoute's
backendRefs: the routes resolved from the API objects into weighted destinations and their Deployments, and
the choice per request by smooth weighted round-robin. Pure (no I/O, no thread beyond the `RouteTable` lock),
so it is table-tested without a cluster or a process."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NO_FLAGS = "-"
# The environment variables of a pod's main container that the status-code-server reads as its behaviour
# (examples/status-code-server/server.py BEHAVIOUR_VARIABLES): a backend process gets these and only these,
# so a pod template's other variables (PATH, PYTHONPATH, ...) never reach a local process.
BEHAVIOUR_VARIABLES = ("LATENCY_MS", "SLOW_SHARE", "SLOW_FACTOR", "ERROR_SHARE", "HEAVY_LATENCY_MS")


@dataclass(frozen=True, order=True)
class Backend:
    """What one status-code-server process runs: the image tag it reports as its version and the behaviour
    variables of the main container, as (name, value) pairs sorted by name. Two Deployments with equal
    backends share a process, as pods of one image and configuration are interchangeable."""

    image_tag: str
    behaviour: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Workload:
    """A Deployment whose pods are endpoints of a destination, as the proxy and the metric labels need it."""

    name: str
    namespace: str
    pod_labels: Mapping[str, str]
    image_tag: str
    available_replicas: int = 0
    # The Services of its namespace that select its pods, by name: what Istio writes into the metadata of the
    # pod's inbound cluster, and where the destination reporter takes `destination_service` from.
    services: tuple[str, ...] = ()
    # The behaviour variables of its main container (BEHAVIOUR_VARIABLES), sorted by name.
    behaviour: tuple[tuple[str, str], ...] = ()

    @property
    def backend(self) -> Backend:
        return Backend(self.image_tag, self.behaviour)


@dataclass(frozen=True)
class Destination:
    """One weighted destination of the VirtualService: the Service its host names, the DestinationRule
    subset it names if any, and the Deployments whose pods are its endpoints."""

    service: str
    namespace: str
    weight: int
    subset: str | None = None
    workloads: tuple[Workload, ...] = ()
    # The route names a subset that no DestinationRule defines: Envoy would have no cluster to send it to.
    missing_subset: bool = False
    # An HTTPRoute backendRef that does not resolve (no such Service, another kind, another namespace).
    invalid_backend: bool = False

    @property
    def name(self) -> str:
        """Its key in `RouteTable.weights()`: the Deployment's name when exactly one backs the destination;
        otherwise `<service>-<subset>` for a subset, else the Service's name. CanaryApp names a subset's
        Deployment `<service>-<subset>`, so the canary subset reads `web-canary` whether or not its
        Deployment exists."""
        if len(self.workloads) == 1:
            return self.workloads[0].name
        return f"{self.service}-{self.subset}" if self.subset else self.service


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    response_flags: str = NO_FLAGS


NO_ROUTE = Answer(503, b"no route", "NR")
# Envoy's local reply for a route to an unknown cluster has no body.
NO_CLUSTER = Answer(503, b"", "NC")
NO_HEALTHY_UPSTREAM = Answer(503, b"no healthy upstream", "UH")
# The Gateway API's rule for a backendRef that does not resolve: requests it would get are answered 500
# (Istio configures a direct response; no upstream is involved, so Envoy sets no response flag).
INVALID_BACKEND = Answer(500, b"", NO_FLAGS)


@dataclass(frozen=True)
class Selection:
    """Where one request goes: the chosen destination (None: no route), and either the Deployment that
    answers it with the address of its process, or the refusal to answer with."""

    destination: Destination | None
    workload: Workload | None
    upstream: str | None
    refusal: Answer | None


def image_tag(image: str) -> str:
    """The tag of an image reference: `status-code-server:v2` → `v2`."""
    name = image.split("@", 1)[0]
    _, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        return "latest"
    return tag


def resolve_routes(
    virtual_service: Mapping[str, Any],
    destination_rules: Sequence[Mapping[str, Any]],
    services: Sequence[Mapping[str, Any]],
    deployments: Sequence[Mapping[str, Any]],
) -> tuple[Destination, ...] | None:
    """The weighted destinations of the VirtualService's first HTTP route (the one CanaryApp writes), resolved
    against the DestinationRules, Services and Deployments of its namespace (API objects as dicts); None when
    it has no route.
    """
    http_routes = (virtual_service.get("spec") or {}).get("http") or []
    if not http_routes:
        return None
    namespace = virtual_service["metadata"]["namespace"]
    selectors: dict[str, Mapping[str, str]] = {
        service["metadata"]["name"]: (service.get("spec") or {}).get("selector") or {} for service in services
    }
    workloads = [
        _workload(deployment, selectors)
        for deployment in sorted(deployments, key=lambda deployment: str(deployment["metadata"]["name"]))
    ]
    subsets = _subsets(destination_rules)
    route = http_routes[0].get("route") or []
    # Istio lets a sole destination omit its weight and gives it all the traffic.
    default_weight = 100 if len(route) == 1 else 0
    return tuple(
        _resolve_destination(entry, default_weight, namespace, selectors, subsets, workloads)
        for entry in route
    )


def resolve_http_route(
    route: Mapping[str, Any], services: Sequence[Mapping[str, Any]], deployments: Sequence[Mapping[str, Any]]
) -> tuple[Destination, ...] | None:
    """The weighted destinations of an HTTPRoute's first rule (the one CanaryApp writes): each backendRef a
    Service of the route's namespace, its endpoints the Deployments that Service selects, its weight the
    backendRef's (the Gateway API's default is 1). A backendRef that does not resolve (not a core Service, in
    another namespace, or no such Service) is an `invalid_backend` destination; None when there is no rule.
    """
    rules = (route.get("spec") or {}).get("rules") or []
    if not rules:
        return None
    namespace = route["metadata"]["namespace"]
    selectors: dict[str, Mapping[str, str]] = {
        service["metadata"]["name"]: (service.get("spec") or {}).get("selector") or {} for service in services
    }
    workloads = [
        _workload(deployment, selectors)
        for deployment in sorted(deployments, key=lambda deployment: str(deployment["metadata"]["name"]))
    ]
    destinations = []
    for backend in rules[0].get("backendRefs") or []:
        name = str(backend["name"])
        weight = int(backend.get("weight", 1))
        resolvable = (
            backend.get("group", "") == ""
            and backend.get("kind", "Service") == "Service"
            and backend.get("namespace", namespace) == namespace
            and name in selectors
        )
        if not resolvable:
            destinations.append(Destination(name, namespace, weight, invalid_backend=True))
            continue
        endpoints = tuple(
            workload for workload in workloads if _selects(selectors[name], workload.pod_labels)
        )
        destinations.append(Destination(name, namespace, weight, workloads=endpoints))
    return tuple(destinations)


def _resolve_destination(
    entry: Mapping[str, Any],
    default_weight: int,
    namespace: str,
    selectors: Mapping[str, Mapping[str, str]],
    subsets: Mapping[tuple[str, str], Mapping[str, Mapping[str, str]]],
    workloads: Sequence[Workload],
) -> Destination:
    service, service_namespace = _host_service(entry["destination"]["host"], namespace)
    subset: str | None = entry["destination"].get("subset")
    weight = int(entry.get("weight", default_weight))
    subset_labels: Mapping[str, str] = {}
    if subset is not None:
        defined = subsets.get((service, service_namespace), {})
        if subset not in defined:
            return Destination(service, service_namespace, weight, subset, missing_subset=True)
        subset_labels = defined[subset]
    selector = selectors.get(service, {}) if service_namespace == namespace else {}
    endpoints = tuple(
        workload
        for workload in workloads
        if _selects(selector, workload.pod_labels) and subset_labels.items() <= workload.pod_labels.items()
    )
    return Destination(service, service_namespace, weight, subset, endpoints)


def _host_service(host: str, namespace: str) -> tuple[str, str]:
    """The Service and namespace a host names: a short name is in `namespace`, `<svc>.<ns>` and the FQDN
    name their own."""
    service, _, domain = host.partition(".")
    return service, domain.split(".", 1)[0] if domain else namespace


def _subsets(
    destination_rules: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, str], dict[str, Mapping[str, str]]]:
    """Subset labels by (service, namespace) of the rules' hosts, then by subset name. Istio merges the
    rules for one host; where two define the same subset, the first by name wins here (Istio: the oldest)."""
    subsets: dict[tuple[str, str], dict[str, Mapping[str, str]]] = {}
    for rule in sorted(destination_rules, key=lambda rule: str(rule["metadata"]["name"])):
        spec = rule.get("spec") or {}
        service = _host_service(spec.get("host") or "", rule["metadata"]["namespace"])
        for subset in spec.get("subsets") or []:
            subsets.setdefault(service, {}).setdefault(subset["name"], subset.get("labels") or {})
    return subsets


def _workload(deployment: Mapping[str, Any], selectors: Mapping[str, Mapping[str, str]]) -> Workload:
    template = deployment["spec"]["template"]
    pod_labels: Mapping[str, str] = (template.get("metadata") or {}).get("labels") or {}
    main_container = template["spec"]["containers"][0]
    return Workload(
        name=deployment["metadata"]["name"],
        namespace=deployment["metadata"]["namespace"],
        pod_labels=pod_labels,
        image_tag=image_tag(main_container["image"]),
        available_replicas=(deployment.get("status") or {}).get("availableReplicas") or 0,
        services=tuple(
            name for name, selector in sorted(selectors.items()) if _selects(selector, pod_labels)
        ),
        behaviour=behaviour(main_container),
    )


def behaviour(container: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The behaviour variables a container sets with a literal `value`, sorted by name; the last entry of a
    name wins, as in Kubernetes. A value from a Secret or a field (`valueFrom`) is not known here: left out,
    so the process keeps that variable's default."""
    values: dict[str, str] = {}
    for entry in container.get("env") or []:
        name = entry.get("name")
        if name in BEHAVIOUR_VARIABLES:
            value = entry.get("value")
            if isinstance(value, str):
                values[name] = value
            else:
                values.pop(name, None)
    return tuple(sorted(values.items()))


def _selects(selector: Mapping[str, str], pod_labels: Mapping[str, str]) -> bool:
    """Kubernetes' rule for a Service: an empty selector selects no pod (the Service has manual endpoints)."""
    return bool(selector) and selector.items() <= pod_labels.items()


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round-robin: in every cycle of sum(weights) picks each index is chosen exactly
    its weight times, interleaved rather than in runs; weight 0 is never chosen. Deterministic, so tests and
    the demo see the weights exactly. Not thread-safe: `RouteTable` serialises it."""

    def __init__(self) -> None:
        self._weights: tuple[int, ...] = ()
        self._current: list[int] = []

    def pick(self, weights: Sequence[int]) -> int | None:
        if tuple(weights) != self._weights:
            self._weights = tuple(weights)
            self._current = [0] * len(weights)
        eligible = [index for index, weight in enumerate(self._weights) if weight > 0]
        if not eligible:
            return None
        for index in eligible:
            self._current[index] += self._weights[index]
        chosen = max(eligible, key=self._current.__getitem__)
        self._current[chosen] -= sum(self._weights[index] for index in eligible)
        return chosen


class RouteTable:
    """The routes and backend addresses currently applied, and the choice of a destination per request, as
    Envoy's weighted clusters make it: by weight first, health second; then an endpoint of the chosen
    destination, weighted by available replicas. No I/O; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._balancer = SmoothWeightedRoundRobin()
        self._endpoint_balancers: dict[int, SmoothWeightedRoundRobin] = {}
        self._routes: tuple[Destination, ...] | None = None
        self._upstreams: dict[Backend, str] = {}

    def apply(self, routes: tuple[Destination, ...] | None, upstreams: Mapping[Backend, str]) -> None:
        """`upstreams` maps a backend to the `host:port` of the process serving it."""
        with self._lock:
            self._routes = routes
            self._upstreams = dict(upstreams)

    def routes(self) -> tuple[Destination, ...] | None:
        with self._lock:
            return self._routes

    def weights(self) -> dict[str, int]:
        """Route weights keyed by `Destination.name`."""
        with self._lock:
            return {destination.name: destination.weight for destination in self._routes or ()}

    def select(self) -> Selection:
        with self._lock:
            routes = self._routes or ()
            chosen = self._balancer.pick([destination.weight for destination in routes])
            if chosen is None:
                return Selection(destination=None, workload=None, upstream=None, refusal=NO_ROUTE)
            destination = routes[chosen]
            if destination.missing_subset or destination.invalid_backend:
                refusal = NO_CLUSTER if destination.missing_subset else INVALID_BACKEND
                return Selection(destination=destination, workload=None, upstream=None, refusal=refusal)
            # One balancer per destination, kept across `apply`, so the spread stays exact over time.
            endpoints = self._endpoint_balancers.setdefault(chosen, SmoothWeightedRoundRobin())
            picked = endpoints.pick([workload.available_replicas for workload in destination.workloads])
            workload = None if picked is None else destination.workloads[picked]
            upstream = None if workload is None else self._upstreams.get(workload.backend)
        if workload is None or upstream is None:
            return Selection(
                destination=destination, workload=None, upstream=None, refusal=NO_HEALTHY_UPSTREAM
            )
        return Selection(destination=destination, workload=workload, upstream=upstream, refusal=None)
