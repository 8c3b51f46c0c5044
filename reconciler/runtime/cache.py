"""The cache of CanaryApps that the informer (loop.py) keeps from one list and one watch, and that every pass
reads instead of the API server (controller-runtime's cached client): a pass costs no GET, and rollout slots
are counted from it instead of a LIST per waiting CanaryApp.

Writes still go to the API server (a finalizer write carries the resourceVersion read, so a stale read
fails it as before). What the API server answers to this reconciler's own writes goes into the cache at once
(client-go's MutationCache), so the next pass, and the slot count of any other pass, sees the last write even
before its watch event arrives.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from reconciler.core.ports import CanaryAppWriter

Key = tuple[str, str]


def key_of(obj: dict[str, Any]) -> Key:
    metadata = obj["metadata"]
    return metadata["namespace"], metadata["name"]


def _at_least_as_new(candidate: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether `candidate` is the same version of the object as `current`, or a later one. resourceVersions
    are compared as integers, as client-go's MutationCache does; one that is not an integer wins."""
    try:
        return int(candidate["metadata"]["resourceVersion"]) >= int(current["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return True


class CanaryAppStore:
    """The CanaryApps this reconciler sees, by key. Objects are replaced, never changed in place."""

    def __init__(self) -> None:
        self._items: dict[Key, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get_canary_app(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._items.get((namespace, name))
        return copy.deepcopy(found)

    def canary_apps(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items.values())

    def replace(self, items: list[dict[str, Any]]) -> None:
        """A new list: what it lacks is gone; an object this reconciler wrote meanwhile keeps its later
        version."""
        with self._lock:
            fresh = {}
            for item in items:
                key, current = key_of(item), self._items.get(key_of(item))
                fresh[key] = item if current is None or _at_least_as_new(item, current) else current
            self._items = fresh

    def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        """A watch event (an older version than a write's answer already held is skipped)."""
        key = key_of(obj)
        with self._lock:
            if event_type == "DELETED":
                self._items.pop(key, None)
                return
            current = self._items.get(key)
            if current is None or _at_least_as_new(obj, current):
                self._items[key] = obj

    def assume(self, obj: dict[str, Any]) -> None:
        """The API server's answer to a write: held if the object is still cached and it is newer (a
        CanaryApp deleted, or gone to another shard, meanwhile stays out)."""
        key = key_of(obj)
        with self._lock:
            current = self._items.get(key)
            if current is not None and _at_least_as_new(obj, current):
                self._items[key] = obj


class WriteThrough:
    """A CanaryAppWriter whose answers also go into the cache."""

    def __init__(self, writer: CanaryAppWriter, store: CanaryAppStore) -> None:
        self._writer = writer
        self._store = store

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        stored = self._writer.write_status(namespace, name, status)
        self._store.assume(stored)
        return stored

    def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        stored = self._writer.set_finalizers(namespace, name, finalizers, resource_version)
        self._store.assume(stored)
        return stored
