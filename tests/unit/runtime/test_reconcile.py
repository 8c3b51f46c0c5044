"""One reconcile pass against in-memory fakes of the ports: the order of writes and steps, failure
reporting, finalizers and invalid specs."""

from __future__ import annotations

import contextlib
import copy
import datetime
import threading
import time
from collections.abc import Collection
from typing import Any

from reconciler.adapters.pulumi.failures import summarize_step_error
from reconciler.core.analysis import QueryResult
from reconciler.core.decisions import READINESS_RECHECK_SECONDS
from reconciler.core.desired import DesiredStack
from reconciler.core.endpoints import MetricsEndpoint, SecretData
from reconciler.core.errors import NameConflictError, TransientError
from reconciler.core.model import FINALIZER, CanaryApp, CheckOutcome
from reconciler.core.names import ObjectRef
from reconciler.core.policy import RoutingPolicy
from reconciler.core.ports import StepReport
from reconciler.core.readiness import DeploymentState
from reconciler.core.workload import shorthand_revision
from reconciler.runtime.cache import CanaryAppStore, WriteThrough
from reconciler.runtime.reconcile import Reconciler

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class FakeCluster:
    def __init__(self, app: dict[str, Any]) -> None:
        self.app: dict[str, Any] | None = app
        self.deployments: dict[str, DeploymentState] = {}
        self.owners: dict[tuple[str, str], frozenset[str]] = {}  # (kind, name) -> owner UIDs
        self.log: list[str] = []
        self.namespace: dict[str, str] | None = {
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
        }
        self.annotations: dict[tuple[str, str], dict[str, str]] = {}  # (kind, name) -> annotations
        self.warnings: list[str] = []
        self.dry_runs: list[dict[str, Any]] = []

    def get_canary_app(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.app)

    def canary_apps(self) -> list[dict[str, Any]]:
        return [self.app] if self.app else []

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        return None

    def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        return self.deployments.get(name)

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        return self.namespace

    def object_annotations(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        return self.annotations.get((kind, name))

    def pod_security_warnings(self, namespace: str, deployment: dict[str, Any]) -> list[str]:
        self.dry_runs.append(deployment)
        return self.warnings

    def owner_uids(self, namespace: str, ref: ObjectRef) -> frozenset[str] | None:
        return self.owners.get((ref.kind, ref.name))

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        assert self.app is not None
        self.log.append(f"status:{status.get('phase')}")
        self.app["status"] = {**self.app.get("status", {}), **status}
        return copy.deepcopy(self.app)

    def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        assert self.app is not None
        self.log.append(f"finalizers:{finalizers}")
        self.app["metadata"]["finalizers"] = finalizers
        stored = copy.deepcopy(self.app)
        if self.app["metadata"].get("deletionTimestamp") and not finalizers:
            self.app = None
        return stored


class FakeStacks:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.applied: list[DesiredStack] = []
        self.destroyed: list[str] = []
        self.fail_with: Exception | None = None

    def apply(self, desired: DesiredStack) -> StepReport:
        self.cluster.log.append("up")
        if self.fail_with is not None:
            raise self.fail_with
        self.applied.append(desired)
        return StepReport({"update": 1}, 0.1)

    def destroy(self, namespace: str, name: str, keep: Collection[tuple[str, str]] = ()) -> StepReport:
        self.cluster.log.append("destroy")
        self.destroyed.append(f"{namespace}.{name}")
        self.kept = list(keep)
        return StepReport({"delete": 6}, 0.1)


class FakeMetrics:
    def query(
        self, endpoint: MetricsEndpoint, query: str, at: datetime.datetime | None = None
    ) -> QueryResult:
        return QueryResult(CheckOutcome.CLEAN)


class FakeEvents:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def emit(self, app: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self.reasons.append(reason)


def new_app(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "u1",
            "generation": 1,
            "resourceVersion": "1",
            "finalizers": [FINALIZER],
        },
        "spec": {
            "image": "app:v1",
            "imageListenPort": 8088,
            "prometheusQuery": "q",
            "prometheusURL": "http://prometheus.istio-system:9090",
            **spec,
        },
    }


def reconciler(
    app: dict[str, Any], policy: RoutingPolicy | None = None
) -> tuple[Reconciler, FakeCluster, FakeStacks, FakeEvents]:
    cluster = FakeCluster(app)
    stacks = FakeStacks(cluster)
    events = FakeEvents()
    subject = Reconciler(
        cluster, cluster, cluster, stacks, FakeMetrics(), events, clock=lambda: NOW, policy=policy
    )
    return subject, cluster, stacks, events


def conditions(cluster: FakeCluster) -> dict[str, tuple[str, str]]:
    assert cluster.app is not None
    return {c["type"]: (c["status"], c["reason"]) for c in cluster.app["status"]["conditions"]}


def test_decision_is_written_before_the_step_and_the_fingerprint_after() -> None:
    subject, cluster, stacks, events = reconciler(new_app())
    assert subject.reconcile("ns", "web").requeue_after == READINESS_RECHECK_SECONDS
    assert cluster.log == ["status:Initializing", "up", "status:Initializing"]
    assert stacks.applied[0].primary_image == "app:v1"
    assert conditions(cluster)["StackSynced"] == ("True", "StackApplied")
    assert events.reasons == ["Initialized"]
    cluster.log.clear()
    subject.reconcile("ns", "web")  # primary not ready yet: a new message, no step
    subject.reconcile("ns", "web")  # and then nothing at all
    assert cluster.log == ["status:Initializing"]


def test_a_failed_step_is_reported_once_and_retried() -> None:
    subject, cluster, stacks, events = reconciler(new_app())
    stacks.fail_with = TransientError("boom")
    for _ in range(3):
        with contextlib.suppress(TransientError):
            subject.reconcile("ns", "web")
    assert cluster.log.count("up") == 3
    assert events.reasons.count("StackUpdateFailed") == 1
    assert conditions(cluster)["StackSynced"] == ("False", "StackUpdateFailed")
    assert cluster.app is not None
    assert "failed" not in cluster.app["status"]["message"]  # the failure lives in StackSynced only
    stacks.fail_with = None
    subject.reconcile("ns", "web")
    assert conditions(cluster)["StackSynced"] == ("True", "StackApplied")


def test_finalizer_first_then_deletion_destroys_the_stack() -> None:
    app = new_app()
    app["metadata"]["finalizers"] = []
    subject, cluster, stacks, _ = reconciler(app)
    assert subject.reconcile("ns", "web").requeue_after == 0.0
    assert cluster.log == [f"finalizers:['{FINALIZER}']"]
    assert stacks.applied == []
    assert cluster.app is not None
    cluster.app["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert subject.reconcile("ns", "web").requeue_after is None
    assert stacks.destroyed == ["ns.web"]
    assert cluster.app is None


def test_a_ready_canary_gets_its_first_step() -> None:
    subject, cluster, stacks, _ = reconciler(new_app(image="app:v2"))
    assert cluster.app is not None
    cluster.app["status"] = {
        "phase": "Progressing",
        "primaryImage": "app:v1",
        "canaryImage": "app:v2",
        "canaryStartedAt": "2026-01-01T00:00:00Z",
    }
    cluster.deployments["web-canary"] = DeploymentState(
        "app:v2", ready=True, revision=shorthand_revision("app:v2", 8088)
    )
    subject.reconcile("ns", "web")
    assert stacks.applied[-1].canary_weight == 10
    assert stacks.applied[-1].primary_weight == 90


def test_invalid_spec_is_reported_with_the_field_and_nothing_applied() -> None:
    subject, cluster, stacks, events = reconciler(new_app(stepWeight=80))
    assert subject.reconcile("ns", "web").requeue_after is None
    assert stacks.applied == []
    assert events.reasons == ["InvalidSpec"]
    assert cluster.app is not None
    assert "stepWeight" in cluster.app["status"]["message"]
    assert conditions(cluster) == {
        "Ready": ("False", "InvalidSpec"),
        "Reconciling": ("False", "InvalidSpec"),
        "Stalled": ("True", "InvalidSpec"),
    }
    assert cluster.app["status"]["observedGeneration"] == 1
    assert {c["observedGeneration"] for c in cluster.app["status"]["conditions"]} == {1}
    cluster.app["metadata"]["generation"] = 2  # another spec change, as wrong: the new generation is stalled
    subject.reconcile("ns", "web")
    assert events.reasons == ["InvalidSpec", "InvalidSpec"]
    assert {c["observedGeneration"] for c in cluster.app["status"]["conditions"]} == {2}
    subject.reconcile("ns", "web")
    assert events.reasons == ["InvalidSpec", "InvalidSpec"]  # recorded already
    # As an earlier version recorded it: the message and the mark, no conditions; they are added once.
    cluster.app["status"] = {key: cluster.app["status"][key] for key in ("message", "invalidGeneration")}
    subject.reconcile("ns", "web")
    assert conditions(cluster)["Stalled"] == ("True", "InvalidSpec")
    assert cluster.app["status"]["observedGeneration"] == 2


def test_step_errors_keep_the_cause_and_drop_the_engines_noise() -> None:
    cause = 'error: resource "urn:x" was not successfully created: denied request: not allowed'
    first = Exception(f" code: 1\n stdout: x {cause}\n  x {cause}\nerror: update failed\n stderr:")
    second = Exception(
        f" stdout: {cause}\nerror: update failed\nerror: Resource monitor has terminated, shutting down"
    )
    assert summarize_step_error(first) == summarize_step_error(second) == cause


def test_an_object_owned_by_someone_else_stops_every_step_and_is_reported_once() -> None:
    subject, cluster, stacks, events = reconciler(new_app())
    cluster.owners[("Service", "web")] = frozenset({"someone-else"})
    for _ in range(3):
        with contextlib.suppress(NameConflictError):
            subject.reconcile("ns", "web")
    assert "up" not in cluster.log
    assert stacks.applied == []
    assert events.reasons.count("NameConflict") == 1
    assert conditions(cluster)["StackSynced"] == ("False", "NameConflict")
    assert conditions(cluster)["Stalled"] == ("True", "NameConflict")
    assert cluster.app is not None
    message = next(c for c in cluster.app["status"]["conditions"] if c["type"] == "StackSynced")["message"]
    assert "Service ns/web" in message
    del cluster.owners[("Service", "web")]
    subject.reconcile("ns", "web")
    assert conditions(cluster)["StackSynced"] == ("True", "StackApplied")
    assert conditions(cluster)["Stalled"] == ("False", "Initializing")


def test_objects_this_canaryapp_owns_are_adopted() -> None:
    subject, cluster, stacks, _ = reconciler(new_app())
    for kind, name in [("Deployment", "web-primary"), ("Service", "web"), ("VirtualService", "web")]:
        cluster.owners[(kind, name)] = frozenset({"u1"})
    subject.reconcile("ns", "web")
    assert stacks.applied[0].primary_image == "app:v1"


def test_a_canary_deployment_someone_else_made_stops_the_canary() -> None:
    subject, cluster, stacks, events = reconciler(new_app(image="app:v2"))
    assert cluster.app is not None
    cluster.app["status"] = {"phase": "Ready", "primaryImage": "app:v1"}
    cluster.owners[("Deployment", "web-canary")] = frozenset()
    with contextlib.suppress(NameConflictError):
        subject.reconcile("ns", "web")
    assert stacks.applied == []
    assert events.reasons[-1] == "NameConflict"


def test_a_step_that_would_delete_someone_elses_object_is_refused() -> None:
    """No canary is declared (the step would delete web-canary and the canary's autoscaler, were they in the
    state): an object of that name that is not this CanaryApp's stops the step all the same."""
    subject, cluster, stacks, events = reconciler(new_app())
    cluster.owners[("HorizontalPodAutoscaler", "web-canary")] = frozenset({"someone-else"})
    with contextlib.suppress(NameConflictError):
        subject.reconcile("ns", "web")
    assert stacks.applied == []
    assert events.reasons[-1] == "NameConflict"


def test_destroying_the_stack_leaves_an_object_someone_else_holds_alone() -> None:
    app = new_app()
    app["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    subject, cluster, stacks, events = reconciler(app)
    cluster.owners[("Deployment", "web-primary")] = frozenset({"someone-else"})
    assert subject.reconcile("ns", "web").requeue_after is None
    assert stacks.destroyed == ["ns.web"]
    assert stacks.kept == [("Deployment", "web-primary")]
    assert events.reasons[0] == "NameConflict"
    assert cluster.app is None  # the finalizer is released: deleting the CanaryApp is never blocked


def test_a_disallowed_gateway_is_refused_before_anything_is_applied() -> None:
    subject, cluster, stacks, events = reconciler(new_app(gateways=["istio-system/public"]))
    assert subject.reconcile("ns", "web").requeue_after is None
    assert stacks.applied == []
    assert events.reasons == ["InvalidSpec"]
    assert cluster.app is not None
    assert "spec.gateways" in cluster.app["status"]["message"]
    assert conditions(cluster)["Stalled"] == ("True", "PolicyDenied")


def test_a_namespace_without_pod_security_is_refused_naming_the_labels_and_the_fix() -> None:
    subject, cluster, stacks, events = reconciler(new_app())
    cluster.namespace = {"pod-security.kubernetes.io/enforce": "privileged"}
    assert subject.reconcile("ns", "web").requeue_after is None
    assert stacks.applied == []
    assert cluster.dry_runs == []
    assert events.reasons == ["InvalidSpec"]
    assert cluster.app is not None
    message = cluster.app["status"]["message"]
    assert "namespace ns: Pod Security must be at least 'baseline'" in message
    assert "pod-security.kubernetes.io/enforce=privileged, pod-security.kubernetes.io/warn=<unset>" in message
    assert "kubectl label namespace ns --overwrite" in message


def test_a_template_the_api_server_warns_about_is_refused_with_its_words() -> None:
    template = {"spec": {"containers": [{"name": "app", "securityContext": {"privileged": True}}]}}
    subject, cluster, stacks, _ = reconciler(new_app(template=template))
    cluster.warnings = [
        'would violate PodSecurity "baseline:latest": privileged (container "app" must not set '
        "securityContext.privileged=true)",
        "spec.template.spec.containers[0].resources: some other warning",
    ]
    assert subject.reconcile("ns", "web").requeue_after is None
    assert stacks.applied == []
    (dry_run,) = cluster.dry_runs
    assert dry_run["metadata"]["generateName"] == "web-canary-"
    assert dry_run["spec"]["template"]["spec"]["containers"][0]["image"] == "app:v1"
    assert cluster.app is not None
    message = cluster.app["status"]["message"]
    assert "is invalid: spec.template: the API server's Pod Security admission would violate PodSecurity" in (
        message
    )
    assert "some other warning" not in message
    subject.reconcile("ns", "web")
    assert len(cluster.dry_runs) == 1  # the same template is asked about once


def test_a_clean_template_is_asked_about_once_per_revision_and_then_applied() -> None:
    subject, cluster, stacks, _ = reconciler(new_app())
    subject.reconcile("ns", "web")
    subject.reconcile("ns", "web")
    assert len(cluster.dry_runs) == 1
    assert stacks.applied
    cluster.namespace = {**(cluster.namespace or {}), "other": "label"}  # the labels changed: ask again
    subject.reconcile("ns", "web")
    assert len(cluster.dry_runs) == 2


def test_a_service_account_granted_by_its_owner_is_used_and_one_that_is_not_is_refused() -> None:
    template = {"spec": {"serviceAccountName": "web-runner", "containers": [{"name": "app"}]}}
    subject, cluster, stacks, _ = reconciler(new_app(template=template))
    cluster.annotations[("ServiceAccount", "web-runner")] = {"canary.atze.io/allowed-canaryapps": "api"}
    assert subject.reconcile("ns", "web").requeue_after is None
    assert cluster.app is not None
    assert "running as the ServiceAccount ns/web-runner" in cluster.app["status"]["message"]
    cluster.annotations[("ServiceAccount", "web-runner")] = {"canary.atze.io/allowed-canaryapps": "api,web"}
    subject.reconcile("ns", "web")
    assert stacks.applied


def test_a_metrics_secret_not_granted_to_the_canaryapp_refuses_it_before_anything_is_created() -> None:
    subject, cluster, stacks, events = reconciler(new_app(prometheusSecretRef={"name": "prom"}))
    secret = SecretData(
        labels={"canary.atze.io/metrics-credentials": "true"},
        data={"token": "s3cr3t-token"},
        annotations={"canary.atze.io/allowed-canaryapps": "api"},
    )
    cluster.read_secret = lambda namespace, name: secret  # type: ignore[method-assign]
    assert subject.reconcile("ns", "web").requeue_after is None
    assert stacks.applied == []
    assert events.reasons == ["InvalidSpec"]
    assert cluster.app is not None
    message = cluster.app["status"]["message"]
    assert "spec.prometheusSecretRef: " in message
    assert "canary.atze.io/allowed-canaryapps=web" in message
    assert "s3cr3t-token" not in message


def other_rollout(name: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "generation": 3},
        "status": {"phase": "Progressing", **status},
    }


def test_a_paused_or_invalid_rollout_holds_no_slot_and_an_invalid_mark_is_cleared_when_valid() -> None:
    cluster = FakeCluster(new_app(image="app:v2"))
    subject = Reconciler(
        cluster,
        cluster,
        cluster,
        FakeStacks(cluster),
        FakeMetrics(),
        FakeEvents(),
        clock=lambda: NOW,
        max_concurrent_rollouts=1,
    )
    assert cluster.app is not None
    cluster.app["status"] = {"phase": "Ready", "primaryImage": "app:v1"}
    paused = {"conditions": [{"type": "Paused", "status": "True", "reason": "Paused", "message": ""}]}
    others = [other_rollout("paused", **paused), other_rollout("invalid", invalidGeneration=3)]
    cluster.canary_apps = lambda: others  # type: ignore[method-assign]
    app = CanaryApp.model_validate(cluster.app)
    assert subject.observer.slots(app).active == 0
    others.append(other_rollout("fixed", invalidGeneration=2))  # generation 3 is valid again: it counts
    assert subject.observer.slots(app).active == 1
    cluster.app["status"] = {"phase": "Ready", "primaryImage": "app:v1", "invalidGeneration": 1}
    cluster.canary_apps = lambda: []  # type: ignore[method-assign]
    subject.reconcile("ns", "web")
    assert cluster.app["status"].get("invalidGeneration") is None


def test_the_next_pass_is_due_one_interval_after_the_decision_not_after_the_step() -> None:
    moments = [NOW]
    app = new_app(image="app:v2", trafficShiftUpdateInterval=10)
    cluster = FakeCluster(app)
    stacks = FakeStacks(cluster)
    subject = Reconciler(
        cluster, cluster, cluster, stacks, FakeMetrics(), FakeEvents(), clock=lambda: moments[-1]
    )
    original = stacks.apply

    def slow_apply(desired: DesiredStack) -> StepReport:
        moments.append(moments[-1] + datetime.timedelta(seconds=1.5))  # the step took 1.5 s
        return original(desired)

    stacks.apply = slow_apply  # type: ignore[method-assign]
    cluster.app["status"] = {  # type: ignore[index]
        "phase": "Progressing",
        "primaryImage": "app:v1",
        "canaryImage": "app:v2",
        "canaryStartedAt": "2026-01-01T00:00:00Z",
    }
    cluster.deployments["web-canary"] = DeploymentState(
        "app:v2", ready=True, revision=shorthand_revision("app:v2", 8088)
    )
    assert subject.reconcile("ns", "web").requeue_after == 8.5


def test_an_interrupted_step_is_applied_before_anything_is_decided() -> None:
    """kill -9 after the decision was recorded, before its step ran: the successor applies that step first,
    and the next check comes one interval after the weight reached the world."""
    subject, cluster, stacks, _ = reconciler(new_app(image="app:v2", trafficShiftUpdateInterval=3))
    assert cluster.app is not None
    cluster.app["status"] = {
        "phase": "Progressing",
        "primaryImage": "app:v1",
        "canaryImage": "app:v2",
        "canaryWeight": 20,
        "lastCheckTime": "2025-12-31T23:59:50Z",  # long ago: a check would be due
        "lastTrafficShift": "2025-12-31T23:59:50Z",
        "conditions": [
            {"type": "StackSynced", "status": "False", "reason": "Applying", "lastTransitionTime": "x"}
        ],
    }
    cluster.deployments["web-canary"] = DeploymentState(
        "app:v2", ready=True, revision=shorthand_revision("app:v2", 8088)
    )
    assert subject.reconcile("ns", "web").requeue_after == 0.0
    assert [desired.canary_weight for desired in stacks.applied] == [20]
    assert cluster.app["status"]["lastCheckTime"] == "2026-01-01T00:00:00Z"
    assert conditions(cluster)["StackSynced"] == ("True", "StackApplied")
    subject.reconcile("ns", "web")  # the next pass decides: no check is due yet
    assert [desired.canary_weight for desired in stacks.applied] == [20]


class TwoApps(FakeCluster):
    """Two CanaryApps in one store; listing them is slow, so two passes overlap in it."""

    def __init__(self) -> None:
        super().__init__(new_app())
        self.apps = {name: new_app(image="app:v2") for name in ("a", "b")}
        for name, app in self.apps.items():
            app["metadata"]["name"] = name
            app["metadata"]["uid"] = f"uid-{name}"
            app["status"] = {"phase": "Ready", "primaryImage": "app:v1"}
        self.lock = threading.Lock()

    def get_canary_app(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return copy.deepcopy(self.apps[name])

    def canary_apps(self) -> list[dict[str, Any]]:
        with self.lock:
            listed = copy.deepcopy(list(self.apps.values()))
        time.sleep(0.2)
        return listed

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.apps[name]["status"] = {**self.apps[name].get("status", {}), **status}
            return copy.deepcopy(self.apps[name])


def test_two_passes_at_once_never_both_take_the_last_rollout_slot() -> None:
    cluster = TwoApps()
    subject = Reconciler(
        cluster,
        cluster,
        cluster,
        FakeStacks(cluster),
        FakeMetrics(),
        FakeEvents(),
        clock=lambda: NOW,
        max_concurrent_rollouts=1,
    )
    passes = [threading.Thread(target=subject.reconcile, args=("ns", name)) for name in ("a", "b")]
    for thread in passes:
        thread.start()
    for thread in passes:
        thread.join(10)
    phases = sorted(app["status"]["phase"] for app in cluster.apps.values())
    assert phases == ["Progressing", "Ready"]
    waiting = next(app for app in cluster.apps.values() if app["status"]["phase"] == "Ready")
    assert "waits for a rollout slot" in waiting["status"]["message"]


def test_a_template_the_api_server_refuses_outright_is_refused_with_its_reasons() -> None:
    template = {"spec": {"containers": [{"name": "app", "securityContext": {"procMount": "Unmasked"}}]}}
    subject, cluster, stacks, events = reconciler(new_app(template=template))
    cluster.warnings = [
        'the API server refused the template: Deployment.apps "web-canary-x" is invalid: '
        'spec.template.spec.containers[0].securityContext.procMount: Invalid value: "Unmasked": '
        "`hostUsers` must be false to use `Unmasked`"
    ]
    assert subject.reconcile("ns", "web").requeue_after is None
    assert stacks.applied == []
    assert events.reasons == ["InvalidSpec"]
    assert cluster.app is not None
    assert "spec.template: the API server refused the template: " in cluster.app["status"]["message"]
    assert "procMount" in cluster.app["status"]["message"]


def test_rollout_slots_are_counted_from_the_cache_with_this_reconcilers_own_writes_in_it() -> None:
    """No watch event arrives between the two passes: the second sees the first's slot all the same, from
    the answer to its status write, and neither pass reads CanaryApps from the API server."""
    apps = TwoApps()
    store = CanaryAppStore()
    store.replace(copy.deepcopy(list(apps.apps.values())))
    apps.get_canary_app = apps.canary_apps = None  # type: ignore[assignment,method-assign]
    subject = Reconciler(
        store,
        apps,
        WriteThrough(apps, store),
        FakeStacks(apps),
        FakeMetrics(),
        FakeEvents(),
        clock=lambda: NOW,
        max_concurrent_rollouts=1,
    )
    subject.reconcile("ns", "a")
    subject.reconcile("ns", "b")
    assert apps.apps["a"]["status"]["phase"] == "Progressing"
    assert apps.apps["b"]["status"]["phase"] == "Ready"
    assert "waits for a rollout slot" in apps.apps["b"]["status"]["message"]
