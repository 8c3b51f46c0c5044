"""The status's conditions: Progressing and Paused follow from each decision; StackSynced and Promoted from
whether the decided step reached the cluster; Ready, Reconciling and Stalled (kstatus) from both.

Ready, Reconciling and Stalled are what GitOps tools judge a CanaryApp by (sigs.k8s.io/cli-utils' kstatus,
read by Flux's health checks and Helm's --wait; `kubectl wait --for=condition=Ready`). Exactly one of them is
True and all three carry one reason, the standing of the spec's release:

    Ready        the spec's release is rolled out and the cluster matches the status   kstatus: Current
    Reconciling  on its way: a rollout (paused or queued too), a step to apply or retry   kstatus: InProgress
    Stalled      it will not get there without the user (rolled back, refused, conflict)  kstatus: Failed

Each carries the generation it was decided for, the same status.observedGeneration they are written with, so
kstatus and `kubectl wait` never take a verdict about an earlier spec for the current one.
"""

from __future__ import annotations

import datetime

from reconciler.core import reasons
from reconciler.core.clock import timestamp
from reconciler.core.model import STEADY_PHASES, CanaryAppStatus, Condition, ConditionStatus, Phase

# A condition as wanted: (type, true or false, reason, message).
WantedCondition = tuple[str, bool, str, str]

# StackSynced reasons of a step that ran and failed: a name conflict needs the user, the rest is retried.
STALLING_STEP_FAILURES = frozenset({reasons.NAME_CONFLICT})


def with_phase_conditions(
    status: CanaryAppStatus, generation: int, now: datetime.datetime
) -> CanaryAppStatus:
    """Sets Progressing and Paused as the decided status implies them."""
    phase = status.phase or Phase.INITIALIZING
    progressing_reason = {
        Phase.INITIALIZING: reasons.INITIALIZING,
        Phase.PROGRESSING: reasons.CANARY_PROGRESSING,
        Phase.PROMOTING: reasons.PROMOTING,
        Phase.SUCCEEDED: reasons.PROMOTED,
        Phase.FAILED: reasons.ROLLED_BACK,
        Phase.READY: reasons.IDLE,
    }[phase]
    wanted = [
        (reasons.CONDITION_PROGRESSING, phase not in STEADY_PHASES, progressing_reason, status.message),
        (
            reasons.CONDITION_PAUSED,
            status.paused,
            reasons.PAUSED_BY_REQUEST if status.paused else reasons.NOT_PAUSED,
            status.message if status.paused else "",
        ),
    ]
    return status.model_copy(update={"conditions": _with_conditions(status, wanted, generation, now)})


def with_stack_sync(
    status: CanaryAppStatus,
    revision: str,
    synced: bool,
    now: datetime.datetime,
    failure: str = "",
    failure_reason: str = reasons.STACK_UPDATE_FAILED,
) -> CanaryAppStatus:
    """Sets StackSynced (does the cluster match the status?), Promoted, which needs the promotion applied, and
    Ready, Reconciling and Stalled for the spec's release `revision`.

    The reconciler writes a decision before applying it, so for a moment the phase can be ahead of the world;
    these conditions never are: `kubectl wait --for=condition=Promoted` (or `=Ready`) returns once traffic is
    switched. A failed step is reported in StackSynced (`failure`), never appended to the message, so retries
    of the same step leave the status as it is.
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
            f"{status.successful_image} is promoted"
            if promoted
            else "No promotion is complete for spec.image",
        ),
    ]
    synced_status = status.model_copy(
        update={"conditions": _with_conditions(status, wanted, status.observed_generation or 0, now)}
    )
    condition, reason, message = standing(synced_status, revision)
    return with_standing(synced_status, condition, reason, message, status.observed_generation or 0, now)


def standing(status: CanaryAppStatus, revision: str) -> tuple[str, str, str]:
    """Which of Ready, Reconciling and Stalled is True for the spec's release `revision`, the reason and the
    message. Needs StackSynced set first: a release is only Ready once the cluster matches the status."""
    synced = status.condition(reasons.CONDITION_STACK_SYNCED)
    if synced is not None and synced.reason in STALLING_STEP_FAILURES:
        return reasons.CONDITION_STALLED, synced.reason, synced.message
    steady = (status.phase or Phase.INITIALIZING) in STEADY_PHASES
    if steady and revision != status.primary_revision and revision in status.failed_revisions:
        return reasons.CONDITION_STALLED, reasons.ROLLED_BACK, status.message
    if synced is not None and synced.reason == reasons.STACK_UPDATE_FAILED:
        return reasons.CONDITION_RECONCILING, reasons.RETRYING, synced.message
    pending = _pending(status, revision, synced is not None and synced.status == ConditionStatus.TRUE)
    if pending is not None:
        return reasons.CONDITION_RECONCILING, pending, status.message
    return reasons.CONDITION_READY, reasons.ROLLED_OUT, f"Primary serves {status.primary_image}"


def _pending(status: CanaryAppStatus, revision: str, synced: bool) -> str | None:
    """Why the spec's release is not rolled out yet, though nothing stalls it; None when it is."""
    phase = status.phase or Phase.INITIALIZING
    moving = {
        Phase.INITIALIZING: reasons.INITIALIZING,
        Phase.PROGRESSING: reasons.PAUSED if status.paused else reasons.CANARY_PROGRESSING,
        Phase.PROMOTING: reasons.PROMOTING,
    }
    if phase in moving:
        return moving[phase]
    if status.queued_at is not None:
        return reasons.WAITING_FOR_SLOT
    if revision != status.primary_revision:
        return reasons.ROLLOUT_PENDING
    return None if synced else reasons.APPLYING


def with_standing(
    status: CanaryAppStatus,
    true_condition: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime.datetime,
) -> CanaryAppStatus:
    """Ready, Reconciling and Stalled with `true_condition` True, the others False, all with one reason."""
    wanted = [
        (name, name == true_condition, reason, message)
        for name in (reasons.CONDITION_READY, reasons.CONDITION_RECONCILING, reasons.CONDITION_STALLED)
    ]
    return status.model_copy(update={"conditions": _with_conditions(status, wanted, generation, now)})


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
