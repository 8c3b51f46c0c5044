"""A local stand-in for Istio's data plane, for the demo and the tests: it is NOT part of the reconciler, and
nothing in `reconciler/` or `stacks/` imports it.

The local cluster's pods are kwok fakes and there is no Envoy, so nothing would carry the traffic a
VirtualService routes, and no sidecar would produce the metrics the reconciler's Prometheus query reads. This
module plays that part with real processes and real HTTP:

- a watcher reads the VirtualService every half second and resolves each weighted destination host to its
  Service, the Deployment that Service selects, that Deployment's image tag and whether it has available
  replicas;
- one status-code-server process (`examples/status-code-server/server.py`) runs per image tag the routed
  Deployments use, started when a Deployment needs it and stopped when none does;
- an ingress-like proxy picks a destination per request by the weights (smooth weighted round-robin),
  forwards the request to that version's process and returns its answer, and exports Istio's
  `istio_requests_total` and `istio_request_duration_milliseconds` with Istio's label names on
  `/stats/prometheus`, as a destination sidecar would;
- a load generator sends real requests through the proxy's own URL, the same path a curl takes.

Like Envoy, the proxy picks a destination by weight first and only then looks at its health: a chosen
destination whose Deployment is missing or has no available replicas answers 503 `no healthy upstream`
(response flag UH), and a missing VirtualService answers 503 `no route` (NR).

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
from typing import Any

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
VIRTUAL_SERVICE_GROUP = "networking.istio.io"
VIRTUAL_SERVICE_VERSION = "v1"
VIRTUAL_SERVICE_PLURAL = "virtualservices"
GENERATOR_WORKLOAD = "local-traffic-generator"
# The generator names itself in a header, as Istio's peer-metadata exchange would; the proxy drops it.
SOURCE_HEADER = "X-Local-Mesh-Source-Workload"
UNKNOWN = "unknown"
NO_FLAGS = "-"
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
class Destination:
    """One weighted destination of the VirtualService, resolved to the Deployment behind its Service."""

    host: str
    service: str
    namespace: str
    weight: int
    workload: str | None = None
    version: str | None = None
    app: str = UNKNOWN
    available: bool = False

    @property
    def name(self) -> str:
        """The Deployment's name; the Service's when no Deployment backs it (CanaryApp names them alike)."""
        return self.workload or self.service


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    response_flags: str = NO_FLAGS


NO_ROUTE = Answer(503, b"no route", "NR")
NO_HEALTHY_UPSTREAM = Answer(503, b"no healthy upstream", "UH")
UPSTREAM_FAILURE = Answer(503, b"upstream connect error or disconnect/reset before headers", "UF")


@dataclass(frozen=True)
class Selection:
    """Where one request goes: an upstream address to forward to, or the refusal to answer with."""

    destination: Destination | None
    upstream: str | None
    refusal: Answer | None


def image_version(image: str) -> str:
    """The tag of an image reference, as the version it reports: `status-code-server:v2` → `v2`."""
    name = image.split("@", 1)[0]
    _, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        return "latest"
    return tag


def resolve_routes(
    virtual_service: Mapping[str, Any] | None,
    services: Sequence[Mapping[str, Any]],
    deployments: Sequence[Mapping[str, Any]],
) -> tuple[Destination, ...] | None:
    """The weighted destinations of the VirtualService's first HTTP route (the one CanaryApp writes), resolved
    against the Services and Deployments of its namespace (API objects as dicts); None when there is no route.
    """
    if virtual_service is None:
        return None
    http_routes = (virtual_service.get("spec") or {}).get("http") or []
    if not http_routes:
        return None
    namespace = virtual_service["metadata"]["namespace"]
    services_by_name = {service["metadata"]["name"]: service for service in services}
    route = http_routes[0].get("route") or []
    # Istio lets a sole destination omit its weight and gives it all the traffic.
    default_weight = 100 if len(route) == 1 else 0
    return tuple(
        _resolve_destination(entry, default_weight, namespace, services_by_name, deployments)
        for entry in route
    )


def _resolve_destination(
    entry: Mapping[str, Any],
    default_weight: int,
    namespace: str,
    services: Mapping[str, Mapping[str, Any]],
    deployments: Sequence[Mapping[str, Any]],
) -> Destination:
    host: str = entry["destination"]["host"]
    service_name, _, domain = host.partition(".")
    service_namespace = domain.split(".", 1)[0] if domain else namespace
    weight = int(entry.get("weight", default_weight))
    unresolved = Destination(host=host, service=service_name, namespace=service_namespace, weight=weight)
    service = services.get(service_name) if service_namespace == namespace else None
    selector: Mapping[str, str] = ((service or {}).get("spec") or {}).get("selector") or {}
    if not selector:
        return unresolved
    matching = [
        deployment for deployment in deployments if selector.items() <= _pod_labels(deployment).items()
    ]
    if not matching:
        return unresolved
    deployment = min(matching, key=lambda candidate: str(candidate["metadata"]["name"]))
    containers = deployment["spec"]["template"]["spec"]["containers"]
    available_replicas = (deployment.get("status") or {}).get("availableReplicas") or 0
    return Destination(
        host=host,
        service=service_name,
        namespace=service_namespace,
        weight=weight,
        workload=deployment["metadata"]["name"],
        version=image_version(containers[0]["image"]),
        app=_pod_labels(deployment).get("app", UNKNOWN),
        available=available_replicas > 0,
    )


def _pod_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"].get("metadata", {}).get("labels") or {}
    return labels


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
    Envoy's weighted clusters make it: by weight first, health second. No I/O; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._balancer = SmoothWeightedRoundRobin()
        self._routes: tuple[Destination, ...] | None = None
        self._upstreams: dict[str, str] = {}

    def apply(self, routes: tuple[Destination, ...] | None, upstreams: Mapping[str, str]) -> None:
        """`upstreams` maps a version to the `host:port` of the process serving it."""
        with self._lock:
            self._routes = routes
            self._upstreams = dict(upstreams)

    def routes(self) -> tuple[Destination, ...] | None:
        with self._lock:
            return self._routes

    def weights(self) -> dict[str, int]:
        with self._lock:
            return {destination.name: destination.weight for destination in self._routes or ()}

    def select(self) -> Selection:
        with self._lock:
            routes = self._routes or ()
            chosen = self._balancer.pick([destination.weight for destination in routes])
            if chosen is None:
                return Selection(destination=None, upstream=None, refusal=NO_ROUTE)
            destination = routes[chosen]
            upstream = self._upstreams.get(destination.version or "") if destination.available else None
        if upstream is None:
            return Selection(destination=destination, upstream=None, refusal=NO_HEALTHY_UPSTREAM)
        return Selection(destination=destination, upstream=upstream, refusal=None)


def request_labels(
    destination: Destination | None,
    *,
    source_workload: str,
    source_namespace: str,
    response_code: int,
    response_flags: str,
) -> dict[str, str]:
    """Istio's standard metric labels for one request, as the destination's sidecar reports them."""
    return {
        "reporter": "destination",
        "source_workload": source_workload,
        "source_workload_namespace": source_namespace,
        "destination_service": destination.host if destination else UNKNOWN,
        "destination_service_name": destination.service if destination else UNKNOWN,
        "destination_service_namespace": destination.namespace if destination else UNKNOWN,
        "destination_workload": (destination.workload if destination else None) or UNKNOWN,
        "destination_workload_namespace": destination.namespace if destination else UNKNOWN,
        "destination_version": (destination.version if destination else None) or UNKNOWN,
        "destination_app": destination.app if destination else UNKNOWN,
        "request_protocol": "http",
        "response_code": str(response_code),
        "response_flags": response_flags,
        "connection_security_policy": UNKNOWN,
    }


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
    """One status-code-server process per version, in its own process group, logging into `log_dir`."""

    def __init__(self, log_dir: Path) -> None:
        self._processes = ProcessGroup(log_dir)
        self._running: dict[str, tuple[subprocess.Popen[bytes], str]] = {}

    def addresses(self) -> dict[str, str]:
        return {version: address for version, (_, address) in self._running.items()}

    def ensure(self, versions: Set[str]) -> None:
        """Starts the versions not running yet, and again the ones whose process exited."""
        for version in sorted(versions):
            running = self._running.get(version)
            if running is not None and running[0].poll() is None:
                continue
            if running is not None:
                log.warning(
                    "Restarted exited status-code-server backend",
                    extra={"version": version, "exit_code": running[0].returncode},
                )
                self._processes.stop(_backend_name(version))
            self._running[version] = self._start(version)

    def retain(self, versions: Set[str]) -> None:
        """Stops every version not in `versions`."""
        for version in sorted(set(self._running) - set(versions)):
            self._processes.stop(_backend_name(version))
            del self._running[version]
            log.info("Stopped status-code-server backend", extra={"version": version})

    def stop_all(self) -> None:
        self._processes.stop_all()
        self._running.clear()

    def _start(self, version: str) -> tuple[subprocess.Popen[bytes], str]:
        name = _backend_name(version)
        log_path = self._processes.log_dir / f"{name}.log"
        # The log is appended to across restarts: only what this process writes counts.
        offset = log_path.stat().st_size if log_path.exists() else 0
        server = [sys.executable, str(STATUS_CODE_SERVER)]
        process = self._processes.start(
            name, [*server, "--version", version, "--port", "0", "--host", "127.0.0.1"]
        )
        ports: list[int] = []

        def listening_or_exited() -> bool:
            with log_path.open("rb") as log_file:
                log_file.seek(offset)
                found = LISTENING_LINE.search(log_file.read().decode(errors="replace"))
            if found:
                ports.append(int(found.group(1)))
            return bool(found) or process.poll() is not None

        wait_until(listening_or_exited, timeout=30, what=f"status-code-server {version}", interval=0.05)
        if not ports:
            tail = self._processes.log_tail(name)
            self._processes.stop(name)
            raise RuntimeError(
                f"status-code-server {version} exited with code {process.returncode} before listening; "
                f"its log is {log_path}:\n{tail}"
            )
        address = f"127.0.0.1:{ports[0]}"
        log.info(
            "Started status-code-server backend",
            extra={"version": version, "address": address, "pid": process.pid},
        )
        return process, address


def _backend_name(version: str) -> str:
    return f"status-code-server-{version}"


class MeshProxy:
    """The ingress-like proxy with the destination sidecars' metrics: routes each request by the applied
    weights to the process of the chosen destination's version and counts it as Istio would."""

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
        versions = {destination.version for destination in routes or () if destination.version is not None}
        with self._apply_lock:
            self._backends.ensure(versions)
            if routes != self.table.routes():
                log.info(
                    "Applied local mesh routes",
                    extra={"routes": {d.name: d.weight for d in routes or ()}, "namespace": self.namespace},
                )
            self.table.apply(routes, self._backends.addresses())
            self._backends.retain(versions)

    def backends(self) -> dict[str, str]:
        """The running status-code-server processes: version → `host:port`."""
        with self._apply_lock:
            return self._backends.addresses()

    def metrics(self) -> bytes:
        return generate_latest(self.registry)

    def route(self, path: str, source_workload: str | None) -> Answer:
        """Answers one GET (all the status-code-server serves) and records it."""
        started = time.perf_counter()
        selection = self.table.select()
        answer = selection.refusal or self._forward(selection.upstream or "", path)
        from_generator = source_workload == GENERATOR_WORKLOAD
        labels = request_labels(
            selection.destination,
            source_workload=GENERATOR_WORKLOAD if from_generator else UNKNOWN,
            source_namespace=self.namespace if from_generator else UNKNOWN,
            response_code=answer.status,
            response_flags=answer.response_flags,
        )
        self._requests.labels(**labels).inc()
        self._durations.labels(**labels).observe((time.perf_counter() - started) * 1000)
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
    """Reads a VirtualService and the Services and Deployments of its namespace from the API server."""

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
        virtual_service: Any
        try:
            virtual_service = self._custom.get_namespaced_custom_object(
                VIRTUAL_SERVICE_GROUP,
                VIRTUAL_SERVICE_VERSION,
                self.namespace,
                VIRTUAL_SERVICE_PLURAL,
                self.virtual_service,
            )
        except ApiException as error:
            if error.status != 404:
                raise
            virtual_service = None
        services = self._core.list_namespaced_service(self.namespace).items
        deployments = self._apps.list_namespaced_deployment(self.namespace).items
        return resolve_routes(
            virtual_service,
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
