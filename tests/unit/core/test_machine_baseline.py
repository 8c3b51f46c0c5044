"""A baseline beside the canary (spec.analysis.baseline) in the state machine: the first step waits for both
to be ready, a check waits for a ready baseline running the primary's release (no check judged, no step,
the progress deadline bounding the wait), a missing baseline beside a weighted canary starts at weight 0,
and none of this exists without a baseline; tick by tick."""

from __future__ import annotations

import pytest

from reconciler.core import reasons
from reconciler.core.decisions import Advance, Hold, Observations, Rollback, StartBaseline, StartCanary
from reconciler.core.desired import desired_stack
from reconciler.core.machine import decide
from reconciler.core.model import CheckOutcome, RolloutResult
from reconciler.core.readiness import DeploymentState
from tests.unit.core.statuses import revision
from tests.unit.core.test_machine import (
    CANARY_V2,
    CLEAN,
    STEADY_V1,
    at,
    not_ready,
    ready,
    running,
    spec,
    stamp,
    status,
)

BASELINE_SPEC = spec(analysis={"baseline": True}, progressDeadlineSeconds=60)
# The baseline runs the primary's release (app:v1) beside the canary (app:v2).
BASELINE_READY = ready("app:v1")
STARTED = {"image": "app:v2", "revision": revision("app:v2"), "startedAt": stamp(0), "weights": [20]}
# Weight 20 since t=0, the check due at t=10 (trafficShiftUpdateInterval 10).
AT_20 = running(20, checked_at=0, lastTrafficShift=stamp(0), rollouts=[STARTED])


def observed(**more: object) -> Observations:
    return Observations(primary=ready("app:v1"), canary=ready("app:v2"), **more)  # type: ignore[arg-type]


def test_a_new_release_starts_the_canary_and_the_baseline_at_weight_0() -> None:
    decision = decide(BASELINE_SPEC, status(**STEADY_V1), observed(), at(0))
    assert type(decision) is StartCanary
    desired = desired_stack("web", "shop", "u1", BASELINE_SPEC, decision.status)
    assert desired.baseline_revision == revision("app:v1")
    assert (desired.primary_weight, desired.canary_weight, desired.baseline_weight) == (100, 0, 0)


@pytest.mark.parametrize(
    ("canary", "baseline", "waiting_for"),
    [
        pytest.param(ready("app:v2"), None, "the baseline app:v1", id="no baseline yet"),
        pytest.param(ready("app:v2"), not_ready("app:v1"), "the baseline app:v1", id="baseline not ready"),
        pytest.param(
            ready("app:v2"),
            DeploymentState("app:v2", ready=True, revision=revision("app:v2")),
            "the baseline app:v1",
            id="baseline ready with another release",
        ),
        pytest.param(not_ready("app:v2"), BASELINE_READY, "canary app:v2", id="canary not ready"),
        pytest.param(None, None, "canary app:v2 and the baseline app:v1", id="neither"),
    ],
)
def test_the_first_step_waits_for_the_canary_and_the_baseline(
    canary: DeploymentState | None, baseline: DeploymentState | None, waiting_for: str
) -> None:
    observations = Observations(primary=ready("app:v1"), canary=canary, baseline=baseline)
    decision = decide(BASELINE_SPEC, status(**CANARY_V2), observations, at(5))
    assert type(decision) is Hold
    assert decision.status.canary_weight == 0
    assert decision.status.message == f"Waiting for {waiting_for} to become ready"


def test_the_first_step_comes_once_both_are_ready() -> None:
    decision = decide(BASELINE_SPEC, status(**CANARY_V2), observed(baseline=BASELINE_READY), at(5))
    assert type(decision) is Advance
    assert decision.status.canary_weight == 10
    assert decision.message.startswith("Canary and baseline are ready")
    desired = desired_stack("web", "shop", "u1", BASELINE_SPEC, decision.status)
    assert (desired.primary_weight, desired.canary_weight, desired.baseline_weight) == (80, 10, 10)


@pytest.mark.parametrize(
    ("canary", "cause", "why"),
    [
        pytest.param(
            ready("app:v2"),
            reasons.BASELINE_NOT_READY,
            "the baseline app:v1 was not ready within deploymentReadyWaitTime (60s)",
            id="the baseline",
        ),
        pytest.param(
            not_ready("app:v2"),
            reasons.CANARY_NOT_READY,
            "canary app:v2 and the baseline app:v1 were not ready within deploymentReadyWaitTime (60s)",
            id="both: the canary's cause",
        ),
    ],
)
def test_not_ready_within_the_wait_time_rolls_the_canary_back(
    canary: DeploymentState, cause: str, why: str
) -> None:
    started = status(**CANARY_V2, rollouts=[{**STARTED, "weights": []}])
    observations = Observations(primary=ready("app:v1"), canary=canary, baseline=not_ready("app:v1"))
    decision = decide(BASELINE_SPEC, started, observations, at(60))
    assert type(decision) is Rollback
    assert decision.status.message == f"Rolled back app:v2: {why}"
    record = decision.status.rollouts[-1]
    assert record.result == RolloutResult.ROLLED_BACK
    assert record.reason == f"{cause}: {why}"


