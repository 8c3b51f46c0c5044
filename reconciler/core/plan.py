"""The rollout plan: when each remaining weight step is due and the earliest promotion, computed by running
the pure `decide()` forward from the current status with every check clean and every Deployment ready.

It is the best case: a check that finds errors or no canary traffic, or a Deployment slower to become ready,
only makes the real timeline later. No canary tool we know of shows this. With a baseline
(spec.analysis.baseline) each step shows its weight beside the canary's.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from reconciler.core.analysis import CheckResult
from reconciler.core.clock import timestamp
from reconciler.core.decisions import (
    CompletePromotion,
    Decision,
    Hold,
    Initialize,
    Observations,
    Promote,
    StartCanary,
)
from reconciler.core.desired import baseline_runs
from reconciler.core.machine import decide, wants_check
from reconciler.core.model import CanaryAppSpec, CanaryAppStatus, CheckOutcome
from reconciler.core.readiness import DeploymentState

MAX_PASSES = 1000
# Best case for a Deployment the step changed: ready a second later, and its watch wakes the loop at once.
DEPLOYMENT_READY_SECONDS = 1.0
_CHANGES_A_DEPLOYMENT = (Initialize, StartCanary, Promote)


@dataclass(frozen=True)
class PlannedStep:
    time: datetime.datetime
    weight: int
    decision: Decision
    baseline_weight: int | None = None  # None: no baseline runs after this step


def plan(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> list[PlannedStep]:
    """Every decision that changes something, from `now` until the rollout would be promoted (empty when
    nothing is to roll out, or the rollout is paused)."""
    clean = CheckResult(CheckOutcome.CLEAN, "assumed clean", canary_requests=float(spec.min_canary_requests))
    steps: list[PlannedStep] = []
    moment = now
    for _ in range(MAX_PASSES):
        observations = Observations(
            primary=_ready(status.primary_image, status.primary_revision),
            canary=_ready(status.canary_image, status.canary_revision),
            baseline=_ready(status.primary_image, status.primary_revision),
            check=clean if wants_check(spec, status, moment) else None,
        )
        decision = decide(spec, status, observations, moment)
        if not isinstance(decision, Hold):
            after = decision.status
            baseline = after.canary_weight if baseline_runs(spec, after) else None
            steps.append(PlannedStep(moment, after.canary_weight, decision, baseline))
        if isinstance(decision, CompletePromotion) or decision.requeue_after is None:
            return steps
        delay = decision.requeue_after
        if isinstance(decision, _CHANGES_A_DEPLOYMENT):
            delay = min(delay, DEPLOYMENT_READY_SECONDS)
        moment += datetime.timedelta(seconds=delay)
        status = decision.status
    return steps


def _ready(image: str | None, revision: str | None) -> DeploymentState:
    return DeploymentState(image or "", ready=True, revision=revision or "")


def render(steps: list[PlannedStep], now: datetime.datetime) -> str:
    if not steps:
        return "nothing to roll out: no steps planned"
    with_baseline = any(step.baseline_weight is not None for step in steps)
    baseline_header = f"{'baseline':>8}  " if with_baseline else ""
    lines = [f"{'due':<20} {'in':>6}  {'canary':>6}  {baseline_header}step"]
    for step in steps:
        seconds = max((step.time - now).total_seconds(), 0.0)
        baseline = "-" if step.baseline_weight is None else f"{step.baseline_weight}%"
        baseline_column = f"{baseline:>8}  " if with_baseline else ""
        lines.append(
            f"{timestamp(step.time):<20} {seconds:>5.0f}s  {step.weight:>5}%  {baseline_column}"
            f"{step.decision.kind}: {step.decision.message}"
        )
    promoted = next((step for step in steps if isinstance(step.decision, Promote)), None)
    if promoted is not None:
        lines.append(f"earliest promotion: {timestamp(promoted.time)} (if every check is clean)")
    return "\n".join(lines)
