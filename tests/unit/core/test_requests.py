"""One-shot requests (annotations) in decide(): promote, abort, pause, resume, retry — each handled once,
recorded in status.handledRequests; the rollout-slot gate; the promotion deadline."""

from __future__ import annotations

import datetime

import pytest

from reconciler.core.clock import timestamp
from reconciler.core.decisions import (
    Hold,
    IgnoreRequest,
    Observations,
    Promote,
    Resume,
    Rollback,
    RolloutSlots,
    StartCanary,
    WaitForSlot,
)
from reconciler.core.machine import decide, seconds_until_check, wants_check
from reconciler.core.model import Action, CanaryAppSpec, CanaryAppStatus, Phase, RolloutResult
from reconciler.core.readiness import DeploymentState
from reconciler.core.workload import shorthand_revision
from tests.unit.core.statuses import written

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def spec(**fields: object) -> CanaryAppSpec:
    base = {
        "image": "app:v2",
        "imageListenPort": 80,
        "prometheusQuery": "q",
        "prometheusURL": "http://p:9090",
        "trafficShiftUpdateInterval": 10,
    }
    return CanaryAppSpec.model_validate({**base, **fields})


def status(**fields: object) -> CanaryAppStatus:
    return written(port=80, **fields)


RUNNING = {
    "phase": "Progressing",
    "primary": "app:v1",
    "canary": "app:v2",
    "canaryWeight": 20,
    "successful": "app:v1",
    "lastCheckTime": timestamp(at(0)),
    "lastTrafficShift": timestamp(at(0)),
    "rollouts": [{"image": "app:v2", "startedAt": timestamp(at(-30)), "weights": [10, 20]}],
}
PROMOTING = {
    **RUNNING,
    "phase": "Promoting",
    "primary": "app:v2",
    "promotionStartedAt": timestamp(at(0)),
}
READY = DeploymentState("app:v2", ready=True, revision=shorthand_revision("app:v2", 8088))


def ask(action: Action, token: str = "t1", **observed: object) -> Observations:
    return Observations(canary=READY, requests={action: token}, **observed)  # type: ignore[arg-type]


def test_promote_skips_the_remaining_steps() -> None:
    decision = decide(spec(), status(**RUNNING), ask(Action.PROMOTE), at(3))
    assert isinstance(decision, Promote)
    assert decision.status.phase == Phase.PROMOTING
    assert decision.status.primary_image == "app:v2"
    assert decision.status.handled_requests == {"promote": "t1"}
    assert "on request" in decision.message


def test_a_handled_request_is_never_repeated() -> None:
    handled = status(**RUNNING, handledRequests={"promote": "t1"})
    decision = decide(spec(), handled, ask(Action.PROMOTE), at(3))
    assert isinstance(decision, Hold)
    assert decision.status.phase == Phase.PROGRESSING


def test_abort_rolls_back_and_records_the_image_as_failed() -> None:
    decision = decide(spec(), status(**RUNNING), ask(Action.ABORT), at(3))
    assert isinstance(decision, Rollback)
    assert decision.status.failed_images == ("app:v2",)
    assert decision.status.canary_weight == 0
    record = decision.status.rollouts[-1]
    assert record.result == RolloutResult.ROLLED_BACK
    assert record.reason.startswith("Aborted: aborted on request")


def test_abort_during_the_promotion_returns_the_primary_to_the_last_good_image() -> None:
    decision = decide(spec(), status(**PROMOTING), ask(Action.ABORT), at(3))
    assert isinstance(decision, Rollback)
    assert decision.status.primary_image == "app:v1"
    assert decision.status.failed_images == ("app:v2",)


def test_pause_holds_the_weight_and_runs_no_checks_until_resumed() -> None:
    paused = decide(spec(), status(**RUNNING), ask(Action.PAUSE), at(3)).status
    assert paused.paused
    assert paused.condition("Paused").status == "True"  # type: ignore[union-attr]
    assert not wants_check(spec(), paused, at(100))
    later = decide(spec(), paused, Observations(canary=READY, requests={Action.PAUSE: "t1"}), at(1000))
    assert isinstance(later, Hold)
    assert later.status.canary_weight == 20
    resumed = decide(spec(), paused, ask(Action.RESUME, "t2"), at(1000))
    assert isinstance(resumed, Resume)
    assert not resumed.status.paused
    assert resumed.status.last_traffic_shift == timestamp(at(1000))  # deadline and window restart
    assert seconds_until_check(spec(), resumed.status, at(1000)) == 10


@pytest.mark.parametrize(
    ("action", "the_status"),
    [
        pytest.param(Action.PROMOTE, {"phase": "Succeeded", "primary": "app:v2"}, id="promote when idle"),
        pytest.param(Action.ABORT, {"phase": "Ready", "primary": "app:v2"}, id="abort when idle"),
        pytest.param(Action.RESUME, RUNNING, id="resume when not paused"),
        pytest.param(Action.PAUSE, {**RUNNING, "paused": True}, id="pause when paused"),
    ],
)
def test_a_request_that_does_not_apply_is_recorded_and_ignored(
    action: Action, the_status: dict[str, object]
) -> None:
    before = status(**the_status)
    decision = decide(spec(), before, ask(action), at(3))
    assert isinstance(decision, IgnoreRequest)
    assert decision.status.handled_requests == {action.value: "t1"}
    assert decision.status.phase == before.phase
    assert decision.message.startswith(f"Ignored the {action.value} request")


def test_a_primary_that_never_rolls_out_during_the_promotion_is_rolled_back_at_the_deadline() -> None:
    stalled = Observations(
        primary=DeploymentState("app:v2", ready=False, revision=shorthand_revision("app:v2", 8088)),
        canary=READY,
    )
    waiting = decide(spec(progressDeadlineSeconds=60), status(**PROMOTING), stalled, at(59))
    assert isinstance(waiting, Hold)
    decision = decide(spec(progressDeadlineSeconds=60), status(**PROMOTING), stalled, at(60))
    assert isinstance(decision, Rollback)
    assert decision.status.primary_image == "app:v1"
    assert decision.status.rollouts[-1].reason.startswith("PrimaryNotReady")


@pytest.mark.parametrize(
    ("slots", "starts"),
    [
        pytest.param(RolloutSlots(limit=1, active=0, waiting_before=0), True, id="free slot"),
        pytest.param(RolloutSlots(limit=1, active=1, waiting_before=0), False, id="all slots taken"),
        pytest.param(RolloutSlots(limit=2, active=1, waiting_before=1), False, id="another waited longer"),
        pytest.param(None, True, id="no limit"),
    ],
)
def test_a_new_rollout_waits_for_a_slot(slots: RolloutSlots | None, starts: bool) -> None:
    ready = status(phase="Succeeded", primary="app:v1")
    decision = decide(spec(), ready, Observations(primary=READY, slots=slots), at(0))
    assert isinstance(decision, StartCanary) is starts
    if not starts:
        assert isinstance(decision, WaitForSlot)
        assert decision.status.queued_at == timestamp(at(0))
        again = decide(spec(), decision.status, Observations(primary=READY, slots=slots), at(30))
        assert again.status.queued_at == timestamp(at(0))  # the place in line is kept
    else:
        assert decision.status.queued_at is None
