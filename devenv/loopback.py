"""An HTTP server on a free loopback port, served by a daemon thread: what the development harness's small
servers (the metrics exporter, Flux's artifact server) share."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devenv.processes import free_port


class LoopbackServer:
    """Serves `handler` on 127.0.0.1:`port` from `start()` until `stop()`."""

    def __init__(self) -> None:
        self.port = free_port()

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        """Binds the port for `handler` (a subclass calls it once, from its own constructor)."""
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
