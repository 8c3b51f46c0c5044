"""Leader election on a coordination.k8s.io Lease, so that of several reconciler replicas only one acts.

The same protocol as client-go's leaderelection: the holder renews `renewTime` every `retry_period`; another
replica takes the Lease over once it has seen no renewal for `lease_duration` by its *own* clock (it tracks
when it last saw the record change, so clocks of different machines never need to agree). A leader that
cannot renew within `renew_deadline` stops acting at once. Updates carry the resourceVersion, so two
candidates can never both win the same round.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTimings:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def _micro_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        timings: LeaseTimings = LeaseTimings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = kubernetes.client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timings = timings
        self.clock = clock
        self._observed: tuple[str, str, str] | None = None  # holder, renewTime, resourceVersion
        self._observed_at = 0.0
        self._last_renewal = 0.0
        self.is_leader = threading.Event()

    def acquire(self, stop: threading.Event) -> bool:
        """Blocks until this replica holds the Lease (True) or `stop` is set (False)."""
        while not stop.is_set():
            if self._try_acquire_or_renew():
                log.info(
                    "Acquired leadership",
                    extra={"lease": f"{self.namespace}/{self.name}", "identity": self.identity},
                )
                self.is_leader.set()
                return True
            stop.wait(self.timings.retry_period)
        return False

    def keep_renewing(self, stop: threading.Event, on_lost: Callable[[], None]) -> None:
        """Renews until `stop`; calls `on_lost` once if a renewal deadline passes."""
        while not stop.wait(self.timings.retry_period):
            if self._try_acquire_or_renew():
                continue
            if self.clock() - self._last_renewal > self.timings.renew_deadline:
                self.is_leader.clear()
                log.error("Lost leadership", extra={"lease": f"{self.namespace}/{self.name}"})
                on_lost()
                return

    def release(self) -> None:
        """Gives the Lease up on a clean stop, so a standby takes over without waiting for expiry."""
        if not self.is_leader.is_set():
            return
        try:
            lease: Any = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as error:
            log.warning("Failed to release leadership", extra={"status": error.status})
        self.is_leader.clear()

    def _try_acquire_or_renew(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timings.lease_duration),
            "renewTime": _micro_time(now),
        }
        try:
            lease: Any = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                log.warning("Failed to read the leader Lease", extra={"status": error.status})
                return False
            body: Any = {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**spec, "acquireTime": _micro_time(now), "leaseTransitions": 0},
            }
            return self._write(lambda: self.api.create_namespaced_lease(self.namespace, body))

        holder = lease.spec.holder_identity or ""
        record = (holder, str(lease.spec.renew_time), lease.metadata.resource_version)
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        duration = lease.spec.lease_duration_seconds or self.timings.lease_duration
        expired = self.clock() - self._observed_at > duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = (lease.spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        acquire_time = (lease.spec.acquire_time or now) if holder == self.identity else now
        body = {
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": lease.metadata.resource_version,
            },
            "spec": {**spec, "acquireTime": _micro_time(acquire_time), "leaseTransitions": transitions},
        }
        return self._write(lambda: self.api.replace_namespaced_lease(self.name, self.namespace, body))

    def _write(self, call: Callable[[], Any]) -> bool:
        try:
            call()
        except ApiException as error:
            if error.status not in (409, 422):
                log.warning("Failed to write the leader Lease", extra={"status": error.status})
            return False
        self._last_renewal = self.clock()
        return True
