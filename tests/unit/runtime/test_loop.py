"""The watch loop (loop.py) with an in-memory event source and a virtual clock: which events wake a
CanaryApp, what the cache holds, listing again when a watch ends, resync, and how failed passes are retried.
No API server, no sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from reconciler.core.errors import PermanentError, StackBusyError, TransientError
from reconciler.runtime.cache import CanaryAppStore
from reconciler.runtime.loop import MAX_BACKOFF_SECONDS, Controller
from reconciler.runtime.reconcile import Result


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def app(name: str, generation: int = 1, resource_version: str = "1", **metadata: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "generation": generation,
            "resourceVersion": resource_version,
            **metadata,
        },
        "status": {},
    }


Stream = Callable[[str], Iterable[dict[str, Any]]]


class FakeSource:
    """A CanaryAppSource whose watches yield what `stream(resource_version)` does; a 410 Gone ends a watch
    (the adapter returns, tests/unit/adapters/test_kube_watch.py)."""

    def __init__(self, items: list[dict[str, Any]], stream: Stream | None = None) -> None:
        self.items = items
        self.stream: Stream = stream or (lambda version: iter(()))
        self.lists = 0

    def list_canary_apps(self) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        return list(self.items), "10"

    def watch_canary_apps(
        self,
        resource_version: str,
        on_event: Callable[[str, dict[str, Any]], None],
        until: Callable[[], bool],
    ) -> None:
        while not until():
            for event in self.stream(resource_version):
                if event["type"] == "ERROR":
                    return
                if event["type"] != "BOOKMARK":
                    on_event(event["type"], event["object"])
                if until():
                    return

    def follow_deployments(self, stop: threading.Event, on_change: Callable[[str, str], None]) -> None:
        self.on_deployment_change = on_change
        stop.wait()


class FakeReconciler:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.passes: list[tuple[str, str]] = []
        self.telemetry = self

    def reconcile(self, namespace: str, name: str) -> Result:
        self.passes.append((namespace, name))
        if self.errors:
            raise self.errors.pop(0)
        return Result()

    def reconcile_failed(self) -> None:
        return


def controller(source: FakeSource, clock: Clock, reconciler: Any = None) -> Controller:
    return Controller(source, reconciler or FakeReconciler(), CanaryAppStore(), clock=clock)


def queued(subject: Controller) -> list[tuple[str, str]]:
    keys = []
    while len(subject.queue):
        key = subject.queue.get()
        assert key is not None
        keys.append(key)
        subject.queue.done(key)
    return keys


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def test_list_queues_every_canaryapp_then_only_events_that_can_change_a_decision() -> None:
    status_only = app("a", resource_version="11")
    status_only["status"] = {"phase": "Ready"}
    listed: list[list[tuple[str, str]]] = []
    subject: Controller

    def stream(version: str) -> Iterator[dict[str, Any]]:
        listed.append(queued(subject))  # what the list queued, before any event
        yield event("MODIFIED", status_only)  # our own status write: same generation, nothing to do
        yield event("BOOKMARK", {"metadata": {"resourceVersion": "12"}})
        yield event("MODIFIED", app("b", generation=2, resource_version="13"))  # spec change
        subject.stopping.set()  # the loop reads this last event, then stops
        yield event("MODIFIED", app("a", resource_version="14", annotations={"canary.atze.io/retry": "1"}))

    subject = controller(FakeSource([app("a"), app("b")], stream), Clock())
    subject._list_and_watch()
    assert subject.synced.is_set()
    assert listed == [[("ns", "a"), ("ns", "b")]]
    # The status-only event and the bookmark woke nothing (else `a` would come first); the spec change of b
    # and the annotation of a did, in that order.
    assert queued(subject) == [("ns", "b"), ("ns", "a")]
    assert not subject._changed("MODIFIED", app("b", generation=2, resource_version="16"))
    assert subject._changed("DELETED", app("a"))


def test_the_cache_holds_what_the_list_and_the_watch_said() -> None:
    def stream(version: str) -> Iterator[dict[str, Any]]:
        yield event("MODIFIED", {**app("a", resource_version="11"), "status": {"phase": "Ready"}})
        yield event("DELETED", app("b", resource_version="12"))
        yield event("ADDED", app("c", resource_version="13"))
        subject.stopping.set()

    subject = controller(FakeSource([app("a"), app("b")], stream), Clock())
    subject._list_and_watch()
    cached = {item["metadata"]["name"]: item for item in subject.cache.canary_apps()}
    assert sorted(cached) == ["a", "c"]
    assert cached["a"]["status"] == {"phase": "Ready"}


def test_a_watch_that_ends_lists_again() -> None:
    """A 410 Gone (or a resync) ends the watch; the informer lists again and the cache is the new list."""
    source = FakeSource([app("a"), app("b")], lambda version: iter([event("ERROR", {"code": 410})]))
    subject = controller(source, Clock())
    subject._list_and_watch()  # returns: the caller lists again
    source.items = [app("b")]
    subject._list_and_watch()
    assert source.lists == 2
    assert [item["metadata"]["name"] for item in subject.cache.canary_apps()] == ["b"]


def test_resync_lists_again_after_its_period() -> None:
    clock = Clock()
    calls: list[str] = []

    def stream(version: str) -> Iterator[dict[str, Any]]:
        calls.append(version)
        clock.now += 200  # each watch call runs until its timeout
        return iter(())

    subject = Controller(FakeSource([app("a")], stream), FakeReconciler(), CanaryAppStore(), clock=clock)  # type: ignore[arg-type]
    subject._list_and_watch()
    assert calls == ["10", "10"]  # two watches of 200 s, then the 300 s resync ends this round


def test_transient_errors_back_off_exponentially_up_to_the_cap() -> None:
    busy = [StackBusyError("locked", retry_after=5.0) for _ in range(10)]
    subject = controller(FakeSource([]), Clock(), FakeReconciler(*busy))
    delays = [subject._reconcile(("ns", "a")) for _ in range(10)]
    assert delays[:4] == [5.0, 10.0, 20.0, 40.0]
    assert delays[-1] == MAX_BACKOFF_SECONDS


def test_success_resets_the_backoff() -> None:
    reconciler = FakeReconciler(TransientError("x", retry_after=2.0), TransientError("x", retry_after=2.0))
    subject = controller(FakeSource([]), Clock(), reconciler)
    assert [subject._reconcile(("ns", "a")) for _ in range(3)] == [2.0, 4.0, None]
    reconciler.errors.append(TransientError("x", retry_after=2.0))
    assert subject._reconcile(("ns", "a")) == 2.0


def test_a_permanent_error_waits_for_the_next_change() -> None:
    subject = controller(FakeSource([]), Clock(), FakeReconciler(PermanentError("bad program")))
    assert subject._reconcile(("ns", "a")) is None


def test_an_unexpected_error_is_retried_not_fatal() -> None:
    subject = controller(FakeSource([]), Clock(), FakeReconciler(RuntimeError("bug")))
    assert subject._reconcile(("ns", "a")) == 5.0


def test_a_deployment_change_wakes_only_a_canaryapp_this_reconciler_watches() -> None:
    source = FakeSource([app("a")], lambda version: iter([event("ERROR", {"code": 410})]))
    subject = controller(source, Clock())
    subject._list_and_watch()
    queued(subject)
    follower = threading.Thread(target=subject._follow_deployments, daemon=True)
    follower.start()
    while not hasattr(source, "on_deployment_change"):
        threading.Event().wait(0.01)
    source.on_deployment_change("ns", "a")
    source.on_deployment_change("ns", "another-shards-app")
    assert queued(subject) == [("ns", "a")]
    subject.stopping.set()
    follower.join()