def test_a_due_check_waits_for_the_baseline_and_judges_nothing() -> None:
    decision = decide(
        BASELINE_SPEC, status(**AT_20), observed(baseline=not_ready("app:v1"), check=CLEAN), at(12)
    )
    assert type(decision) is Hold
    assert decision.reason == reasons.WAITING
    assert decision.status.canary_weight == 20
    assert decision.status.checks == ()
    assert decision.status.failed_checks == 0
    assert decision.status.last_check_time == stamp(0)
    assert decision.status.message == (
        "Holding weight 20%: the next check waits for the baseline app:v1 to become ready; rolling back in "
        "48s (progressDeadlineSeconds) unless it does"
    )
    assert decision.requeue_after == 10


def test_a_check_not_yet_due_holds_as_without_a_baseline() -> None:
    decision = decide(BASELINE_SPEC, status(**AT_20), observed(baseline=not_ready("app:v1")), at(5))
    assert type(decision) is Hold
    assert (
        decision.status
        == decide(BASELINE_SPEC, status(**AT_20), observed(baseline=BASELINE_READY), at(5)).status
    )


def test_the_check_decides_once_the_baseline_is_ready() -> None:
    decision = decide(BASELINE_SPEC, status(**AT_20), observed(baseline=BASELINE_READY, check=CLEAN), at(12))
    assert type(decision) is Advance
    assert decision.status.canary_weight == 30
    assert decision.status.checks[-1].outcome == CheckOutcome.CLEAN


def test_a_baseline_not_ready_past_the_progress_deadline_rolls_the_canary_back() -> None:
    decision = decide(BASELINE_SPEC, status(**AT_20), observed(baseline=not_ready("app:v1")), at(60))
    assert type(decision) is Rollback
    why = (
        "the baseline app:v1 was not ready at weight 20% within progressDeadlineSeconds (60s) of the weight "
        "change, so no check could compare the canary with it"
    )
    assert decision.status.message == f"Rolled back app:v2: {why}"
    assert decision.status.rollouts[-1].reason == f"{reasons.BASELINE_NOT_READY}: {why}"
    assert decision.status.checks == ()
    desired = desired_stack("web", "shop", "u1", BASELINE_SPEC, decision.status)
    assert desired.baseline_template is None
    assert desired.canary_template is None


def test_without_a_baseline_its_readiness_is_never_asked_for() -> None:
    no_baseline = spec(progressDeadlineSeconds=60)
    waiting = decide(no_baseline, status(**CANARY_V2), observed(), at(5))
    assert type(waiting) is Advance
    assert waiting.message.startswith("Canary is ready")
    checked = decide(no_baseline, status(**AT_20), observed(check=CLEAN), at(12))
    assert type(checked) is Advance


def test_the_baseline_goes_at_promotion() -> None:
    at_max = running(50, checked_at=0, lastTrafficShift=stamp(0), rollouts=[STARTED])
    decision = decide(BASELINE_SPEC, status(**at_max), observed(baseline=BASELINE_READY, check=CLEAN), at(12))
    assert decision.kind == "Promote"
    desired = desired_stack("web", "shop", "u1", BASELINE_SPEC, decision.status)
    assert desired.baseline_template is None
    assert (desired.primary_weight, desired.canary_weight) == (50, 50)


@pytest.mark.parametrize("paused", [False, True])
def test_a_missing_baseline_beside_a_weighted_canary_starts_at_weight_0(paused: bool) -> None:
    """analysis.baseline turned on mid-rollout (or the baseline deleted): the step that starts it routes it
    nothing, and the canary's weight returns to 0 with it until both are ready."""
    turned_on = status(**AT_20, paused=paused, routePendingSince=stamp(1))
    decision = decide(BASELINE_SPEC, turned_on, observed(check=CLEAN), at(12))
    assert type(decision) is StartBaseline
    assert decision.reason == reasons.BASELINE_STARTED
    assert decision.message == (
        "Started the baseline app:v1 beside canary app:v2: the weight returns from 20% to 0% until both are "
        "ready"
    )
    new = decision.status
    assert (new.canary_weight, new.paused, new.checks, new.failed_checks) == (0, paused, (), 0)
    assert (new.canary_started_at, new.last_check_time, new.route_pending_since) == (stamp(12), None, None)
    desired = desired_stack("web", "shop", "u1", BASELINE_SPEC, new)
    assert desired.baseline_revision == revision("app:v1")
    assert (desired.primary_weight, desired.canary_weight, desired.baseline_weight) == (100, 0, 0)
    if paused:
        return
    # The next pass that sees both ready takes the first step; the wait for readiness counts from the start.
    assert type(decide(BASELINE_SPEC, new, observed(baseline=BASELINE_READY), at(20))) is Advance
    waiting = decide(BASELINE_SPEC, new, observed(baseline=not_ready("app:v1")), at(71))
    assert type(waiting) is Hold
    late = decide(BASELINE_SPEC, new, observed(baseline=not_ready("app:v1")), at(72))
    assert type(late) is Rollback
    assert late.status.rollouts[-1].reason.startswith(reasons.BASELINE_NOT_READY)
