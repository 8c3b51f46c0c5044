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

Run it on its own with `python -m devenv.mesh --kubeconfig … --namespace … --virtual-service …`.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import httpx
import kubernetes
from kubernetes.client.exceptions import ApiException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from devenv.processes import REPO_ROOT, ProcessGroup, wait_until
from reconciler import logs

log = logging.getLogger(__name__)

STATUS_CODE_SERVER = REPO_ROOT / "examples" / "status-code-server" / "server.py"
METRICS_PATH = "/stats/prometheus"
POLL_INTERVAL_SECONDS = 0.5
ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSION = "v1"
VIRTUAL_SERVICE_PLURAL = "virtualservices"
DESTINATION_RULE_PLURAL = "destinationrules"
CLUSTER_DOMAIN = "svc.cluster.local"
GENERATOR_WORKLOAD = "local-traffic-generator"
# The generator names itself in a header, as Istio's peer-metadata exchange would; the proxy drops it.
SOURCE_HEADER = "X-Local-Mesh-Source-Workload"
UNKNOWN = "unknown"
NO_FLAGS = "-"
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
# Istio's default buckets: sub-second steps, then seconds up to an hour, in milliseconds.
ISTIO_DURATION_BUCKETS_MS = (
    *(0.5, 1, 5, 10, 25, 50, 100, 250, 500),
    *(1000 * seconds for seconds in (1, 2.5, 5, 10, 30, 60, 300, 600, 1800, 3600)),
)
LISTENING_LINE = re.compile(r"^listening on 127\.0\.0\.1:(\d+) ", re.MULTILINE)


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

    @property
    def name(self) -> str:
        """Its key in `RouteTable.weights()`: the Deployment's name when exactly one backs the destination;
        otherwise `<service>-<subset>` for a subset, else the Service's name. CanaryApp names a subset's
        Deployment `<service>-<subset>`, so the canary subset reads `web-canary` whether or not its
        Deployment exists."""
        if len(self.workloads) == 1:
            return self.workloads[0].name
        return f"{self.service}-{self.subset}" if self.subset else self.service


def _service_host(service: str, namespace: str) -> str:
    """A Service's fully qualified host name, as Istio's `destination_service` label spells it."""
    return f"{service}.{namespace}.{CLUSTER_DOMAIN}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    response_flags: str = NO_FLAGS


NO_ROUTE = Answer(503, b"no route", "NR")
# Envoy's local reply for a route to an unknown cluster has no body.
NO_CLUSTER = Answer(503, b"", "NC")
NO_HEALTHY_UPSTREAM = Answer(503, b"no healthy upstream", "UH")
UPSTREAM_FAILURE = Answer(503, b"upstream connect error or disconnect/reset before headers", "UF")


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
    return Workload(
        name=deployment["metadata"]["name"],
        namespace=deployment["metadata"]["namespace"],
        pod_labels=pod_labels,
        image_tag=image_tag(template["spec"]["containers"][0]["image"]),
        available_replicas=(deployment.get("status") or {}).get("availableReplicas") or 0,
        services=tuple(
            name for name, selector in sorted(selectors.items()) if _selects(selector, pod_labels)
        ),
    )


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
        self._upstreams: dict[str, str] = {}

    def apply(self, routes: tuple[Destination, ...] | None, upstreams: Mapping[str, str]) -> None:
        """`upstreams` maps an image tag to the `host:port` of the process serving it."""
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
            if destination.missing_subset:
                return Selection(destination=destination, workload=None, upstream=None, refusal=NO_CLUSTER)
            # One balancer per destination, kept across `apply`, so the spread stays exact over time.
            endpoints = self._endpoint_balancers.setdefault(chosen, SmoothWeightedRoundRobin())
            picked = endpoints.pick([workload.available_replicas for workload in destination.workloads])
            workload = None if picked is None else destination.workloads[picked]
            upstream = None if workload is None else self._upstreams.get(workload.image_tag)
        if workload is None or upstream is None:
            return Selection(
                destination=destination, workload=None, upstream=None, refusal=NO_HEALTHY_UPSTREAM
            )
        return Selection(destination=destination, workload=workload, upstream=upstream, refusal=None)


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


