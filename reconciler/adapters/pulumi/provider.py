"""One long-lived Kubernetes provider per step worker, which every `stack.up` of that worker attaches to.

A provider started for each `up` costs more CPU than the step's own work: the process start, then its
Configure, which reads the cluster's discovery documents and its whole OpenAPI schema (several MB) before the
first resource is checked. A provider that outlives the run keeps that schema; its Configure on the next run
only builds new API clients. The engine attaches to an already-running provider named in
`PULUMI_DEBUG_PROVIDERS` (the same mechanism a debugger uses) and sends it `Attach` with its own address.

One thing stands in the way: when a run ends the engine signals `Cancel` to its providers, and the Kubernetes
provider then cancels, for good, the context all its later API clients are made from (the next run fails with
"client rate limiter Wait returned an error: context canceled"). So the engine talks to a small relay that
passes every call through unchanged except `Cancel`, which it answers itself. Nothing else is lost by that: a
worker never cancels a run it started, and the provider dies with its worker (its parent-death signal).

The provider is recycled (stopped, then started again on the next step) after a failed step, so a step never
retries on a provider in a state nobody understands, and after `MAX_RUNS` runs, so its cached schema follows
CRD changes within a bounded number of steps.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger(__name__)

BINARY = "pulumi-resource-kubernetes"
PACKAGE = "kubernetes"
MAX_RUNS = 200
_START_TIMEOUT_SECONDS = 30.0
_CANCEL = "/pulumirpc.ResourceProvider/Cancel"
_SERVER_STREAMING = frozenset({"/pulumirpc.ResourceProvider/StreamInvoke"})
# Pulumi's own limit for messages between the engine and plugins (large Helm charts, big states).
_MAX_MESSAGE_BYTES = 400 * 1024 * 1024
_GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
]
_NO_DEADLINE_SECONDS = 365 * 24 * 3600.0
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _timeout(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline, if it set one (gRPC reports "none" as a huge number of seconds)."""
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < _NO_DEADLINE_SECONDS else None


def _forwarded(metadata: Any) -> list[tuple[str, str | bytes]]:
    return [
        (key, value)
        for key, value in metadata or ()
        if not key.startswith(("grpc-", ":")) and key != "user-agent"
    ]


def _relayed_error(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """The provider's error as it gave it, except UNAVAILABLE: from behind a relay that answers, it means the
    provider is gone, and the engine would take it for a plugin still starting and wait for a minute."""
    if error.code() == grpc.StatusCode.UNAVAILABLE:
        return (
            grpc.StatusCode.INTERNAL,
            f"the long-lived Kubernetes provider is not answering: {error.details()}",
        )
    return error.code(), error.details() or ""


class _Relay(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc is untyped
    """Passes every ResourceProvider call to the provider as raw bytes, and answers `Cancel` itself."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method == _CANCEL:
            return grpc.unary_unary_rpc_method_handler(lambda _request, _context: b"")
        if method in _SERVER_STREAMING:
            stream = self._channel.unary_stream(method)

            def relay_stream(request: bytes, context: grpc.ServicerContext) -> Any:
                try:
                    yield from stream(
                        request,
                        metadata=_forwarded(context.invocation_metadata()),
                        timeout=_timeout(context),
                    )
                except grpc.RpcError as error:
                    context.abort(*_relayed_error(error))

            return grpc.unary_stream_rpc_method_handler(relay_stream)
        unary = self._channel.unary_unary(method)

        def relay(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                answer: bytes = unary(
                    request,
                    metadata=_forwarded(context.invocation_metadata()),
                    timeout=_timeout(context),
                )
            except grpc.RpcError as error:
                context.abort(*_relayed_error(error))
            return answer

        return grpc.unary_unary_rpc_method_handler(relay)


class LongLivedProvider:
    """The Kubernetes provider process of one worker and its relay. `environment()` starts them when needed
    and returns the variables that make the next `pulumi` run attach to them."""

    def __init__(
        self, log_dir: Path, environment: Mapping[str, str] | None = None, binary: str | None = None
    ) -> None:
        self._log_path = log_dir / "kubernetes-provider.log"
        # Added to this process's own environment (the provider reads KUBECONFIG, say).
        self._environment = {**os.environ, **(environment or {})}
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self._server: grpc.Server | None = None
        self._relay_port = 0
        self.runs = 0

    def environment(self) -> dict[str, str]:
        if self._process is not None and (self._process.poll() is not None or self.runs >= MAX_RUNS):
            self.stop()
        if self._process is None:
            self._start()
        self.runs += 1
        return {"PULUMI_DEBUG_PROVIDERS": f"{PACKAGE}:{self._relay_port}"}

    def recycle(self) -> None:
        """After a failed step: the next step starts from a new provider."""
        self.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
        if self._channel is not None:
            self._channel.close()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process, self._server, self._channel, self.runs = None, None, None, 0

    def _start(self) -> None:
        binary = self._binary or shutil.which(BINARY)
        if binary is None:
            raise FileNotFoundError(f"{BINARY} is not on PATH")
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("wb") as output:
            self._process = subprocess.Popen(
                [binary],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self._environment,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, nothing that takes a lock
            )
        port = self._provider_port()
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=_GRPC_OPTIONS)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=_GRPC_OPTIONS)
        self._server.add_generic_rpc_handlers((_Relay(self._channel),))
        self._relay_port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        log.debug(
            "Started long-lived Kubernetes provider",
            extra={"pid": self._process.pid, "provider_port": port, "relay_port": self._relay_port},
        )

    def _provider_port(self) -> int:
        """The port the provider prints as its first line once it serves."""
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            first = self._log_path.read_bytes().split(b"\n", 1)
            if len(first) == 2 and first[0].strip().isdigit():
                return int(first[0])
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        tail = self._log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{BINARY} did not print its port within {_START_TIMEOUT_SECONDS:.0f}s: {tail}")
