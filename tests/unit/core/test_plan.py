"""The rollout plan (reconciler/core/plan.py): decide() run forward with clean checks."""

from __future__ import annotations

import datetime

from reconciler.core import plan
from reconciler.core.clock import timestamp
from reconciler.core.decisions import Advance, Promote
from reconciler.core.model import CanaryAppSpec
from tests.unit.core.statuses import written

NOW = datetime.datetime(2026, 11, 29, 12, 0, 0, tzinfo=datetime.UTC)


def spec(**fields: object) -> CanaryAppSpec:
    base = {
        "image": "web:v2",
        "imageListenPort": 80,
        "prometheusQuery": "q",
        "prometheusURL": "http://p:9090",
        "trafficShiftUpdateInterval": 30,
    }
    return CanaryAppSpec.model_validate({**base, **fields})


def at(seconds: float) -> datetime.datetime:
    return NOW + datetime.timedelta(seconds=seconds)


def test_a_new_image_plans_every_step_and_the_promotion() -> None:
    status = written(phase="Ready", primary="web:v1", port=80)
    steps = plan.plan(spec(), status, NOW)
    kinds = [step.decision.kind for step in steps]
    assert kinds == ["StartCanary", *["Advance"] * 5, "Promote", "CompletePromotion"]
    assert [step.weight for step in steps if isinstance(step.decision, Advance)] == [10, 20, 30, 40, 50]
    advances = [step.time for step in steps if isinstance(step.decision, Advance)]
    assert advances == [at(1), at(31), at(61), at(91), at(121)]
    promote = next(step for step in steps if isinstance(step.decision, Promote))
    assert promote.time == at(151)
    assert "earliest promotion: 2026-11-29T12:02:31Z" in plan.render(steps, NOW)


def test_a_running_rollout_plans_from_where_it_is() -> None:
    status = written(
        port=80,
        **{
            "phase": "Progressing",
            "primary": "web:v1",
            "canary": "web:v2",
            "canaryWeight": 30,
            "lastCheckTime": timestamp(at(-10)),
            "lastTrafficShift": timestamp(at(-10)),
        },
    )
    steps = plan.plan(spec(), status, NOW)
    assert [(step.time, step.weight) for step in steps[:2]] == [(at(20), 40), (at(50), 50)]


def test_nothing_to_roll_out_or_paused_plans_nothing() -> None:
    steady = written(phase="Succeeded", primary="web:v2", port=80)
    assert plan.plan(spec(), steady, NOW) == []
    paused = written(
        port=80,
        **{
            "phase": "Progressing",
            "primary": "web:v1",
            "canary": "web:v2",
            "canaryWeight": 20,
            "paused": True,
        },
    )
    assert plan.plan(spec(), paused, NOW) == []
    assert plan.render([], NOW) == "nothing to roll out: no steps planned"


def test_with_a_baseline_each_step_shows_its_weight_beside_the_canarys() -> None:
    status = written(phase="Ready", primary="web:v1", port=80)
    steps = plan.plan(spec(analysis={"baseline": True}), status, NOW)
    kinds = [step.decision.kind for step in steps]
    assert kinds == ["StartCanary", *["Advance"] * 5, "Promote", "CompletePromotion"]
    assert [(step.weight, step.baseline_weight) for step in steps] == [
        (0, 0),
        *[(weight, weight) for weight in (10, 20, 30, 40, 50)],
        (50, None),  # the baseline goes at promotion
        (0, None),
    ]
    lines = plan.render(steps, NOW).splitlines()
    assert lines[0].split() == ["due", "in", "canary", "baseline", "step"]
    assert lines[2].split()[2:5] == ["10%", "10%", "Advance:"]
    assert lines[7].split()[2:5] == ["50%", "-", "Promote:"]


def test_without_a_baseline_the_plan_has_no_baseline_column() -> None:
    steps = plan.plan(spec(), written(phase="Ready", primary="web:v1", port=80), NOW)
    assert all(step.baseline_weight is None for step in steps)
    assert plan.render(steps, NOW).splitlines()[0].split() == ["due", "in", "canary", "step"]