def is_nothello(sequence: int, nothello_fraction: float) -> bool:
    """Whether generated request `sequence` (0-based) goes to /nothello.

    Exact and deterministic: the fraction p/q (q ≤ 1000) is applied per block of q requests, p of them
    /nothello, so 0.5 gives exactly one of every two and 0.1 one of every ten. Within a block the positions
    are shuffled with the block's number as seed, because a regular pattern (every 10th) falls into step
    with the proxy's equally regular round-robin: a 90/10 split would send none of them to the canary, a
    50/50 split all of them.
    """
    fraction = Fraction(nothello_fraction).limit_denominator(1000)
    block, position = divmod(sequence, fraction.denominator)
    pattern = [index < fraction.numerator for index in range(fraction.denominator)]
    random.Random(block).shuffle(pattern)
    return pattern[position]


def _check_fraction(nothello_fraction: float) -> float:
    if not 0.0 <= nothello_fraction <= 1.0:
        raise ValueError(f"nothello_fraction must be between 0 and 1, got {nothello_fraction}")
    return nothello_fraction


class BackendPool:
    """One status-code-server process per image tag, which it reports as its `--version`, each in its own
    process group, logging into `log_dir`."""

    def __init__(self, log_dir: Path) -> None:
        self._processes = ProcessGroup(log_dir)
        self._running: dict[str, tuple[subprocess.Popen[bytes], str]] = {}

    def addresses(self) -> dict[str, str]:
        return {tag: address for tag, (_, address) in self._running.items()}

    def ensure(self, tags: Set[str]) -> None:
        """Starts a process for each tag not running yet, and again the ones whose process exited."""
        for tag in sorted(tags):
            running = self._running.get(tag)
            if running is not None and running[0].poll() is None:
                continue
            if running is not None:
                log.warning(
                    "Restarted exited status-code-server backend",
                    extra={"image_tag": tag, "exit_code": running[0].returncode},
                )
                self._processes.stop(_backend_name(tag))
            self._running[tag] = self._start(tag)

    def retain(self, tags: Set[str]) -> None:
        """Stops the process of every tag not in `tags`."""
        for tag in sorted(set(self._running) - set(tags)):
            self._processes.stop(_backend_name(tag))
            del self._running[tag]
            log.info("Stopped status-code-server backend", extra={"image_tag": tag})

    def stop_all(self) -> None:
        self._processes.stop_all()
        self._running.clear()

    def _start(self, tag: str) -> tuple[subprocess.Popen[bytes], str]:
        name = _backend_name(tag)
        log_path = self._processes.log_dir / f"{name}.log"
        # The log is appended to across restarts: only what this process writes counts.
        offset = log_path.stat().st_size if log_path.exists() else 0
        server = [sys.executable, str(STATUS_CODE_SERVER)]
        process = self._processes.start(
            name, [*server, "--version", tag, "--port", "0", "--host", "127.0.0.1"]
        )
        ports: list[int] = []

        def listening_or_exited() -> bool:
            with log_path.open("rb") as log_file:
                log_file.seek(offset)
                found = LISTENING_LINE.search(log_file.read().decode(errors="replace"))
            if found:
                ports.append(int(found.group(1)))
            return bool(found) or process.poll() is not None

        wait_until(listening_or_exited, timeout=30, what=f"status-code-server {tag}", interval=0.05)
        if not ports:
            tail = self._processes.log_tail(name)
            self._processes.stop(name)
            raise RuntimeError(
                f"status-code-server {tag} exited with code {process.returncode} before listening; "
                f"its log is {log_path}:\n{tail}"
            )
        address = f"127.0.0.1:{ports[0]}"
        log.info(
            "Started status-code-server backend",
            extra={"image_tag": tag, "address": address, "pid": process.pid},
        )
        return process, address


