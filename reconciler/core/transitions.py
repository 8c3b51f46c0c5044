"""The steps a rollout takes from more than one place (a check, a request, a deadline): advance the weight,
promote, roll back, and the bookkeeping of the rollout records and kept pod templates that goes with them."""

from __future__ import annotations

import datetime

from reconciler.core import reasons
from reconciler.core.clock import timestamp
from reconciler.core.decisions import READINESS_RECHECK_SECONDS, Advance, Decision, Promote, Rollback
from reconciler.core.model import (
    MAX_ROLLOUT_RECORDS,
    CanaryAppSpec,
    CanaryAppStatus,
    Phase,
    RolloutRecord,
    RolloutResult,
)


def describe_release(image: str | None, revision: str | None) -> str:
    """A release as messages name it: its image and pod template revision."""
    return f"{image} (revision {revision})"


def advance(
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


def promote(status: CanaryAppStatus, now: datetime.datetime, why: str = "") -> Decision:
    image = status.canary_image or ""
    message = (why or f"Promoting {image}") + ": the primary rolls it out"
    new = status.model_copy(
        update={
            "phase": Phase.PROMOTING,
            "primary_revision": status.canary_revision,
            "paused": False,
            "promotion_started_at": timestamp(now),
            "message": message,
        }
    )
    return Promote(new, READINESS_RECHECK_SECONDS, reasons.PROMOTION_STARTED, message)


def rollback(status: CanaryAppStatus, why: str, now: datetime.datetime, cause: str) -> Decision:
    """Back to 100 % primary; `cause` (a reason constant) heads the rollout record's reason."""
    image = status.canary_image or ""
    revision = status.canary_revision or ""
    # failedImages lists images for the tools that read it; a release that changed only the template (same
    # image as the last good one) is in failedRevisions alone, so the good image is never listed as failed.
    image_failed = image != status.successful_image and image not in status.failed_images
    failed = (*status.failed_images, image) if image_failed else status.failed_images
    failed_revisions = (
        status.failed_revisions
        if revision in status.failed_revisions
        else (*status.failed_revisions, revision)
    )
    rolled_back = finish_rollout(status, RolloutResult.ROLLED_BACK, f"{cause}: {why}", now)
    new = without_canary(rolled_back).model_copy(
        update={
            "phase": Phase.FAILED,
            "failed_images": failed,
            "failed_revisions": failed_revisions,
            "last_failed_tag": image,
            "message": f"Rolled back {image}: {why}",
        }
    )
    return Rollback(new, None, reasons.ROLLED_BACK, new.message)


def rollback_promotion(status: CanaryAppStatus, why: str, now: datetime.datetime, cause: str) -> Decision:
    """Rolls back a promotion under way: the primary returns to the last good release as well."""
    previous = status.model_copy(
        update={"primary_revision": status.successful_revision or status.primary_revision}
    )
    return rollback(previous, why, now, cause)


def with_rollout(rollouts: tuple[RolloutRecord, ...], record: RolloutRecord) -> tuple[RolloutRecord, ...]:
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


def finish_rollout(
    status: CanaryAppStatus, result: RolloutResult, reason: str, now: datetime.datetime
) -> CanaryAppStatus:
    return _update_rollout(status, result=result, reason=reason, finished_at=timestamp(now))


def without_canary(status: CanaryAppStatus) -> CanaryAppStatus:
    """No canary any more: only the primary's and the last good release's templates are kept."""
    kept = {status.primary_revision, status.successful_revision}
    return status.model_copy(
        update={
            "canary_revision": None,
            "canary_weight": 0,
            "canary_started_at": None,
            "promotion_started_at": None,
            "primary_min_replicas": None,
            "route_pending_since": None,
            "pod_templates": status.with_pod_templates(kept),
        }
    )
