"""A crash-point sweep of the reconcile pass (faults of the real world, item 5).

A pass changes the world at four kinds of point: the CanaryApp's status, its finalizers, a stack `up` and a
stack `destroy`. Each scenario below runs once cleanly to count its write points, then once per write point
and side: the process dies just before the write takes effect, or just after it did (for `up`: the stack is
applied and the process dies before it hears so). A restarted reconciler (a new `Reconciler`: nothing carried
over but the world) then runs passes until the CanaryApp settles. Throughout, the world keeps its invariants,
and the rollout ends as it should:

- the VirtualService the applied stack declares sends 100 % in all, and no share to a missing Deployment;
- a revision once in `status.failedRevisions` stays there unless a retry of it was requested, and no canary
  of it is created while it is there;
- every status the API server stores parses as a CanaryApp and fits the CRD's status schema;
- a status that says StackSynced names the stack that is applied; a check judges the weight the status
  names, sent by the world for a whole interval; no canary starts while the only rollout slot is taken;
- the end state is the scenario's: promoted, rolled back, ready, or deleted with its stack.

Every decision kind `decide()` can return is taken by some scenario (a test says so), so a new transition
fails this file until a scenario takes it.

Time is virtual (the clock is the world's, advanced by the requeue each pass returns); a Deployment given a
new template becomes ready READY_AFTER_SECONDS later.
"""

from __future__ import annotations

import copy
import datetime
import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import ValidationError

from reconciler.core.analysis import QueryResult
from reconciler.core.clock import parse_timestamp, timestamp
from reconciler.core.decisions import Decision
from reconciler.core.desired import DesiredStack
from reconciler.core.endpoints import MetricsEndpoint, SecretData
from reconciler.core.errors import TransientError
from reconciler.core.model import Action, CanaryApp, CheckOutcome, Series
from reconciler.core.names import (
    ObjectRef,
    Router,
    baseline_name,
    canary_name,
    owned_objects,
    primary_name,
)
from reconciler.core.policy import RoutingPolicy
from reconciler.core.ports import StepReport
from reconciler.core.readiness import DeploymentState
from reconciler.core.workload import shorthand_revision
from reconciler.runtime.reconcile import Reconciler
from reconciler.runtime.telemetry import Telemetry
from stacks.program import route_of
from stacks.routers.gateway_api import http_route_spec
from stacks.routers.istio import virtual_service_spec

ROOT = Path(__file__).resolve().parents[3]
CRD = yaml.safe_load((ROOT / "crds" / "canary.atze.io_canaryapps.yaml").read_text())
STATUS_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]

NAMESPACE, NAME, UID = "shop", "web", "uid-web"
START = datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC)
PORT = 8080
V1, V2, V3 = "registry.shop/web:1.0", "registry.shop/web:2.0", "registry.shop/web:3.0"
REVISION = {image: shorthand_revision(image, PORT) for image in (V1, V2, V3)}
ERRORS_QUERY, TRAFFIC_QUERY = "canary_errors", "canary_requests"
READY_AFTER_SECONDS = 15.0
RESTART_SECONDS = 1.0
# A pass that asks for no requeue is woken by the next change: its own status write, a user's edit.
WAKE_SECONDS = 1.0
MAX_PASSES = 120

Side = Literal["before", "after"]


class Crash(BaseException):
    """The process dies here. A BaseException: the pass catches ReconcileError (an Exception) and must not
    be able to swallow a crash."""


@dataclass(frozen=True)
class CrashPoint:
    index: int
    side: Side

    def describe(self, writes: list[str]) -> str:
        return (
            f"write #{self.index} of {len(writes)}, {writes[self.index]}, crashed {self.side} it took effect"
        )


class WritePoints:
    """Numbers every write of a run, and crashes the process at the planned one (once)."""

    def __init__(self, crash: CrashPoint | None) -> None:
        self.crash = crash
        self.log: list[str] = []
        self.crashed = False

    def write(self, what: str, effect: Callable[[], None]) -> None:
        planned = self.crash is not None and self.crash.index == len(self.log)
        side = self.crash.side if self.crash is not None else None
        self.log.append(what)
        if planned and side == "before":
            self._die(what)
        effect()
        if planned and side == "after":
            self._die(what)

    def _die(self, what: str) -> None:
        self.crash, self.crashed = None, True
        raise Crash(what)


