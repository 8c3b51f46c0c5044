"""A metrics endpoint that misbehaves on purpose, so tests can show the reconciler's Prometheus client
survives what real-world endpoints do: redirect elsewhere, answer without end, answer a login page, answer one
byte at a time. Each behaviour has its own base URL, under which `/api/v1/query` (or any path) reaches it,
and every request is recorded with its headers so tests can check what was (not) sent where.

It runs in-process, in threads: a test double for a misbehaving endpoint, not a stand-in for Prometheus.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

from devenv.processes import free_port

logger = logging.getLogger(__name__)

Behaviour = Literal["redirect", "huge", "html", "drip", "echo"]

EMPTY_VECTOR = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
HUGE_BODY_BYTES = 64 * 1024 * 1024
LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b'<body><form method="post" action="/login"><input name="user"><input name="password" type="password">'
    b"<button>Sign in</button></form></body></html>\n"
)

_HUGE_PREFIX = b'{"status":"success","data":{"resultType":"vector","result":['
_HUGE_SUFFIX = b"]}}"
_HUGE_SERIES = (
    b'{"metric":{"__name__":"istio_requests_total","response_code":"500"},"value":[1700000000,"1"]}'
)
_HUGE_SERIES_PER_CHUNK = 1024
_STOP_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class RecordedRequest:
    behaviour: Behaviour | None  # None: a path no behaviour serves (answered 404)
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "


@dataclass(frozen=True)
class _Route:
    behaviour: Behaviour
    redirect_target: str | None = None


def huge_body_chunks(total_bytes: int = HUGE_BODY_BYTES) -> Iterator[bytes]:
    """A Prometheus vector answer of exactly `total_bytes`, made of many identical series, in chunks; spaces
    (valid JSON whitespace) before the closing brackets make up the exact length."""
    first = _HUGE_PREFIX + _HUGE_SERIES
    chunk = (b"," + _HUGE_SERIES) * _HUGE_SERIES_PER_CHUNK
    series_room = total_bytes - len(first) - len(_HUGE_SUFFIX)
    if series_room < 0:
        raise ValueError(f"a vector answer needs at least {len(first) + len(_HUGE_SUFFIX)} bytes")
    yield first
    full_chunks, rest = divmod(series_room, len(chunk))
    for _ in range(full_chunks):
        yield chunk
    single_series, padding = divmod(rest, len(_HUGE_SERIES) + 1)
    yield (b"," + _HUGE_SERIES) * single_series + b" " * padding + _HUGE_SUFFIX


def drip_body(length: int) -> bytes:
    """The empty vector answer padded with spaces to `length` bytes: valid JSON once it has all arrived."""
    return EMPTY_VECTOR[:-2] + b" " * max(0, length - len(EMPTY_VECTOR)) + EMPTY_VECTOR[-2:]


class HostileEndpoint:
    """`with HostileEndpoint() as server:` serves every behaviour until the block ends.

    `url("redirect")` answers `302` to the target given here or to `url()` (the rest of the path and the
    query string appended); `url("huge")` a 64 MiB vector answer without Content-Length; `url("html")` a
    login page; `url("drip")` the empty vector, one byte every `drip_interval` seconds (for 120 s by
    default); `url("echo")` the empty vector at once.
    """

    def __init__(
        self,
        *,
        redirect_target: str | None = None,
        drip_interval: float = 0.5,
        drip_seconds: float = 120.0,
        port: int = 0,
    ) -> None:
        self.port = port or free_port()
        self.drip_interval = drip_interval
        self.drip_bytes = int(drip_seconds / drip_interval)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._routes: dict[str, _Route] = {
            behaviour: _Route(behaviour) for behaviour in ("huge", "html", "drip", "echo")
        }
        if redirect_target is not None:
            self._routes["redirect"] = _Route("redirect", redirect_target)
        self._route_numbers = itertools.count(1)
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", self.port), self)
        self._serving: threading.Thread | None = None

    def url(self, behaviour: Behaviour, *, target: str | None = None) -> str:
        """The base URL of one behaviour; `target` (redirect only) is where that URL's redirects point."""
        if target is not None and behaviour != "redirect":
            raise ValueError(f"only 'redirect' takes a target, not {behaviour!r}")
        key: str = behaviour
        if target is not None:
            with self._lock:
                key = f"redirect-{next(self._route_numbers)}"
                self._routes[key] = _Route("redirect", target)
        elif self._route(key) is None:
            raise ValueError("url('redirect') needs a target: pass target= here or redirect_target= at build")
        return f"http://127.0.0.1:{self.port}/{key}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def headers_received(self, behaviour: Behaviour) -> list[dict[str, str]]:
        """The headers of each request one behaviour's URLs received, oldest first."""
        return [request.headers for request in self.requests if request.behaviour == behaviour]

    def start(self) -> None:
        self._serving = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _STOP_POLL_SECONDS},
            name="hostile-endpoint",
            daemon=True,
        )
        self._serving.start()

    def stop(self) -> None:
        """Stops at once, also while an answer is being written: open connections are shut down."""
        self._stopping.set()
        if self._serving is not None:
            self._server.shutdown()
            self._serving.join()
            self._serving = None
        self._server.close_connections()
        self._server.server_close()

    def __enter__(self) -> HostileEndpoint:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _route(self, key: str) -> _Route | None:
        with self._lock:
            return self._routes.get(key)


class _Server(ThreadingHTTPServer):
    """Knows its open connections, so stopping can cut them, and joins every handler thread on close."""

    daemon_threads = False

    def __init__(self, address: tuple[str, int], endpoint: HostileEndpoint) -> None:
        super().__init__(address, _Handler)
        self.endpoint = endpoint
        self._connections_lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("Found hostile endpoint connection already closed")


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # a backstop: a client that sends nothing is let go

    @property
    def endpoint(self) -> HostileEndpoint:
        assert isinstance(self.server, _Server)
        return self.server.endpoint

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0") or "0"))
        self._serve()

    def _serve(self) -> None:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        split = urllib.parse.urlsplit(self.path)
        key, _, rest = split.path.lstrip("/").partition("/")
        route = self.endpoint._route(key)
        behaviour = route.behaviour if route is not None else None
        self.endpoint._record(RecordedRequest(behaviour, self.command, self.path, headers))
        try:
            self._answer(route, rest, split.query)
        except OSError:
            logger.debug("Client left hostile endpoint", extra={"path": self.path})

    def _answer(self, route: _Route | None, rest: str, query: str) -> None:
        if route is None:
            self._send(404, "text/plain", b"no such behaviour\n")
        elif route.redirect_target is not None:
            location = f"{route.redirect_target.rstrip('/')}/{rest}" + (f"?{query}" if query else "")
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route.behaviour == "huge":
            self._send_huge()
        elif route.behaviour == "html":
            self._send(200, "text/html; charset=utf-8", LOGIN_PAGE)
        elif route.behaviour == "drip":
            self._send_drip()
        else:
            self._send(200, "application/json", EMPTY_VECTOR)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_huge(self) -> None:
        # No Content-Length: a client can tell it is too big only by counting what it reads.
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in huge_body_chunks():
            if self.endpoint._stopping.is_set():
                return
            self.wfile.write(chunk)

    def _send_drip(self) -> None:
        body = drip_body(self.endpoint.drip_bytes)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        for index in range(len(body)):
            self.wfile.write(body[index : index + 1])
            self.wfile.flush()
            if self.endpoint._stopping.wait(self.endpoint.drip_interval):
                return

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("Hostile endpoint answered", extra={"request": format % args})
