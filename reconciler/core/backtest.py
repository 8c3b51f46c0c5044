"""`canaryapp backtest`: replays a CanaryApp's analysis against Prometheus' history.

Before trusting a new query, see whether it would have caught last week's bad release: starting at `--from`
with a ready canary at the first step, every interval evaluates the rendered error and traffic queries at that
moment in history and feeds the answers to the same pure `decide()` the reconciler runs, printing the weight
it would have reached and the decision, until it would have promoted or rolled back.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.core.analysis import CheckResult
from reconciler.core.clock import timestamp
from reconciler.core.decisions import Decision, Observations, Promote, Rollback
from reconciler.core.machine import decide
from reconciler.core.model import CanaryApp, CanaryAppStatus, Phase, RevisionTemplate
from reconciler.core.readiness import DeploymentState

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> datetime.timedelta:
    """`1h`, `30m`, `90s`, `2h30m` as a timedelta; anything else is an error naming the format."""
    found = _DURATION.match(text.strip())
    if not text.strip() or found is None:
        raise ValueError(f"{text!r} is not a duration such as 1h, 30m, 90s or 2h30m")
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds)


@dataclass(frozen=True)
class Step:
    time: datetime.datetime
    weight: int
    check: CheckResult
    decision: Decision


@dataclass(frozen=True)
class Backtest:
    steps: tuple[Step, ...]
    verdict: str
    promoted: bool
    rolled_back: bool


Check = Callable[[CanaryApp, CanaryAppStatus, datetime.datetime], CheckResult]


def replay(app: CanaryApp, check: Check, start: datetime.datetime, end: datetime.datetime) -> Backtest:
    """Runs `decide()` forward from a canary that became ready at `start`, one check per interval, with the
    answers `check` gives for each moment; stops at the first promotion or rollback, or at `end`."""
    spec = app.spec
    status = CanaryAppStatus(
        phase=Phase.PROGRESSING,
        primary_revision="(the primary's)",
        canary_revision=spec.revision,
        pod_templates=(RevisionTemplate(revision=spec.revision, template=spec.pod_template),),
        canary_weight=spec.step_weight,
        canary_started_at=timestamp(start),
        last_traffic_shift=timestamp(start),
        last_check_time=timestamp(start),
    )
    ready = DeploymentState(image=spec.main_image, ready=True, revision=spec.revision)
    baseline = DeploymentState(image="", ready=True, revision=status.primary_revision or "")
    steps: list[Step] = []
    moment = start + datetime.timedelta(seconds=spec.traffic_shift_update_interval)
    while moment <= end:
        result = check(app, status, moment)
        observations = Observations(primary=ready, canary=ready, baseline=baseline, check=result)
        decision = decide(spec, status, observations, moment)
        steps.append(Step(moment, status.canary_weight, result, decision))
        if isinstance(decision, Promote):
            return Backtest(tuple(steps), f"promoted at {timestamp(moment)}", True, False)
        if isinstance(decision, Rollback):
            verdict = f"rolled back at {timestamp(moment)}: {decision.message}"
            return Backtest(tuple(steps), verdict, False, True)
        status = decision.status
        moment += datetime.timedelta(seconds=spec.traffic_shift_update_interval)
    verdict = f"neither promoted nor rolled back by {timestamp(end)} (weight {status.canary_weight}%)"
    return Backtest(tuple(steps), verdict, False, False)


def render(app: CanaryApp, result: Backtest, start: datetime.datetime, end: datetime.datetime) -> str:
    spec = app.spec
    lines = [
        f"Backtest of CanaryApp {app.key} from {timestamp(start)} to {timestamp(end)}: "
        f"a check every {spec.traffic_shift_update_interval}s, +{spec.step_weight}% per clean check up to "
        f"{spec.max_weight}%, as if the canary {spec.main_image} had been ready at the first step",
        f"{'time':<21} {'weight':>6}  {'check':<16} {'requests':>8}  decision",
    ]
    for step in result.steps:
        requests = "-" if step.check.canary_requests is None else f"{step.check.canary_requests:.3g}"
        after = step.decision.status.canary_weight
        decision = step.decision.kind + (f" -> {after}%" if after != step.weight else "")
        lines.append(
            f"{timestamp(step.time):<21} {step.weight:>5}%  {step.check.outcome.value:<16} "
            f"{requests:>8}  {decision}: {step.check.message}"
        )
    if result.steps:
        lines.append(f"error query (last check): {result.steps[-1].check.query}")
    lines.append(f"verdict: {result.verdict}")
    return "\n".join(lines)
