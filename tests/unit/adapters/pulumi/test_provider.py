"""The relay in front of the long-lived provider: every call passes through unchanged, errors keep their code,
and the engine's end-of-run `Cancel` never reaches the provider."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from reconciler.adapters.pulumi.provider import _Relay

SERVICE = "/pulumirpc.ResourceProvider/"


class RecordingProvider(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A stand-in provider (unit test only): echoes requests, fails `Delete`, records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, dict[str, Any]]] = []

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = handler_call_details.method

        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls.append((method, request, dict(context.invocation_metadata())))
            if method.endswith("/Delete"):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "object is protected")
            return b"answer:" + request

        return grpc.unary_unary_rpc_method_handler(answer)


@pytest.fixture
def relayed() -> Iterator[tuple[RecordingProvider, grpc.Channel]]:
    provider = RecordingProvider()
    provider_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    provider_server.add_generic_rpc_handlers((provider,))
    provider_port = provider_server.add_insecure_port("127.0.0.1:0")
    provider_server.start()
    upstream = grpc.insecure_channel(f"127.0.0.1:{provider_port}")
    relay_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    relay_server.add_generic_rpc_handlers((_Relay(upstream),))
    relay_port = relay_server.add_insecure_port("127.0.0.1:0")
    relay_server.start()
    engine = grpc.insecure_channel(f"127.0.0.1:{relay_port}")
    yield provider, engine
    engine.close()
    relay_server.stop(None)
    upstream.close()
    provider_server.stop(None)


def test_calls_pass_through_byte_for_byte_with_their_metadata(
    relayed: tuple[RecordingProvider, grpc.Channel],
) -> None:
    provider, engine = relayed
    answer = engine.unary_unary(SERVICE + "Check")(b"\x0a\x03urn", metadata=[("x-pulumi", "1")], timeout=5)
    assert answer == b"answer:\x0a\x03urn"
    assert [(method, request) for method, request, _ in provider.calls] == [
        (SERVICE + "Check", b"\x0a\x03urn")
    ]
    assert provider.calls[0][2]["x-pulumi"] == "1"


def test_a_call_without_a_deadline_is_relayed_without_one(
    relayed: tuple[RecordingProvider, grpc.Channel],
) -> None:
    provider, engine = relayed
    assert engine.unary_unary(SERVICE + "Attach")(b"address") == b"answer:address"
    assert provider.calls[0][0] == SERVICE + "Attach"


def test_an_error_keeps_its_code_and_message(relayed: tuple[RecordingProvider, grpc.Channel]) -> None:
    _, engine = relayed
    with pytest.raises(grpc.RpcError) as raised:
        engine.unary_unary(SERVICE + "Delete")(b"", timeout=5)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.details() == "object is protected"


def test_cancel_is_answered_by_the_relay_and_never_reaches_the_provider(
    relayed: tuple[RecordingProvider, grpc.Channel],
) -> None:
    provider, engine = relayed
    assert engine.unary_unary(SERVICE + "Cancel")(b"", timeout=5) == b""
    assert engine.unary_unary(SERVICE + "Configure")(b"cfg", timeout=5) == b"answer:cfg"
    assert [method for method, _, _ in provider.calls] == [SERVICE + "Configure"]


def test_a_provider_that_is_gone_is_reported_as_such_not_as_still_starting() -> None:
    """UNAVAILABLE would make the engine wait a minute for a plugin it thinks is starting."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    upstream = grpc.insecure_channel(f"127.0.0.1:{closed_port}")
    relay_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    relay_server.add_generic_rpc_handlers((_Relay(upstream),))
    relay_port = relay_server.add_insecure_port("127.0.0.1:0")
    relay_server.start()
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{relay_port}") as engine,
            pytest.raises(grpc.RpcError) as raised,
        ):
            engine.unary_unary(SERVICE + "GetPluginInfo")(b"", timeout=10)
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        assert "long-lived Kubernetes provider is not answering" in raised.value.details()
    finally:
        relay_server.stop(None)
        upstream.close()
