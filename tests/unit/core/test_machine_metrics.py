"""The judge's outcomes in the state machine: MetricsFailed and Marginal are failed checks, NoData holds the
weight like NoCanaryTraffic until the progress deadline, and every check records the judge's evidence."""

from __future__ import annotations

import pytest

from reconciler.core import reasons
from reconciler.core.analysis import CheckResult
from reconciler.core.decisions import Advance, Decision, FailCheck, HoldWeight, Observations, Rollback
from reconciler.core.machine import decide
from reconciler.core.model import CheckOutcome, MetricRecord, Phase, RolloutRecord
from tests.unit.core.test_machine import at, ready, running, spec, stamp, status

RECORD = MetricRecord(
    name="latency",
    kind="continuous",
    verdict="High",
    reason="canary +98.0% against the baseline",
    canary_size=60,
    baseline_size=60,
    canary_level=210.0,
    baseline_level=105.0,
    estimate=100.0,
    low=95.0,
    high=105.0,
    p_value=1e-20,
    spread_ratio=1.9,
)
FAILED = CheckResult(
    CheckOutcome.METRICS_FAILED,
    "score 0.0 against pass 95 and marginal 75: latency High",
    score=0.0,
    verdict="Fail",
    metrics=(RECORD,),
)
MARGINAL = CheckResult(CheckOutcome.MARGINAL, "score 80.0 against pass 95 and marginal 75: errors High")
NO_DATA = CheckResult(CheckOutcome.NO_DATA, "no metric had data (latency: canary had 0 finite samples)")


def judged(check: CheckResult, seconds: float = 10, **changes: object) -> Decision:
    the_spec = spec(**{"failureThreshold": 2, **changes})
    current = status(**running(30, lastTrafficShift=stamp(0))).model_copy(
        update={"rollouts": (RolloutRecord(image="app:v2", started_at=stamp(0)),)}
    )
    return decide(the_spec, current, Observations(canary=ready("app:v2"), check=check), at(seconds))


@pytest.mark.parametrize("check", [FAILED, MARGINAL], ids=["metrics failed", "marginal"])
def test_a_failing_or_marginal_score_is_a_failed_check_and_the_threshold_rolls_back(
    check: CheckResult,
) -> None:
    first = judged(check)
    assert isinstance(first, FailCheck)
    assert first.status.failed_checks == 1
    assert first.status.canary_weight == 30
    assert f"check 1/2 failed: {check.message}" in first.message
    last = judged(check, failureThreshold=1)
    assert isinstance(last, Rollback)
    assert last.status.phase == Phase.FAILED
    assert last.status.rollouts[-1].reason.startswith(reasons.CHECKS_FAILED)


def test_no_data_holds_the_weight_then_rolls_back_at_the_progress_deadline() -> None:
    held = judged(NO_DATA, progressDeadlineSeconds=60)
    assert isinstance(held, HoldWeight)
    assert held.reason == reasons.NO_METRIC_DATA
    assert (held.status.canary_weight, held.status.failed_checks) == (30, 0)
    assert "unless the next checks see enough samples for the metrics" in held.message
    late = judged(NO_DATA, seconds=65, progressDeadlineSeconds=60)
    assert isinstance(late, Rollback)
    assert "no data for any metric for 65s at weight 30%" in late.message
    assert late.status.rollouts[-1].reason.startswith(reasons.NO_METRIC_DATA)


def test_the_judges_evidence_is_recorded_with_the_check() -> None:
    passed = CheckResult(CheckOutcome.CLEAN, "score 100.0", score=100.0, verdict="Pass", metrics=(RECORD,))
    advanced = judged(passed)
    assert isinstance(advanced, Advance)
    for decision, check in ((advanced, passed), (judged(FAILED), FAILED)):
        record = decision.status.checks[-1]
        assert (record.outcome, record.score, record.verdict) == (check.outcome, check.score, check.verdict)
        assert record.metrics == (RECORD,)
