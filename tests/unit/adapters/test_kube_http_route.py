"""The HTTPRoute read of the Kubernetes adapter: by name from gateway.networking.k8s.io/v1, None when it does
not exist, any other failure a transient error naming the route."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from reconciler.adapters.kube import KubeCluster
from reconciler.core.errors import TransientError


class FakeCustomObjects:
    def __init__(self, answer: dict[str, Any] | ApiException) -> None:
        self.answer = answer
        self.calls: list[tuple[str, ...]] = []

    def get_namespaced_custom_object(self, *args: str) -> dict[str, Any]:
        self.calls.append(args)
        if isinstance(self.answer, ApiException):
            raise self.answer
        return self.answer


def cluster_answering(answer: dict[str, Any] | ApiException) -> tuple[KubeCluster, FakeCustomObjects]:
    cluster = KubeCluster(kubernetes.client.ApiClient())
    fake = FakeCustomObjects(answer)
    cluster.custom = fake  # type: ignore[assignment]
    return cluster, fake


def test_the_route_is_read_by_name_from_the_gateway_api_group() -> None:
    route = {"metadata": {"name": "web", "generation": 3}, "status": {"parents": []}}
    cluster, fake = cluster_answering(route)
    assert cluster.http_route("shop", "web") == route
    assert fake.calls == [("gateway.networking.k8s.io", "v1", "shop", "httproutes", "web")]


def test_a_missing_route_is_none() -> None:
    cluster, _ = cluster_answering(ApiException(status=404, reason="Not Found"))
    assert cluster.http_route("shop", "web") is None


def test_any_other_failure_is_transient_and_names_the_route() -> None:
    cluster, _ = cluster_answering(ApiException(status=403, reason="Forbidden"))
    with pytest.raises(TransientError, match="reading HTTPRoute shop/web"):
        cluster.http_route("shop", "web")
