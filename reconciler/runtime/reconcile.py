"""One reconcile pass of one CanaryApp, shaped like controller-runtime's: observe → decide → persist → apply,
returning a Result (when to look again).

Each step is its own piece: admission.py (may the pass act at all), observe.py (what `decide()` needs),
persist.py (the decision into the status before the stack changes, the fingerprint after), apply.py (the
step over objects provably this CanaryApp's), report.py (logs, Events, notifications). A pass that dies
anywhere is finished by the next one from what the cluster stores.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.core import pod_security, reasons
from reconciler.core.decisions import Decision, Hold
from reconciler.core.errors import InvalidSpecError, NameConflictError, ReconcileError
from reconciler.core.machine import about_to_start, decide, interrupted, resume_interrupted
from reconciler.core.model import FINALIZER, CanaryApp
from reconciler.core.pod_policy import PodPolicy
from reconciler.core.policy import MetricsPolicy, RoutingPolicy
from reconciler.core.ports import (
    CanaryAppCache,
    CanaryAppWriter,
    ClusterReader,
    EventSink,
    MetricsReader,
    Notifier,
    StackRunner,
)
from reconciler.runtime.admission import Admission, Refused
from reconciler.runtime.apply import Applier, stack_routers
from reconciler.runtime.observe import Observer
from reconciler.runtime.persist import Recorded, StatusWrites, failed_step, recorded
from reconciler.runtime.report import Reporter
from reconciler.runtime.telemetry import Telemetry


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Result:
    """What a pass asks of the loop (controller-runtime's reconcile.Result): another pass `requeue_after`
    seconds from now, or (None) only when something changes."""

    requeue_after: float | None = None


class Reconciler:
    def __init__(
        self,
        apps: CanaryAppCache,
        cluster: ClusterReader,
        writes: CanaryAppWriter,
        stacks: StackRunner,
        metrics: MetricsReader,
        events: EventSink,
        *,
        clock: Callable[[], datetime.datetime] = utc_now,
        telemetry: Telemetry | None = None,
        policy: RoutingPolicy | None = None,
        pod_policy: PodPolicy | None = None,
        metrics_policy: MetricsPolicy | None = None,
        max_concurrent_rollouts: int | None = None,
        notifier: Notifier | None = None,
        pod_security_level: str = pod_security.DEFAULT_LEVEL,
    ) -> None:
        self.apps = apps
        self.writes = writes
        self.clock = clock
        self.telemetry = telemetry or Telemetry()
        self.admission = Admission(
            cluster,
            policy or RoutingPolicy(),
            pod_policy or PodPolicy(),
            metrics_policy or MetricsPolicy(),
            pod_security_level,
        )
        self.observer = Observer(apps, cluster, metrics, self.telemetry, max_concurrent_rollouts)
        self.status = StatusWrites(writes)
        self.applier = Applier(cluster, stacks)
        self.report = Reporter(events, notifier, self.telemetry, clock)
        self.max_concurrent_rollouts = max_concurrent_rollouts
        self._slot_lock = threading.Lock()

    def reconcile(self, namespace: str, name: str) -> Result:
        """Runs one pass of the CanaryApp as the cache holds it."""
        raw = self.apps.get_canary_app(namespace, name)
        if raw is None:
            self.telemetry.forget(namespace, name)
            return Result()
        metadata = raw["metadata"]
        finalizers = list(metadata.get("finalizers") or [])
        if metadata.get("deletionTimestamp"):
            self._finalize(raw, finalizers)
            return Result()
        if FINALIZER not in finalizers:
            self.writes.set_finalizers(namespace, name, [*finalizers, FINALIZER], metadata["resourceVersion"])
            return Result(requeue_after=0.0)
        admitted = self.admission.admit(raw)
        if isinstance(admitted, Refused):
            self._refuse(raw, admitted)
            return Result()
        return self._step(raw, admitted)

    def _step(self, raw: dict[str, Any], app: CanaryApp) -> Result:
        # A spec found invalid before is valid now: the mark goes with this pass's status write.
        app = app.model_copy(update={"status": app.status.model_copy(update={"invalid_generation": None})})
        now = self.clock()
        # Rollout slots are one admission point: a pass that may start a rollout counts the slots and records
        # its decision while holding the lock, so two passes can never both take the last slot (with leader
        # election, one process acts per shard, so the lock is the whole claim).
        starting = bool(self.max_concurrent_rollouts) and about_to_start(app.spec, app.status)
        with self._slot_lock if starting else contextlib.nullcontext():
            decision = self._decide(app, now)
            record = recorded(app, decision, now)
            self.status.decision(app, record)
        self.report.decided(raw, decision)
        if not record.in_sync:
            self._apply(raw, app, record, now)
        return Result(self._remaining(decision, now))

    def _decide(self, app: CanaryApp, now: datetime.datetime) -> Decision:
        status = app.status
        if interrupted(status):
            # The last pass recorded a decision and died before applying it: apply that step first, and let
            # the next pass decide (a check must judge a weight the world has had for a whole interval).
            return Hold(resume_interrupted(status, now), 0.0, reasons.WAITING, status.message)
        return decide(app.spec, status, self.observer.observe(app, now), now)

    def _apply(self, raw: dict[str, Any], app: CanaryApp, record: Recorded, now: datetime.datetime) -> None:
        try:
            step = self.applier.apply(app.metadata.uid, record.desired, app.status.applied_router)
        except ReconcileError as error:
            conflict = isinstance(error, NameConflictError)
            failure = str(error) if conflict else f"Stack update failed: {error}"
            reason = reasons.NAME_CONFLICT if conflict else reasons.STACK_UPDATE_FAILED
            failed = failed_step(record.status, app.spec.revision, now, reason, failure)
            if failed is not None:  # a repeated failure is already reported
                self.report.stack_failed(raw, reason, failure)
                self.status.write(app, failed)
            raise
        self.report.applied(app, record.status, step)
        self.status.applied(app, record, now)

    def _remaining(self, decision: Decision, decided_at: datetime.datetime) -> float | None:
        """The requeue delay counted from when the decision was made, not from the end of this pass: a pass
        that spent 1.5 s in `stack.up` does not push every later step back by 1.5 s."""
        if decision.requeue_after is None:
            return None
        spent = (self.clock() - decided_at).total_seconds()
        return max(decision.requeue_after - spent, 0.0)

    def _refuse(self, raw: dict[str, Any], refused: Refused) -> None:
        metadata = raw["metadata"]
        problem = str(
            InvalidSpecError(
                f"CanaryApp {metadata['namespace']}/{metadata['name']} is invalid: "
                f"{refused.problems}. Fix the named fields and apply again."
            )
        )
        self.report.refused(raw, problem)
        if self.status.invalid(raw, problem, refused.reason, self.clock()):
            self.report.invalid_recorded(raw, problem)

    def _finalize(self, raw: dict[str, Any], finalizers: list[str]) -> None:
        if FINALIZER not in finalizers:
            return
        metadata = raw["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        routers = stack_routers(raw, self.admission.policy.default_router)
        keep = self.applier.not_ours(namespace, name, metadata.get("uid", ""), routers)
        if keep:
            self.report.left_alone(raw, keep)
        self.report.destroyed(raw, self.applier.destroy(namespace, name, keep))
        remaining = [item for item in finalizers if item != FINALIZER]
        self.writes.set_finalizers(namespace, name, remaining, metadata["resourceVersion"])
        self.telemetry.forget(namespace, name)
