"""The persist step of a pass: the decision goes into the CanaryApp's status before its stack is applied, the
applied stack's fingerprint after, so a pass that dies anywhere is finished by the next one from what the
cluster stores. Every write goes through the CanaryAppWriter port (fenced by leadership in the adapter)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from reconciler.core import reasons
from reconciler.core.conditions import with_stack_sync, with_standing
from reconciler.core.decisions import Decision
from reconciler.core.desired import DesiredStack, desired_stack
from reconciler.core.model import CanaryApp, CanaryAppStatus, Condition
from reconciler.core.ports import CanaryAppWriter
from reconciler.core.wire import status_body

FAILURE_REASONS = frozenset({reasons.STACK_UPDATE_FAILED, reasons.NAME_CONFLICT})


@dataclass(frozen=True)
class Recorded:
    """A decision as the status records it, and the stack it implies."""

    status: CanaryAppStatus
    desired: DesiredStack
    in_sync: bool  # the stack applied last is the one desired: nothing to apply


def recorded(app: CanaryApp, decision: Decision, now: datetime.datetime) -> Recorded:
    """The status that records `decision` (StackSynced says whether its stack is still to apply)."""
    namespace, name = app.metadata.namespace, app.metadata.name
    desired = desired_stack(name, namespace, app.metadata.uid, app.spec, decision.status)
    in_sync = desired.fingerprint() == decision.status.last_applied_hash
    failed = None if in_sync else failed_sync(app.status)
    status = with_stack_sync(
        decision.status,
        app.spec.revision,
        in_sync,
        now,
        failed.message if failed else "",
        failed.reason if failed else reasons.STACK_UPDATE_FAILED,
    )
    return Recorded(status, desired, in_sync)


def failed_sync(status: CanaryAppStatus) -> Condition | None:
    """The StackSynced condition when it reports a failed step, else None."""
    condition = status.condition(reasons.CONDITION_STACK_SYNCED)
    return condition if condition is not None and condition.reason in FAILURE_REASONS else None


def failed_step(
    status: CanaryAppStatus, revision: str, now: datetime.datetime, reason: str, failure: str
) -> CanaryAppStatus | None:
    """The status reporting a failed step of the spec's release `revision`, or None when it reports this very
    failure already."""
    last = failed_sync(status)
    if last is not None and last.message == failure:
        return None
    return with_stack_sync(status, revision, False, now, failure, reason)


class StatusWrites:
    def __init__(self, writes: CanaryAppWriter) -> None:
        self.writes = writes

    def decision(self, app: CanaryApp, record: Recorded) -> None:
        """Records the decision, unless the status says so already."""
        if record.status != app.status:
            self.write(app, record.status)

    def applied(self, app: CanaryApp, record: Recorded, now: datetime.datetime) -> None:
        """Records that the decision's stack is applied, with its fingerprint."""
        fingerprint = record.desired.fingerprint()
        synced = record.status.model_copy(
            update={"last_applied_hash": fingerprint, "router": record.desired.router}
        )
        self.write(app, with_stack_sync(synced, app.spec.revision, True, now))

    def invalid(self, raw: dict[str, Any], problem: str, reason: str, now: datetime.datetime) -> bool:
        """Records why the CanaryApp's generation is not acted on, as Stalled for that generation (the user
        must change something; kstatus reads Failed); False when the status says so already."""
        metadata = raw["metadata"]
        stored = raw.get("status") or {}
        generation = metadata.get("generation")
        recorded_already = (
            stored.get("message"),
            stored.get("invalidGeneration"),
            stored.get("observedGeneration"),
        )
        if recorded_already == (problem, generation, generation):
            return False
        try:
            previous = CanaryAppStatus.model_validate({"conditions": stored.get("conditions") or []})
        except ValidationError:
            previous = CanaryAppStatus()  # conditions of no known shape are replaced
        stalled = with_standing(previous, reasons.CONDITION_STALLED, reason, problem, generation or 0, now)
        update = {
            "message": problem,
            "invalidGeneration": generation,
            "observedGeneration": generation,
            "conditions": [c.model_dump(by_alias=True, mode="json") for c in stalled.conditions],
        }
        self.writes.write_status(metadata["namespace"], metadata["name"], update)
        return True

    def write(self, app: CanaryApp, status: CanaryAppStatus) -> None:
        self.writes.write_status(app.metadata.namespace, app.metadata.name, status_body(status))