@dataclass
class Deployment:
    revision: str
    image: str
    changed_at: datetime.datetime


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies a status patch: maps merge, null removes, lists are replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def without_nulls(value: Any) -> Any:
    """What the API server stores of a value: it prunes null from every field the CRD does not mark
    `nullable` (this CRD marks none)."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
}


def schema_problems(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """What the API server would refuse (or prune, and so lose) in `value` under a CRD's structural schema."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    wanted = schema.get("type")
    if wanted is not None and not TYPES[wanted](value):
        return [f"{path}: {value!r} is not of type {wanted}"]
    problems = (
        [f"{path}: {value!r} is not one of {schema['enum']}"]
        if value not in schema.get("enum", [value])
        else []
    )
    if isinstance(value, str):
        problems += _string_problems(value, schema, path)
    if isinstance(value, list):
        problems += _list_problems(value, schema, path)
    if isinstance(value, dict):
        problems += _object_problems(value, schema, path)
    return problems


def _string_problems(value: str, schema: dict[str, Any], path: str) -> list[str]:
    problems = []
    if len(value) > schema.get("maxLength", len(value)):
        problems.append(f"{path}: longer than {schema['maxLength']}")
    if schema.get("format") == "date-time":
        try:
            parse_timestamp(value)
        except ValueError:
            problems.append(f"{path}: {value!r} is not a date-time")
    return problems


def _list_problems(value: list[Any], schema: dict[str, Any], path: str) -> list[str]:
    problems = []
    if len(value) > schema.get("maxItems", len(value)):
        problems.append(f"{path}: more than {schema['maxItems']} items")
    keys = schema.get("x-kubernetes-list-map-keys")
    if keys and len({tuple(item.get(key) for key in keys) for item in value}) != len(value):
        problems.append(f"{path}: two items share the list-map keys {keys}")
    for position, item in enumerate(value):
        problems += schema_problems(item, schema.get("items", {}), f"{path}[{position}]")
    return problems


def _object_problems(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    properties = schema.get("properties", {})
    values_schema = schema.get("additionalProperties")
    problems = [f"{path}.{key} is missing" for key in schema.get("required", []) if key not in value]
    for key, item in value.items():
        if key in properties:
            problems += schema_problems(item, properties[key], f"{path}.{key}")
        elif isinstance(values_schema, dict):
            problems += schema_problems(item, values_schema, f"{path}.{key}")
        else:
            problems.append(f"{path}.{key} is not in the CRD: the API server prunes it")
    return problems


def new_app() -> dict[str, Any]:
    """A CanaryApp as a user creates it: no finalizer, no status."""
    return {
        "apiVersion": "canary.atze.io/v1",
        "kind": "CanaryApp",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "uid": UID,
            "generation": 1,
            "resourceVersion": "1",
            "annotations": {},
        },
        "spec": {
            "image": V1,
            "imageListenPort": PORT,
            "prometheusQuery": ERRORS_QUERY,
            "canaryTrafficQuery": TRAFFIC_QUERY,
            "prometheusURL": "http://prometheus.istio-system:9090",
            "trafficShiftUpdateInterval": 30,
            "deploymentReadyWaitTime": 120,
            "stepWeight": 10,
            "maxWeight": 30,
            "failureThreshold": 2,
        },
    }


