"""The demo application of canary rollouts: `/hello` answers 200 and `/nothello` 500, both naming the
version, so which version served a request, and whether it failed, is visible from outside.

Standard library only, so the same file runs in the container image and, unpackaged, as a backend of the
local mesh (`devenv/mesh/backends.py`).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_PORT = 8088


def build_handler(version: str) -> type[BaseHTTPRequestHandler]:
    answers = {
        "/hello": (200, f"Hello! {version}"),
        "/nothello": (500, f"NotHello! {version}"),
        "/healthz": (200, "ok"),
    }

    class StatusCodeHandler(BaseHTTPRequestHandler):
        server_version = f"status-code-server/{version}"

        def do_GET(self) -> None:
            status, text = answers.get(self.path.split("?", 1)[0], (404, "not found"))
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # A line per request would flood the log at the load generator's rates; the mesh counts them.
            return

    return StatusCodeHandler


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--version", default=os.environ.get("VERSION"), help="version it reports, e.g. v2 (default: $VERSION)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    args = parser.parse_args(argv)
    if not args.version:
        parser.error(
            "no version given: pass --version (e.g. --version v2) or set the VERSION environment variable"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), build_handler(args.version))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    # serve_forever runs in a thread because shutdown() waits for it and would deadlock a signal handler.
    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="serve", daemon=True
    )
    serving.start()
    host, port = server.server_address[:2]
    print(f"listening on {host!s}:{port} version={args.version}", flush=True)
    stopping.wait()
    server.shutdown()
    server.server_close()
    print(f"stopped version={args.version}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
