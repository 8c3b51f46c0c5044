"""The ingress-like proxy: it forwards each request to a backend by the applied routes and exports the metrics
both of Istio's sidecars would."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from devenv.mesh.backends import BackendPool
from devenv.mesh.labels import (
    GENERATOR_WORKLOAD,
    ISTIO_LABELS,
    SOURCE_HEADER,
    UNKNOWN,
    Reporter,
    request_labels,
)
from devenv.mesh.routing import NO_FLAGS, Answer, Backend, Destination, RouteTable

log = logging.getLogger(__name__)

METRICS_PATH = "/stats/prometheus"
# Istio's default buckets: sub-second steps, then seconds up to an hour, in milliseconds.
ISTIO_DURATION_BUCKETS_MS = (
    *(0.5, 1, 5, 10, 25, 50, 100, 250, 500),
    *(1000 * seconds for seconds in (1, 2.5, 5, 10, 30, 60, 300, 600, 1800, 3600)),
)
UPSTREAM_FAILURE = Answer(503, b"upstream connect error or disconnect/reset before headers", "UF")


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
        self._gateway_workload: tuple[str, str] | None = None
        self._server: _ProxyServer | None = None
        self._serving: threading.Thread | None = None

    def start(self) -> None:
        """Returns once the proxy's port is listening."""
        self._server = _ProxyServer(("127.0.0.1", self.listen_port), _proxy_handler(self))
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

    def apply(
        self, routes: tuple[Destination, ...] | None, gateway_workload: tuple[str, str] | None = None
    ) -> None:
        """Starts the backends `routes` need, switches traffic to them, then stops those no longer needed.
        `gateway_workload` (name, namespace): the proxy plays that Gateway's pods, the source of every
        request it forwards (Gateway API); None: it forwards as the sender's own sidecar (Istio)."""
        backends = {workload.backend for destination in routes or () for workload in destination.workloads}
        with self._apply_lock:
            self._backends.ensure(backends)
            if routes != self.table.routes():
                log.info(
                    "Applied local mesh routes",
                    extra={"routes": {d.name: d.weight for d in routes or ()}, "namespace": self.namespace},
                )
            self.table.apply(routes, self._backends.addresses())
            self._gateway_workload = gateway_workload
            self._backends.retain(backends)

    def backends(self) -> dict[Backend, str]:
        """The running status-code-server processes: backend (image tag and behaviour) → `host:port`."""
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
        source = self._source(source_workload)
        for reporter, response_flags in flags.items():
            labels = request_labels(
                reporter,
                selection.destination,
                selection.workload,
                source_workload=source[0],
                source_namespace=source[1],
                response_code=answer.status,
                response_flags=response_flags,
            )
            self._requests.labels(**labels).inc()
            self._durations.labels(**labels).observe(elapsed_ms)
        return answer

    def _source(self, source_workload: str | None) -> tuple[str, str]:
        """Who sent a request, as the reporting sidecars label it: the Gateway's pods when the proxy plays a
        Gateway (they open the connection to the pod), else the generator when it named itself, else
        unknown (a curl from outside the mesh)."""
        gateway_workload = self._gateway_workload
        if gateway_workload is not None:
            return gateway_workload
        if source_workload == GENERATOR_WORKLOAD:
            return GENERATOR_WORKLOAD, self.namespace
        return UNKNOWN, UNKNOWN

    def _forward(self, upstream: str, path: str) -> Answer:
        try:
            response = self._client.get(f"http://{upstream}{path}")
        except httpx.TransportError as error:
            log.warning("Failed to reach upstream", extra={"upstream": upstream, "error": str(error)})
            return UPSTREAM_FAILURE
        return Answer(response.status_code, response.content)


class _ProxyServer(ThreadingHTTPServer):
    # Every request opens a connection (HTTP/1.0): room for the generator's concurrent requests while the
    # accepting thread waits for the CPU; the default backlog of 5 drops SYNs, resent only a second later.
    request_queue_size = 128


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
