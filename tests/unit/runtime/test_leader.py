"""Leader election (leader.py) against an in-memory Lease API on virtual time: who acquires, when a
standby may take over (by its own clock), losing leadership at the renew deadline, releasing on a clean stop,
and optimistic concurrency (a stale resourceVersion loses)."""

from __future__ import annotations

import copy
import datetime
import threading
from types import SimpleNamespace
from typing import Any

import kubernetes
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from reconciler.runtime.leader import MIN_CALL_SECONDS, LeaderElector, LeadershipLostError, LeaseTimings

TIMINGS = LeaseTimings(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class FakeLeases:
    """coordination.k8s.io Leases with resourceVersion checks, as the API server does them."""

    def __init__(self) -> None:
        self.lease: SimpleNamespace | None = None
        self.version = 0
        self.available = True
        self.failure: Exception = ApiException(status=503, reason="Service Unavailable")
        self.timeouts: list[float | None] = []

    def _check(self, options: dict[str, Any]) -> None:
        self.timeouts.append(options.get("_request_timeout"))
        if not self.available:
            raise self.failure

    def read_namespaced_lease(self, name: str, namespace: str, **options: Any) -> SimpleNamespace:
        self._check(options)
        if self.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.lease)

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any], **options: Any) -> None:
        self._check(options)
        if self.lease is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        self._store(body["spec"])

    def replace_namespaced_lease(self, name: str, namespace: str, body: Any, **options: Any) -> None:
        self._check(options)
        assert self.lease is not None
        version = (
            body["metadata"]["resourceVersion"] if isinstance(body, dict) else body.metadata.resource_version
        )
        if version != self.lease.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        if isinstance(body, dict):
            self._store(body["spec"])
        else:
            self.version += 1
            body.metadata.resource_version = str(self.version)
            self.lease = copy.deepcopy(body)

    def _store(self, spec: dict[str, Any]) -> None:
        self.version += 1
        self.lease = SimpleNamespace(
            metadata=SimpleNamespace(resource_version=str(self.version)),
            spec=SimpleNamespace(
                holder_identity=spec["holderIdentity"],
                lease_duration_seconds=spec["leaseDurationSeconds"],
                renew_time=spec["renewTime"],
                acquire_time=_parsed(spec.get("acquireTime")),
                lease_transitions=spec.get("leaseTransitions"),
            ),
        )

    @property
    def holder(self) -> str | None:
        return None if self.lease is None else self.lease.spec.holder_identity