class World:
    """All that survives a crash: the API server's store, the objects the stack made, Prometheus and time.
    Also the referee: it records every broken invariant in `violations`."""

    def __init__(self) -> None:
        self.now = START
        self.app: dict[str, Any] | None = new_app()
        self.resource_version = 1
        self.stack: DesiredStack | None = None
        self.weight_since = START  # when the applied canary weight last changed
        self.deployments: dict[str, Deployment] = {}
        self.errors_found = False
        self.quiet_checks = 0  # traffic answers without canary requests before the real ones
        self.slot_taken_until: datetime.datetime | None = None  # another CanaryApp's rollout, until then
        self.failed: set[str] = set()  # revisions the stored status has recorded as failed
        self.retries: set[str] = set()  # revisions a user asked to retry
        # The gateway-api router: the parent Gateway accepts each new generation of the HTTPRoute this long
        # after it was applied; the split follows only then.
        self.route_accept_after = 0.0
        self.route_generation = 0
        self.route_changed_at = START
        self.violations: list[str] = []

    # The clock and the user ------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)

    def violation(self, problem: str) -> None:
        self.violations.append(f"{timestamp(self.now)}: {problem}")

    def _stored(self) -> dict[str, Any]:
        assert self.app is not None, f"CanaryApp {NAMESPACE}/{NAME} is gone"
        self.resource_version += 1
        self.app["metadata"]["resourceVersion"] = str(self.resource_version)
        return self.app

    def set_image(self, image: str) -> None:
        app = self._stored()
        app["spec"]["image"] = image
        app["metadata"]["generation"] += 1

    def route_through_gateway(self) -> None:
        """The user moves the CanaryApp to the gateway-api router (and its Gateway)."""
        app = self._stored()
        app["spec"].update(router="gateway-api", parentRefs=[{"name": "public", "namespace": "gateways"}])
        app["metadata"]["generation"] += 1

    def compare_with_a_baseline(self) -> None:
        """The user turns spec.analysis.baseline on (mid-rollout: the baseline must not get traffic before it
        is ready)."""
        app = self._stored()
        app["spec"]["analysis"] = {"baseline": True}
        app["metadata"]["generation"] += 1

    def request(self, action: Action, token: str) -> None:
        app = self._stored()
        app["metadata"]["annotations"][action.annotation] = token
        if action == Action.RETRY:
            self.retries.add(REVISION[app["spec"]["image"]])

    def delete(self) -> None:
        self._stored()["metadata"]["deletionTimestamp"] = timestamp(self.now)

    # The API server ---------------------------------------------------------------------------------------

    def patch_status(self, patch: dict[str, Any]) -> None:
        if self.app is None:
            raise TransientError(f"CanaryApp {NAMESPACE}/{NAME} not found (404)")
        self._stored()["status"] = without_nulls(merge_patch(self.app.get("status"), patch))
        self._audit_status()

    def set_finalizers(self, finalizers: list[str], resource_version: str) -> None:
        if self.app is None:
            raise TransientError(f"CanaryApp {NAMESPACE}/{NAME} not found (404)")
        if resource_version != str(self.resource_version):
            raise TransientError(f"CanaryApp {NAMESPACE}/{NAME} changed since it was read (409)")
        self._stored()["metadata"]["finalizers"] = finalizers
        if self.app["metadata"].get("deletionTimestamp") and not finalizers:
            self.app = None
            if self.stack is not None or self.deployments:
                self.violation("the CanaryApp is gone while its stack still exists (leaked)")

    def deployment_state(self, name: str) -> DeploymentState | None:
        deployment = self.deployments.get(name)
        if deployment is None:
            return None
        ready = (self.now - deployment.changed_at).total_seconds() >= READY_AFTER_SECONDS
        return DeploymentState(deployment.image, ready=ready, revision=deployment.revision, replicas=1)

    def declares(self, ref: ObjectRef) -> bool:
        if self.stack is None:
            return False
        return ref in owned_objects(
            NAME,
            (self.stack.router,),
            with_canary=self.stack.canary_template is not None,
            with_baseline=self.stack.baseline_template is not None,
        )

    def other_rollouts(self) -> list[dict[str, Any]]:
        if self.slot_taken_until is None or self.now >= self.slot_taken_until:
            return []
        return [{"metadata": {"name": "api", "namespace": NAMESPACE}, "status": {"phase": "Progressing"}}]

    def _audit_status(self) -> None:
        """What the API server stored after a status write: valid, and no failed release forgotten."""
        assert self.app is not None
        try:
            CanaryApp.model_validate(self.app)
        except ValidationError as error:
            self.violation(f"the stored CanaryApp does not parse: {error}")
        for problem in schema_problems(self.app["status"], STATUS_SCHEMA, "status"):
            self.violation(f"the CRD refuses the status: {problem}")
        status = self.app["status"]
        failed = set(status.get("failedRevisions") or ())
        for revision in sorted(self.failed - failed):
            if revision in self.retries:
                self.retries.discard(revision)
            else:
                self.violation(f"status.failedRevisions forgot {revision} without a retry request")
        self.failed = failed
        weight = status.get("canaryWeight", 0)
        if not 0 <= weight <= 100 or status.get("trafficShift", 0) != weight:
            self.violation(
                f"impossible weights in the status: {weight}, trafficShift {status.get('trafficShift')}"
            )

    # The stack ---------------------------------------------------------------------------------------------

    def apply(self, desired: DesiredStack) -> None:
        routed = desired.router == Router.GATEWAY_API
        new_route = routed and (
            self.stack is None
            or self.stack.router != desired.router
            or self.stack.canary_weight != desired.canary_weight
        )
        if new_route:
            self.route_generation += 1
            self.route_changed_at = self.now
        if self.stack is None or self.stack.canary_weight != desired.canary_weight:
            accepted_after = self.route_accept_after if routed else 0.0
            self.weight_since = self.now + datetime.timedelta(seconds=accepted_after)
        self.stack = desired
        self._roll(primary_name(NAME), desired.primary_revision, desired.primary_image)
        if desired.baseline_template is None or desired.baseline_revision is None:
            self.deployments.pop(baseline_name(NAME), None)
        else:
            self._roll(baseline_name(NAME), desired.baseline_revision, desired.primary_image)
        if desired.canary_template is None or desired.canary_revision is None:
            self.deployments.pop(canary_name(NAME), None)
            return
        created = self._roll(canary_name(NAME), desired.canary_revision, desired.canary_image or "")
        if created and desired.canary_revision in self.failed:
            self.violation(f"a canary of {desired.canary_revision} started while it is a failed release")
        if created and self.other_rollouts():
            self.violation("a canary started while the only rollout slot was taken")

    def _audit_check(self) -> None:
        """A check judges the weight the status names, sent by the world for a whole interval."""
        assert self.app is not None
        weight = status_of(self.app).get("canaryWeight", 0)
        interval = self.app["spec"]["trafficShiftUpdateInterval"]
        sent_for = (self.now - self.weight_since).total_seconds()
        applied = self.stack.canary_weight if self.stack is not None else 0
        if applied != weight or sent_for < interval:
            self.violation(
                f"a check judged weight {weight}% while the world sent {applied}% for {sent_for:.0f}s"
            )

    def http_route(self) -> dict[str, Any] | None:
        """The HTTPRoute of a gateway-api stack, with its parent's verdict on the generation it has seen."""
        if self.stack is None or self.stack.router != Router.GATEWAY_API:
            return None
        accepted = (self.now - self.route_changed_at).total_seconds() >= self.route_accept_after
        seen = self.route_generation if accepted else self.route_generation - 1
        conditions = [
            {"type": kind, "status": "True", "reason": kind, "observedGeneration": seen}
            for kind in ("Accepted", "ResolvedRefs")
        ]
        parent = {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "namespace": "gateways",
            "name": "public",
        }
        return {
            "metadata": {"name": NAME, "namespace": NAMESPACE, "generation": self.route_generation},
            "spec": http_route_spec(route_of(self.stack)),
            "status": {"parents": [{"parentRef": parent, "conditions": conditions}] if seen else []},
        }

    def _roll(self, name: str, revision: str, image: str) -> bool:
        """Gives the Deployment its template; True when that is new (it is not ready for a while then)."""
        current = self.deployments.get(name)
        if current is not None and current.revision == revision:
            return False
        self.deployments[name] = Deployment(revision, image, self.now)
        return True

    def destroy(self) -> None:
        self.stack = None
        self.deployments.clear()

    def audit(self) -> None:
        """Between passes: the traffic split the applied stack's VirtualService declares, and a status that
        says the stack is applied says so truly (a CanaryApp being deleted keeps its last status: the
        finalizer destroys the stack and writes none)."""
        deleting = self.app is None or self.app["metadata"].get("deletionTimestamp")
        status = status_of(self.app) if self.app is not None and not deleting else {}
        synced = stack_synced(status)
        if synced.get("status") == "True" and (
            self.stack is None or self.stack.fingerprint() != status.get("lastAppliedHash")
        ):
            self.violation("StackSynced is True, but the applied stack is not the one the status names")
        if self.stack is None:
            if self.deployments:
                self.violation(f"Deployments {sorted(self.deployments)} exist without a stack")
            return
        route = virtual_service_spec(route_of(self.stack))["http"][0]["route"]
        weights = {entry["destination"]["subset"]: entry["weight"] for entry in route}
        if sum(weights.values()) != 100 or min(weights.values()) < 0:
            self.violation(f"the VirtualService's weights {weights} do not sum to 100")
        deployments = {
            "primary": primary_name(NAME),
            "canary": canary_name(NAME),
            "baseline": baseline_name(NAME),
        }
        for subset, weight in weights.items():
            if weight > 0 and deployments[subset] not in self.deployments:
                self.violation(
                    f"{weight}% of the traffic goes to {deployments[subset]}, which does not exist"
                )
        baseline = self.deployment_state(baseline_name(NAME))
        if weights.get("baseline", 0) > 0 and (baseline is None or not baseline.ready):
            self.violation(f"{weights['baseline']}% of the traffic goes to a baseline that is not ready")

    # Prometheus ----------------------------------------------------------------------------------------

    def answer(self, query: str) -> QueryResult:
        if query == ERRORS_QUERY:
            self._audit_check()
        if query == TRAFFIC_QUERY:
            if self.quiet_checks > 0:
                self.quiet_checks -= 1
                return QueryResult(CheckOutcome.CLEAN)
            return QueryResult(CheckOutcome.CLEAN, series=(Series(labels={}, value="240"),), total_series=1)
        if self.errors_found:
            errors = (Series(labels={"code": "503"}, value="17"),)
            return QueryResult(CheckOutcome.ERRORS_FOUND, 'query returned {code="503"}=17', errors, 1)
        return QueryResult(CheckOutcome.CLEAN)


