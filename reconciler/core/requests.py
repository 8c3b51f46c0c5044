"""One-shot requests a user makes by annotation (abort, promote, pause, resume, retry): each new token is
handled once, recorded in `status.handledRequests`, and turned into a decision or ignored with a reason."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from reconciler.core import reasons
from reconciler.core.clock import timestamp
from reconciler.core.decisions import Decision, IgnoreRequest, Pause, Resume, Retry
from reconciler.core.model import Action, CanaryAppSpec, CanaryAppStatus, Phase
from reconciler.core.transitions import describe_release, promote, rollback, rollback_promotion

# One request is handled per pass, in this order (an abort wins over a promote sent at the same time).
REQUEST_ORDER = (Action.ABORT, Action.PROMOTE, Action.PAUSE, Action.RESUME, Action.RETRY)


def pending_request(
    spec: CanaryAppSpec, status: CanaryAppStatus, requests: Mapping[Action, str], now: datetime.datetime
) -> tuple[Decision | None, CanaryAppStatus]:
    """The decision the first new request makes, if any; and the status with every request handled so far
    recorded (a retry of a release that did not fail needs nothing and lets the pass go on)."""
    for action in REQUEST_ORDER:
        token = requests.get(action)
        if token and token != handled_token(status, action):
            handled = status.model_copy(
                update={"handled_requests": {**status.handled_requests, action.value: token}}
            )
            decision = _request(action, spec, handled, now)
            if decision is not None:
                return decision, handled
            status = handled
    return None, status


def handled_token(status: CanaryAppStatus, action: Action) -> str | None:
    """The token of the request of this kind handled last."""
    return status.handled_requests.get(action.value)


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
        release = describe_release(spec.main_image, spec.revision)
        message = f"Removed {release} from the failed releases on request; it will be rolled out again"
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
        return rollback(status, "aborted on request", now, reasons.ABORTED)
    if status.phase == Phase.PROMOTING:
        return rollback_promotion(status, "aborted on request during the promotion", now, reasons.ABORTED)
    return None


def _promote_now(spec: CanaryAppSpec, status: CanaryAppStatus, now: datetime.datetime) -> Decision | None:
    if status.phase != Phase.PROGRESSING:
        return None
    return promote(status, now, f"Promoting {status.canary_image} on request, skipping the remaining steps")


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
