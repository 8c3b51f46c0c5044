"""The misbehaving metrics endpoint (devenv/hostile_endpoint.py) misbehaves as promised, records what it was
sent, and stops at once even in the middle of an endless answer."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest

from devenv.hostile_endpoint import (
    EMPTY_VECTOR,
    HUGE_BODY_BYTES,
    HostileEndpoint,
    drip_body,
    huge_body_chunks,
)

QUERY = "/api/v1/query?" + urllib.parse.urlencode({"query": 'sum(rate(errors{app="web"}[1m]))'})


@pytest.fixture
def server() -> Iterator[HostileEndpoint]:
    with HostileEndpoint() as endpoint:
        yield endpoint


def test_echo_answers_an_empty_vector_and_records_the_headers(server: HostileEndpoint) -> None:
    headers = {"Authorization": "Bearer tenant-token", "X-Scope-OrgID": "tenant-a"}
    answer = httpx.get(server.url("echo") + QUERY, headers=headers)
    assert answer.status_code == 200
    assert answer.json() == json.loads(EMPTY_VECTOR)
    [received] = server.headers_received("echo")
    assert received["authorization"] == "Bearer tenant-token"
    assert received["x-scope-orgid"] == "tenant-a"
    [request] = server.requests
    assert (request.behaviour, request.method) == ("echo", "GET")
    assert request.path == "/echo" + QUERY


def test_redirect_points_at_its_target_with_the_path_and_query(server: HostileEndpoint) -> None:
    target = server.url("echo")
    answer = httpx.get(server.url("redirect", target=target) + QUERY)
    assert answer.status_code == 302
    assert answer.headers["Location"] == target + QUERY
    assert server.headers_received("echo") == []

    followed = httpx.get(server.url("redirect", target=target) + QUERY, follow_redirects=True)
    assert followed.json() == json.loads(EMPTY_VECTOR)
    assert [request.behaviour for request in server.requests] == ["redirect", "redirect", "echo"]


def test_redirect_target_can_be_set_once_for_the_endpoint() -> None:
    with HostileEndpoint(redirect_target="http://metrics.elsewhere.example:9090/") as endpoint:
        answer = httpx.post(endpoint.url("redirect") + "/api/v1/query", data={"query": "up"})
    assert answer.status_code == 302
    assert answer.headers["Location"] == "http://metrics.elsewhere.example:9090/api/v1/query"


def test_redirect_without_a_target_is_refused(server: HostileEndpoint) -> None:
    with pytest.raises(ValueError, match="needs a target"):
        server.url("redirect")
    with pytest.raises(ValueError, match="only 'redirect'"):
        server.url("echo", target="http://127.0.0.1:1")


def test_huge_streams_64_mib_of_json_without_a_length(server: HostileEndpoint) -> None:
    received = 0
    with httpx.stream("GET", server.url("huge") + QUERY) as answer:
        assert answer.status_code == 200
        assert "content-length" not in answer.headers
        for chunk in answer.iter_raw():
            if received == 0:
                assert chunk.startswith(b'{"status":"success","data":{"resultType":"vector","result":[{')
            received += len(chunk)
    assert received == HUGE_BODY_BYTES
    assert chunk.endswith(b"]}}")


@pytest.mark.parametrize("total_bytes", [161, 1000, 200_000, 200_001])
def test_huge_body_is_valid_json_of_the_exact_length(total_bytes: int) -> None:
    body = b"".join(huge_body_chunks(total_bytes))
    assert len(body) == total_bytes
    assert json.loads(body)["data"]["result"]


def test_html_answers_a_login_page(server: HostileEndpoint) -> None:
    answer = httpx.get(server.url("html") + QUERY)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.text.startswith("<!DOCTYPE html>")


def test_drip_sends_one_byte_at_a_time(server: HostileEndpoint) -> None:
    with httpx.stream("GET", server.url("drip") + QUERY) as answer:
        assert answer.headers["Content-Length"] == str(int(120 / 0.5))
        started = time.monotonic()
        chunks = answer.iter_raw(1)
        first = [next(chunks) for _ in range(3)]
        elapsed = time.monotonic() - started
    assert first == [b"{", b'"', b"s"]
    assert elapsed >= 0.5 * 2 - 0.1


def test_drip_body_is_valid_json_once_complete() -> None:
    with HostileEndpoint(drip_interval=0.005, drip_seconds=0.4) as endpoint:
        answer = httpx.get(endpoint.url("drip") + QUERY)
    assert len(answer.content) == 80
    assert answer.json() == json.loads(EMPTY_VECTOR)
    assert len(drip_body(10)) == len(EMPTY_VECTOR)


def test_unknown_behaviour_is_not_found(server: HostileEndpoint) -> None:
    assert httpx.get(f"http://127.0.0.1:{server.port}/nothing{QUERY}").status_code == 404
    assert [request.behaviour for request in server.requests] == [None]


def test_stop_ends_answers_being_written() -> None:
    endpoint = HostileEndpoint()
    endpoint.start()
    clients = []
    for behaviour in ("drip", "huge"):
        # A client that sends its request and never reads: the huge answer fills the socket buffers.
        client = socket.create_connection(("127.0.0.1", endpoint.port))
        client.sendall(f"GET /{behaviour}/api/v1/query HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        clients.append(client)
    idle = socket.create_connection(("127.0.0.1", endpoint.port))
    clients.append(idle)
    wait_for_requests(endpoint, 2)

    stopping = threading.Thread(target=endpoint.stop)
    stopping.start()
    stopping.join(timeout=5)
    assert not stopping.is_alive()
    for client in clients:
        client.settimeout(5)
        # Ended either way: closed (recv returns nothing) or reset (unread bytes were still queued); a
        # connection left open would time out here.
        with contextlib.suppress(ConnectionResetError):
            while client.recv(1 << 20):
                pass
        client.close()


def wait_for_requests(endpoint: HostileEndpoint, count: int) -> None:
    for _ in range(100):
        if len(endpoint.requests) >= count:
            return
        time.sleep(0.02)
    pytest.fail(f"expected {count} requests, got {endpoint.requests}")
