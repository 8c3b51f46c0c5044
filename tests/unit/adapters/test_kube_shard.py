"""A shard's view of the API: its selector rides on every list and watch, and a read by name of another
shard's CanaryApp answers "not found" (the API server filters lists, not reads by name)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kubernetes

from reconciler.adapters.kube import LIST_PAGE_SIZE, KubeCluster
from reconciler.core.selectors import parse_selector


class FakeCustomObjects:
    def __init__(self, labels: dict[str, str], pages: int = 1) -> None:
        self.labels = labels
        self.pages = pages
        self.list_calls: list[dict[str, Any]] = []

    def get_namespaced_custom_object(self, *args: str) -> dict[str, Any]:
        return {"metadata": {"namespace": args[2], "name": args[4], "labels": self.labels}}

    def list_cluster_custom_object(self, *args: str, **options: Any) -> dict[str, Any]:
        self.list_calls.append(options)
        page = int(options.get("_continue", "0"))
        metadata = {"resourceVersion": "7", **({"continue": str(page + 1)} if page + 1 < self.pages else {})}
        return {"items": [{"metadata": {"name": f"app-{page}"}}], "metadata": metadata}


def cluster_with(labels: dict[str, str], selector: str | None) -> tuple[KubeCluster, FakeCustomObjects]:
    cluster = KubeCluster(
        kubernetes.client.ApiClient(), selector=parse_selector(selector) if selector else None
    )
    fake = FakeCustomObjects(labels)
    cluster.custom = fake  # type: ignore[assignment]
    return cluster, fake


def test_a_shard_reads_its_own_canaryapps_and_not_another_shards() -> None:
    mine, _ = cluster_with({"canary.atze.io/shard": "a"}, "canary.atze.io/shard=a")
    theirs, _ = cluster_with({"canary.atze.io/shard": "b"}, "canary.atze.io/shard=a")
    unlabelled, _ = cluster_with({}, None)
    assert mine.get_canary_app("shop", "web") is not None
    assert theirs.get_canary_app("shop", "web") is None
    assert unlabelled.get_canary_app("shop", "web") is not None


def test_lists_and_watches_carry_the_selector_only_when_there_is_one() -> None:
    sharded, calls = cluster_with({}, "canary.atze.io/shard in (b, a)")
    sharded.list_canary_apps()

    def stream(function: Any, args: tuple[Any, ...], version: str, timeout: int) -> Iterable[dict[str, Any]]:
        function(*args, watch=True)
        return iter([{"type": "ERROR", "object": {"code": 410}}])

    sharded.stream = stream
    sharded.watch_canary_apps("7", lambda event_type, obj: None, until=lambda: False)
    assert calls.list_calls == [
        {"label_selector": "canary.atze.io/shard in (a,b)", "limit": LIST_PAGE_SIZE},
        {
            "label_selector": "canary.atze.io/shard in (a,b)",
            "watch": True,
        },
    ]
    everything, calls = cluster_with({}, None)
    everything.list_canary_apps()
    assert calls.list_calls == [{"limit": LIST_PAGE_SIZE}]


def test_canaryapps_are_listed_in_pages_never_in_one_answer() -> None:
    cluster, calls = cluster_with({}, None)
    calls.pages = 3
    items, resource_version = cluster.list_canary_apps()
    assert [item["metadata"]["name"] for item in items] == ["app-0", "app-1", "app-2"]
    assert resource_version == "7"
    assert calls.list_calls == [
        {"limit": LIST_PAGE_SIZE},
        {"limit": LIST_PAGE_SIZE, "_continue": "1"},
        {"limit": LIST_PAGE_SIZE, "_continue": "2"},
    ]
