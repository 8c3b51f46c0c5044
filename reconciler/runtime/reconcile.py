"""One reconcile pass of one CanaryApp: read the world, decide, record the decision, act, report.

The decision is written to the CanaryApp status before the stack is changed, and the fingerprint of the
applied stack after, so a pass that dies anywhere is finished by the next one from what the cluster stores.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from reconciler.core import analysis, pod_security, reasons, workload
from reconciler.core.analysis import CheckResult
from reconciler.core.clock import timestamp
from reconciler.core.conditions import with_stack_sync
from reconciler.core.decisions import Decision, Hold, Observations, RolloutSlots
from reconciler.core.desired import desired_stack
from reconciler.core.endpoints import EndpointError, endpoint_for
from reconciler.core.errors import InvalidSpecError, NameConflictError, ReconcileError
from reconciler.core.grants import granted
from reconciler.core.machine import about_to_start, decide, interrupted, resume_interrupted, wants_check
from reconciler.core.model import (
    FINALIZER,
    Action,
    CanaryApp,
    CanaryAppStatus,
    CheckOutcome,
    Condition,
    Phase,
)
from reconciler.core.names import canary_name, owned_objects, primary_name
from reconciler.core.notifications import rollout_event
from reconciler.core.pod_policy import PodPolicy
from reconciler.core.policy import MetricsPolicy, RoutingPolicy, is_ours
from reconciler.core.ports import (
    CanaryAppCache,
    CanaryAppWriter,
    ClusterReader,
    EventSink,
    MetricsSource,
    Notifier,
    SecretReader,
    StackRunner,
)
from reconciler.core.wire import status_body
from reconciler.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)
NAME_CONFLICT_RETRY_SECONDS = 10.0
FAILURE_REASONS = frozenset({reasons.STACK_UPDATE_FAILED, reasons.NAME_CONFLICT})
ACTIVE_PHASES = frozenset({Phase.PROGRESSING.value, Phase.PROMOTING.value})
# Dry runs remembered per (namespace, revision, namespace labels): a template is asked about once, not every
# pass, and again when the namespace's Pod Security labels change.
POD_SECURITY_CACHE_SIZE = 512


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def observe(
    app: CanaryApp,
    cluster: ClusterReader,
    check: Callable[[CanaryApp, datetime.datetime], CheckResult],
    now: datetime.datetime,
    slots: Callable[[CanaryApp], RolloutSlots] | None = None,
) -> Observations:
    """Reads what `decide()` needs: both Deployments and, only when a check is due, the metrics."""
    namespace, name, status = app.metadata.namespace, app.metadata.name, app.status
    return Observations(
        generation=app.metadata.generation,
        primary=cluster.deployment_state(namespace, primary_name(name)),
        canary=cluster.deployment_state(namespace, canary_name(name)) if status.canary_image else None,
        check=check(app, now) if wants_check(app.spec, status, now) else None,
        requests={
            action: token for action in Action if (token := app.metadata.annotations.get(action.annotation))
        },
        slots=slots(app) if slots is not None and about_to_start(app.spec, status) else None,
    )


def check_canary(
    metrics: MetricsSource,
    app: CanaryApp,
    status: CanaryAppStatus,
    now: datetime.datetime,
    secrets: SecretReader,
) -> CheckResult:
    """One check: the error query and the traffic query, rendered for `now`, answered and assessed.

    Both are evaluated at `now` to the second, the time the check's record carries: a backtest that replays
    the record asks Prometheus about exactly the same instant (and so sees exactly the same samples). The
    endpoint's Secret (prometheusSecretRef) is read at every check, so a rotated credential is used at once;
    a missing or unusable one is a failed query, never a query sent without it.
    """
    spec, namespace = app.spec, app.metadata.namespace
    variables = analysis.query_variables(app.metadata.name, namespace, spec, status, now)
    queries = analysis.render_queries(spec, variables)
    reference = spec.prometheus_secret_ref
    try:
        secret = secrets.read_secret(namespace, reference.name) if reference is not None else None
        endpoint = endpoint_for(spec, namespace, app.metadata.name, secret)
    except EndpointError as error:
        return CheckResult(CheckOutcome.QUERY_FAILED, str(error), query=queries.errors)
    at = now.replace(microsecond=0)
    errors = metrics.query(endpoint, queries.errors, at)
    traffic = metrics.query(endpoint, queries.traffic, at) if queries.traffic is not None else None
    return analysis.assess(queries, errors, traffic, spec.min_canary_requests)


def describe_validation_error(error: ValidationError) -> str:
    """`spec.stepWeight: Input should be ...` lines: the field and what is wrong with it."""
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


class Reconciler:
    def __init__(
        self,
        apps: CanaryAppCache,
        cluster: ClusterReader,
        writes: CanaryAppWriter,
        stacks: StackRunner,
        metrics: MetricsSource,
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
        self.cluster = cluster
        self.writes = writes
        self.stacks = stacks
        self.metrics = metrics
        self.events = events
        self.clock = clock
        self.telemetry = telemetry or Telemetry()
        self.policy = policy or RoutingPolicy()
        self.pod_policy = pod_policy or PodPolicy()
        self.metrics_policy = metrics_policy or MetricsPolicy()
        self.max_concurrent_rollouts = max_concurrent_rollouts
        self.notifier = notifier
        self.pod_security_level = pod_security_level
        self._dry_runs: OrderedDict[tuple[Any, ...], list[str]] = OrderedDict()
        self._slot_lock = threading.Lock()

    def reconcile(self, namespace: str, name: str) -> float | None:
        """Runs one pass; returns seconds until the next pass is due (None: only on the next change)."""
        raw = self.apps.get_canary_app(namespace, name)
        if raw is None:
            self.telemetry.forget(namespace, name)
            return None
        metadata = raw["metadata"]
        finalizers = list(metadata.get("finalizers") or [])
        if metadata.get("deletionTimestamp"):
            return self._finalize(raw, finalizers)
        if FINALIZER not in finalizers:
            self.writes.set_finalizers(namespace, name, [*finalizers, FINALIZER], metadata["resourceVersion"])
            return 0.0
        app = self._admitted(raw)
        return None if app is None else self._step(raw, app)

    def _admitted(self, raw: dict[str, Any]) -> CanaryApp | None:
        """The CanaryApp if its spec is valid and within the policy; else reported on the object, and None."""
        try:
            app = CanaryApp.model_validate(raw)
        except ValidationError as error:
            self._report_invalid(raw, describe_validation_error(error))
            return None
        namespace, name = app.metadata.namespace, app.metadata.name
        refused = [
            *self.policy.violations(namespace, name, app.spec),
            *self._pod_violations(app),
            *self.metrics_policy.violations(namespace, name, app.spec),
            *self._endpoint_violations(app),
        ]
        if refused:
            self._report_invalid(raw, "; ".join(refused))
            return None
        return app

    def _endpoint_violations(self, app: CanaryApp) -> list[str]:
        """The metrics Secret must be usable before anything is created: marked, granted to this CanaryApp,
        complete (checks read it again each time, so a rotation or a revoked grant counts at once)."""
        reference = app.spec.prometheus_secret_ref
        if reference is None:
            return []
        namespace = app.metadata.namespace
        try:
            endpoint_for(
                app.spec, namespace, app.metadata.name, self.cluster.read_secret(namespace, reference.name)
            )
        except EndpointError as error:
            return [f"spec.prometheusSecretRef: {error}"]
        return []

    def _pod_violations(self, app: CanaryApp) -> list[str]:
        """The reconciler's pod policy, then the platform's own Pod Security: the namespace must enforce the
        operator's level, and the API server must not warn about the template (a server-side dry run)."""
        namespace, name, spec = app.metadata.namespace, app.metadata.name, app.spec
        replicas = {"spec.replicas": spec.replicas, "spec.testReplicas": spec.test_replicas}
        if spec.autoscaler is not None:
            replicas["spec.autoscaler.maxReplicas"] = spec.autoscaler.max_replicas
        answers = {
            reference: granted(self.cluster.object_annotations(namespace, *reference), name)
            for reference in self.pod_policy.references(spec.template)
        }
        problems = self.pod_policy.violations(
            namespace, name, spec.template, replicas, lambda kind, object_name: answers[(kind, object_name)]
        )
        if problems or self.pod_security_level == "privileged":
            return problems
        labels = self.cluster.namespace_labels(namespace) or {}
        problems = pod_security.namespace_violations(namespace, labels, self.pod_security_level)
        if problems:
            return problems
        try:
            template = workload.effective_template(spec.template, spec.image, spec.image_listen_port)
        except workload.TemplateError:
            return []  # the model reports the contradiction
        return pod_security.template_violations(self._dry_run(app, template, labels))

    def _dry_run(self, app: CanaryApp, template: dict[str, Any], labels: dict[str, str]) -> list[str]:
        namespace, name = app.metadata.namespace, app.metadata.name
        key = (namespace, workload.revision(template), tuple(sorted(labels.items())))
        if key in self._dry_runs:
            self._dry_runs.move_to_end(key)
            return self._dry_runs[key]
        pod = workload.pod_template(name, "canary", template)
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"generateName": f"{canary_name(name)}-", "namespace": namespace},
            "spec": {"replicas": 0, "selector": {"matchLabels": pod["metadata"]["labels"]}, "template": pod},
        }
        warnings = self.cluster.pod_security_warnings(namespace, deployment)
        self._dry_runs[key] = warnings
        while len(self._dry_runs) > POD_SECURITY_CACHE_SIZE:
            self._dry_runs.popitem(last=False)
        return warnings

    def _step(self, raw: dict[str, Any], app: CanaryApp) -> float | None:
        """Decides, records the decision, applies the stack it implies (if it changed), records the result."""
        namespace, name = app.metadata.namespace, app.metadata.name
        # A spec found invalid before is valid now: the mark goes with this pass's status write.
        valid = app.status.model_copy(update={"invalid_generation": None})
        app = app.model_copy(update={"status": valid})
        spec, status, now = app.spec, app.status, self.clock()
        # Rollout slots are one admission point: a pass that may start a rollout counts the slots and records
        # its decision while holding the lock, so two passes can never both take the last slot (with leader
        # election, one process acts per shard, so the lock is the whole claim).
        starting = bool(self.max_concurrent_rollouts) and about_to_start(spec, status)
        with self._slot_lock if starting else contextlib.nullcontext():
            decision = self._decide(app, now)
            desired = desired_stack(name, namespace, app.metadata.uid, spec, decision.status)
            fingerprint = desired.fingerprint()
            in_sync = fingerprint == decision.status.last_applied_hash
            failed = None if in_sync else _failed_sync(status)
            new_status = with_stack_sync(
                decision.status,
                in_sync,
                now,
                failed.message if failed else "",
                failed.reason if failed else reasons.STACK_UPDATE_FAILED,
            )
            if new_status != status:
                self.writes.write_status(namespace, name, status_body(new_status))
        self._report(raw, decision)
        if in_sync:
            return self._remaining(decision, now)

        try:
            self._check_ownership(namespace, name, app.metadata.uid)
            step = self.stacks.apply(desired)
        except ReconcileError as error:
            conflict = isinstance(error, NameConflictError)
            failure = str(error) if conflict else f"Stack update failed: {error}"
            reason = reasons.NAME_CONFLICT if conflict else reasons.STACK_UPDATE_FAILED
            if failure != _last_failure(new_status):  # a repeated failure is already reported
                failed_status = with_stack_sync(new_status, False, now, failure, reason)
                self._report_stack_error(raw, failed_status, reason, failure)
            raise
        self.telemetry.step_finished("up", step.seconds)
        log.info(
            "Applied CanaryApp stack",
            extra={
                "canaryapp": app.key,
                "phase": new_status.phase,
                "weight": new_status.canary_weight,
                "changes": step.changes,
                "seconds": round(step.seconds, 2),
            },
        )
        synced = with_stack_sync(new_status.model_copy(update={"last_applied_hash": fingerprint}), True, now)
        self.writes.write_status(namespace, name, status_body(synced))
        return self._remaining(decision, now)

    def _decide(self, app: CanaryApp, now: datetime.datetime) -> Decision:
        status = app.status
        if interrupted(status):
            # The last pass recorded a decision and died before applying it: apply that step first, and let
            # the next pass decide (a check must judge a weight the world has had for a whole interval).
            return Hold(resume_interrupted(status, now), 0.0, reasons.WAITING, status.message)
        slots = self._slots if self.max_concurrent_rollouts else None
        return decide(app.spec, status, observe(app, self.cluster, self._check, now, slots), now)

    def _remaining(self, decision: Decision, decided_at: datetime.datetime) -> float | None:
        """The requeue delay counted from when the decision was made, not from the end of this pass: a pass
        that spent 1.5 s in `stack.up` does not push every later step back by 1.5 s."""
        if decision.requeue_after is None:
            return None
        spent = (self.clock() - decided_at).total_seconds()
        return max(decision.requeue_after - spent, 0.0)

    def _check_ownership(self, namespace: str, name: str, uid: str) -> None:
        """Refuses a step (or the stack's destruction) while any object the stack may declare, change or
        delete exists without this CanaryApp's owner reference.

        Only then may the step's server-side apply force its fields (pulumi.com/patchForce), and a step that
        drops the canary or an autoscaler (or the destruction) delete it: every object it touches is absent or
        provably this CanaryApp's. The canary and the autoscalers are checked whether or not the step declares
        them, since a step that no longer declares them deletes them.
        """
        taken = [
            f"{kind} {namespace}/{object_name}" for kind, object_name in self._not_ours(namespace, name, uid)
        ]
        if taken:
            raise NameConflictError(
                f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''} and "
                f"{'is' if len(taken) == 1 else 'are'} not owned by this CanaryApp; the reconciler changes "
                "nothing until the name is free: rename the CanaryApp, or rename or delete that object",
                retry_after=NAME_CONFLICT_RETRY_SECONDS,
            )

    def _not_ours(self, namespace: str, name: str, uid: str) -> list[tuple[str, str]]:
        """(kind, name) of every object the stack may declare or delete that exists without this
        CanaryApp's owner reference."""
        return [
            (ref.kind, ref.name)
            for ref in owned_objects(name, with_canary=True, autoscaled=True)
            if not is_ours(self.cluster.owner_uids(namespace, ref), uid)
        ]

    def _slots(self, app: CanaryApp) -> RolloutSlots:
        """Rollout slots from the cached CanaryApps (restart-proof: only what the cluster stores counts)."""
        limit = self.max_concurrent_rollouts or 0
        others = [item for item in self.apps.canary_apps() if _key(item) != app.key]
        statuses = [item.get("status") or {} for item in others]
        active = sum(1 for item in others if _holds_slot(item))
        mine = (app.status.queued_at or "~", app.key)  # "~" sorts after every timestamp
        waiting_before = sum(
            1
            for item, status in zip(others, statuses, strict=True)
            if status.get("queuedAt") and (status["queuedAt"], _key(item)) < mine
        )
        return RolloutSlots(limit=limit, active=active, waiting_before=waiting_before)

    def _check(self, app: CanaryApp, now: datetime.datetime) -> CheckResult:
        result = check_canary(self.metrics, app, app.status, now, self.cluster)
        self.telemetry.check_finished(result.outcome)
        return result

    def _report(self, raw: dict[str, Any], decision: Decision) -> None:
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

    def _report_invalid(self, raw: dict[str, Any], problems: str) -> None:
        metadata = raw["metadata"]
        problem = InvalidSpecError(
            f"CanaryApp {metadata['namespace']}/{metadata['name']} is invalid: "
            f"{problems}. Fix the named fields and apply again."
        )
        log.warning("Rejected CanaryApp spec", extra={"canaryapp": metadata["name"], "detail": str(problem)})
        current = (raw.get("status") or {}).get("message")
        if current != str(problem):
            update = {"message": str(problem), "invalidGeneration": metadata.get("generation")}
            self.writes.write_status(metadata["namespace"], metadata["name"], update)
            self.events.emit(raw, reasons.INVALID_SPEC, str(problem), warning=True)

    def _report_stack_error(
        self, raw: dict[str, Any], failed: CanaryAppStatus, reason: str, failure: str
    ) -> None:
        metadata = raw["metadata"]
        log.warning(
            "Failed to apply CanaryApp stack",
            extra={"canaryapp": metadata["name"], "reason": reason, "detail": failure},
        )
        self.events.emit(raw, reason, failure, warning=True)
        self.writes.write_status(metadata["namespace"], metadata["name"], status_body(failed))

    def _finalize(self, raw: dict[str, Any], finalizers: list[str]) -> float | None:
        metadata = raw["metadata"]
        if FINALIZER not in finalizers:
            return None
        namespace, name = metadata["namespace"], metadata["name"]
        keep = self._not_ours(namespace, name, metadata.get("uid", ""))
        if keep:
            kept = ", ".join(f"{kind} {namespace}/{object_name}" for kind, object_name in keep)
            self.events.emit(
                raw, reasons.NAME_CONFLICT, f"Left {kept} alone: not owned by this CanaryApp", warning=True
            )
        step = self.stacks.destroy(namespace, name, keep)
        log.info(
            "Destroyed CanaryApp stack",
            extra={"canaryapp": metadata["name"], "changes": step.changes, "seconds": round(step.seconds, 2)},
        )
        self.events.emit(raw, reasons.STACK_DESTROYED, "Deleted the Deployments, Services and VirtualService")
        remaining = [item for item in finalizers if item != FINALIZER]
        self.writes.set_finalizers(
            metadata["namespace"], metadata["name"], remaining, metadata["resourceVersion"]
        )
        self.telemetry.forget(metadata["namespace"], metadata["name"])
        return None


