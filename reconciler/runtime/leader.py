"""Leader election on a coordination.k8s.io Lease, so that of several reconciler replicas only one acts.

The same protocol as client-go's leaderelection: the holder renews `renewTime` every `retry_period`; another
replica takes the Lease over once it has seen no renewal for `lease_duration` by its *own* clock (it tracks
when it last saw the record change, so clocks of different machines never need to agree). A leader that
cannot renew within `renew_deadline` stops acting at once. Updates carry the resourceVersion, so two
candidates can never both win the same round.

Correct under any failure: every exception of a read or write (a refused or broken connection, a timeout,
an answer that is not JSON) is a failed attempt, logged and retried, never a dead thread or a dead standby.
Fencing: `holds()` is true only while the last renewal is younger than `renew_deadline`, which is shorter
than `lease_duration`; every write of the reconciler (a status, a `stack.up`) checks it first (`fence`), so
a leader that cannot renew stops acting before any standby may take the Lease over. `acquired_at` (this
replica's clock) tells which Pulumi locks a previous leader left: those written before it.
"""

from __future__ import annotations

import copy
import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from reconciler.core.errors import TransientError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTimings:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    # Every call to the API server ends within this (connect and read), so a frozen API server or a network
    # that drops packets costs one failed attempt, never a renewal thread that waits forever.
    request_timeout: float = 5.0


# The shortest a Lease call may be given: enough for a round trip to a healthy API server.
MIN_CALL_SECONDS = 0.5


class LeadershipLostError(TransientError):
    """This replica no longer provably holds the Lease: it must not write anything."""


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
        self.api = kubernetes.client.CoordinationV1Api(_without_retries(api_client))
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timings = timings
        self.clock = clock
        self._observed: tuple[str, str, str] | None = None  # holder, renewTime, resourceVersion
        self._observed_at = 0.0
        self._last_renewal = 0.0
        self._last_attempt = clock()
        self.acquired_at: datetime.datetime | None = None
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
        """Renews until `stop`; calls `on_lost` once if a renewal deadline passes. Never raises."""
        while not stop.wait(self.timings.retry_period):
            if self._try_acquire_or_renew():
                continue
            if not self.holds():
                self.is_leader.clear()
                log.error(
                    "Lost leadership",
                    extra={
                        "lease": f"{self.namespace}/{self.name}",
                        "since_renewal_seconds": round(self.clock() - self._last_renewal, 1),
                    },
                )
                on_lost()
                return

    def _call_timeout(self) -> float:
        """A Lease call may take `request_timeout`, and a leader's only what is left of its renew deadline:
        a renewal that hangs ends in time for the loss to be noticed before a standby may take over."""
        if not self.is_leader.is_set():
            return self.timings.request_timeout
        left = self.timings.renew_deadline - (self.clock() - self._last_renewal)
        return max(MIN_CALL_SECONDS, min(self.timings.request_timeout, left))

    def holds(self) -> bool:
        """Whether this replica provably leads now: it acquired the Lease and renewed it within the renew
        deadline (so no standby can have taken it over yet)."""
        return self.is_leader.is_set() and self.clock() - self._last_renewal <= self.timings.renew_deadline

    def fence(self) -> None:
        """Raises LeadershipLostError unless this replica provably leads: called before every write."""
        if not self.holds():
            raise LeadershipLostError(
                f"this replica ({self.identity}) no longer provably holds the Lease {self.namespace}/"
                f"{self.name} (last renewal {self.clock() - self._last_renewal:.1f}s ago, deadline "
                f"{self.timings.renew_deadline:.0f}s): it writes nothing and stops"
            )

    def alive(self) -> bool:
        """For health: the renewal (or, for a standby, the acquisition) loop has made an attempt within a
        few retry periods; a loop stuck in a call past its timeout is not alive."""
        return (
            self.clock() - self._last_attempt <= self.timings.retry_period * 3 + self.timings.request_timeout
        )

    def release(self) -> None:
        """Gives the Lease up on a clean stop, so a standby takes over without waiting for expiry."""
        if not self.is_leader.is_set():
            return
        try:
            lease: Any = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.timings.request_timeout
            )
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                self.api.replace_namespaced_lease(
                    self.name, self.namespace, lease, _request_timeout=self.timings.request_timeout
                )
        except Exception as error:  # a clean stop finishes whatever the API server does
            log.warning("Failed to release leadership", extra={"problem": _problem(error)})
        self.is_leader.clear()

    def _try_acquire_or_renew(self) -> bool:
        """One attempt; any failure is a failed attempt (False), never an exception."""
        self._last_attempt = self.clock()
        try:
            return self._attempt()
        except Exception as error:  # refused, reset, timed out, garbage: all retried
            log.warning(
                "Failed to reach the leader Lease", extra={"lease": self.name, "problem": _problem(error)}
            )
            return False

    def _attempt(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        timeout = self._call_timeout()
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timings.lease_duration),
            "renewTime": _micro_time(now),
        }
        try:
            lease: Any = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=timeout)
        except ApiException as error:
            if error.status != 404:
                log.warning("Failed to read the leader Lease", extra={"status": error.status})
                return False
            body: Any = {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**spec, "acquireTime": _micro_time(now), "leaseTransitions": 0},
            }
            return self._write(
                lambda: self.api.create_namespaced_lease(self.namespace, body, _request_timeout=timeout), now
            )

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
        return self._write(
            lambda: self.api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=timeout
            ),
            acquire_time,
        )

    def _write(self, call: Callable[[], Any], attempted_at: datetime.datetime) -> bool:
        started = self.clock()
        try:
            call()
        except ApiException as error:
            if error.status not in (409, 422):
                log.warning("Failed to write the leader Lease", extra={"status": error.status})
            return False
        # Counted from before the call: a renewal that took long leaves less of the deadline, never more.
        self._last_renewal = started
        if not self.is_leader.is_set():
            self.acquired_at = attempted_at  # this process's own acquisition, even of a Lease it held before
        return True


def _without_retries(api_client: kubernetes.client.ApiClient) -> kubernetes.client.ApiClient:
    """A client of the same API server whose calls are not retried by urllib3 (by default a timed-out call
    is sent three more times, each with the full timeout): the renewal loop retries, on its own schedule."""
    configuration = copy.copy(api_client.configuration)
    configuration.retries = 0
    return type(api_client)(configuration)


def _problem(error: Exception) -> str:
    """An exception in a log field: its type and first line (never a request body)."""
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first}"[:300]
