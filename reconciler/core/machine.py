"""The whole rollout state machine as one pure function: `decide(spec, status, observations, now)`.

Everything the reconciler does follows from the Decision returned here: the next status (written to the
CanaryApp before anything is changed, so a restarted reconciler continues from it), the stack that status
implies (see `desired.py`), the Event, and when to look again. No I/O happens here and time is passed in,
so every transition can be tested tick by tick. An import-linter contract keeps this module free of
`kubernetes`, `httpx` and `pulumi`.

    Initializing ──primary ready──▶ Ready ──new image──▶ Progressing ──clean check at maxWeight──▶ Promoting
         ▲                            ▲                   │   │  ▲ clean check: +stepWeight          │
         │                            │   newer image:    │   │  └─────────────┘                   │ primary
      created                         └── abandon ────────┘   │ failedChecks = failureThreshold,  │ rolled out
                                                              │ or canary not ready in time        ▼
                         Failed ◀───────── roll back ─────────┘                                Succeeded
"""

from __future__ import annotations

import dataclasses
import datetime

from reconciler.core import reasons, workload
from reconciler.core.analysis import CheckResult
from reconciler.core.clock import seconds_since, timestamp
from reconciler.core.conditions import with_phase_conditions
from reconciler.core.decisions import (
    READINESS_RECHECK_SECONDS,
    SLOT_POLL_SECONDS,
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
    RolloutSlots,
    StartBaseline,
    StartCanary,
    WaitForRoute,
    WaitForSlot,
)
from reconciler.core.desired import baseline_runs
from reconciler.core.model import (
    MAX_CHECK_RECORDS,
    RETRY_ANNOTATION,
    STEADY_PHASES,
    CanaryAppSpec,
    CanaryAppStatus,
    CheckOutcome,
    CheckRecord,
    Phase,
    RolloutRecord,
    RolloutResult,
)
from reconciler.core.names import Router
from reconciler.core.readiness import DeploymentState, ready_with
from reconciler.core.requests import pending_request
from reconciler.core.routes import ACCEPTANCE_RECHECK_SECONDS, RouteState
from reconciler.core.transitions import (
    advance,
    describe_release,
    finish_rollout,
    promote,
    rollback,
    rollback_promotion,
    with_rollout,
    without_canary,
)


