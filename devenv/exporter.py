"""A tiny metrics exporter whose values the caller sets: Prometheus scrapes it like any other target."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

from devenv.loopback import LoopbackServer


class ControlledExporter(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.address = f"127.0.0.1:{self.port}"
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.serve(Handler)

    def set(self, name: str, labels: dict[str, str], value: float) -> None:
        with self._lock:
            self._values[(name, tuple(sorted(labels.items())))] = value

    def render(self) -> str:
        with self._lock:
            lines = []
            for (name, labels), value in sorted(self._values.items()):
                label_text = ",".join(f'{key}="{val}"' for key, val in labels)
                lines.append(f"{name}{{{label_text}}} {value}")
        return "\n".join(lines) + "\n"
