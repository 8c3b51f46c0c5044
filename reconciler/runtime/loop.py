"""The watch loop: the informer lists then watches CanaryApps into the cache (cache.py), queues their keys,
and runs reconcile passes in a bounded pool.

Level-triggered: an event only says "look at this object again"; its type is never used. The queue gives a
key to one worker at a time (per-object serialisation) and remembers a key that changes while being worked
on, so no change is lost. Timed requeues drive the rollout steps; a periodic resync re-lists everything.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from reconciler.core.errors import PermanentError, TransientError
from reconciler.core.ports import CanaryAppSource
from reconciler.runtime.cache import CanaryAppStore, Key, key_of
from reconciler.runtime.reconcile import Reconciler

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0


class WorkQueue:
    """A delaying, de-duplicating queue of object keys, like client-go's workqueue."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._processing: set[Key] = set()
        self._again: dict[Key, float] = {}
        self._counter = itertools.count()
        self._closed = False

    def add(self, key: Key, delay: float = 0.0) -> None:
        with self._condition:
            due = self._clock() + max(delay, 0.0)
            if key in self._processing:
                self._again[key] = min(due, self._again.get(key, due))
                return
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._counter), key))
            self._condition.notify()

    def get(self) -> Key | None:
        """Blocks until a key is due; None once the queue is closed."""
        with self._condition:
            while not self._closed:
                now = self._clock()
                while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded by an earlier due time
                if self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._processing.add(key)
                    return key
                timeout = self._heap[0][0] - now if self._heap else None
                self._condition.wait(timeout)
            return None

    def done(self, key: Key) -> None:
        with self._condition:
            self._processing.discard(key)
            if key in self._again:
                due = self._again.pop(key)
                self._due[key] = min(due, self._due.get(key, due))
                heapq.heappush(self._heap, (self._due[key], next(self._counter), key))
                self._condition.notify()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def __len__(self) -> int:
        with self._condition:
            return len(self._due)


class Controller:
    def __init__(
        self,
        source: CanaryAppSource,
        reconciler: Reconciler,
        cache: CanaryAppStore,
        *,
        workers: int = 4,
        resync_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.reconciler = reconciler
        self.cache = cache
        self.workers = workers
        self.resync_seconds = resync_seconds
        self.clock = clock
        self.queue = WorkQueue(clock)
        self.stopping = threading.Event()
        self._failures: dict[Key, int] = {}
        self._seen: dict[Key, tuple[object, ...]] = {}
        self._threads: list[threading.Thread] = []
        self.synced = threading.Event()

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._watch_forever, name="watch", daemon=True),
            threading.Thread(target=self._follow_deployments, name="deployments", daemon=True),
        ]
        self._threads += [
            threading.Thread(target=self._work, name=f"worker-{index}", daemon=True)
            for index in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def healthy(self) -> bool:
        """Every thread that was started is still running (a dead worker or watcher means restart me)."""
        return all(thread.is_alive() for thread in self._threads) or self.stopping.is_set()

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        self.queue.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.name not in ("watch", "deployments"):
                thread.join(max(deadline - time.monotonic(), 0.0))

    # watching ---------------------------------------------------------------------------------------------

    def _watch_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                self._list_and_watch()
            except Exception:
                log.exception("Failed to watch CanaryApps; listing again shortly")
                self.stopping.wait(2.0)

    def _follow_deployments(self) -> None:
        """Wakes a CanaryApp when one of its Deployments changes, instead of polling while it waits."""

        def changed(namespace: str, name: str) -> None:
            if (namespace, name) in self._seen:  # only CanaryApps this reconciler (and shard) watches
                self.queue.add((namespace, name))

        self.source.follow_deployments(self.stopping, changed)

    def _list_and_watch(self) -> None:
        items, resource_version = self.source.list_canary_apps()
        self.cache.replace(items)
        for item in items:
            self._changed("ADDED", item)
            self.queue.add(key_of(item))
        self.synced.set()
        next_resync = self.clock() + self.resync_seconds

        def changed(event_type: str, obj: dict[str, Any]) -> None:
            self.cache.apply(event_type, obj)
            if self._changed(event_type, obj):
                self.queue.add(key_of(obj))

        self.source.watch_canary_apps(
            resource_version, changed, until=lambda: self.stopping.is_set() or self.clock() >= next_resync
        )

    def _changed(self, event_type: str, obj: dict[str, Any]) -> bool:
        """Whether an event can change a decision: not when only the status (our own write) changed.

        Every pass schedules its own next pass, so skipping status-only events loses nothing; it keeps the
        reconciler from waking itself up with each status write (and from a hot loop while a step fails).
        """
        key, metadata = key_of(obj), obj["metadata"]
        if event_type == "DELETED":
            self._seen.pop(key, None)
            return True
        seen = (
            metadata.get("generation"),
            metadata.get("deletionTimestamp"),
            tuple(metadata.get("finalizers") or ()),
            tuple(sorted((metadata.get("annotations") or {}).items())),
        )
        changed = self._seen.get(key) != seen
        self._seen[key] = seen
        return changed

    # working ------------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                requeue_after = self._reconcile(key)
                if requeue_after is not None:
                    self.queue.add(key, requeue_after)
            finally:
                self.queue.done(key)

    def _reconcile(self, key: Key) -> float | None:
        namespace, name = key
        try:
            requeue_after = self.reconciler.reconcile(namespace, name).requeue_after
        except TransientError as error:
            self.reconciler.telemetry.reconcile_failed()
            delay = self._backoff(key, error.retry_after)
            log.warning(
                "Retrying CanaryApp after a transient error",
                extra={"canaryapp": f"{namespace}/{name}", "detail": str(error), "retry_after": delay},
            )
            return delay
        except PermanentError as error:
            self.reconciler.telemetry.reconcile_failed()
            self._failures.pop(key, None)
            log.error(
                "Stopped reconciling CanaryApp until it changes",
                extra={"canaryapp": f"{namespace}/{name}", "detail": str(error)},
            )
            return None
        except Exception:
            delay = self._backoff(key, 5.0)
            self.reconciler.telemetry.reconcile_failed()
            log.exception(
                "Failed to reconcile CanaryApp",
                extra={"canaryapp": f"{namespace}/{name}", "retry_after": delay},
            )
            return delay
        self._failures.pop(key, None)
        return requeue_after

    def _backoff(self, key: Key, base: float) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        return float(min(base * (2**failures), MAX_BACKOFF_SECONDS))