def describe_status(patch: dict[str, Any]) -> str:
    synced = next((c["reason"] for c in patch.get("conditions") or () if c["type"] == "StackSynced"), None)
    return (
        f"write_status(phase={patch.get('phase')}, weight={patch.get('canaryWeight')}, StackSynced={synced})"
    )


class ApiServer:
    """The API server over the world: the cache a pass reads (always current), its reads and its writes."""

    def __init__(self, world: World, points: WritePoints) -> None:
        self.world, self.points = world, points

    def get_canary_app(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.world.app)

    def canary_apps(self) -> list[dict[str, Any]]:
        mine = [copy.deepcopy(self.world.app)] if self.world.app is not None else []
        return [*mine, *self.world.other_rollouts()]

    def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        return self.world.deployment_state(name)

    def http_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.world.http_route())

    def owner_uids(self, namespace: str, ref: ObjectRef) -> frozenset[str] | None:
        return frozenset({UID}) if self.world.declares(ref) else None

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.points.write(describe_status(status), lambda: self.world.patch_status(status))
        return copy.deepcopy(self.world.app) or {}

    def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        self.points.write(
            f"set_finalizers({finalizers})", lambda: self.world.set_finalizers(finalizers, resource_version)
        )
        return copy.deepcopy(self.world.app) or {}

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        return None

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        return {
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
        }

    def object_annotations(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        return None

    def pod_security_warnings(self, namespace: str, deployment: dict[str, Any]) -> list[str]:
        return []


class Pulumi:
    """The StackRunner port over the world."""

    def __init__(self, world: World, points: WritePoints) -> None:
        self.world, self.points = world, points

    def apply(self, desired: DesiredStack) -> StepReport:
        canary = f"{desired.canary_image}@{desired.canary_weight}%" if desired.canary_template else None
        self.points.write(
            f"apply(primary={desired.primary_image}, canary={canary})", lambda: self.world.apply(desired)
        )
        return StepReport({"update": 1}, 0.0)

    def destroy(self, namespace: str, name: str, keep: Collection[tuple[str, str]] = ()) -> StepReport:
        self.points.write("destroy()", self.world.destroy)
        return StepReport({"delete": 5}, 0.0)


class Prometheus:
    def __init__(self, world: World) -> None:
        self.world = world

    def query(
        self, endpoint: MetricsEndpoint, query: str, at: datetime.datetime | None = None
    ) -> QueryResult:
        return self.world.answer(query)


class Events:
    def emit(self, app: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        pass


class Decisions(Telemetry):
    """Telemetry that remembers the kind of every decision made."""

    def __init__(self, kinds: list[str]) -> None:
        super().__init__()
        self.kinds = kinds

    def decided(self, namespace: str, name: str, decision: Decision) -> None:
        self.kinds.append(decision.kind)


@dataclass(frozen=True)
class Event:
    """A user's change, made once, at the first pass boundary where `when` holds of the stored CanaryApp."""

    when: Callable[[dict[str, Any]], bool]
    change: Callable[[World], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    start: Callable[[], World]
    events: tuple[Event, ...]
    outcome: Callable[[World], list[str]]
    transitions: frozenset[str]  # decision kinds its clean run takes
    min_crash_points: int
    max_concurrent_rollouts: int | None = None


@dataclass
class Run:
    world: World
    writes: list[str]
    decisions: list[str]
    crashed: bool
    problems: list[str]


def run(scenario: Scenario, crash: CrashPoint | None = None) -> Run:
    """Passes until the CanaryApp settles (or is gone); a crash restarts the reconciler on the same world."""
    world, points = scenario.start(), WritePoints(crash)
    decisions: list[str] = []
    events = list(scenario.events)

    def restarted() -> Reconciler:
        api_server = ApiServer(world, points)
        return Reconciler(
            api_server,
            api_server,
            api_server,
            Pulumi(world, points),
            Prometheus(world),
            Events(),
            clock=lambda: world.now,
            telemetry=Decisions(decisions),
            max_concurrent_rollouts=scenario.max_concurrent_rollouts,
            policy=RoutingPolicy(allowed_gateways=("gateways/*",)),
        )

    reconciler, settled = restarted(), False
    for _ in range(MAX_PASSES):
        if events and world.app is not None and events[0].when(world.app):
            events.pop(0).change(world)
        writes_before = len(points.log)
        try:
            requeue = reconciler.reconcile(NAMESPACE, NAME).requeue_after
        except Crash:
            world.audit()
            reconciler = restarted()
            world.advance(RESTART_SECONDS)
            continue
        except TransientError as error:
            world.advance(error.retry_after)
            continue
        world.audit()
        settled = world.app is None or (requeue is None and len(points.log) == writes_before and not events)
        if settled:
            break
        world.advance(WAKE_SECONDS if requeue is None else requeue)
    problems = [*dict.fromkeys(world.violations), *scenario.outcome(world)]
    if not settled:
        problems.append(f"not settled after {MAX_PASSES} passes ({len(events)} user changes not made)")
    return Run(world, points.log, decisions, points.crashed, problems)


@functools.cache
def _ready_world() -> World:
    return run(CREATE).world


def ready_then(
    image: str,
    *,
    errors_found: bool = False,
    quiet_checks: int = 0,
    slot_taken_for: float | None = None,
    route_accepted_after: float | None = None,
) -> Callable[[], World]:
    """A CanaryApp that became Ready with V1, then given `image` (and with `route_accepted_after`, moved to
    the gateway-api router at the same time, its Gateway accepting each route that long after it changed)."""

    def start() -> World:
        world = copy.deepcopy(_ready_world())
        world.errors_found, world.quiet_checks = errors_found, quiet_checks
        if slot_taken_for is not None:
            world.slot_taken_until = world.now + datetime.timedelta(seconds=slot_taken_for)
        if route_accepted_after is not None:
            world.route_accept_after = route_accepted_after
            world.route_through_gateway()
        world.set_image(image)
        return world

    return start


def settled_as(phase: str, image: str, failed: tuple[str, ...] = ()) -> Callable[[World], list[str]]:
    """The end of a rollout: the status and the applied stack agree that the primary runs `image`'s revision
    alone, and exactly `failed` (images) are failed releases."""

    def outcome(world: World) -> list[str]:
        if world.app is None or world.stack is None:
            return ["the CanaryApp or its stack is gone"]
        status, stack = world.app.get("status", {}), world.stack
        synced = stack_synced(status)
        found = {
            "phase": status.get("phase"),
            "status.primaryRevision": status.get("primaryRevision"),
            "status.canaryRevision": status.get("canaryRevision"),
            "status.canaryWeight": status.get("canaryWeight"),
            "status.failedRevisions": tuple(status.get("failedRevisions", ())),
            "StackSynced": synced.get("status"),
            "status.lastAppliedHash": status.get("lastAppliedHash"),
            "stack primary": stack.primary_revision,
            "stack canary": stack.canary_revision,
            "stack canary weight": stack.canary_weight,
            "Deployments": sorted(world.deployments),
        }
        wanted = {
            "phase": phase,
            "status.primaryRevision": REVISION[image],
            "status.canaryRevision": None,
            "status.canaryWeight": 0,
            "status.failedRevisions": tuple(REVISION[item] for item in failed),
            "StackSynced": "True",
            "status.lastAppliedHash": stack.fingerprint(),
            "stack primary": REVISION[image],
            "stack canary": None,
            "stack canary weight": 0,
            "Deployments": [primary_name(NAME)],
        }
        return [
            f"{key} is {found[key]!r}, not {value!r}" for key, value in wanted.items() if found[key] != value
        ]

    return outcome


def deleted(world: World) -> list[str]:
    found = {"CanaryApp": world.app, "stack": world.stack, "Deployments": world.deployments}
    return [f"the {what} is still there" for what, value in found.items() if value]


def status_of(app: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = app.get("status") or {}
    return status


def stack_synced(status: dict[str, Any]) -> dict[str, Any]:
    """The StackSynced condition of a stored status ({} when there is none)."""
    return next((c for c in status.get("conditions", []) if c["type"] == "StackSynced"), {})


def at_weight(weight: int) -> Callable[[dict[str, Any]], bool]:
    def holds(app: dict[str, Any]) -> bool:
        status = status_of(app)
        return status.get("phase") == "Progressing" and status.get("canaryWeight", 0) >= weight

    return holds


def applied_at_weight(weight: int) -> Callable[[dict[str, Any]], bool]:
    def holds(app: dict[str, Any]) -> bool:
        return at_weight(weight)(app) and stack_synced(status_of(app)).get("status") == "True"

    return holds


def in_phase(phase: str) -> Callable[[dict[str, Any]], bool]:
    return lambda app: status_of(app).get("phase") == phase


def handled(action: Action, token: str) -> Callable[[dict[str, Any]], bool]:
    return lambda app: status_of(app).get("handledRequests", {}).get(action.value) == token


def request(action: Action, token: str) -> Callable[[World], None]:
    return lambda world: world.request(action, token)


CREATE = Scenario(
    name="create",
    start=World,
    events=(),
    outcome=settled_as("Ready", V1),
    transitions=frozenset({"Initialize", "Hold", "BecomeReady"}),
    min_crash_points=12,
)
ALL_SCENARIOS = (
    CREATE,
    Scenario(
        name="clean-checks-promote",
        start=ready_then(V2, quiet_checks=1),
        events=(),
        outcome=settled_as("Succeeded", V2),
        transitions=frozenset({"StartCanary", "Advance", "HoldWeight", "Promote", "CompletePromotion"}),
        min_crash_points=42,
    ),
    Scenario(
        name="failing-checks-roll-back",
        start=ready_then(V2, errors_found=True),
        events=(),
        outcome=settled_as("Failed", V1, failed=(V2,)),
        transitions=frozenset({"StartCanary", "Advance", "FailCheck", "Rollback", "Hold"}),
        min_crash_points=24,
    ),
    Scenario(
        name="pause-resume-promote-requests",
        start=ready_then(V2),
        events=(
            Event(at_weight(10), request(Action.PAUSE, "p1")),
            Event(handled(Action.PAUSE, "p1"), request(Action.PAUSE, "p2")),
            Event(handled(Action.PAUSE, "p2"), request(Action.RESUME, "r1")),
            Event(at_weight(20), request(Action.PROMOTE, "now")),
        ),
        outcome=settled_as("Succeeded", V2),
        transitions=frozenset({"Pause", "IgnoreRequest", "Resume", "Promote", "CompletePromotion"}),
        min_crash_points=40,
    ),
    Scenario(
        name="abort-request-then-retry",
        start=ready_then(V2),
        events=(
            Event(at_weight(10), request(Action.ABORT, "a1")),
            Event(in_phase("Failed"), request(Action.RETRY, "again")),
        ),
        outcome=settled_as("Succeeded", V2),
        transitions=frozenset({"Rollback", "Retry", "StartCanary", "CompletePromotion"}),
        min_crash_points=62,
    ),
    Scenario(
        name="abort-request-during-promotion",
        start=ready_then(V2),
        events=(Event(in_phase("Promoting"), request(Action.ABORT, "a1")),),
        outcome=settled_as("Failed", V1, failed=(V2,)),
        transitions=frozenset({"Promote", "Rollback"}),
        min_crash_points=40,
    ),
    Scenario(
        name="newer-image-mid-rollout",
        start=ready_then(V2),
        events=(Event(at_weight(10), lambda world: world.set_image(V3)),),
        outcome=settled_as("Succeeded", V3),
        transitions=frozenset({"AbandonCanary", "StartCanary", "CompletePromotion"}),
        min_crash_points=60,
    ),
    Scenario(
        name="waits-for-a-rollout-slot",
        start=ready_then(V2, slot_taken_for=12),
        events=(),
        outcome=settled_as("Succeeded", V2),
        transitions=frozenset({"WaitForSlot", "StartCanary", "CompletePromotion"}),
        min_crash_points=42,
        max_concurrent_rollouts=1,
    ),
    Scenario(
        # Each weight counts once the Gateway accepted its route, 20 s after the step: the audit of every
        # check (a whole interval of traffic at the judged weight) fails if a check counts from the step.
        name="gateway-api-routes-accepted-late",
        start=ready_then(V2, route_accepted_after=20),
        events=(),
        outcome=settled_as("Succeeded", V2),
        transitions=frozenset({"StartCanary", "WaitForRoute", "Hold", "Advance", "CompletePromotion"}),
        min_crash_points=50,
    ),
    Scenario(
        # The baseline turned on at weight 10 starts at weight 0 with the canary; the audit fails if any
        # traffic reaches it before it is ready. Turned on after the step is applied: a pass that resumes an
        # interrupted step applies it without observing (reconcile.py), so a baseline turned on between a
        # recorded weight and its application gets that weight until it is ready (the status does not record
        # whether a baseline was started).
        name="baseline-turned-on-mid-rollout",
        start=ready_then(V2),
        events=(Event(applied_at_weight(10), World.compare_with_a_baseline),),
        outcome=settled_as("Succeeded", V2),
        transitions=frozenset({"StartCanary", "Advance", "StartBaseline", "Promote", "CompletePromotion"}),
        min_crash_points=50,
    ),
    Scenario(
        name="deleted-mid-rollout",
        start=ready_then(V2),
        events=(Event(at_weight(10), World.delete),),
        outcome=deleted,
        transitions=frozenset({"StartCanary", "Advance"}),
        min_crash_points=18,
    ),
)
SCENARIOS = [pytest.param(scenario, id=scenario.name) for scenario in ALL_SCENARIOS]


def crash_points(writes: list[str]) -> list[CrashPoint]:
    sides: tuple[Side, ...] = ("before", "after")
    return [CrashPoint(index, side) for index in range(len(writes)) for side in sides]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_crash_at_any_write_point_is_recovered(scenario: Scenario) -> None:
    clean = run(scenario)
    assert clean.problems == [], f"{scenario.name} without a crash: {clean.problems}"
    assert scenario.transitions <= set(clean.decisions), clean.decisions
    points = crash_points(clean.writes)
    print(f"{scenario.name}: crash points: {len(points)}")
    assert len(points) >= scenario.min_crash_points, (
        f"{scenario.name} has {len(points)} crash points, fewer than {scenario.min_crash_points}: a "
        "transition or a write point left the scenario; lower the floor only knowingly"
    )
    failures = []
    for point in points:
        crashed = run(scenario, point)
        assert crashed.crashed, point.describe(clean.writes)
        if crashed.problems:
            failures.append(f"{point.describe(clean.writes)}:\n    " + "\n    ".join(crashed.problems))
    assert not failures, f"{scenario.name}, {len(failures)} of {len(points)} crash points:\n" + "\n".join(
        failures
    )


def every_decision_kind(kind: type[Decision] = Decision) -> set[str]:
    kinds = set()
    for subclass in kind.__subclasses__():
        kinds |= {subclass.__name__, *every_decision_kind(subclass)}
    return kinds


def test_the_sweep_takes_every_transition_decide_can_return() -> None:
    clean_runs = [run(scenario) for scenario in ALL_SCENARIOS]
    print(f"crash points in all: {sum(2 * len(clean.writes) for clean in clean_runs)}")
    taken = set().union(*(clean.decisions for clean in clean_runs))
    missing = every_decision_kind() - taken
    assert not missing, f"decisions no scenario takes: {sorted(missing)}; add a scenario that does"