def seconds_until_check(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> float:
    """Seconds until the next metric check is due (<= 0: due now). Uses remaining, not elapsed, time."""
    return spec.traffic_shift_update_interval - seconds_since(status.last_check_time, now)


def wants_check(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> bool:
    """Whether this pass needs a metric check: only a canary carrying traffic, once per interval."""
    return (
        status.phase == Phase.PROGRESSING
        and not status.paused
        and status.canary_weight > 0
        and seconds_until_check(spec, status, now) <= 0
    )


def about_to_start(spec: CanaryAppSpec, status: CanaryAppStatus) -> bool:
    """Whether this pass may start a rollout (and so needs to know about free rollout slots)."""
    return (
        status.phase in STEADY_PHASES
        and spec.revision != status.primary_revision
        and spec.revision not in status.failed_revisions
    )


def interrupted(status: CanaryAppStatus) -> bool:
    """Whether a decision was recorded but its step never ran: StackSynced still says Applying (a step that
    ran and failed says StackUpdateFailed or NameConflict and is retried by the usual flow)."""
    synced = status.condition(reasons.CONDITION_STACK_SYNCED)
    return status.phase is not None and synced is not None and synced.reason == reasons.APPLYING


def resume_interrupted(status: CanaryAppStatus, now: datetime.datetime) -> CanaryAppStatus:
    """The status to apply after an interrupted step: a canary's next check and window start when the weight
    actually reaches the world, now."""
    if status.phase != Phase.PROGRESSING or status.canary_weight == 0:
        return status
    return status.model_copy(update={"last_check_time": timestamp(now), "last_traffic_shift": timestamp(now)})


def decide(
    spec: CanaryAppSpec, status: CanaryAppStatus, observations: Observations, now: datetime.datetime
) -> Decision:
    decision = _decide(spec, status, observations, now)
    generation = observations.generation
    final = decision.status.model_copy(update={"observed_generation": generation})
    return dataclasses.replace(decision, status=with_phase_conditions(final, generation, now))


def _decide(
    spec: CanaryAppSpec, status: CanaryAppStatus, obs: Observations, now: datetime.datetime
) -> Decision:
    requested, status = pending_request(spec, status, obs.requests, now)
    if requested is not None:
        return requested

    if status.phase is None or status.primary_revision is None:
        return _initialize(spec, status)
    if status.phase == Phase.INITIALIZING:
        return _initializing(spec, status, obs)
    if status.phase == Phase.PROGRESSING:
        return _to_confirm(spec, _progressing(spec, status, obs, now), now)
    if status.phase == Phase.PROMOTING:
        return _promoting(spec, status, obs, now)
    replicas = obs.primary.replicas if obs.primary is not None and spec.autoscaler else None
    return _steady(spec, status, obs.slots, replicas, now)


def _initialize(spec: CanaryAppSpec, status: CanaryAppStatus) -> Decision:
    # The first version has nothing to be compared with, so it goes straight to the primary.
    new = status.model_copy(
        update={
            "phase": Phase.INITIALIZING,
            "primary_revision": spec.revision,
            "pod_templates": status.with_pod_templates(set(), **{spec.revision: spec.pod_template}),
            "canary_revision": None,
            "canary_weight": 0,
            "message": f"Rolling out {describe_release(spec.main_image, spec.revision)} as the primary",
        }
    )
    return Initialize(new, READINESS_RECHECK_SECONDS, reasons.INITIALIZED, new.message)


def _initializing(spec: CanaryAppSpec, status: CanaryAppStatus, obs: Observations) -> Decision:
    if spec.revision != status.primary_revision:
        return _initialize(spec, status)
    if ready_with(obs.primary, status.primary_revision):
        new = status.model_copy(
            update={
                "phase": Phase.READY,
                "successful_revision": status.primary_revision,
                "message": f"Primary serves {status.primary_image}",
            }
        )
        return BecomeReady(new, None, reasons.BECAME_READY, new.message)
    new = status.model_copy(update={"message": f"Waiting for the primary to run {status.primary_image}"})
    return Hold(new, READINESS_RECHECK_SECONDS, reasons.WAITING, new.message)


def _steady(
    spec: CanaryAppSpec,
    status: CanaryAppStatus,
    slots: RolloutSlots | None,
    primary_replicas: int | None,
    now: datetime.datetime,
) -> Decision:
    if spec.revision == status.primary_revision:
        return Hold(status, None, reasons.WAITING, status.message)
    release = describe_release(spec.main_image, spec.revision)
    if spec.revision in status.failed_revisions:
        message = (
            f"{release} was rolled back before and is not retried; change spec.image or spec.template, "
            f"or annotate the CanaryApp with {RETRY_ANNOTATION}=<any new value> to try it again"
        )
        return Hold(
            status.model_copy(update={"message": message}), None, reasons.SKIPPED_FAILED_IMAGE, message
        )
    if slots is not None and not slots.free:
        message = (
            f"{release} waits for a rollout slot: {slots.active} of {slots.limit} rollouts in progress, "
            f"{slots.waiting_before} CanaryApps waiting longer (--max-concurrent-rollouts)"
        )
        queued = status.model_copy(
            update={"queued_at": status.queued_at or timestamp(now), "message": message}
        )
        return WaitForSlot(queued, SLOT_POLL_SECONDS, reasons.WAITING_FOR_SLOT, message)
    return _start_canary(spec, status, primary_replicas, now)


def _start_canary(
    spec: CanaryAppSpec, status: CanaryAppStatus, primary_replicas: int | None, now: datetime.datetime
) -> Decision:
    """The spec's release as the canary at weight 0, with a new rollout record saying what changed."""
    changes = tuple(
        workload.describe_changes(status.pod_template(status.primary_revision), spec.pod_template)
    )
    changed = f" ({', '.join(changes)})" if changes else ""
    release = describe_release(spec.main_image, spec.revision)
    record = RolloutRecord(
        image=spec.main_image, revision=spec.revision, changes=changes, started_at=timestamp(now)
    )
    new = status.model_copy(
        update={
            "phase": Phase.PROGRESSING,
            "queued_at": None,
            "paused": False,
            "canary_revision": spec.revision,
            "pod_templates": status.with_pod_templates(
                {status.primary_revision, status.successful_revision}, **{spec.revision: spec.pod_template}
            ),
            "primary_min_replicas": primary_replicas,
            "canary_weight": 0,
            "failed_checks": 0,
            "canary_started_at": timestamp(now),
            "promotion_started_at": None,
            "last_check_time": None,
            "last_check_outcome": None,
            "last_check_message": "",
            "rollouts": with_rollout(status.rollouts, record),
            "message": f"Started canary {release}{changed}; waiting for it to become ready",
        }
    )
    return StartCanary(new, READINESS_RECHECK_SECONDS, reasons.CANARY_STARTED, new.message)


def _progressing(
    spec: CanaryAppSpec, status: CanaryAppStatus, obs: Observations, now: datetime.datetime
) -> Decision:
    canary_image = status.canary_image or ""
    if spec.revision != status.canary_revision:
        changes = workload.describe_changes(status.pod_template(status.canary_revision), spec.pod_template)
        release = describe_release(spec.main_image, spec.revision)
        why = f"the spec changed to {release} ({', '.join(changes) or 'template changed'})"
        new = without_canary(finish_rollout(status, RolloutResult.ABANDONED, why, now)).model_copy(
            update={"phase": Phase.READY, "message": f"Abandoned canary {canary_image}: {why}"}
        )
        return AbandonCanary(new, 0.0, reasons.CANARY_ABANDONED, new.message)

    if status.canary_weight > 0 and obs.baseline is None and baseline_runs(spec, status):
        return _start_baseline(status, now)
    if status.paused:
        return Hold(status, None, reasons.WAITING, status.message)
    if status.canary_weight == 0:
        return _waiting_for_canary(spec, status, obs, now)
    if obs.route is not None and (not obs.route.accepted or status.route_pending_since):
        return _confirming_route(spec, status, obs.route, now)
    return _checking(spec, status, obs, now)


def _checking(
    spec: CanaryAppSpec, status: CanaryAppStatus, obs: Observations, now: datetime.datetime
) -> Decision:
    """A weight that counts: a due check is judged, once the baseline (when one runs) is ready."""
    remaining = seconds_until_check(spec, status, now)
    if remaining <= 0 and not baseline_ready(spec, status, obs.baseline):
        return _waiting_for_baseline(spec, status, now)
    if remaining > 0 or obs.check is None:
        return Hold(status, max(remaining, 0.0), reasons.WAITING, status.message)
    return _judge(spec, status, obs, obs.check, now)


def baseline_ready(spec: CanaryAppSpec, status: CanaryAppStatus, baseline: DeploymentState | None) -> bool:
    """Whether the canary may be judged as far as the baseline goes: none runs, or it is ready and runs the
    primary's release (desired.py)."""
    return not baseline_runs(spec, status) or ready_with(baseline, status.primary_revision)


def _waiting_for_canary(
    spec: CanaryAppSpec, status: CanaryAppStatus, obs: Observations, now: datetime.datetime
) -> Decision:
    """Weight 0: the canary gets its first step once ready (and the baseline beside it, when one runs), and
    is rolled back if either is not in time."""
    canary_image = status.canary_image or ""
    canary_ready = ready_with(obs.canary, status.canary_revision)
    baseline_is_ready = baseline_ready(spec, status, obs.baseline)
    if canary_ready and baseline_is_ready:
        why = "Canary and baseline are ready" if baseline_runs(spec, status) else "Canary is ready"
        return advance(spec, status, spec.step_weight, now, why)
    waiting_for = [
        *([] if canary_ready else [f"canary {canary_image}"]),
        *([] if baseline_is_ready else [_describe_baseline(status)]),
    ]
    waited = seconds_since(status.canary_started_at, now)
    if waited >= spec.deployment_ready_wait_time:
        return rollback(
            status,
            f"{' and '.join(waiting_for)} {'was' if len(waiting_for) == 1 else 'were'} not ready within "
            f"deploymentReadyWaitTime ({spec.deployment_ready_wait_time}s)",
            now,
            reasons.CANARY_NOT_READY if not canary_ready else reasons.BASELINE_NOT_READY,
        )
    remaining = spec.deployment_ready_wait_time - waited
    new = status.model_copy(update={"message": f"Waiting for {' and '.join(waiting_for)} to become ready"})
    return Hold(new, min(READINESS_RECHECK_SECONDS, remaining), reasons.WAITING, new.message)


def _describe_baseline(status: CanaryAppStatus) -> str:
    return f"the baseline {status.primary_image or ''}"


def _start_baseline(status: CanaryAppStatus, now: datetime.datetime) -> Decision:
    """No baseline exists while the canary carries weight (analysis.baseline turned on during the rollout, or
    its Deployment deleted): the step that starts it must not route the canary's share to it before it can
    serve, so the canary's weight, and with it the baseline's, returns to 0 until both are ready, as at the
    canary's start (deploymentReadyWaitTime counts from now); a paused rollout stays paused."""
    message = (
        f"Started {_describe_baseline(status)} beside canary {status.canary_image or ''}: the weight returns "
        f"from {status.canary_weight}% to 0% until both are ready"
    )
    new = status.model_copy(
        update={
            "canary_weight": 0,
            "canary_started_at": timestamp(now),
            "last_check_time": None,
            "route_pending_since": None,
            "message": message,
        }
    )
    return StartBaseline(new, READINESS_RECHECK_SECONDS, reasons.BASELINE_STARTED, message)


def _waiting_for_baseline(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> Decision:
    """A check compares the canary with a ready baseline: while the baseline is not (a pod restarted, or the
    baseline was just turned on), no check is judged and no step is taken; past progressDeadlineSeconds from
    the last weight change the canary is rolled back, since nobody can judge it."""
    weight = status.canary_weight
    stalled = seconds_since(status.last_traffic_shift or status.canary_started_at or timestamp(now), now)
    if stalled >= spec.progress_deadline_seconds:
        why = (
            f"{_describe_baseline(status)} was not ready at weight {weight}% within progressDeadlineSeconds "
            f"({spec.progress_deadline_seconds}s) of the weight change, so no check could compare the canary "
            "with it"
        )
        return rollback(status, why, now, reasons.BASELINE_NOT_READY)
    remaining = spec.progress_deadline_seconds - stalled
    message = (
        f"Holding weight {weight}%: the next check waits for {_describe_baseline(status)} to become ready; "
        f"rolling back in {int(remaining)}s (progressDeadlineSeconds) unless it does"
    )
    new = status.model_copy(update={"message": message})
    return Hold(new, min(READINESS_RECHECK_SECONDS, remaining), reasons.WAITING, message)


def _to_confirm(spec: CanaryAppSpec, decision: Decision, now: datetime.datetime) -> Decision:
    """With the gateway-api router a new weight is pending until a pass sees every parent Gateway accept the
    HTTPRoute that carries it (`_confirming_route`): the window of its first check starts then, never at the
    step, so it holds only traffic the Gateways split that way. Passes look again every
    ACCEPTANCE_RECHECK_SECONDS meanwhile."""
    if spec.effective_router != Router.GATEWAY_API or not isinstance(decision, Advance):
        return decision
    pending = decision.status.model_copy(update={"route_pending_since": timestamp(now)})
    return dataclasses.replace(decision, status=pending, requeue_after=ACCEPTANCE_RECHECK_SECONDS)


def _confirming_route(
    spec: CanaryAppSpec, status: CanaryAppStatus, route: RouteState, now: datetime.datetime
) -> Decision:
    """A weight counts once every parent Gateway accepted the HTTPRoute that carries it (routes.py): until
    then no check runs and no step is taken, and past progressDeadlineSeconds from the weight change the
    canary is rolled back; on acceptance the check window starts afresh."""
    weight = status.canary_weight
    if route.accepted:
        waited = seconds_since(status.route_pending_since, now)
        message = (
            f"The HTTPRoute carrying weight {weight}% was accepted by every parent after {int(waited)}s; "
            f"the first check at this weight is due in {spec.traffic_shift_update_interval}s"
        )
        new = status.model_copy(
            update={
                "route_pending_since": None,
                "last_traffic_shift": timestamp(now),
                "last_check_time": timestamp(now),
                "message": message,
            }
        )
        return Hold(new, float(spec.traffic_shift_update_interval), reasons.ROUTE_ACCEPTED, message)
    stalled = seconds_since(status.last_traffic_shift or timestamp(now), now)
    refused = "rejected" if route.rejected else "not yet accepted"
    if stalled >= spec.progress_deadline_seconds:
        why = (
            f"the HTTPRoute carrying weight {weight}% was {refused} by its Gateways within "
            f"progressDeadlineSeconds ({spec.progress_deadline_seconds}s): {route.describe()}"
        )
        return rollback(status, why, now, reasons.ROUTE_NOT_ACCEPTED)
    message = (
        f"Holding weight {weight}%: the HTTPRoute is {refused} by its Gateways ({route.describe()}); "
        "the weight counts once they accept it, and the canary is rolled back if they have not "
        f"{spec.progress_deadline_seconds}s (progressDeadlineSeconds) after the weight changed"
    )
    new = status.model_copy(
        update={"route_pending_since": status.route_pending_since or timestamp(now), "message": message}
    )
    recheck = min(ACCEPTANCE_RECHECK_SECONDS, spec.progress_deadline_seconds - stalled)
    if not route.rejected and stalled < READINESS_RECHECK_SECONDS:
        # A controller that answers within seconds is no news; a refusal or a longer wait is (an Event).
        return Hold(new, recheck, reasons.WAITING, message)
    return WaitForRoute(new, recheck, reasons.ROUTE_NOT_ACCEPTED, message)


def _judge(
    spec: CanaryAppSpec,
    status: CanaryAppStatus,
    obs: Observations,
    check: CheckResult,
    now: datetime.datetime,
) -> Decision:
    """A due check, recorded as evidence, decides: advance, promote, hold, fail a check or roll back."""
    if not ready_with(obs.canary, status.canary_revision):
        check = CheckResult(
            CheckOutcome.ERRORS_FOUND, f"canary Deployment {status.canary_image or ''} is not ready"
        )
    checked = _with_check_recorded(status, check, now)
    ignored_failure = check.outcome == CheckOutcome.QUERY_FAILED and not spec.fail_when_prometheus_fails
    if check.outcome in _WITHOUT_EVIDENCE or ignored_failure:
        return _hold_without_evidence(spec, checked, check, now)
    if check.outcome == CheckOutcome.CLEAN:
        if status.canary_weight >= spec.max_weight:
            return promote(checked, now)
        next_weight = min(status.canary_weight + spec.step_weight, spec.max_weight)
        return advance(spec, checked, next_weight, now, "Check clean")
    # ErrorsFound, MetricsFailed, Marginal (no step forward on a doubtful score), a counted QueryFailed.
    return _fail_check(spec, checked, check, now)


def _with_check_recorded(
    status: CanaryAppStatus, check: CheckResult, now: datetime.datetime
) -> CanaryAppStatus:
    record = CheckRecord(
        time=timestamp(now),
        weight=status.canary_weight,
        outcome=check.outcome,
        message=check.message,
        query=check.query,
        series=check.series,
        canary_requests=check.canary_requests,
        score=check.score,
        verdict=check.verdict,
        metrics=check.metrics,
    )
    return status.model_copy(
        update={
            "last_check_time": timestamp(now),
            "last_check_outcome": check.outcome,
            "last_check_message": check.message,
            "checks": (*status.checks, record)[-MAX_CHECK_RECORDS:],
        }
    )


def _fail_check(
    spec: CanaryAppSpec, status: CanaryAppStatus, check: CheckResult, now: datetime.datetime
) -> Decision:
    """A failed check is counted; the failureThreshold-th rolls the canary back."""
    failed_checks = status.failed_checks + 1
    why = f"check {failed_checks}/{spec.failure_threshold} failed: {check.message}"
    counted = status.model_copy(update={"failed_checks": failed_checks})
    if failed_checks >= spec.failure_threshold:
        return rollback(counted, why, now, reasons.CHECKS_FAILED)
    new = counted.model_copy(update={"message": f"Holding weight {status.canary_weight}%: {why}"})
    return FailCheck(new, float(spec.traffic_shift_update_interval), reasons.CHECK_FAILED, new.message)


def _hold_without_evidence(
    spec: CanaryAppSpec, status: CanaryAppStatus, check: CheckResult, now: datetime.datetime
) -> Decision:
    """Neither advance nor fail: the check saw nothing to judge by. Past the progress deadline (counted from
    the last weight change), roll back: a canary nobody can judge is not promoted."""
    stalled = seconds_since(status.last_traffic_shift or status.canary_started_at or timestamp(now), now)
    what, reason, cause, awaited = _WITHOUT_EVIDENCE.get(check.outcome, _NO_ANSWER)
    if stalled >= spec.progress_deadline_seconds:
        why = (
            f"{what} for {int(stalled)}s at weight {status.canary_weight}%, past progressDeadlineSeconds "
            f"({spec.progress_deadline_seconds}s): {check.message}"
        )
        return rollback(status, why, now, cause)
    remaining = spec.progress_deadline_seconds - stalled
    message = (
        f"Holding weight {status.canary_weight}%: {check.message}; rolling back in {int(remaining)}s "
        f"(progressDeadlineSeconds) unless the next checks see {awaited}"
    )
    new = status.model_copy(update={"message": message})
    return HoldWeight(new, float(spec.traffic_shift_update_interval), reason, message)


# A check without evidence either way: what it lacked, the hold's Event reason, the rollback's cause past the
# progress deadline, and what the next checks need to see.
_WITHOUT_EVIDENCE = {
    CheckOutcome.NO_CANARY_TRAFFIC: (
        "no canary traffic",
        reasons.NO_CANARY_TRAFFIC,
        reasons.NO_CANARY_TRAFFIC,
        "enough canary traffic",
    ),
    CheckOutcome.NO_DATA: (
        "no data for any metric",
        reasons.NO_METRIC_DATA,
        reasons.NO_METRIC_DATA,
        "enough samples for the metrics",
    ),
}
# A failed query that failWhenPrometheusFails: false ignores.
_NO_ANSWER = (
    "no answer from Prometheus",
    reasons.QUERY_FAILED_IGNORED,
    reasons.ANALYSIS_UNAVAILABLE,
    "an answer",
)


def _promoting(
    spec: CanaryAppSpec, status: CanaryAppStatus, obs: Observations, now: datetime.datetime
) -> Decision:
    if not ready_with(obs.primary, status.primary_revision):
        waited = seconds_since(status.promotion_started_at or timestamp(now), now)
        if waited >= spec.progress_deadline_seconds:
            why = (
                f"the primary did not roll out {status.primary_image} within progressDeadlineSeconds "
                f"({spec.progress_deadline_seconds}s)"
            )
            return rollback_promotion(status, why, now, reasons.PRIMARY_NOT_READY)
        remaining = spec.progress_deadline_seconds - waited
        message = f"Waiting for the primary to run {status.primary_image} (rolled back in {int(remaining)}s)"
        new = status.model_copy(update={"message": message})
        return Hold(new, min(READINESS_RECHECK_SECONDS, remaining), reasons.WAITING, new.message)
    promoted = finish_rollout(status, RolloutResult.PROMOTED, "all checks clean", now)
    new = without_canary(promoted).model_copy(
        update={
            "phase": Phase.SUCCEEDED,
            "successful_revision": status.primary_revision,
            "message": f"Promoted {status.primary_image}",
        }
    )
    return CompletePromotion(new, None, reasons.PROMOTED, new.message)
