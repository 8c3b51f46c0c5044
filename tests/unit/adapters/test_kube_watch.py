"""A watch of CanaryApps through the adapter (reconciler/adapters/kube.py): events reach the handler as JSON,
bookmarks only move the resourceVersion on, and a 410 Gone ends the watch so that the informer lists again."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from reconciler.adapters.kube import KubeCluster


def app(name: str, resource_version: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": resource_version}}


@pytest.mark.parametrize(
    "gone",
    [
        pytest.param([{"type": "ERROR", "object": {"code": 410, "metadata": {}}}], id="410 as a watch event"),
        pytest.param(ApiException(status=410, reason="Gone"), id="410 as an exception"),
    ],
)
def test_events_go_to_the_handler_until_the_watch_is_too_old(gone: Any) -> None:
    versions: list[str] = []

    def stream(function: Any, args: tuple[Any, ...], version: str, timeout: int) -> Iterator[dict[str, Any]]:
        versions.append(version)
        if len(versions) == 1:
            yield {"type": "MODIFIED", "raw_object": app("a", "11")}
            yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}
            return  # the server's timeout: the watch goes on from the last version seen
        if isinstance(gone, Exception):
            raise gone
        yield from gone

    cluster = KubeCluster(kubernetes.client.ApiClient(), stream=stream, watch_timeout_seconds=30)
    events: list[tuple[str, str]] = []
    cluster.watch_canary_apps(
        "10", lambda kind, obj: events.append((kind, obj["metadata"]["name"])), lambda: False
    )
    assert events == [("MODIFIED", "a")]
    assert versions == ["10", "12"]


def test_any_other_watch_error_raises() -> None:
    def stream(function: Any, args: tuple[Any, ...], version: str, timeout: int) -> Iterable[dict[str, Any]]:
        return iter([{"type": "ERROR", "object": {"code": 500, "metadata": {}}}])

    cluster = KubeCluster(kubernetes.client.ApiClient(), stream=stream)
    with pytest.raises(RuntimeError, match="watch error"):
        cluster.watch_canary_apps("10", lambda kind, obj: None, lambda: False)
