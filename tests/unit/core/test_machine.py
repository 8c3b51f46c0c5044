"""Every transition of the rollout state machine, tick by tick, with time passed in."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.analysis import CheckResult
from reconciler.core.clock import timestamp
from reconciler.core.decisions import (
    AbandonCanary,
    Advance,
    BecomeReady,
    CompletePromotion,
    Decision,
    FailCheck,
    Hold,
    HoldWeight,
    Initialize,
    Observations,
    Promote,
    Retry,
    Rollback,
    StartCanary,
)
from reconciler.core.desired import desired_stack
from reconciler.core.machine import decide, wants_check
from reconciler.core.model import (
    MAX_CHECK_RECORDS,
    MAX_ROLLOUT_RECORDS,
    Action,
    CanaryAppSpec,
    CanaryAppStatus,
    CheckOutcome,
    CheckRecord,
    Phase,
    RolloutRecord,
    RolloutResult,
    Series,
)
from reconciler.core.readiness import DeploymentState
from reconciler.core.wire import status_body
from reconciler.core.workload import shorthand_revision
from stacks.program import route_of
from stacks.routers.istio import virtual_service_spec
from tests.unit.core.statuses import revision, written

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
CLEAN = CheckResult(CheckOutcome.CLEAN)
ERRORS = CheckResult(CheckOutcome.ERRORS_FOUND, "5xx found")
QUERY_FAILED = CheckResult(CheckOutcome.QUERY_FAILED, "unreachable")
NO_TRAFFIC = CheckResult(CheckOutcome.NO_CANARY_TRAFFIC, "no canary traffic observed", canary_requests=0)


def spec(**changes: object) -> CanaryAppSpec:
    base: dict[str, object] = {
        "image": "app:v2",
        "imageListenPort": 8088,
        "prometheusQuery": "up == 0",
        "prometheusURL": "http://prometheus:9090",
        "trafficShiftUpdateInterval": 10,
        "deploymentReadyWaitTime": 60,
    }
    base.update(changes)
    return CanaryAppSpec.model_validate(base)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    return timestamp(at(seconds))


def status(**changes: object) -> CanaryAppStatus:
    return written(**changes)


STEADY_V1 = {"phase": "Ready", "primary": "app:v1"}
CANARY_V2 = {
    "phase": "Progressing",
    "primary": "app:v1",
    "canary": "app:v2",
    "canaryStartedAt": stamp(0),
}


def running(weight: int, checked_at: float = 0, **more: object) -> dict[str, object]:
    return {**CANARY_V2, "canaryWeight": weight, "lastCheckTime": stamp(checked_at), **more}


def ready(image: str) -> DeploymentState:
    return DeploymentState(image=image, ready=True, revision=shorthand_revision(image, 8088))


def not_ready(image: str) -> DeploymentState:
    return DeploymentState(image=image, ready=False, revision=shorthand_revision(image, 8088))


CASES = [
    pytest.param(
        spec(image="app:v1"),
        {},
        Observations(),
        0,
        Initialize,
        {"phase": Phase.INITIALIZING, "primary_image": "app:v1"},
        id="new CanaryApp starts its primary",
    ),
    pytest.param(
        spec(image="app:v1"),
        {"phase": "Initializing", "primary": "app:v1"},
        Observations(primary=not_ready("app:v1")),
        5,
        Hold,
        {"phase": Phase.INITIALIZING},
        id="initializing waits for the primary",
    ),
    pytest.param(
        spec(image="app:v1"),
        {"phase": "Initializing", "primary": "app:v1"},
        Observations(primary=ready("app:v1")),
        5,
        BecomeReady,
        {"phase": Phase.READY, "successful_image": "app:v1"},
        id="primary ready makes it Ready",
    ),
    pytest.param(
        spec(image="app:v3"),
        {"phase": "Initializing", "primary": "app:v1"},
        Observations(primary=not_ready("app:v1")),
        5,
        Initialize,
        {"primary_image": "app:v3"},
        id="a new image while initializing replaces the first one",
    ),
    pytest.param(
        spec(image="app:v1"),
        STEADY_V1,
        Observations(primary=ready("app:v1")),
        5,
        Hold,
        {"phase": Phase.READY},
        id="nothing to do when the image is the primary's",
    ),
    pytest.param(
        spec(),
        STEADY_V1,
        Observations(primary=ready("app:v1")),
        5,
        StartCanary,
        {"phase": Phase.PROGRESSING, "canary_image": "app:v2", "canary_weight": 0},
        id="a new image starts a canary at weight 0",
    ),
    pytest.param(
        spec(),
        {**STEADY_V1, "phase": "Failed", "failed": ("app:v2",)},
        Observations(primary=ready("app:v1")),
        5,
        Hold,
        {"canary_image": None},
        id="a failed image never starts a canary",
    ),
    pytest.param(
        spec(),
        {**STEADY_V1, "phase": "Failed", "failed": ("app:v2",)},
        Observations(primary=ready("app:v1"), requests={Action.RETRY: "1"}),
        5,
        Retry,
        {"failed_images": (), "handled_requests": {"retry": "1"}},
        id="the retry annotation clears a failed image",
    ),
    pytest.param(
        spec(),
        {**STEADY_V1, "phase": "Failed", "failed": ("app:v2",), "handledRequests": {"retry": "1"}},
        Observations(primary=ready("app:v1"), requests={Action.RETRY: "1"}),
        5,
        Hold,
        {"failed_images": ("app:v2",), "failed_revisions": (revision("app:v2"),)},
        id="a handled retry token does nothing",
    ),
    pytest.param(
        spec(),
        CANARY_V2,
        Observations(canary=not_ready("app:v2")),
        5,
        Hold,
        {"canary_weight": 0},
        id="canary not ready yet: weight stays 0",
    ),
    pytest.param(
        spec(),
        CANARY_V2,
        Observations(canary=ready("app:v2")),
        5,
        Advance,
        {"canary_weight": 10, "last_traffic_shift": stamp(5)},
        id="canary ready: first step",
    ),
    pytest.param(
        spec(),
        CANARY_V2,
        Observations(canary=not_ready("app:v2")),
        60,
        Rollback,
        {"phase": Phase.FAILED, "failed_images": ("app:v2",), "canary_image": None},
        id="canary not ready within deploymentReadyWaitTime rolls back",
    ),
    pytest.param(
        spec(),
        running(10),
        Observations(canary=ready("app:v2"), check=CLEAN),
        5,
        Hold,
        {"canary_weight": 10},
        id="no check before the interval has passed",
    ),
    pytest.param(
        spec(),
        running(10),
        Observations(canary=ready("app:v2"), check=CLEAN),
        10,
        Advance,
        {"canary_weight": 20, "last_check_outcome": CheckOutcome.CLEAN},
        id="clean check advances",
    ),
    pytest.param(
        spec(stepWeight=30),
        running(30),
        Observations(canary=ready("app:v2"), check=CLEAN),
        10,
        Advance,
        {"canary_weight": 50},
        id="the last step stops at maxWeight",
    ),
    pytest.param(
        spec(),
        running(50),
        Observations(canary=ready("app:v2"), check=CLEAN),
        10,
        Promote,
        {"phase": Phase.PROMOTING, "primary_image": "app:v2", "canary_weight": 50},
        id="clean check at maxWeight promotes",
    ),
    pytest.param(
        spec(),
        running(30),
        Observations(canary=ready("app:v2"), check=ERRORS),
        10,
        Rollback,
        {"phase": Phase.FAILED, "canary_weight": 0, "last_failed_tag": "app:v2", "failed_checks": 1},
        id="errors found roll back at the default threshold",
    ),
    pytest.param(
        spec(failureThreshold=2),
        running(30),
        Observations(canary=ready("app:v2"), check=ERRORS),
        10,
        FailCheck,
        {"canary_weight": 30, "failed_checks": 1},
        id="a failed check below the threshold holds the weight",
    ),
    pytest.param(
        spec(failureThreshold=2),
        running(30, failedChecks=1),
        Observations(canary=ready("app:v2"), check=ERRORS),
        10,
        Rollback,
        {"phase": Phase.FAILED, "failed_checks": 2},
        id="the threshold-th failed check rolls back",
    ),
    pytest.param(
        spec(),
        running(30),
        Observations(canary=ready("app:v2"), check=QUERY_FAILED),
        10,
        Rollback,
        {"phase": Phase.FAILED},
        id="query failure counts when failWhenPrometheusFails",
    ),
    pytest.param(
        spec(failWhenPrometheusFails=False),
        running(30, lastTrafficShift=stamp(0)),
        Observations(canary=ready("app:v2"), check=QUERY_FAILED),
        10,
        HoldWeight,
        {"canary_weight": 30, "failed_checks": 0, "last_check_outcome": CheckOutcome.QUERY_FAILED},
        id="an ignored query failure neither fails nor advances",
    ),
    pytest.param(
        spec(failWhenPrometheusFails=False, progressDeadlineSeconds=60),
        running(30, checked_at=60, lastTrafficShift=stamp(0)),
        Observations(canary=ready("app:v2"), check=QUERY_FAILED),
        70,
        Rollback,
        {"phase": Phase.FAILED, "failed_images": ("app:v2",)},
        id="ignored query failures past the progress deadline roll back",
    ),
    pytest.param(
        spec(),
        running(30, lastTrafficShift=stamp(0)),
        Observations(canary=ready("app:v2"), check=NO_TRAFFIC),
        10,
        HoldWeight,
        {"canary_weight": 30, "failed_checks": 0, "last_check_outcome": CheckOutcome.NO_CANARY_TRAFFIC},
        id="no canary traffic holds the weight",
    ),
    pytest.param(
        spec(progressDeadlineSeconds=60),
        running(30, checked_at=55, lastTrafficShift=stamp(0)),
        Observations(canary=ready("app:v2"), check=NO_TRAFFIC),
        65,
        Rollback,
        {"phase": Phase.FAILED, "canary_weight": 0, "failed_images": ("app:v2",)},
        id="no canary traffic past the progress deadline rolls back",
    ),
    pytest.param(
        spec(progressDeadlineSeconds=60),
        running(50, checked_at=55, lastTrafficShift=stamp(0)),
        Observations(canary=ready("app:v2"), check=NO_TRAFFIC),
        65,
        Rollback,
        {"phase": Phase.FAILED},
        id="silence at maxWeight is never promoted",
    ),
    pytest.param(
        spec(),
        running(30),
        Observations(canary=not_ready("app:v2"), check=CLEAN),
        10,
        Rollback,
        {"phase": Phase.FAILED},
        id="a canary that became unready fails its check",
    ),
    pytest.param(
        spec(image="app:v3"),
        running(30),
        Observations(canary=ready("app:v2")),
        3,
        AbandonCanary,
        {"canary_image": None, "canary_weight": 0, "phase": Phase.READY, "failed_images": ()},
        id="a newer image abandons the running canary",
    ),
    pytest.param(
        spec(image="app:v3"),
        {**STEADY_V1, "phase": "Ready"},
        Observations(primary=ready("app:v1")),
        3,
        StartCanary,
        {"canary_image": "app:v3"},
        id="then the newest image starts",
    ),
    pytest.param(
        spec(),
        {**running(50), "phase": "Promoting", "primary": "app:v2"},
        Observations(primary=not_ready("app:v2"), canary=ready("app:v2")),
        12,
        Hold,
        {"canary_weight": 50, "canary_image": "app:v2"},
        id="promotion waits for the primary rollout",
    ),
    pytest.param(
        spec(),
        {**running(50), "phase": "Promoting", "primary": "app:v2"},
        Observations(primary=ready("app:v1"), canary=ready("app:v2")),
        12,
        Hold,
        {"canary_weight": 50},
        id="a primary still on the old image is not promoted",
    ),
    pytest.param(
        spec(),
        {**running(50), "phase": "Promoting", "primary": "app:v2"},
        Observations(primary=ready("app:v2"), canary=ready("app:v2")),
        12,
        CompletePromotion,
        {"phase": Phase.SUCCEEDED, "canary_image": None, "canary_weight": 0, "successful_image": "app:v2"},
        id="primary rolled out completes the promotion",
    ),
]


@pytest.mark.parametrize(("the_spec", "the_status", "observations", "seconds", "kind", "expected"), CASES)
def test_transitions(
    the_spec: CanaryAppSpec,
    the_status: dict[str, object],
    observations: Observations,
    seconds: float,
    kind: type[Decision],
    expected: dict[str, object],
) -> None:
    decision = decide(the_spec, status(**the_status), observations, at(seconds))
    assert type(decision) is kind, decision.message
    for field, value in expected.items():
        assert getattr(decision.status, field) == value, field


def test_requeue_uses_remaining_time_not_elapsed() -> None:
    decision = decide(
        spec(), status(**running(10, checked_at=0)), Observations(canary=ready("app:v2")), at(7)
    )
    assert isinstance(decision, Hold)
    assert decision.requeue_after == pytest.approx(3)


def test_wants_check_only_when_due() -> None:
    assert not wants_check(spec(), status(**running(10)), at(9))
    assert wants_check(spec(), status(**running(10)), at(10))
    assert not wants_check(spec(), status(**CANARY_V2), at(100))


def test_conditions_follow_the_phase() -> None:
    decision = decide(
        spec(),
        status(**{**running(50), "phase": "Promoting", "primary": "app:v2"}),
        Observations(primary=ready("app:v2")),
        at(20),
    )
    conditions = {c.type: c.status.value for c in decision.status.conditions}
    assert conditions == {"Progressing": "False", "Paused": "False"}
    assert status_body(decision.status)["testRunning"] is False
    assert decision.status.observed_generation == 0


def test_condition_transition_time_is_kept_while_unchanged() -> None:
    first = decide(spec(), status(**STEADY_V1), Observations(primary=ready("app:v1")), at(1)).status
    later = decide(spec(image="app:v1"), first, Observations(primary=ready("app:v1")), at(50)).status
    assert later.condition("Paused") == first.condition("Paused")


# --- invariants over random runs --------------------------------------------------------------------------

METRICS_FAILED = CheckResult(CheckOutcome.METRICS_FAILED, "score 0.0: latency High")
MARGINAL = CheckResult(CheckOutcome.MARGINAL, "score 80.0: errors High")
NO_DATA = CheckResult(CheckOutcome.NO_DATA, "no metric had data")
outcomes = st.sampled_from([CLEAN, ERRORS, QUERY_FAILED, NO_TRAFFIC, METRICS_FAILED, MARGINAL, NO_DATA, None])


@settings(max_examples=200, deadline=None)
@given(
    step_weight=st.integers(1, 50),
    max_weight=st.integers(50, 100),
    threshold=st.integers(1, 3),
    fail_on_query=st.booleans(),
    ticks=st.lists(st.tuples(outcomes, st.booleans(), st.integers(0, 15)), min_size=1, max_size=40),
)
def test_rollout_invariants(
    step_weight: int,
    max_weight: int,
    threshold: int,
    fail_on_query: bool,
    ticks: list[tuple[CheckResult | None, bool, int]],
) -> None:
    the_spec = spec(
        stepWeight=step_weight,
        maxWeight=max_weight,
        failureThreshold=threshold,
        failWhenPrometheusFails=fail_on_query,
    )
    current = status(**STEADY_V1)
    clock = 0.0
    for check, canary_ready, advance in ticks:
        clock += advance
        observations = Observations(
            primary=ready(current.primary_image or ""),
            canary=DeploymentState(
                image=current.canary_image or "",
                ready=canary_ready,
                revision=current.canary_revision or "",
            ),
            check=check if wants_check(the_spec, current, at(clock)) else None,
        )
        decision = decide(the_spec, current, observations, at(clock))
        new = decision.status
        assert 0 <= new.canary_weight <= max_weight
        # The route the Pulumi program declares for this status: weights in range, summing to 100.
        traffic = route_of(desired_stack("web", "ns", "uid", the_spec, new))
        routes = virtual_service_spec(traffic)["http"][0]["route"]
        assert all(0 <= route["weight"] <= 100 for route in routes)
        assert sum(route["weight"] for route in routes) == 100
        assert routes[1]["weight"] == (new.canary_weight if new.canary_image else 0)
        if new.canary_image is None:
            assert new.canary_weight == 0
        if isinstance(decision, Promote):
            assert current.failed_checks < threshold
            # Promotion needs a clean check: silence (no traffic, no answer) is never health.
            assert observations.check is CLEAN
        if isinstance(decision, StartCanary):
            assert new.canary_image not in current.failed_images
        if isinstance(decision, Rollback):
            assert new.phase == Phase.FAILED
            assert "app:v2" in new.failed_images
        current = new
    if "app:v2" in current.failed_images:
        follow_up = decide(the_spec, current, Observations(primary=ready("app:v1")), at(clock + 100))
        assert not isinstance(follow_up, StartCanary)


def test_every_check_is_recorded_with_its_evidence_and_bounded() -> None:
    series = (Series(labels={"response_code": "500"}, value="3"),)
    found = CheckResult(CheckOutcome.ERRORS_FOUND, "3 errors", "rate(x[1m]) > 0", series, 42.0)
    old_checks = tuple(
        CheckRecord(time=stamp(0), weight=10, outcome=CheckOutcome.CLEAN) for _ in range(MAX_CHECK_RECORDS)
    )
    current = status(**running(30, lastTrafficShift=stamp(0))).model_copy(update={"checks": old_checks})
    decision = decide(
        spec(failureThreshold=2), current, Observations(canary=ready("app:v2"), check=found), at(10)
    )
    assert len(decision.status.checks) == MAX_CHECK_RECORDS
    assert decision.status.checks[-1] == CheckRecord(
        time=stamp(10),
        weight=30,
        outcome=CheckOutcome.ERRORS_FOUND,
        message="3 errors",
        query="rate(x[1m]) > 0",
        series=series,
        canary_requests=42.0,
    )


def test_a_rollout_is_recorded_from_start_to_end() -> None:
    the_spec = spec(stepWeight=25, maxWeight=50)
    started = decide(the_spec, status(**STEADY_V1), Observations(primary=ready("app:v1")), at(0))
    assert started.status.rollouts[-1] == RolloutRecord(
        image="app:v2",
        revision=shorthand_revision("app:v2", 8088),
        changes=("image app:v1 → app:v2",),
        started_at=stamp(0),
    )
    assert "(image app:v1 → app:v2)" in started.message
    first = decide(the_spec, started.status, Observations(canary=ready("app:v2")), at(1))
    second = decide(the_spec, first.status, Observations(canary=ready("app:v2"), check=CLEAN), at(11))
    assert second.status.rollouts[-1].weights == (25, 50)
    failed = decide(the_spec, second.status, Observations(canary=ready("app:v2"), check=ERRORS), at(21))
    record = failed.status.rollouts[-1]
    assert (record.result, record.finished_at, record.weights) == (
        RolloutResult.ROLLED_BACK,
        stamp(21),
        (25, 50),
    )
    assert record.reason.startswith("ChecksFailed: check 1/1 failed: 5xx found")


def test_rollout_records_are_bounded() -> None:
    records = tuple(
        RolloutRecord(image=f"app:v{n}", started_at=stamp(0), result=RolloutResult.PROMOTED)
        for n in range(MAX_ROLLOUT_RECORDS)
    )
    current = status(**STEADY_V1).model_copy(update={"rollouts": records})
    started = decide(spec(), current, Observations(primary=ready("app:v1")), at(0))
    assert len(started.status.rollouts) == MAX_ROLLOUT_RECORDS
    assert started.status.rollouts[-1].image == "app:v2"
    assert started.status.rollouts[0].image == "app:v1"
