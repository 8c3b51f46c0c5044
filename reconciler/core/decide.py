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
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.core import reasons, workload
from reconciler.core.analysis import CheckResult
from reconciler.core.model import (
    MAX_CHECK_RECORDS,
    MAX_ROLLOUT_RECORDS,
    RETRY_ANNOTATION,
    STEADY_PHASES,
    Action,
    CanaryAppSpec,
    CanaryAppStatus,
    CheckOutcome,
    CheckRecord,
    Condition,
    ConditionStatus,
    Phase,
    RolloutRecord,
    RolloutResult,
)
from reconciler.core.readiness import DeploymentState, ready_with

# The longest a CanaryApp waiting for a Deployment goes without a pass: the loop's watch of Deployments wakes
# it as soon as one of them changes, so this is only a safety net (a missed event, a watch that is down).
READINESS_RECHECK_SECONDS = 10.0
# How often a CanaryApp waiting for a rollout slot looks again.
SLOT_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class RolloutSlots:
    """--max-concurrent-rollouts as seen at this pass: rollouts in progress (others') and CanaryApps that
    have waited for a slot longer than this one."""

    limit: int
    active: int
    waiting_before: int

    @property
    def free(self) -> bool:
        return self.active < self.limit and self.waiting_before == 0


@dataclass(frozen=True)
class Observations:
    generation: int = 0
    primary: DeploymentState | None = None
    canary: DeploymentState | None = None
    check: CheckResult | None = None
    requests: Mapping[Action, str] = dataclasses.field(default_factory=dict)  # action -> its token
    slots: RolloutSlots | None = None  # None: no limit on concurrent rollouts


@dataclass(frozen=True)
class Decision:
    status: CanaryAppStatus
    requeue_after: float | None
    reason: str
    message: str

    @property
    def is_warning(self) -> bool:
        return False

    @property
    def kind(self) -> str:
        """The decision's name as logs and the backtest show it."""
        return type(self).__name__


@dataclass(frozen=True)
class Hold(Decision):
    """Nothing to change in the world; look again after `requeue_after` (or on the next event)."""


@dataclass(frozen=True)
class Initialize(Decision):
    pass


@dataclass(frozen=True)
class BecomeReady(Decision):
    pass


@dataclass(frozen=True)
class StartCanary(Decision):
    pass


@dataclass(frozen=True)
class Advance(Decision):
    pass


@dataclass(frozen=True)
class FailCheck(Decision):
    """A failed check below the failure threshold: the weight stays where it is."""

    @property
    def is_warning(self) -> bool:
        return True


@dataclass(frozen=True)
class HoldWeight(Decision):
    """A check without evidence either way (no canary traffic, or an ignored failed query): the weight stays,
    no check counts as failed, and the progress deadline bounds how long this may last."""

    @property
    def is_warning(self) -> bool:
        return True


@dataclass(frozen=True)
class Promote(Decision):
    pass


@dataclass(frozen=True)
class CompletePromotion(Decision):
    pass


@dataclass(frozen=True)
class Rollback(Decision):
    @property
    def is_warning(self) -> bool:
        return True


@dataclass(frozen=True)
class AbandonCanary(Decision):
    pass


@dataclass(frozen=True)
class Retry(Decision):
    """The user asked (by annotation) to try a failed image again."""


@dataclass(frozen=True)
class Pause(Decision):
    """The user asked to hold the weight: no checks, no steps, until resumed."""


@dataclass(frozen=True)
class Resume(Decision):
    """The user asked a paused rollout to go on: the next check is one interval from now."""


@dataclass(frozen=True)
class IgnoreRequest(Decision):
    """A request that does not apply now (promote with no rollout in progress): recorded, not acted on."""

    @property
    def is_warning(self) -> bool:
        return True


@dataclass(frozen=True)
class WaitForSlot(Hold):
    """A new image waits: --max-concurrent-rollouts rollouts are in progress, or others waited longer."""


def timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _seconds_since(value: str | None, now: datetime.datetime) -> float:
    if value is None:
        return float("inf")
    return (now - parse_timestamp(value)).total_seconds()


def seconds_until_check(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> float:
    """Seconds until the next metric check is due (<= 0: due now). Uses remaining, not elapsed, time."""
    return spec.traffic_shift_update_interval - _seconds_since(status.last_check_time, now)


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


def about_to_start(spec: CanaryAppSpec, status: CanaryAppStatus) -> bool:
    """Whether this pass may start a rollout (and so needs to know about free rollout slots)."""
    status = with_revisions(spec, status)
    return (
        status.phase in STEADY_PHASES
        and spec.revision != status.primary_revision
        and spec.revision not in status.failed_revisions
    )


def with_revisions(spec: CanaryAppSpec, status: CanaryAppStatus) -> CanaryAppStatus:
    """A status written before releases were pod template revisions, with its images turned into the
    revisions of the templates they ran then (the shorthand template: spec.template did not exist yet).
    A status that has revisions is returned as it is."""
    if status.primary_revision is not None or status.primary_image is None:
        return status

    def legacy(image: str) -> tuple[str, workload.Template]:
        template = workload.effective_template(None, image, spec.image_listen_port)
        return workload.revision(template), template  # = workload.shorthand_revision(image, port)

    templates: dict[str, workload.Template] = {}
    revisions: dict[str, str | None] = {}
    for field, image in (
        ("primary_revision", status.primary_image),
        ("canary_revision", status.canary_image),
        ("successful_revision", status.successful_release),
    ):
        if image is None:
            revisions[field] = None
            continue
        revision, template = legacy(image)
        revisions[field] = revision
        templates[revision] = template
    failed = tuple(legacy(image)[0] for image in status.failed_images)
    upgraded = status.model_copy(update={**revisions, "failed_revisions": failed})
    return upgraded.model_copy(update={"pod_templates": upgraded.with_pod_templates(set(), **templates)})


def wants_check(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> bool:
    """Whether this pass needs a metric check: only a canary carrying traffic, once per interval."""
    return (
        status.phase == Phase.PROGRESSING
        and not status.paused
        and status.canary_weight > 0
        and seconds_until_check(spec, status, now) <= 0
    )


def decide(
    spec: CanaryAppSpec, status: CanaryAppStatus, observations: Observations, now: datetime.datetime
) -> Decision:
    decision = _decide(spec, with_revisions(spec, status), observations, now)
    final = _finish_status(decision.status, decision, observations.generation, now)
    return dataclasses.replace(decision, status=final)


def _decide(
    spec: CanaryAppSpec, status: CanaryAppStatus, obs: Observations, now: datetime.datetime
) -> Decision:
    for action in REQUEST_ORDER:
        token = obs.requests.get(action)
        if token and token != handled_token(status, action):
            handled = status.model_copy(
                update={"handled_requests": {**status.handled_requests, action.value: token}}
            )
            decision = _request(action, spec, handled, now)
            if decision is not None:
                return decision
            status = handled  # a retry of an image that is not failed: nothing to do, go on

    if status.phase is None or status.primary_image is None:
        return _initialize(spec, status)
    if status.phase == Phase.INITIALIZING:
        return _initializing(spec, status, obs)
    if status.phase == Phase.PROGRESSING:
        return _progressing(spec, status, obs, now)
    if status.phase == Phase.PROMOTING:
        return _promoting(spec, status, obs, now)
    replicas = obs.primary.replicas if obs.primary is not None and spec.autoscaler else None
    return _steady(spec, status, obs.slots, replicas, now)


# One request is handled per pass, in this order (an abort wins over a promote sent at the same time).
REQUEST_ORDER = (Action.ABORT, Action.PROMOTE, Action.PAUSE, Action.RESUME, Action.RETRY)


def handled_token(status: CanaryAppStatus, action: Action) -> str | None:
    """The token of the request of this kind handled last (a retry may predate handledRequests)."""
    legacy = status.last_retry_token if action == Action.RETRY else None
    return status.handled_requests.get(action.value, legacy)


def _request(
    action: Action, spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime
) -> Decision | None:
    """What a new request does now; None when it needs nothing (a retry of an image that did not fail)."""
    if action == Action.RETRY:
        if spec.revision not in status.failed_revisions:
            return None
        retried = status.model_copy(
            update={
                "failed_revisions": tuple(r for r in status.failed_revisions if r != spec.revision),
                "failed_images": tuple(image for image in status.failed_images if image != spec.main_image),
            }
        )
        message = (
            f"Removed {_release(spec.main_image, spec.revision)} from the failed releases on request; "
            "it will be rolled out again"
        )
        return Retry(retried, 0.0, reasons.RETRY_REQUESTED, message)
    decision = _REQUESTS[action](spec, status, now)
    if decision is not None:
        return decision
    message = f"Ignored the {action.value} request: it does not apply in phase {status.phase}"
    if status.paused and action == Action.PAUSE:
        message = "Ignored the pause request: the rollout is paused already"
    return IgnoreRequest(status, 0.0, reasons.REQUEST_IGNORED, message)


def _abort(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> Decision | None:
    if status.phase == Phase.PROGRESSING:
        return _rollback(status, "aborted on request", now, reasons.ABORTED)
    if status.phase == Phase.PROMOTING:
        return _rollback_promotion(status, "aborted on request during the promotion", now, reasons.ABORTED)
    return None


def _promote_now(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> Decision | None:
    if status.phase != Phase.PROGRESSING:
        return None
    return _promote(status, now, f"Promoting {status.canary_image} on request, skipping the remaining steps")


def _pause(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> Decision | None:
    if status.phase != Phase.PROGRESSING or status.paused:
        return None
    message = (
        f"Paused at weight {status.canary_weight}% on request: no checks, no steps until resumed "
        f"(kubectl canaryapp resume, or annotate {Action.RESUME.annotation}=<new value>)"
    )
    return Pause(
        status.model_copy(update={"paused": True, "message": message}), None, reasons.PAUSED, message
    )


def _resume(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> Decision | None:
    if not status.paused:
        return None
    message = f"Resumed at weight {status.canary_weight}% on request; next check in one interval"
    resumed = status.model_copy(
        update={
            "paused": False,
            # The next check looks at traffic from now on, and the progress deadline starts again.
            "last_check_time": timestamp(now),
            "last_traffic_shift": timestamp(now),
            "message": message,
        }
    )
    return Resume(resumed, float(spec.traffic_shift_update_interval), reasons.RESUMED, message)


_REQUESTS = {
    Action.ABORT: _abort,
    Action.PROMOTE: _promote_now,
    Action.PAUSE: _pause,
    Action.RESUME: _resume,
}


def _initialize(spec: CanaryAppSpec, status: CanaryAppStatus) -> Decision:
    # The first version has nothing to be compared with, so it goes straight to the primary.
    new = status.model_copy(
        update={
            "phase": Phase.INITIALIZING,
            "primary_image": spec.main_image,
            "primary_revision": spec.revision,
            "pod_templates": status.with_pod_templates(set(), **{spec.revision: spec.pod_template}),
            "canary_image": None,
            "canary_revision": None,
            "canary_weight": 0,
            "message": f"Rolling out {_release(spec.main_image, spec.revision)} as the primary",
        }
    )
    return Initialize(new, READINESS_RECHECK_SECONDS, reasons.INITIALIZED, new.message)


def _release(image: str | None, revision: str | None) -> str:
    """A release as messages name it: its image and pod template revision."""
    return f"{image} (revision {revision})"


def _initializing(spec: CanaryAppSpec, status: CanaryAppStatus, obs: Observations) -> Decision:
    if spec.revision != status.primary_revision:
        return _initialize(spec, status)
    if ready_with(obs.primary, status.primary_revision):
        new = status.model_copy(
            update={
                "phase": Phase.READY,
                "successful_release": status.primary_image,
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
    release = _release(spec.main_image, spec.revision)
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
    changes = tuple(
        workload.describe_changes(status.pod_template(status.primary_revision), spec.pod_template)
    )
    changed = f" ({', '.join(changes)})" if changes else ""
    record = RolloutRecord(
        image=spec.main_image, revision=spec.revision, changes=changes, started_at=timestamp(now)
    )
    new = status.model_copy(
        update={
            "phase": Phase.PROGRESSING,
            "queued_at": None,
            "paused": False,
            "canary_image": spec.main_image,
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
            "rollouts": _bounded(status.rollouts, record),
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
        release = _release(spec.main_image, spec.revision)
        why = f"the spec changed to {release} ({', '.join(changes) or 'template changed'})"
        new = _without_canary(_finish_rollout(status, RolloutResult.ABANDONED, why, now)).model_copy(
            update={"phase": Phase.READY, "message": f"Abandoned canary {canary_image}: {why}"}
        )
        return AbandonCanary(new, 0.0, reasons.CANARY_ABANDONED, new.message)

    if status.paused:
        return Hold(status, None, reasons.WAITING, status.message)
    if status.canary_weight == 0:
        return _waiting_for_canary(spec, status, obs, now)
    remaining = seconds_until_check(spec, status, now)
    if remaining > 0 or obs.check is None:
        return Hold(status, max(remaining, 0.0), reasons.WAITING, status.message)
    return _judge(spec, status, obs, obs.check, now)


def _waiting_for_canary(
    spec: CanaryAppSpec, status: CanaryAppStatus, obs: Observations, now: datetime.datetime
) -> Decision:
    """Weight 0: the canary gets its first step once ready, and is rolled back if it is not in time."""
    canary_image = status.canary_image or ""
    if ready_with(obs.canary, status.canary_revision):
        return _advance(spec, status, spec.step_weight, now, "Canary is ready")
    waited = _seconds_since(status.canary_started_at, now)
    if waited >= spec.deployment_ready_wait_time:
        return _rollback(
            status,
            f"canary {canary_image} was not ready within deploymentReadyWaitTime "
            f"({spec.deployment_ready_wait_time}s)",
            now,
            reasons.CANARY_NOT_READY,
        )
    remaining = spec.deployment_ready_wait_time - waited
    new = status.model_copy(update={"message": f"Waiting for canary {canary_image} to become ready"})
    return Hold(new, min(READINESS_RECHECK_SECONDS, remaining), reasons.WAITING, new.message)


def _judge(
    spec: CanaryAppSpec,
    status: CanaryAppStatus,
    obs: Observations,
    check: CheckResult,
    now: datetime.datetime,
) -> Decision:
    """A due check, recorded as evidence, decides: advance, promote, hold, fail a check or roll back."""
    canary_image = status.canary_image or ""
    if not ready_with(obs.canary, status.canary_revision):
        check = CheckResult(CheckOutcome.ERRORS_FOUND, f"canary Deployment {canary_image} is not ready")
    record = CheckRecord(
        time=timestamp(now),
        weight=status.canary_weight,
        outcome=check.outcome,
        message=check.message,
        query=check.query,
        series=check.series,
        canary_requests=check.canary_requests,
    )
    checked = status.model_copy(
        update={
            "last_check_time": timestamp(now),
            "last_check_outcome": check.outcome,
            "last_check_message": check.message,
            "checks": (*status.checks, record)[-MAX_CHECK_RECORDS:],
        }
    )
    ignored_failure = check.outcome == CheckOutcome.QUERY_FAILED and not spec.fail_when_prometheus_fails
    if check.outcome == CheckOutcome.NO_CANARY_TRAFFIC or ignored_failure:
        return _hold_without_evidence(spec, checked, check, now)
    if check.outcome == CheckOutcome.CLEAN:
        if status.canary_weight >= spec.max_weight:
            return _promote(checked, now)
        next_weight = min(status.canary_weight + spec.step_weight, spec.max_weight)
        return _advance(spec, checked, next_weight, now, "Check clean")

    failed_checks = status.failed_checks + 1
    why = f"check {failed_checks}/{spec.failure_threshold} failed: {check.message}"
    checked = checked.model_copy(update={"failed_checks": failed_checks})
    if failed_checks >= spec.failure_threshold:
        return _rollback(checked, why, now, reasons.CHECKS_FAILED)
    new = checked.model_copy(update={"message": f"Holding weight {status.canary_weight}%: {why}"})
    return FailCheck(new, float(spec.traffic_shift_update_interval), reasons.CHECK_FAILED, new.message)


def _hold_without_evidence(
    spec: CanaryAppSpec, status: CanaryAppStatus, check: CheckResult, now: datetime.datetime
) -> Decision:
    """Neither advance nor fail: the check saw nothing to judge by. Past the progress deadline (counted from
    the last weight change), roll back: a canary nobody can judge is not promoted."""
    stalled = _seconds_since(status.last_traffic_shift or status.canary_started_at or timestamp(now), now)
    no_traffic = check.outcome == CheckOutcome.NO_CANARY_TRAFFIC
    if stalled >= spec.progress_deadline_seconds:
        what = "no canary traffic" if no_traffic else "no answer from Prometheus"
        why = (
            f"{what} for {int(stalled)}s at weight {status.canary_weight}%, past progressDeadlineSeconds "
            f"({spec.progress_deadline_seconds}s): {check.message}"
        )
        return _rollback(
            status, why, now, reasons.NO_CANARY_TRAFFIC if no_traffic else reasons.ANALYSIS_UNAVAILABLE
        )
    remaining = spec.progress_deadline_seconds - stalled
    message = (
        f"Holding weight {status.canary_weight}%: {check.message}; rolling back in {int(remaining)}s "
        "(progressDeadlineSeconds) unless the next checks see enough canary traffic"
    )
    new = status.model_copy(update={"message": message})
    reason = reasons.NO_CANARY_TRAFFIC if no_traffic else reasons.QUERY_FAILED_IGNORED
    return HoldWeight(new, float(spec.traffic_shift_update_interval), reason, message)


def _advance(
    spec: CanaryAppSpec, status: CanaryAppStatus, weight: int, now: datetime.datetime, why: str
) -> Decision:
    new = _update_rollout(status, weights=(*_current_weights(status), weight)).model_copy(
        update={
            "canary_weight": weight,
            "last_traffic_shift": timestamp(now),
            # The next check looks at traffic sent at this weight, one interval from now.
            "last_check_time": timestamp(now),
            "message": f"{why}; canary {status.canary_image} now receives {weight}%",
        }
    )
    return Advance(new, float(spec.traffic_shift_update_interval), reasons.WEIGHT_ADVANCED, new.message)


def _promote(status: CanaryAppStatus, now: datetime.datetime, why: str = "") -> Decision:
    image = status.canary_image or ""
    message = (why or f"Promoting {image}") + ": the primary rolls it out"
    new = status.model_copy(
        update={
            "phase": Phase.PROMOTING,
            "primary_image": image,
            "primary_revision": status.canary_revision,
            "paused": False,
            "promotion_started_at": timestamp(now),
            "message": message,
        }
    )
    return Promote(new, READINESS_RECHECK_SECONDS, reasons.PROMOTION_STARTED, message)


def _promoting(
    spec: CanaryAppSpec, status: CanaryAppStatus, obs: Observations, now: datetime.datetime
) -> Decision:
    if not ready_with(obs.primary, status.primary_revision):
        waited = _seconds_since(status.promotion_started_at or timestamp(now), now)
        if waited >= spec.progress_deadline_seconds:
            why = (
                f"the primary did not roll out {status.primary_image} within progressDeadlineSeconds "
                f"({spec.progress_deadline_seconds}s)"
            )
            return _rollback_promotion(status, why, now, reasons.PRIMARY_NOT_READY)
        remaining = spec.progress_deadline_seconds - waited
        message = f"Waiting for the primary to run {status.primary_image} (rolled back in {int(remaining)}s)"
        new = status.model_copy(update={"message": message})
        return Hold(new, min(READINESS_RECHECK_SECONDS, remaining), reasons.WAITING, new.message)
    promoted = _finish_rollout(status, RolloutResult.PROMOTED, "all checks clean", now)
    new = _without_canary(promoted).model_copy(
        update={
            "phase": Phase.SUCCEEDED,
            "successful_release": status.primary_image,
            "successful_revision": status.primary_revision,
            "message": f"Promoted {status.primary_image}",
        }
    )
    return CompletePromotion(new, None, reasons.PROMOTED, new.message)


def _rollback(status: CanaryAppStatus, why: str, now: datetime.datetime, cause: str) -> Decision:
    """Back to 100 % primary; `cause` (a reason constant) heads the rollout record's reason."""
    image = status.canary_image or ""
    revision = status.canary_revision or ""
    # failedImages lists images for the tools that read it; a release that changed only the template (same
    # image as the last good one) is in failedRevisions alone, so the good image is never listed as failed.
    image_failed = image != status.successful_release and image not in status.failed_images
    failed = (*status.failed_images, image) if image_failed else status.failed_images
    failed_revisions = (
        status.failed_revisions
        if revision in status.failed_revisions
        else (*status.failed_revisions, revision)
    )
    rolled_back = _finish_rollout(status, RolloutResult.ROLLED_BACK, f"{cause}: {why}", now)
    new = _without_canary(rolled_back).model_copy(
        update={
            "phase": Phase.FAILED,
            "failed_images": failed,
            "failed_revisions": failed_revisions,
            "last_failed_tag": image,
            "message": f"Rolled back {image}: {why}",
        }
    )
    return Rollback(new, None, reasons.ROLLED_BACK, new.message)


def _rollback_promotion(status: CanaryAppStatus, why: str, now: datetime.datetime, cause: str) -> Decision:
    """Rolls back a promotion under way: the primary returns to the last good image as well."""
    previous = status.model_copy(
        update={
            "primary_image": status.successful_release or status.primary_image,
            "primary_revision": status.successful_revision or status.primary_revision,
        }
    )
    return _rollback(previous, why, now, cause)


def _bounded(rollouts: tuple[RolloutRecord, ...], record: RolloutRecord) -> tuple[RolloutRecord, ...]:
    return (*rollouts, record)[-MAX_ROLLOUT_RECORDS:]


def _current_weights(status: CanaryAppStatus) -> tuple[int, ...]:
    current = status.rollouts[-1] if status.rollouts else None
    return current.weights if current and current.result == RolloutResult.PROGRESSING else ()


def _update_rollout(status: CanaryAppStatus, **fields: object) -> CanaryAppStatus:
    """The status with the running rollout's record updated (a status from before records had none)."""
    if not status.rollouts or status.rollouts[-1].result != RolloutResult.PROGRESSING:
        return status
    current = status.rollouts[-1].model_copy(update=fields)
    return status.model_copy(update={"rollouts": (*status.rollouts[:-1], current)})


def _finish_rollout(
    status: CanaryAppStatus, result: RolloutResult, reason: str, now: datetime.datetime
) -> CanaryAppStatus:
    return _update_rollout(status, result=result, reason=reason, finished_at=timestamp(now))


def _without_canary(status: CanaryAppStatus) -> CanaryAppStatus:
    """No canary any more: only the primary's and the last good release's templates are kept."""
    kept = {status.primary_revision, status.successful_revision}
    return status.model_copy(
        update={
            "canary_image": None,
            "canary_revision": None,
            "canary_weight": 0,
            "canary_started_at": None,
            "promotion_started_at": None,
            "primary_min_replicas": None,
            "pod_templates": status.with_pod_templates(kept),
        }
    )


def _finish_status(
    status: CanaryAppStatus, decision: Decision, generation: int, now: datetime.datetime
) -> CanaryAppStatus:
    """Fills in what follows from the rest: compatibility fields, conditions, observedGeneration."""
    phase = status.phase or Phase.INITIALIZING
    ready = phase != Phase.INITIALIZING
    moving = phase not in STEADY_PHASES
    progressing_reason = {
        Phase.INITIALIZING: reasons.INITIALIZING,
        Phase.PROGRESSING: reasons.CANARY_PROGRESSING,
        Phase.PROMOTING: reasons.PROMOTING,
        Phase.SUCCEEDED: reasons.PROMOTED,
        Phase.FAILED: reasons.ROLLED_BACK,
        Phase.READY: reasons.IDLE,
    }[phase]
    wanted = [
        (
            reasons.CONDITION_READY,
            ready,
            reasons.PRIMARY_AVAILABLE if ready else reasons.INITIALIZING,
            f"Primary serves {status.primary_image}" if ready else status.message,
        ),
        (reasons.CONDITION_PROGRESSING, moving, progressing_reason, status.message),
        (
            reasons.CONDITION_PAUSED,
            status.paused,
            reasons.PAUSED_BY_REQUEST if status.paused else reasons.NOT_PAUSED,
            status.message if status.paused else "",
        ),
    ]
    return status.model_copy(
        update={
            "observed_generation": generation,
            "test_running": status.canary_image is not None,
            "traffic_shift": status.canary_weight,
            "conditions": _with_conditions(status, wanted, generation, now),
        }
    )


def with_stack_sync(
    status: CanaryAppStatus,
    synced: bool,
    now: datetime.datetime,
    failure: str = "",
    failure_reason: str = reasons.STACK_UPDATE_FAILED,
) -> CanaryAppStatus:
    """Sets StackSynced (does the cluster match the status?) and Promoted, which needs the promotion applied.

    The reconciler writes a decision before applying it, so for a moment the phase can be ahead of the world;
    these two conditions never are: `kubectl wait --for=condition=Promoted` returns once traffic is switched.
    A failed step is reported in StackSynced (`failure`), never appended to the message, so retries of the
    same step leave the status as it is.
    """
    promoted = synced and status.phase == Phase.SUCCEEDED
    wanted = [
        (
            reasons.CONDITION_STACK_SYNCED,
            synced,
            reasons.STACK_APPLIED if synced else (failure_reason if failure else reasons.APPLYING),
            "The cluster matches the status"
            if synced
            else (failure or "Applying the decided step with stack.up"),
        ),
        (
            reasons.CONDITION_PROMOTED,
            promoted,
            reasons.PROMOTED if promoted else reasons.NOT_PROMOTED,
            f"{status.successful_release} is promoted"
            if promoted
            else "No promotion is complete for spec.image",
        ),
    ]
    conditions = _with_conditions(status, wanted, status.observed_generation or 0, now)
    return status.model_copy(update={"conditions": conditions})


# A condition as wanted: (type, true or false, reason, message).
WantedCondition = tuple[str, bool, str, str]


def _with_conditions(
    status: CanaryAppStatus, wanted: list[WantedCondition], generation: int, now: datetime.datetime
) -> tuple[Condition, ...]:
    """The status's conditions with `wanted` set (the others kept as they are, in front)."""
    kept = [c for c in status.conditions if c.type not in {name for name, *_ in wanted}]
    updated = [
        _condition(
            status.condition(name),
            condition_type=name,
            value=value,
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )
        for name, value, reason, message in wanted
    ]
    return (*kept, *updated)


def _condition(
    previous: Condition | None,
    *,
    condition_type: str,
    value: bool,
    reason: str,
    message: str,
    generation: int,
    now: datetime.datetime,
) -> Condition:
    condition_status = ConditionStatus.TRUE if value else ConditionStatus.FALSE
    changed = previous is None or previous.status != condition_status
    return Condition(
        type=condition_type,
        status=condition_status,
        reason=reason,
        message=message,
        last_transition_time=timestamp(now) if changed or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )
