"""The demo application of canary rollouts: `/hello` answers 200 and `/nothello` 500, both naming the
version, so which version served a request, and whether it failed, is visible from outside.

Its behaviour under analysis comes from environment variables, as a real image's configuration would, so a
canary's pod template can make it slower or fail more often than the primary (`behaviour_from_env`): a base
latency, a share of slow requests, a share of failing /hello answers and the latency of `/heavy`. Which
requests are slow or fail is deterministic (`in_share`: every 10th for 0.1), so tests see exact shares.

Standard library only, so the same file runs in the container image and, unpackaged, as a backend of the
local mesh (`devenv/mesh/backends.py`).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_PORT = 8088
DEFAULT_HEAVY_LATENCY_MS = 1000.0
MAX_LATENCY_MS = 60_000.0
MAX_SLOW_FACTOR = 100.0
# Every variable the behaviour reads; the local mesh passes exactly these from a pod template.
BEHAVIOUR_VARIABLES = ("LATENCY_MS", "SLOW_SHARE", "SLOW_FACTOR", "ERROR_SHARE", "HEAVY_LATENCY_MS")
# The paths that take time and are numbered for the shares; /healthz answers at once (a probe is not load).
TIMED_PATHS = ("/hello", "/nothello", "/heavy")


@dataclass(frozen=True)
class Behaviour:
    """How the server answers: every timed request takes `latency_ms` (`/heavy`: `heavy_latency_ms`), the
    `slow_share` of them `slow_factor` times as long, and the `error_share` of /hello answers 500."""

    latency_ms: float = 0.0
    slow_share: Fraction = Fraction(0)
    slow_factor: float = 1.0
    error_share: Fraction = Fraction(0)
    heavy_latency_ms: float = DEFAULT_HEAVY_LATENCY_MS

    def describe(self) -> str:
        return (
            f"LATENCY_MS={self.latency_ms:g} SLOW_SHARE={float(self.slow_share):g} "
            f"SLOW_FACTOR={self.slow_factor:g} ERROR_SHARE={float(self.error_share):g} "
            f"HEAVY_LATENCY_MS={self.heavy_latency_ms:g}"
        )


def behaviour_from_env(env: Mapping[str, str]) -> Behaviour:
    """The behaviour the variables of `env` ask for; unset or empty ones keep their defaults. Raises
    ValueError naming the variable, its allowed range and the value given."""
    return Behaviour(
        latency_ms=_number(env, "LATENCY_MS", 0.0, 0.0, MAX_LATENCY_MS, "milliseconds"),
        slow_share=_share(env, "SLOW_SHARE"),
        slow_factor=_number(env, "SLOW_FACTOR", 1.0, 0.0, MAX_SLOW_FACTOR, "a factor"),
        error_share=_share(env, "ERROR_SHARE"),
        heavy_latency_ms=_number(
            env, "HEAVY_LATENCY_MS", DEFAULT_HEAVY_LATENCY_MS, 0.0, MAX_LATENCY_MS, "milliseconds"
        ),
    )


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float, unit: str) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise ValueError(f"{name} must be {unit} from {low:g} to {high:g}, got {text!r}")
    return value


def _share(env: Mapping[str, str], name: str) -> Fraction:
    """A share as an exact fraction: 0.1 is 1/10, 0.15 is 3/20 (at most 1000 in the denominator)."""
    share = _number(env, name, 0.0, 0.0, 1.0, "a share")
    return Fraction(share).limit_denominator(1000)


def in_share(sequence: int, share: Fraction) -> bool:
    """Whether request `sequence` (0-based) is one of `share` of the requests, spread evenly and exactly:
    p of every q for p/q (0.1: requests 9, 19, 29, ...; 0.15: three in every 20)."""
    return math.floor((sequence + 1) * share) > math.floor(sequence * share)


class Numbering:
    """Thread-safe request numbers: one sequence for every timed request, one for /hello alone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timed = 0
        self._hello = 0

    def next(self, path: str) -> tuple[int, int | None]:
        with self._lock:
            timed = self._timed
            self._timed += 1
            if path != "/hello":
                return timed, None
            hello = self._hello
            self._hello += 1
            return timed, hello


class Server(ThreadingHTTPServer):
    # Room for a burst of connections (every request opens one: HTTP/1.0) while the accepting thread waits
    # for the CPU; the default of 5 would drop SYNs, which a client resends only a second later.
    request_queue_size = 128


def build_handler(version: str, behaviour: Behaviour | None = None) -> type[BaseHTTPRequestHandler]:
    behaviour = behaviour or Behaviour()
    numbering = Numbering()
    answers = {
        "/hello": (200, f"Hello! {version}"),
        "/nothello": (500, f"NotHello! {version}"),
        "/heavy": (200, f"Heavy! {version}"),
        "/healthz": (200, "ok"),
    }
    failed_hello = (500, f"Hello failed! {version}")

    def answer(path: str) -> tuple[int, str]:
        if path not in TIMED_PATHS:
            return answers.get(path, (404, "not found"))
        timed, hello = numbering.next(path)
        latency_ms = behaviour.heavy_latency_ms if path == "/heavy" else behaviour.latency_ms
        if in_share(timed, behaviour.slow_share):
            latency_ms *= behaviour.slow_factor
        if latency_ms > 0:
            time.sleep(latency_ms / 1000)
        if hello is not None and in_share(hello, behaviour.error_share):
            return failed_hello
        return answers[path]

    class StatusCodeHandler(BaseHTTPRequestHandler):
        server_version = f"status-code-server/{version}"

        def do_GET(self) -> None:
            status, text = answer(self.path.split("?", 1)[0])
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
    try:
        behaviour = behaviour_from_env(os.environ)
    except ValueError as error:
        print(f"status-code-server: {error}", file=sys.stderr)
        return 2
    server = Server((args.host, args.port), build_handler(args.version, behaviour))
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
    if behaviour != Behaviour():
        print(f"behaviour {behaviour.describe()}", flush=True)
    stopping.wait()
    server.shutdown()
    server.server_close()
    print(f"stopped version={args.version}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
