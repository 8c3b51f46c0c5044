"""What a pass tells people and other systems: logs, Kubernetes Events, the rollout notification webhook and
the reconciler's metrics. Nothing here changes the CanaryApp."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from reconciler.core import reasons
from reconciler.core.clock import timestamp
from reconciler.core.decisions import Decision, Hold
from reconciler.core.model import CanaryApp, CanaryAppStatus
from reconciler.core.notifications import rollout_event
from reconciler.core.ports import EventSink, Notifier, StepReport
from reconciler.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)


class Reporter:
    def __init__(
        self,
        events: EventSink,
        notifier: Notifier | None,
        telemetry: Telemetry,
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self.events = events
        self.notifier = notifier
        self.telemetry = telemetry
        self.clock = clock

    def decided(self, raw: dict[str, Any], decision: Decision) -> None:
        metadata = raw["metadata"]
        status = decision.status
        self.telemetry.decided(metadata["namespace"], metadata["name"], decision)
        previous = (raw.get("status") or {}).get("message")
        if isinstance(decision, Hold) and (decision.reason == reasons.WAITING or previous == status.message):
            return  # waiting is no news; a hold with a reason is reported once per message
        log.info(
            "Decided CanaryApp step",
            extra={
                "canaryapp": f"{metadata['namespace']}/{metadata['name']}",
                "decision": decision.kind,
                "phase": status.phase,
                "weight": status.canary_weight,
                "image": status.canary_image or status.primary_image,
                "revision": status.canary_revision or status.primary_revision,
                "reason": decision.reason,
                "detail": decision.message,
            },
        )
        self.events.emit(raw, decision.reason, decision.message, warning=decision.is_warning)
        if self.notifier is not None:
            event = rollout_event(metadata["namespace"], metadata["name"], decision, timestamp(self.clock()))
            if event is not None:
                self.notifier.notify(event)

    def refused(self, raw: dict[str, Any], problem: str) -> None:
        log.warning(
            "Rejected CanaryApp spec", extra={"canaryapp": raw["metadata"]["name"], "detail": problem}
        )

    def invalid_recorded(self, raw: dict[str, Any], problem: str) -> None:
        self.events.emit(raw, reasons.INVALID_SPEC, problem, warning=True)

    def applied(self, app: CanaryApp, status: CanaryAppStatus, step: StepReport) -> None:
        self.telemetry.step_finished("up", step.seconds)
        log.info(
            "Applied CanaryApp stack",
            extra={
                "canaryapp": app.key,
                "phase": status.phase,
                "weight": status.canary_weight,
                "changes": step.changes,
                "seconds": round(step.seconds, 2),
            },
        )

    def stack_failed(self, raw: dict[str, Any], reason: str, failure: str) -> None:
        log.warning(
            "Failed to apply CanaryApp stack",
            extra={"canaryapp": raw["metadata"]["name"], "reason": reason, "detail": failure},
        )
        self.events.emit(raw, reason, failure, warning=True)

    def left_alone(self, raw: dict[str, Any], kept: list[tuple[str, str]]) -> None:
        namespace = raw["metadata"]["namespace"]
        names = ", ".join(f"{kind} {namespace}/{object_name}" for kind, object_name in kept)
        self.events.emit(
            raw, reasons.NAME_CONFLICT, f"Left {names} alone: not owned by this CanaryApp", warning=True
        )

    def destroyed(self, raw: dict[str, Any], step: StepReport) -> None:
        log.info(
            "Destroyed CanaryApp stack",
            extra={
                "canaryapp": raw["metadata"]["name"],
                "changes": step.changes,
                "seconds": round(step.seconds, 2),
            },
        )
        self.events.emit(raw, reasons.STACK_DESTROYED, "Deleted the Deployments, Services and VirtualService")
