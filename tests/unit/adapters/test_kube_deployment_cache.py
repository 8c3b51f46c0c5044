"""The Deployment informer: one list, then watch events, keep readings current; a change of readiness or
image wakes the CanaryApp named by the Deployment's label; a Deployment it does not hold is never reported
absent."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import kubernetes

from reconciler.adapters.kube import APP_LABEL, MANAGED_SELECTOR, DeploymentCache
from reconciler.core.readiness import DeploymentState


def deployment(
    name: str, image: str, available: int, *, app: str = "web", uid: str = "uid-web"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "generation": 1,
            "resourceVersion": "5",
            "labels": {APP_LABEL: app, "app.kubernetes.io/managed-by": "canaryapp"},
            "ownerReferences": [
                {"apiVersion": "canary.atze.io/v1", "kind": "CanaryApp", "name": app, "uid": uid}
            ],
        },
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": image}]}}},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": available,
        },
    }


class FakeApps:
    """Lists the given Deployments and records the label selector. (The typed client's items go through
    `sanitize_for_serialization`, which passes plain JSON through unchanged.)"""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.selectors: list[str] = []

    def list_namespaced_deployment(self, namespace: str, label_selector: str = "") -> Any:
        self.selectors.append(label_selector)
        return SimpleNamespace(items=list(self.items), metadata=SimpleNamespace(resource_version="7"))


def follow(cache: DeploymentCache, stop: threading.Event) -> list[tuple[str, str]]:
    woken: list[tuple[str, str]] = []
    cache.follow(stop, lambda namespace, name: woken.append((namespace, name)))
    return woken


def test_list_then_events_keep_the_readings_and_wake_the_canaryapp_on_a_change() -> None:
    apps = FakeApps([deployment("web-primary", "app:v1", 1)])
    stop = threading.Event()

    def stream(function: Any, args: tuple[Any, ...], version: str, timeout: int) -> Iterable[dict[str, Any]]:
        assert version == "7"
        yield {"type": "ADDED", "raw_object": deployment("web-canary", "app:v2", 0)}
        yield {"type": "MODIFIED", "raw_object": deployment("web-canary", "app:v2", 0)}  # nothing changed
        yield {"type": "MODIFIED", "raw_object": deployment("web-canary", "app:v2", 1)}  # ready now
        yield {"type": "DELETED", "raw_object": deployment("web-primary", "app:v1", 1)}
        stop.set()

    cache = DeploymentCache(apps, kubernetes.client.ApiClient(), "ns", stream=stream)  # type: ignore[arg-type]
    woken = follow(cache, stop)
    assert apps.selectors == [MANAGED_SELECTOR]
    # The list (primary new to the cache), the canary added, the canary ready, the primary deleted.
    assert woken == [("ns", "web")] * 4
    canary = cache.lookup("ns", "web-canary")
    assert canary is not None
    assert canary.state == DeploymentState("app:v2", ready=True, replicas=1)
    assert canary.owner_uids == frozenset({"uid-web"})
    assert cache.lookup("ns", "web-primary") is None  # not held: the caller reads the API server


def test_nothing_is_answered_before_the_first_list() -> None:
    cache = DeploymentCache(FakeApps([]), kubernetes.client.ApiClient(), "ns")  # type: ignore[arg-type]
    assert cache.lookup("ns", "web-primary") is None
    assert not cache.synced.is_set()


def test_a_watch_too_old_lists_again_and_reports_what_changed_meanwhile() -> None:
    apps = FakeApps([deployment("web-canary", "app:v2", 0)])
    stop = threading.Event()
    watches = 0

    def stream(function: Any, args: tuple[Any, ...], version: str, timeout: int) -> Iterable[dict[str, Any]]:
        nonlocal watches
        watches += 1
        if watches == 1:
            apps.items = [deployment("web-canary", "app:v2", 1)]  # became ready while the watch was gone
            yield {"type": "ERROR", "raw_object": {"code": 410}}
        else:
            stop.set()
            yield from ()

    cache = DeploymentCache(apps, kubernetes.client.ApiClient(), "ns", stream=stream)  # type: ignore[arg-type]
    woken = follow(cache, stop)
    assert woken == [("ns", "web"), ("ns", "web")]
    entry = cache.lookup("ns", "web-canary")
    assert entry is not None
    assert entry.state.ready


def test_after_a_failed_watch_reads_go_to_the_api_server_until_it_lists_again() -> None:
    apps = FakeApps([deployment("web-canary", "app:v2", 1)])
    stop = threading.Event()
    seen_while_failing: list[object] = []
    watches = 0

    def stream(function: Any, args: tuple[Any, ...], version: str, timeout: int) -> Iterable[dict[str, Any]]:
        nonlocal watches
        watches += 1
        if watches == 1:
            raise RuntimeError("connection reset")
        seen_while_failing.append(cache.lookup("ns", "web-canary"))  # listed again by now
        stop.set()
        yield from ()

    cache = DeploymentCache(apps, kubernetes.client.ApiClient(), "ns", stream=stream)  # type: ignore[arg-type]
    original_relist = cache._relist

    def relist(*args: Any) -> str:
        seen_while_failing.append(cache.lookup("ns", "web-canary"))
        return original_relist(*args)

    cache._relist = relist  # type: ignore[method-assign]
    follow(cache, stop)
    # First list: nothing cached yet. After the failure the cache stops answering until the second list.
    assert seen_while_failing[0] is None
    assert seen_while_failing[1] is None
    assert seen_while_failing[2] is not None
