"""The informer's cache of CanaryApps (reconciler/runtime/cache.py): watch events and lists keep it, and the
answers to this reconciler's own writes go into it at once, never older over newer."""

from __future__ import annotations

from typing import Any

from reconciler.runtime.cache import CanaryAppStore, WriteThrough


def app(name: str, resource_version: str, phase: str = "") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name, "resourceVersion": resource_version},
        "status": {"phase": phase},
    }


def phase(store: CanaryAppStore, name: str) -> str | None:
    found = store.get_canary_app("ns", name)
    return None if found is None else str(found["status"]["phase"])


class Writer:
    """The API server's answer to a write: the object at the next resourceVersion."""

    def __init__(self, resource_version: int) -> None:
        self.resource_version = resource_version

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.resource_version += 1
        return {**app(name, str(self.resource_version)), "status": status}

    def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        self.resource_version += 1
        stored = app(name, str(self.resource_version), "Ready")
        stored["metadata"]["finalizers"] = finalizers
        return stored


def test_a_write_is_read_back_before_its_watch_event_and_older_events_never_undo_it() -> None:
    store = CanaryAppStore()
    store.replace([app("web", "10", "Ready")])
    writes = WriteThrough(Writer(10), store)
    writes.write_status("ns", "web", {"phase": "Progressing"})
    assert phase(store, "web") == "Progressing"
    store.apply("MODIFIED", app("web", "9", "Ready"))  # an event from before the write, late
    assert phase(store, "web") == "Progressing"
    store.replace([app("web", "10", "Ready")])  # a list served from before the write
    assert phase(store, "web") == "Progressing"
    store.apply("MODIFIED", app("web", "12", "Promoting"))  # a later change
    assert phase(store, "web") == "Promoting"
    writes.set_finalizers("ns", "web", ["f"], "12")
    cached = store.get_canary_app("ns", "web")
    assert cached is not None
    assert cached["metadata"]["finalizers"] == ["f"]


def test_a_write_answered_for_an_object_no_longer_cached_stays_out() -> None:
    store = CanaryAppStore()
    store.replace([app("web", "10")])
    store.apply("DELETED", app("web", "11"))
    WriteThrough(Writer(11), store).write_status("ns", "web", {"phase": "Ready"})
    assert store.get_canary_app("ns", "web") is None
    assert store.canary_apps() == []


def test_a_list_drops_what_it_no_longer_holds_and_reads_are_copies() -> None:
    store = CanaryAppStore()
    store.replace([app("a", "1"), app("b", "2")])
    store.replace([app("b", "3", "Ready")])
    assert [item["metadata"]["name"] for item in store.canary_apps()] == ["b"]
    read = store.get_canary_app("ns", "b")
    assert read is not None
    read["status"]["phase"] = "changed by a pass"
    assert phase(store, "b") == "Ready"
