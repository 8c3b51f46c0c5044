"""The status's conditions: Ready, Progressing and Paused follow from each decision; StackSynced and
Promoted from whether the decided step reached the cluster."""

from __future__ import annotations

import datetime

from reconciler.core import reasons
from reconciler.core.clock import timestamp
from reconciler.core.model import STEADY_PHASES, CanaryAppStatus, Condition, ConditionStatus, Phase


def with_phase_conditions(
    status: CanaryAppStatus, generation: int, now: datetime.datetime
) -> CanaryAppStatus:
    """Sets Ready, Progressing and Paused as the decided status implies them."""
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
    return status.model_copy(update={"conditions": _with_conditions(status, wanted, generation, now)})


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
            f"{status.successful_image} is promoted"
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
