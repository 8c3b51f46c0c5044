"""`canaryapp backtest`: replays a CanaryApp's analysis against Prometheus' history.

Before trusting a new query, see whether it would have caught last week's bad release: starting at `--from`
with a ready canary at the first step, every interval evaluates the rendered error and traffic queries (and
the metrics of spec.analysis, judged as a check judges them) at that moment in history and feeds the answers
to the same pure `decide()` the reconciler runs, printing the weight it would have reached and the decision,
until it would have promoted or rolled back.

With spec.analysis.metrics it then re-judges every check the status records the judge's verdict of: the same
queries asked again over that check's window (from the weight change before it to its time) with today's
metrics and templates, and the verdict compared with the recorded one. A window is known from the records:
it starts at the check that changed the weight (an earlier record of the same rollout at another weight),
else one interval before the first check at that weight (the first check comes one interval after a change).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.core.analysis import CheckResult
from reconciler.core.clock import parse_timestamp, timestamp
from reconciler.core.decisions import Decision, Observations, Promote, Rollback
from reconciler.core.machine import decide
from reconciler.core.model import CanaryApp, CanaryAppStatus, CheckRecord, Phase, RevisionTemplate
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


@dataclass(frozen=True)
class Rejudged:
    """A recorded check asked and judged again over its window: `replayed` against `record`."""

    record: CheckRecord
    window_start: datetime.datetime
    replayed: CheckResult

    @property
    def agrees(self) -> bool:
        return (self.replayed.outcome, self.replayed.verdict) == (self.record.outcome, self.record.verdict)


def rejudge(app: CanaryApp, check: Check) -> tuple[Rejudged, ...]:
    """Every recorded check with the judge's verdict, checked again by `check` at its time, over its window
    (the module's docstring); nothing without spec.analysis.metrics."""
    if not app.spec.metrics:
        return ()
    interval = datetime.timedelta(seconds=app.spec.traffic_shift_update_interval)
    rejudged = []
    for record, start in check_windows(app.status, interval):
        if record.verdict is None:
            continue
        status = app.status.model_copy(
            update={"canary_weight": record.weight, "last_traffic_shift": timestamp(start)}
        )
        rejudged.append(Rejudged(record, start, check(app, status, parse_timestamp(record.time))))
    return tuple(rejudged)


def check_windows(
    status: CanaryAppStatus, interval: datetime.timedelta
) -> list[tuple[CheckRecord, datetime.datetime]]:
    """Each recorded check with the start of its window: the time of the check that changed the weight (the
    record before the run of records at this weight, in the same rollout), else one interval before the
    run's first check."""
    starts = sorted(parse_timestamp(rollout.started_at) for rollout in status.rollouts)

    def rollout_of(record: CheckRecord) -> datetime.datetime | None:
        moment = parse_timestamp(record.time)
        return max((start for start in starts if start <= moment), default=None)

    records = status.checks
    windows = []
    for index, record in enumerate(records):
        first = index
        while (
            first > 0
            and records[first - 1].weight == record.weight
            and rollout_of(records[first - 1]) == rollout_of(record)
        ):
            first -= 1
        before = records[first - 1] if first > 0 else None
        if before is not None and rollout_of(before) == rollout_of(record):
            start = parse_timestamp(before.time)
        else:
            start = parse_timestamp(records[first].time) - interval
        windows.append((record, start))
    return windows


def render(
    app: CanaryApp,
    result: Backtest,
    start: datetime.datetime,
    end: datetime.datetime,
    rejudged: tuple[Rejudged, ...] = (),
) -> str:
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
    if result.steps and spec.prometheus_query:
        lines.append(f"error query (last check): {result.steps[-1].check.query}")
    lines.append(f"verdict: {result.verdict}")
    if app.spec.metrics:
        lines.extend(_render_rejudged(rejudged))
    return "\n".join(lines)


def _render_rejudged(rejudged: tuple[Rejudged, ...]) -> list[str]:
    if not rejudged:
        return ["recorded checks: none with the judge's verdict in status.checks"]
    lines = [
        "recorded checks judged again with today's metrics, over each check's window:",
        f"{'time':<21} {'weight':>6} {'window':>7}  {'recorded':<24} {'replayed':<24} agrees",
    ]
    for item in rejudged:
        record, replayed = item.record, item.replayed
        seconds = (parse_timestamp(record.time) - item.window_start).total_seconds()
        lines.append(
            f"{record.time:<21} {record.weight:>5}% {seconds:>6.0f}s  "
            f"{_judged(record.outcome, record.verdict, record.score):<24} "
            f"{_judged(replayed.outcome, replayed.verdict, replayed.score):<24} "
            f"{'yes' if item.agrees else 'NO'}"
        )
        if not item.agrees:
            lines.append(f"  replayed: {replayed.message}")
    agreeing = sum(item.agrees for item in rejudged)
    lines.append(f"recorded verdicts reproduced: {agreeing} of {len(rejudged)}")
    return lines


def _judged(outcome: str, verdict: str | None, score: float | None) -> str:
    return f"{outcome} {verdict or '-'} {'-' if score is None else f'{score:.1f}'}"