def _backend_name(tag: str) -> str:
    return f"status-code-server-{tag}"


class MeshProxy:
    """The ingress-like proxy with both sidecars' metrics: routes each request by the applied weights to the
    process of the chosen Deployment's image tag and counts it as Istio's source and destination sidecars
    would."""

    def __init__(self, workdir: Path, namespace: str, listen_port: int = 0) -> None:
        self.namespace = namespace
        self.listen_port = listen_port
        self.table = RouteTable()
        self.registry = CollectorRegistry()
        self._backends = BackendPool(workdir / "backends")
        self._apply_lock = threading.Lock()
        self._requests = Counter(
            "istio_requests", "Requests routed by the local mesh.", ISTIO_LABELS, registry=self.registry
        )
        self._durations = Histogram(
            "istio_request_duration_milliseconds",
            "Duration of requests routed by the local mesh.",
            ISTIO_LABELS,
            buckets=ISTIO_DURATION_BUCKETS_MS,
            registry=self.registry,
        )
        self._client = httpx.Client(timeout=10.0, trust_env=False)
        self._server: ThreadingHTTPServer | None = None
        self._serving: threading.Thread | None = None

    def start(self) -> None:
        """Returns once the proxy's port is listening."""
        self._server = ThreadingHTTPServer(("127.0.0.1", self.listen_port), _proxy_handler(self))
        self._serving = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="mesh-proxy", daemon=True
        )
        self._serving.start()
        log.info("Started local mesh proxy", extra={"url": self.url})

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._backends.stop_all()
        self._client.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the local mesh proxy is not started: call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def apply(self, routes: tuple[Destination, ...] | None) -> None:
        """Starts the backends `routes` need, switches traffic to them, then stops those no longer needed."""
        tags = {workload.image_tag for destination in routes or () for workload in destination.workloads}
        with self._apply_lock:
            self._backends.ensure(tags)
            if routes != self.table.routes():
                log.info(
                    "Applied local mesh routes",
                    extra={"routes": {d.name: d.weight for d in routes or ()}, "namespace": self.namespace},
                )
            self.table.apply(routes, self._backends.addresses())
            self._backends.retain(tags)

    def backends(self) -> dict[str, str]:
        """The running status-code-server processes: image tag → `host:port`."""
        with self._apply_lock:
            return self._backends.addresses()

    def metrics(self) -> bytes:
        return generate_latest(self.registry)

    def route(self, path: str, source_workload: str | None) -> Answer:
        """Answers one GET (all the status-code-server serves) and records it."""
        started = time.perf_counter()
        selection = self.table.select()
        # Response flags are those of the proxy that made the local reply: the source sidecar's refusals (NR,
        # NC, UH) never reach a destination sidecar, so only the source reports them; a pod's sidecar that
        # fails to reach its app (UF) answers a plain 503 to the source, which does not retry here.
        flags: dict[Reporter, str]
        if selection.refusal is not None:
            answer = selection.refusal
            flags = {"source": answer.response_flags}
        else:
            answer = self._forward(selection.upstream or "", path)
            flags = {"source": NO_FLAGS, "destination": answer.response_flags}
        elapsed_ms = (time.perf_counter() - started) * 1000
        from_generator = source_workload == GENERATOR_WORKLOAD
        for reporter, response_flags in flags.items():
            labels = request_labels(
                reporter,
                selection.destination,
                selection.workload,
                source_workload=GENERATOR_WORKLOAD if from_generator else UNKNOWN,
                source_namespace=self.namespace if from_generator else UNKNOWN,
                response_code=answer.status,
                response_flags=response_flags,
            )
            self._requests.labels(**labels).inc()
            self._durations.labels(**labels).observe(elapsed_ms)
        return answer

    def _forward(self, upstream: str, path: str) -> Answer:
        try:
            response = self._client.get(f"http://{upstream}{path}")
        except httpx.TransportError as error:
            log.warning("Failed to reach upstream", extra={"upstream": upstream, "error": str(error)})
            return UPSTREAM_FAILURE
        return Answer(response.status_code, response.content)