def _key(item: dict[str, Any]) -> str:
    return f"{item['metadata']['namespace']}/{item['metadata']['name']}"


def _holds_slot(item: dict[str, Any]) -> bool:
    """Whether a CanaryApp's rollout counts toward --max-concurrent-rollouts: it is progressing or promoting,
    not paused (the user holds it), and its current spec is not invalid (the reconciler acts on it not at
    all). A paused or invalid rollout that continues later continues even when the slots are full then: it
    is under way already."""
    status = item.get("status") or {}
    if status.get("phase") not in ACTIVE_PHASES:
        return False
    if status.get("invalidGeneration") is not None and status["invalidGeneration"] == item["metadata"].get(
        "generation"
    ):
        return False
    paused = next(
        (c for c in status.get("conditions") or [] if c.get("type") == reasons.CONDITION_PAUSED), None
    )
    return not (paused is not None and paused.get("status") == "True")


def _failed_sync(status: CanaryAppStatus) -> Condition | None:
    """The StackSynced condition when it reports a failed step, else None."""
    condition = status.condition(reasons.CONDITION_STACK_SYNCED)
    return condition if condition is not None and condition.reason in FAILURE_REASONS else None


def _last_failure(status: CanaryAppStatus) -> str:
    failed = _failed_sync(status)
    return failed.message if failed else ""