def _parsed(moment: str | None) -> datetime.datetime | None:
    """The client returns times as datetimes."""
    return None if moment is None else datetime.datetime.fromisoformat(moment.replace("Z", "+00:00"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def leases() -> FakeLeases:
    return FakeLeases()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def elector(identity: str, leases: FakeLeases, clock: Clock) -> LeaderElector:
    candidate = LeaderElector(kubernetes.client.ApiClient(), "system", "lease", identity, TIMINGS, clock)
    candidate.api = leases  # type: ignore[assignment]
    return candidate


def test_the_first_candidate_creates_the_lease_and_leads(leases: FakeLeases, clock: Clock) -> None:
    first = elector("a", leases, clock)
    assert first.acquire(threading.Event())
    assert first.is_leader.is_set()
    assert leases.holder == "a"


def test_a_standby_waits_for_expiry_by_its_own_clock(leases: FakeLeases, clock: Clock) -> None:
    leader, standby = elector("a", leases, clock), elector("b", leases, clock)
    assert leader._try_acquire_or_renew()
    assert not standby._try_acquire_or_renew()  # first sight of the record starts its own timer
    clock.now += 10
    assert not standby._try_acquire_or_renew()
    assert leader._try_acquire_or_renew()
    assert not standby._try_acquire_or_renew()  # it sees the renewal: its timer starts again
    clock.now += 14
    assert not standby._try_acquire_or_renew()
    clock.now += 2  # 16 s without a change: expired
    assert standby._try_acquire_or_renew()
    assert leases.holder == "b"
    assert leases.lease is not None
    assert leases.lease.spec.lease_transitions == 1


def test_a_leader_that_cannot_renew_stops_at_the_renew_deadline(leases: FakeLeases, clock: Clock) -> None:
    leader = elector("a", leases, clock)
    assert leader.acquire(threading.Event())
    leases.available = False
    lost: list[bool] = []

    class Ticks(threading.Event):
        """Each wait advances virtual time by the retry period; never blocks."""

        def wait(self, timeout: float | None = None) -> bool:
            clock.now += timeout or 0
            return clock.now > 1100

    leader.keep_renewing(Ticks(), lambda: lost.append(True))
    assert lost == [True]
    assert not leader.is_leader.is_set()
    assert clock.now - 1000 <= TIMINGS.renew_deadline + TIMINGS.retry_period


def test_release_hands_over_at_once(leases: FakeLeases, clock: Clock) -> None:
    leader, standby = elector("a", leases, clock), elector("b", leases, clock)
    assert leader.acquire(threading.Event())
    assert not standby._try_acquire_or_renew()
    leader.release()
    assert leases.holder is None
    assert not leader.is_leader.is_set()
    assert standby._try_acquire_or_renew()


def test_a_stale_resource_version_loses_the_round(leases: FakeLeases, clock: Clock) -> None:
    first, second = elector("a", leases, clock), elector("b", leases, clock)
    assert first._try_acquire_or_renew()
    leases.lease.spec.holder_identity = ""  # type: ignore[union-attr]
    stale = leases.read_namespaced_lease("lease", "system")
    assert first._try_acquire_or_renew()  # renews: the version moves on

    def read_stale(name: str, namespace: str, **options: Any) -> SimpleNamespace:
        return copy.deepcopy(stale)

    second.api = SimpleNamespace(  # type: ignore[assignment]
        read_namespaced_lease=read_stale, replace_namespaced_lease=leases.replace_namespaced_lease
    )
    assert not second._try_acquire_or_renew()
    assert leases.holder == "a"


CONNECTION_REFUSED = urllib3.exceptions.MaxRetryError(
    None,  # type: ignore[arg-type]
    "/apis/coordination.k8s.io/v1/namespaces/system/leases/lease",
    ConnectionRefusedError(111, "Connection refused"),
)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(CONNECTION_REFUSED, id="connection refused (an API server restarting)"),
        pytest.param(urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"), id="read timeout"),  # type: ignore[arg-type]
        pytest.param(ValueError("not JSON"), id="an answer that is not JSON"),
    ],
)
def test_any_failure_is_a_failed_attempt_for_the_standby_and_the_leader(
    leases: FakeLeases, clock: Clock, failure: Exception
) -> None:
    """The standby keeps waiting and the leader keeps trying until its deadline: no thread dies, no standby
    exits (the API server restart that killed both before)."""
    leader, standby = elector("a", leases, clock), elector("b", leases, clock)
    assert leader.acquire(threading.Event())
    leases.available, leases.failure = False, failure
    assert not standby._try_acquire_or_renew()
    assert not leader._try_acquire_or_renew()
    assert leader.holds()  # still within its renew deadline
    leases.available = True
    assert leader._try_acquire_or_renew()
    assert not standby._try_acquire_or_renew()
    assert all(timeout == TIMINGS.request_timeout for timeout in leases.timeouts)


def test_a_leader_that_cannot_renew_is_fenced_before_a_standby_may_take_over(
    leases: FakeLeases, clock: Clock
) -> None:
    leader, standby = elector("a", leases, clock), elector("b", leases, clock)
    assert leader.acquire(threading.Event())
    assert not standby._try_acquire_or_renew()  # the standby starts its own timer
    leases.available, leases.failure = False, CONNECTION_REFUSED
    clock.now += TIMINGS.renew_deadline + 0.1
    assert not leader.holds()
    with pytest.raises(LeadershipLostError, match="no longer provably holds the Lease system/lease"):
        leader.fence()
    leases.available = True
    assert not standby._try_acquire_or_renew()  # the Lease has not expired yet: nobody acts in between
    clock.now += TIMINGS.lease_duration - TIMINGS.renew_deadline
    assert standby._try_acquire_or_renew()


def test_health_follows_the_renewal_loop(leases: FakeLeases, clock: Clock) -> None:
    leader = elector("a", leases, clock)
    assert leader.acquire(threading.Event())
    assert leader.alive()
    clock.now += TIMINGS.retry_period * 3 + TIMINGS.request_timeout + 1  # no attempt for that long: stuck
    assert not leader.alive()
    leader._try_acquire_or_renew()
    assert leader.alive()


def test_the_acquisition_time_is_this_process_own(leases: FakeLeases, clock: Clock) -> None:
    before = datetime.datetime.now(datetime.UTC)
    leader = elector("a", leases, clock)
    assert leader.acquired_at is None
    assert leader.acquire(threading.Event())
    assert leader.acquired_at is not None
    assert leader.acquired_at >= before
    first = leader.acquired_at
    assert leader._try_acquire_or_renew()
    assert leader.acquired_at == first  # renewals do not move it


def test_a_leaders_lease_call_may_take_only_what_is_left_of_its_renew_deadline(
    leases: FakeLeases, clock: Clock
) -> None:
    """A renewal that hangs ends in time for the loss to be noticed before a standby may take over; urllib3
    does not send it again behind the loop's back."""
    leader = elector("a", leases, clock)
    assert leader.acquire(threading.Event())
    assert leader._call_timeout() == TIMINGS.request_timeout
    clock.now += TIMINGS.renew_deadline - 2.0
    assert leader._call_timeout() == 2.0
    clock.now += 5.0
    assert leader._call_timeout() == MIN_CALL_SECONDS
    real = LeaderElector(kubernetes.client.ApiClient(), "system", "lease", "a", TIMINGS, clock)
    assert real.api.api_client.configuration.retries == 0
