"""Every call to the API server is bounded (reconciler/adapters/kube.py): a default connect and read timeout
on each request, the caller's own where it gives one, and watches read as long as they ask the server for."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from reconciler.adapters import kube


class Recorder:
    def __init__(self) -> None:
        self.timeouts: list[Any] = []

    def request(self, method: str, url: str, **options: Any) -> Any:
        self.timeouts.append(options.get("_request_timeout"))
        raise kubernetes.client.exceptions.ApiException(status=404, reason="Not Found")


@pytest.fixture
def client() -> tuple[kube.BoundedApiClient, Recorder]:
    configuration = kubernetes.client.Configuration()
    configuration.host = "https://127.0.0.1:1"
    bounded = kube.BoundedApiClient(configuration)
    recorder = Recorder()
    bounded.rest_client = recorder  # type: ignore[assignment]
    return bounded, recorder


def test_a_call_without_a_timeout_gets_the_default(client: tuple[kube.BoundedApiClient, Recorder]) -> None:
    bounded, recorder = client
    with pytest.raises(kubernetes.client.exceptions.ApiException):
        kubernetes.client.CoreV1Api(bounded).read_namespace("default")
    assert recorder.timeouts == [(kube.CONNECT_TIMEOUT_SECONDS, kube.READ_TIMEOUT_SECONDS)]


def test_a_callers_own_timeout_wins(client: tuple[kube.BoundedApiClient, Recorder]) -> None:
    bounded, recorder = client
    with pytest.raises(kubernetes.client.exceptions.ApiException):
        kubernetes.client.CoreV1Api(bounded).read_namespace("default", _request_timeout=2.5)
    assert recorder.timeouts == [2.5]


def test_a_watch_reads_as_long_as_it_asks_the_server_to_run(
    client: tuple[kube.BoundedApiClient, Recorder],
) -> None:
    bounded, recorder = client
    custom = kubernetes.client.CustomObjectsApi(bounded)
    with pytest.raises(kubernetes.client.exceptions.ApiException):
        list(kube.watch_stream(custom.list_cluster_custom_object, ("g", "v1", "things"), "1", 300))
    assert recorder.timeouts == [(kube.CONNECT_TIMEOUT_SECONDS, 300 + kube.WATCH_READ_MARGIN_SECONDS)]
