"""The watch loop (loop.py) with an injected watch stream and a virtual clock: which events wake a
CanaryApp, re-listing on 410 Gone, resync, and how failed passes are retried. No API server, no sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from reconciler.core.errors import PermanentError, StackBusyError, TransientError
from reconciler.runtime.loop import MAX_BACKOFF_SECONDS, Controller


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


class FakeCluster:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.lists = 0

    def list_canary_apps(self) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        return list(self.items), "10"

    def watch_function(self) -> tuple[Any, tuple[Any, ...]]:
        return "list", ()

    def follow_deployments(self, stop: threading.Event, on_change: Callable[[str, str], None]) -> None:
        self.on_deployment_change = on_change
        stop.wait()


class FakeReconciler:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.passes: list[tuple[str, str]] = []
        self.telemetry = self

    def reconcile(self, namespace: str, name: str) -> float | None:
        self.passes.append((namespace, name))
        if self.errors:
            raise self.errors.pop(0)
        return None

    def reconcile_failed(self) -> None:
        return


def controller(
    cluster: FakeCluster, batches: list[list[dict[str, Any]]], clock: Clock, reconciler: Any = None
) -> Controller:
    """A controller whose watch streams yield `batches`, one per watch call; then it stops itself."""
    streams = iter(batches)
    subject: Controller

    def stream(function: Any, args: tuple[Any, ...], version: str, timeout: int) -> Iterable[dict[str, Any]]:
        try:
            return iter(next(streams))
        except StopIteration:
            subject.stopping.set()
            return iter(())

    subject = Controller(cluster, reconciler or FakeReconciler(), stream=stream, clock=clock)  # type: ignore[arg-type]
    return subject


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
    cluster = FakeCluster([app("a"), app("b")])
    status_only = app("a", resource_version="11")
    status_only["status"] = {"phase": "Ready"}
    listed: list[list[tuple[str, str]]] = []
    subject: Controller

    def stream(function: Any, args: tuple[Any, ...], version: str, timeout: int) -> Iterator[dict[str, Any]]:
        listed.append(queued(subject))  # what the list queued, before any event
        yield event("MODIFIED", status_only)  # our own status write: same generation, nothing to do
        yield event("BOOKMARK", {"metadata": {"resourceVersion": "12"}})
        yield event("MODIFIED", app("b", generation=2, resource_version="13"))  # spec change
        subject.stopping.set()  # the loop reads this last event, then stops
        yield event("MODIFIED", app("a", resource_version="14", annotations={"canary.atze.io/retry": "1"}))

    subject = Controller(cluster, FakeReconciler(), stream=stream, clock=Clock())  # type: ignore[arg-type]
    subject._list_and_watch()
    assert subject.synced.is_set()
    assert listed == [[("ns", "a"), ("ns", "b")]]
    # The status-only event and the bookmark woke nothing (else `a` would come first); the spec change of b
    # and the annotation of a did, in that order.
    assert queued(subject) == [("ns", "b"), ("ns", "a")]
    assert not subject._changed("MODIFIED", app("b", generation=2, resource_version="16"))
    assert subject._changed("DELETED", app("a"))


@pytest.mark.parametrize(
    "gone",
    [
        pytest.param([event("ERROR", {"code": 410, "metadata": {}})], id="410 as a watch event"),
        pytest.param(ApiException(status=410, reason="Gone"), id="410 as an exception"),
    ],
)
def test_a_watch_that_is_too_old_lists_again(gone: Any) -> None:
    cluster = FakeCluster([app("a")])
    clock = Clock()

    def stream(function: Any, args: tuple[Any, ...], version: str, timeout: int) -> Iterator[dict[str, Any]]:
        if isinstance(gone, Exception):
            raise gone
        yield from gone

    subject = Controller(cluster, FakeReconciler(), stream=stream, clock=clock)  # type: ignore[arg-type]
    subject._list_and_watch()  # returns: the caller lists again
    subject._list_and_watch()
    assert cluster.lists == 2


def test_resync_lists_again_after_its_period() -> None:
    cluster = FakeCluster([app("a")])
    clock = Clock()
    calls: list[str] = []

    def stream(function: Any, args: tuple[Any, ...], version: str, timeout: int) -> Iterator[dict[str, Any]]:
        calls.append(version)
        clock.now += 200  # each watch call runs until its timeout
        return iter(())

    subject = Controller(cluster, FakeReconciler(), stream=stream, clock=clock, resync_seconds=300)  # type: ignore[arg-type]
    subject._list_and_watch()
    assert calls == ["10", "10"]  # two watches of 200 s, then the 300 s resync ends this round


def test_transient_errors_back_off_exponentially_up_to_the_cap() -> None:
    busy = [StackBusyError("locked", retry_after=5.0) for _ in range(10)]
    subject = controller(FakeCluster([]), [], Clock(), FakeReconciler(*busy))
    delays = [subject._reconcile(("ns", "a")) for _ in range(10)]
    assert delays[:4] == [5.0, 10.0, 20.0, 40.0]
    assert delays[-1] == MAX_BACKOFF_SECONDS


def test_success_resets_the_backoff() -> None:
    reconciler = FakeReconciler(TransientError("x", retry_after=2.0), TransientError("x", retry_after=2.0))
    subject = controller(FakeCluster([]), [], Clock(), reconciler)
    assert [subject._reconcile(("ns", "a")) for _ in range(3)] == [2.0, 4.0, None]
    reconciler.errors.append(TransientError("x", retry_after=2.0))
    assert subject._reconcile(("ns", "a")) == 2.0


def test_a_permanent_error_waits_for_the_next_change() -> None:
    subject = controller(FakeCluster([]), [], Clock(), FakeReconciler(PermanentError("bad program")))
    assert subject._reconcile(("ns", "a")) is None


def test_an_unexpected_error_is_retried_not_fatal() -> None:
    subject = controller(FakeCluster([]), [], Clock(), FakeReconciler(RuntimeError("bug")))
    assert subject._reconcile(("ns", "a")) == 5.0


def test_a_deployment_change_wakes_only_a_canaryapp_this_reconciler_watches() -> None:
    cluster = FakeCluster([app("a")])
    subject = controller(cluster, [], Clock())
    subject._list_and_watch()
    queued(subject)
    subject._follow_deployments_in_thread = threading.Thread(target=subject._follow_deployments, daemon=True)
    subject._follow_deployments_in_thread.start()
    while not hasattr(cluster, "on_deployment_change"):
        threading.Event().wait(0.01)
    cluster.on_deployment_change("ns", "a")
    cluster.on_deployment_change("ns", "another-shards-app")
    assert queued(subject) == [("ns", "a")]
    subject.stopping.set()