def _proxy_handler(proxy: MeshProxy) -> type[BaseHTTPRequestHandler]:
    class ProxyHandler(BaseHTTPRequestHandler):
        server_version = "local-mesh"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == METRICS_PATH:
                self._reply(200, proxy.metrics(), CONTENT_TYPE_LATEST)
                return
            answer = proxy.route(self.path, self.headers[SOURCE_HEADER])
            self._reply(answer.status, answer.body, "text/plain; charset=utf-8")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # The metrics record every request; a log line each would flood the log at generator rates.
            return

    return ProxyHandler


class LoadGenerator:
    """Sends `rate` real requests a second to a loopback URL, /nothello for an exact fraction of them
    (`is_nothello`)."""

    def __init__(self, rate: float, nothello_fraction: float) -> None:
        if rate < 0:
            raise ValueError(f"request rate must be 0 (no generated traffic) or more, got {rate}")
        self.rate = rate
        self._nothello_fraction = _check_fraction(nothello_fraction)
        self._lock = threading.Lock()
        self._sequence = 0
        self._sent = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, url: str) -> None:
        if not url.startswith("http://127.0.0.1:"):
            raise ValueError(f"the load generator only targets 127.0.0.1, got {url}")
        if self.rate > 0:
            self._thread = threading.Thread(target=self._run, args=(url,), name="mesh-load", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def set_mix(self, nothello_fraction: float) -> None:
        with self._lock:
            self._nothello_fraction = _check_fraction(nothello_fraction)
            # Restarting the blocks makes the new fraction exact from this request on.
            self._sequence = 0

    def requests_sent(self) -> int:
        with self._lock:
            return self._sent

    def next_path(self) -> str:
        with self._lock:
            nothello = is_nothello(self._sequence, self._nothello_fraction)
            self._sequence += 1
        return "/nothello" if nothello else "/hello"

    def _run(self, url: str) -> None:
        interval = 1.0 / self.rate
        headers = {SOURCE_HEADER: GENERATOR_WORKLOAD}
        with httpx.Client(base_url=url, headers=headers, timeout=5.0, trust_env=False) as client:
            due = time.monotonic()
            while not self._stopping.is_set():
                try:
                    client.get(self.next_path())
                except httpx.HTTPError as error:
                    log.debug("Failed to send generated request", extra={"error": str(error)})
                with self._lock:
                    self._sent += 1
                # A slow answer delays the next request rather than causing a burst to catch up.
                due = max(due + interval, time.monotonic())
                self._stopping.wait(due - time.monotonic())


class ClusterRoutes:
    """Reads a VirtualService and the DestinationRules, Services and Deployments of its namespace from the API
    server."""

    def __init__(self, kubeconfig: Path, namespace: str, virtual_service: str) -> None:
        self.namespace = namespace
        self.virtual_service = virtual_service
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        self._api = kubernetes.client.ApiClient(configuration)
        self._custom = kubernetes.client.CustomObjectsApi(self._api)
        self._core = kubernetes.client.CoreV1Api(self._api)
        self._apps = kubernetes.client.AppsV1Api(self._api)

    def read(self) -> tuple[Destination, ...] | None:
        """The resolved routes; None when the VirtualService does not exist."""
        # The client's custom-object calls are typed `object`; they return the objects as dicts.
        virtual_service: Any
        destination_rules: Any
        try:
            virtual_service = self._custom.get_namespaced_custom_object(
                ISTIO_GROUP, ISTIO_VERSION, self.namespace, VIRTUAL_SERVICE_PLURAL, self.virtual_service
            )
        except ApiException as error:
            if error.status != 404:
                raise
            return None
        destination_rules = self._custom.list_namespaced_custom_object(
            ISTIO_GROUP, ISTIO_VERSION, self.namespace, DESTINATION_RULE_PLURAL
        )
        services = self._core.list_namespaced_service(self.namespace).items
        deployments = self._apps.list_namespaced_deployment(self.namespace).items
        return resolve_routes(
            virtual_service,
            destination_rules["items"],
            [self._api.sanitize_for_serialization(service) for service in services],
            [self._api.sanitize_for_serialization(deployment) for deployment in deployments],
        )

    def close(self) -> None:
        self._api.close()


class LocalMesh:
    """The whole stand-in: watcher, backends, proxy and load generator for one VirtualService."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        virtual_service: str,
        workdir: Path,
        *,
        listen_port: int = 0,
        request_rate: float = 20.0,
        nothello_fraction: float = 0.0,
    ) -> None:
        self.namespace = namespace
        self.virtual_service = virtual_service
        self.proxy = MeshProxy(workdir, namespace, listen_port)
        self._generator = LoadGenerator(request_rate, nothello_fraction)
        self._cluster = ClusterRoutes(kubeconfig, namespace, virtual_service)
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="mesh-watcher", daemon=True)
        self._last_failure = ""

    def start(self) -> None:
        """Returns once the proxy listens, with the routes of one first read of the cluster applied."""
        try:
            self.proxy.start()
            self._refresh()
            self._watcher.start()
            self._generator.start(self.proxy.url)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stopping.set()
        self._generator.stop()
        if self._watcher.is_alive():
            self._watcher.join()
        self.proxy.stop()
        self._cluster.close()

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def metrics_address(self) -> str:
        return self.proxy.metrics_address

    def set_mix(self, nothello_fraction: float) -> None:
        self._generator.set_mix(nothello_fraction)

    def routes(self) -> dict[str, int]:
        """The applied weights by `Destination.name`, e.g. `{"web-primary": 100, "web-canary": 0}`."""
        return self.proxy.table.weights()

    def requests_sent(self) -> int:
        return self._generator.requests_sent()

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_SECONDS):
            self._refresh()

    def _refresh(self) -> None:
        # Any failure of one pass (API server away, a backend that would not start) must not end the watcher:
        # the routes applied last stay in force and the next pass tries again.
        try:
            self.proxy.apply(self._cluster.read())
        except Exception as error:
            if str(error) != self._last_failure:
                log.warning(
                    "Failed to refresh local mesh routes; kept the last ones",
                    extra={
                        "virtual_service": self.virtual_service,
                        "namespace": self.namespace,
                        "error": str(error),
                    },
                )
            self._last_failure = str(error)
        else:
            self._last_failure = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.mesh", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True, type=Path, help="kubeconfig of the cluster to watch")
    parser.add_argument("--namespace", default="default", help="namespace of the VirtualService")
    parser.add_argument("--virtual-service", required=True, help="name of the VirtualService to follow")
    parser.add_argument("--port", type=int, default=0, help="proxy port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--rate", type=float, default=20.0, help="generated requests per second (0: none)")
    parser.add_argument(
        "--nothello-fraction", type=float, default=0.0, help="share of them sent to /nothello"
    )
    parser.add_argument("--workdir", type=Path, help="folder for backend logs (default: a temporary folder)")
    args = parser.parse_args(argv)
    logs.configure()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="local-mesh-"))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    mesh = LocalMesh(
        args.kubeconfig,
        args.namespace,
        args.virtual_service,
        workdir,
        listen_port=args.port,
        request_rate=args.rate,
        nothello_fraction=args.nothello_fraction,
    )
    mesh.start()
    try:
        print(f"Local mesh is up: {mesh.url}", flush=True)
        print(f"  metrics: http://{mesh.metrics_address}{METRICS_PATH}", flush=True)
        print(f"  logs: {workdir}", flush=True)
        stopping.wait()
    finally:
        mesh.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
