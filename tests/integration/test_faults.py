"""Faults of the real world during a rollout, on a local cluster of this module's own (its faults must not
reach the other tests): the kube-apiserver killed or frozen, etcd restarted, the Pulumi engine and provider
killed mid-`up`, Prometheus restarted, the Pulumi state out of reach.

Two reconciler replicas elect a leader, each run as the kubelet runs a container: restarted whenever it exits,
after a short backoff. A monitor checks the invariants all along, every fault included:

- at most one replica applies stacks at a time: from each run's JSON log, its leadership lasts from
  "Acquired leadership" to "Lost leadership", "Stopped CanaryApp reconciler" or its exit; every "Applied
  CanaryApp stack" falls inside its run's leadership, and leaderships of the two replicas never overlap (log
  lines carry whole seconds: only an overlap the seconds prove is one);
- the VirtualService's weights sum to 100 and send traffic only to Deployments that exist;
- failed releases stay failed (status.failedRevisions only grows);
- the rollout ends as it should within a generous bound.

Each fault's line (what the reconciler did, how long the rollout took against one without a fault) is printed
when the module ends and written to /tmp/canaryapp-faults.txt.
"""

from __future__ import annotations

import collections
import datetime
import itertools
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from devenv.cluster import POD_SECURITY_LABELS, LocalCluster, running
from devenv.exporter import ControlledExporter
from devenv.kube import ISTIO, api_client, condition, route_weights, stack_synced
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from reconciler.core.model import GROUP, PLURAL, VERSION
from reconciler.core.reasons import CONDITION_STACK_SYNCED
from tests.integration.helpers import Apps, wait_for

# One worker runs the whole module: its cluster and baseline are built once.
pytestmark = pytest.mark.integration

APP = "web"
IDENTITIES = ("replica-a", "replica-b")
SPEC = {
    "trafficShiftUpdateInterval": 3,
    "stepWeight": 25,
    "maxWeight": 50,
    "deploymentReadyWaitTime": 60,
    "failWhenPrometheusFails": False,
}
ROLLOUT_TIMEOUT = 240.0
API_TIMEOUT = 2.0  # the monitor's calls: a frozen API server costs a skipped sample, never a stuck monitor
OUTAGE_SECONDS = 20.0  # past the Lease duration (15 s)
PROMETHEUS_OUTAGE_SECONDS = 15.0
STATE_OUTAGE_SECONDS = 15.0
# A check whose query ran just before Prometheus stopped may be recorded just after.
CHECK_SLACK_SECONDS = 2.0
REPORT = Path("/tmp/canaryapp-faults.txt")
# Log lines of the replicas a fault's line counts, and how it names them.
REPORTED_EVENTS = {
    "Lost leadership": "lost leadership",
    "Failed to apply CanaryApp stack": "failed steps",
    "Stopped Pulumi steps": "steps stopped",
}
FAULT_LINES: list[str] = []
UNREACHABLE = (ApiException, urllib3.exceptions.HTTPError, OSError)


# --- replicas, as the kubelet runs them ---------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """A time known only to lie between `earliest` and `latest` (log lines carry whole seconds)."""

    earliest: float
    latest: float

    def __str__(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.earliest))


def logged_at(text: str) -> Moment:
    second = time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    return Moment(second, second + 1)


@dataclass
class Run:
    """One process of a replica, with a log of its own."""

    process: ReconcilerProcess
    started_at: float
    exited_at: float | None = None

    def events(self) -> list[tuple[str, Moment]]:
        """(message, moment) of each complete JSON line of this run's log."""
        text = self.process.log()
        events = []
        for line in text[: text.rfind("\n") + 1].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "message" in entry and "time" in entry:
                events.append((str(entry["message"]), logged_at(entry["time"])))
        return events


class SupervisedReplica:
    """A reconciler replica with leader election, restarted whenever its process exits, counting restarts:
    after a backoff of 1 s, doubled for each run in a row shorter than 30 s, at most 8 s. The replicas share
    one Pulumi backend; each has its own state folder (workspaces, plugins home)."""

    def __init__(
        self, identity: str, cluster: LocalCluster, namespace: str, root: Path, backend: Path
    ) -> None:
        self.identity = identity
        self.cluster = cluster
        self.namespace = namespace
        self.state_dir = root / identity
        self.backend = backend
        self.runs: list[Run] = []
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name=f"supervise-{identity}", daemon=True)

    def start(self) -> None:
        self._launch()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        with self._lock:
            run = self.runs[-1]
        run.process.stop()
        if run.exited_at is None:
            run.exited_at = time.time()

    @property
    def pid(self) -> int | None:
        with self._lock:
            process = self.runs[-1].process.process
        return process.pid if process is not None and process.poll() is None else None

    def current_log(self) -> str:
        with self._lock:
            return self.runs[-1].process.log()

    def _launch(self) -> None:
        process = ReconcilerProcess(
            self.cluster.kubeconfig,
            self.namespace,
            self.state_dir,
            "--leader-elect",
            f"--lease-namespace={self.namespace}",
            f"--identity={self.identity}",
            f"--backend-url=file://{self.backend}",
            "--log-format=json",
            "--step-timeout=60",
            log_name=f"run-{len(self.runs) + 1}.log",
        )
        process.start()
        self.runs.append(Run(process, time.time()))

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping.wait(0.2):
            run = self.runs[-1]
            assert run.process.process is not None
            if run.process.process.poll() is None:
                continue
            run.exited_at = time.time()
            run.process.stop()  # its process group: what it started dies with it, as in a container
            if run.exited_at - run.started_at >= 30:
                backoff = 1.0
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, 8.0)
            with self._lock:
                self.restarts += 1
                self._launch()


# --- the invariants -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leadership:
    identity: str
    run: int
    start: Moment
    end: Moment  # latest is infinite while the run still leads

    def __str__(self) -> str:
        end = "now" if self.end.latest == float("inf") else str(self.end)
        return f"{self.identity} (run {self.run}) led {self.start} to {end}"


def leaderships(replica: SupervisedReplica, read_at: float) -> tuple[list[Leadership], list[str]]:
    """The leaderships of a replica's runs and the violations its log shows: a stack applied outside them.
    `read_at` was taken before the logs were read: a line missing from them is written after it."""
    found, violations = [], []
    for number, run in enumerate(list(replica.runs), start=1):
        events = run.events()
        acquired = next(
            (index for index, (message, _) in enumerate(events) if message == "Acquired leadership"), None
        )
        applied = [moment for message, moment in events if message == "Applied CanaryApp stack"]
        if acquired is None:
            violations += [
                f"{replica.identity} (run {number}) applied a stack at {moment} without acquiring leadership"
                for moment in applied
            ]
            continue
        ended = next(
            (
                moment
                for message, moment in events[acquired:]
                if message in ("Lost leadership", "Stopped CanaryApp reconciler")
            ),
            None,
        )
        if ended is None:
            exited = run.exited_at
            ended = Moment(exited - 1.0, exited) if exited is not None else Moment(read_at, float("inf"))
        leadership = Leadership(replica.identity, number, events[acquired][1], ended)
        found.append(leadership)
        violations += [
            f"{replica.identity} (run {number}) applied a stack at {moment}, outside its leadership: "
            f"{leadership}"
            for moment in applied
            if moment.latest <= leadership.start.earliest or moment.earliest >= leadership.end.latest
        ]
    return found, violations


def overlapping(first: Leadership, second: Leadership) -> bool:
    """Whether the two certainly overlap, whatever the true times within the logged seconds."""
    return max(first.start.latest, second.start.latest) <= min(first.end.earliest, second.end.earliest)


@dataclass(frozen=True)
class CheckSeen:
    time: float
    weight: int
    outcome: str


class Monitor:
    """Checks the invariants every 0.2 s (the replicas' logs every second) from the start of the module to its
    end, and records what it saw: weight changes, every check the status recorded, the leaderships."""

    def __init__(
        self, kube: kubernetes.client.ApiClient, namespace: str, replicas: list[SupervisedReplica]
    ) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(kube)
        self.apps = kubernetes.client.AppsV1Api(kube)
        self.namespace = namespace
        self.replicas = replicas
        self.violations: list[str] = []
        self.weights: list[tuple[float, int, int]] = []  # (time, primary, canary) at each change
        self.samples = 0  # routes checked against the Deployments: a monitor that sees nothing proves nothing
        self.checks: dict[tuple[str, int], CheckSeen] = {}
        self.failed_revisions: set[str] = set()
        self.leaderships: list[Leadership] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invariants", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.check_logs()

    def _violate(self, message: str) -> None:
        with self._lock:
            if message not in self.violations:
                self.violations.append(message)

    def _run(self) -> None:
        next_log_check = 0.0
        while not self._stop.wait(0.2):
            self._check_world()
            if time.monotonic() >= next_log_check:
                self.check_logs()
                next_log_check = time.monotonic() + 1.0

    def check_logs(self) -> None:
        read_at = time.time()
        found: list[Leadership] = []
        for replica in self.replicas:
            replica_leaderships, violations = leaderships(replica, read_at)
            found += replica_leaderships
            for violation in violations:
                self._violate(violation)
        for index, first in enumerate(found):
            for second in found[index + 1 :]:
                if first.identity != second.identity and overlapping(first, second):
                    self._violate(f"two replicas led at once: {first} and {second}")
        with self._lock:
            self.leaderships = sorted(found, key=lambda leadership: leadership.start.earliest)

    def _get(self, read: Callable[[], Any]) -> Any | None:
        """An object, None when it does not exist; UNREACHABLE raised otherwise."""
        try:
            return read()
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _virtual_service(self) -> Any | None:
        return self._get(
            lambda: self.custom.get_namespaced_custom_object(
                *ISTIO, self.namespace, "virtualservices", APP, _request_timeout=API_TIMEOUT
            )
        )

    def _deployment(self, name: str) -> Any | None:
        return self._get(
            lambda: self.apps.read_namespaced_deployment(name, self.namespace, _request_timeout=API_TIMEOUT)
        )

    def _check_world(self) -> None:
        try:
            before = self._virtual_service()
            deployments = {track: self._deployment(f"{APP}-{track}") for track in ("primary", "canary")}
            after = self._virtual_service()
            app = self._get(
                lambda: self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, APP, _request_timeout=API_TIMEOUT
                )
            )
        except UNREACHABLE:
            return  # the fault at work: the next sample tells
        # The Deployments were read while the VirtualService stayed the same: they are what it routes to.
        if before is not None and after is not None:
            version = before["metadata"]["resourceVersion"]
            if version == after["metadata"]["resourceVersion"]:
                self._check_routes(version, route_weights(before), deployments)
                self.samples += 1
        if app is not None:
            self._check_status(app.get("status") or {})

    def _check_routes(self, version: str, weights: tuple[int, int], deployments: dict[str, Any]) -> None:
        primary, canary = weights
        if not self.weights or self.weights[-1][1:] != weights:
            self.weights.append((time.time(), primary, canary))
        if primary + canary != 100:
            self._violate(
                f"VirtualService {APP} (resourceVersion {version}) weights {weights} do not sum to 100"
            )
        for track, weight in (("primary", primary), ("canary", canary)):
            deployment = deployments[track]
            gone = (
                "is missing"
                if deployment is None
                else "is being deleted"
                if deployment.metadata.deletion_timestamp is not None
                else ""
            )
            if weight > 0 and gone:
                self._violate(
                    f"VirtualService {APP} (resourceVersion {version}) sends {weight}% to Deployment "
                    f"{APP}-{track}, which {gone}"
                )

    def _check_status(self, status: dict[str, Any]) -> None:
        failed = set(status.get("failedRevisions") or ())
        forgotten = self.failed_revisions - failed
        if forgotten:
            self._violate(
                f"failed releases forgotten: {sorted(forgotten)} left status.failedRevisions {sorted(failed)}"
            )
        self.failed_revisions |= failed
        for check in status.get("checks") or ():
            moment = datetime.datetime.fromisoformat(check["time"]).timestamp()
            self.checks[(check["time"], check["weight"])] = CheckSeen(
                moment, check["weight"], check["outcome"]
            )

    def checks_between(self, start: float, end: float) -> list[CheckSeen]:
        return sorted((c for c in list(self.checks.values()) if start <= c.time <= end), key=lambda c: c.time)

    def canary_raises_between(self, start: float, end: float) -> int:
        """How many times the canary's weight went up between `start` and `end`."""
        changes = [(moment, canary) for moment, _, canary in list(self.weights)]
        return sum(
            1
            for (_, earlier), (moment, later) in itertools.pairwise(changes)
            if start <= moment <= end and later > earlier
        )


# --- the world of this module -------------------------------------------------------------------------------


@dataclass
class World:
    cluster: LocalCluster
    prometheus: PrometheusServer
    apps: Apps
    namespace: str
    backend: Path
    replicas: list[SupervisedReplica]
    monitor: Monitor
    baseline_seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def replica(self, identity: str) -> SupervisedReplica:
        return next(replica for replica in self.replicas if replica.identity == identity)

    def leader(self) -> SupervisedReplica | None:
        try:
            lease = kubernetes.client.CoordinationV1Api(self.apps.custom.api_client).read_namespaced_lease(
                "canaryapp-reconciler", self.namespace, _request_timeout=API_TIMEOUT
            )
        except UNREACHABLE:
            return None
        holder = lease.spec.holder_identity if lease.spec is not None else None
        return self.replica(holder) if holder in IDENTITIES else None

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Waits until no rollout is under way and the cluster matches the status: a fault starts from a
        settled CanaryApp, and one that an earlier fault left unsettled fails here, saying so."""
        status: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.apps.status(APP)
            if status.get("phase") in ("Succeeded", "Failed") and stack_synced(status):
                return
            time.sleep(0.5)
        synced = condition(status, CONDITION_STACK_SYNCED) or {}
        raise AssertionError(
            f"CanaryApp {APP} did not settle within {timeout:.0f}s before this fault (did an earlier one "
            f"leave it so?): phase {status.get('phase')}, message {status.get('message')!r}, "
            f"StackSynced {synced}"
        )

    def log_counts(self, since: float) -> collections.Counter[str]:
        """How many of each message the replicas logged from `since` on."""
        return collections.Counter(
            message
            for replica in self.replicas
            for run in list(replica.runs)
            for message, moment in run.events()
            if moment.latest > since
        )

    def canary_weight_reached(self, weight: int) -> bool:
        try:
            weights = self.apps.weights(APP)
        except UNREACHABLE:
            return False
        return weights is not None and weights[1] >= weight

    def ended(self, image: str, phase: str) -> dict[str, Any] | None:
        try:
            status = self.apps.phase_is(APP, phase)
        except UNREACHABLE:
            return None
        if status is None:
            return None
        done = (
            image in status.get("failedImages", ())
            if phase == "Failed"
            else status.get("primaryImage") == image
        )
        return status if done else None


def descendants(root: int) -> list[int]:
    """The pids of every process below `root` (from /proc: each process's parent)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        below = children.get(queue.pop(), [])
        found += below
        queue += below
    return found


def command_line(pid: int) -> list[str]:
    try:
        return [
            part.decode(errors="replace") for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ]
    except OSError:
        return []


def stack_locks(world: World) -> dict[Path, int | None]:
    """The Pulumi locks in the shared backend and the pid of the `pulumi` process that wrote each."""
    found: dict[Path, int | None] = {}
    for path in world.backend.glob(".pulumi/locks/**/*.json"):
        try:
            found[path] = json.loads(path.read_text()).get("pid")
        except (OSError, ValueError):
            found[path] = None
    return found


def step_processes(world: World) -> tuple[SupervisedReplica, list[int], list[int]] | None:
    """The leader, the `pulumi up` processes and the Kubernetes providers below it, while an `up` holds its
    stack lock (the update is under way, not starting)."""
    leader = world.leader()
    if leader is None or leader.pid is None:
        return None
    clis, providers = [], []
    for pid in descendants(leader.pid):
        argv = command_line(pid)
        name = os.path.basename(argv[0]) if argv else ""
        if name == "pulumi" and "up" in argv[1:]:
            clis.append(pid)
        elif name == "pulumi-resource-kubernetes":
            providers.append(pid)
    holding = set(stack_locks(world).values())
    return (leader, clis, providers) if any(pid in holding for pid in clis) else None


def wait_for_step(world: World, timeout: float = 90.0) -> tuple[SupervisedReplica, list[int], list[int]]:
    """Polls (every 20 ms) until the leader runs an `up`; returns what `step_processes` found."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = step_processes(world)
        if found is not None:
            return found
        time.sleep(0.02)
    raise AssertionError(f"the leader ran no `pulumi up` holding its lock within {timeout:.0f}s")


# --- the faults ---------------------------------------------------------------------------------------------


def wait_canary_live(world: World) -> None:
    wait_for(
        lambda: world.canary_weight_reached(SPEC["stepWeight"]),
        ROLLOUT_TIMEOUT,
        "the canary receives traffic",
    )


def kill_apiserver(world: World) -> str:
    wait_canary_live(world)
    world.cluster.kill_apiserver()
    time.sleep(OUTAGE_SECONDS)
    world.cluster.start_apiserver_again()
    return f"kube-apiserver down {OUTAGE_SECONDS:.0f} s"


def freeze_apiserver(world: World) -> str:
    wait_canary_live(world)
    world.cluster.freeze_apiserver()
    try:
        time.sleep(OUTAGE_SECONDS)
    finally:
        world.cluster.resume_apiserver()
    return f"kube-apiserver frozen {OUTAGE_SECONDS:.0f} s"


def restart_etcd(world: World) -> str:
    wait_canary_live(world)
    started = time.monotonic()
    world.cluster.restart_etcd()
    return f"API server ready again {time.monotonic() - started:.0f} s after etcd was killed"


def kill_engine_and_provider(world: World) -> str:
    """SIGKILLs the `pulumi` CLI (the engine) and the Kubernetes provider of the leader while an `up` runs."""
    tries = 0
    deadline = time.monotonic() + 90.0
    while time.monotonic() < deadline:
        tries += 1
        leader, clis, providers = wait_for_step(world, timeout=max(deadline - time.monotonic(), 0.1))
        killed = []
        for pid in (*clis, *providers):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                continue
        if any(pid in killed for pid in clis):
            time.sleep(1.0)
            left = "its lock left behind" if set(clis) & set(stack_locks(world).values()) else "no lock left"
            return (
                f"killed `pulumi up` {clis} and provider {providers} of {leader.identity} mid-update "
                f"(try {tries}), {left}"
            )
    raise AssertionError("never caught a `pulumi up` mid-step within 90 s")


def restart_prometheus(world: World) -> str:
    wait_canary_live(world)
    stopped = time.time()
    world.prometheus.stop()
    try:
        time.sleep(PROMETHEUS_OUTAGE_SECONDS)
    finally:
        world.prometheus.start()
    world.notes["prometheus-outage"] = (stopped, time.time())
    return f"Prometheus down {PROMETHEUS_OUTAGE_SECONDS:.0f} s"


def hide_state(world: World) -> str:
    """Puts a plain file where the shared backend folder was (root ignores permissions, so chmod 000 would
    hide nothing) while the leader runs an `up`, then puts the folder back."""
    leader, _, _ = wait_for_step(world)
    hidden = world.backend.with_name(world.backend.name + ".hidden")
    world.backend.rename(hidden)
    world.backend.write_text("the Pulumi state is out of reach (tests/integration/test_faults.py)\n")
    try:
        time.sleep(STATE_OUTAGE_SECONDS)
    finally:
        world.backend.unlink()
        hidden.rename(world.backend)
    return f"backend out of reach {STATE_OUTAGE_SECONDS:.0f} s from mid-`up` of {leader.identity}"


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[World], str]
    phase: str = "Succeeded"
    fail_when_prometheus_fails: bool = False


FAULTS = [
    Fault("prometheus-restart-failing", restart_prometheus, "Failed", fail_when_prometheus_fails=True),
    Fault("apiserver-restart", kill_apiserver),
    Fault("apiserver-freeze", freeze_apiserver),
    Fault("etcd-restart", restart_etcd),
    Fault("prometheus-restart-holding", restart_prometheus),
    Fault("state-unavailable", hide_state),
    Fault("engine-kill", kill_engine_and_provider),
]


@dataclass(frozen=True)
class Rollout:
    status: dict[str, Any]
    seconds: float
    violations: list[str]
    samples: int
    line: str


def roll_out(world: World, label: str, fault: Fault | None) -> Rollout:
    """Starts a rollout of a new image, injects the fault and waits for the rollout's end; its line goes to
    the report whatever happens."""
    image = f"app:{label}"
    phase = fault.phase if fault is not None else "Succeeded"
    restarts = {replica.identity: replica.restarts for replica in world.replicas}
    violations_before, samples_before = len(world.monitor.violations), world.monitor.samples
    started_at, started = time.time(), time.monotonic()
    note, outcome = "", "did not end"
    status: dict[str, Any] | None = None
    try:
        if fault is not None:
            world.wait_settled()
        world.apps.patch_spec(
            APP,
            image=image,
            failWhenPrometheusFails=fault.fail_when_prometheus_fails if fault else False,
        )
        if fault is not None:
            note = fault.inject(world)
        status = wait_for(lambda: world.ended(image, phase), ROLLOUT_TIMEOUT, f"{image} {phase}")
        outcome = "promoted" if phase == "Succeeded" else "rolled back"
    finally:
        seconds = time.monotonic() - started
        world.monitor.check_logs()
        acquired = [
            leadership for leadership in world.monitor.leaderships if leadership.start.latest >= started_at
        ]
        previous = [
            leadership for leadership in world.monitor.leaderships if leadership.start.latest < started_at
        ]
        holders = [leadership.identity for leadership in previous[-1:] + acquired]
        changes = sum(1 for earlier, later in itertools.pairwise(holders) if earlier != later)
        restarted = " ".join(
            f"{replica.identity[-1]}={replica.restarts - restarts[replica.identity]}"
            for replica in world.replicas
        )
        baseline = f" (baseline {world.baseline_seconds:.0f} s)" if fault is not None else ""
        line = (
            f"{'fault ' + label if fault else 'baseline (no fault)'}: {outcome} in {seconds:.0f} s"
            f"{baseline}, "
            f"leader changes {changes} (leadership acquired {len(acquired)}x), restarts {restarted}"
        )
        counts = world.log_counts(started_at)
        line += "".join(f", {what} {counts[message]}" for message, what in REPORTED_EVENTS.items())
        line += f"; {note}" if note else ""
        violations = world.monitor.violations[violations_before:]
        line += f"; INVARIANTS VIOLATED: {len(violations)}" if violations else ""
        FAULT_LINES.append(line)
    assert status is not None
    return Rollout(status, seconds, violations, world.monitor.samples - samples_before, line)


def replica_logs(world: World) -> str:
    return "\n".join(
        f"--- {replica.identity} (current run, last 40 lines)\n"
        + "\n".join(replica.current_log().splitlines()[-40:])
        for replica in world.replicas
    )


def report() -> None:
    text = "\n".join(FAULT_LINES) + "\n"
    REPORT.write_text(text)
    print("\n" + text, end="")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("faults")
    exporter = ControlledExporter()
    exporter.start()
    prometheus = PrometheusServer(root / "prometheus", {"controlled": [exporter.address]})
    try:
        with running(root / "cluster") as cluster:
            cluster.apply_project_crds()
            prometheus.start()
            kube = api_client(cluster.kubeconfig)
            namespace = f"f-{uuid.uuid4().hex[:8]}"
            body: Any = {"metadata": {"name": namespace, "labels": POD_SECURITY_LABELS}}
            kubernetes.client.CoreV1Api(kube).create_namespace(body)
            exporter.set("canary_errors", {"namespace": namespace, "canaryapp": APP}, 0)
            backend = root / "backend"
            backend.mkdir()
            replicas = [
                SupervisedReplica(identity, cluster, namespace, root, backend) for identity in IDENTITIES
            ]
            monitor = Monitor(kube, namespace, replicas)
            world = World(cluster, prometheus, Apps(kube, namespace), namespace, backend, replicas, monitor)
            for replica in replicas:
                replica.start()
            monitor.start()
            try:
                world.apps.create_ready(APP, prometheus.url, **SPEC)
                baseline = roll_out(world, "baseline", None)
                assert baseline.violations == [], f"{baseline.violations}\n{replica_logs(world)}"
                assert baseline.samples > 0, "the monitor checked no routes"
                world.baseline_seconds = baseline.seconds
                yield world
            finally:
                monitor.stop()
                # The standby first: the leader's clean stop hands the Lease over, and nobody may take it.
                for replica in sorted(replicas, key=lambda replica: replica is world.leader()):
                    replica.stop()
    finally:
        prometheus.stop()
        exporter.stop()
        report()


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.name)
def test_a_rollout_ends_as_it_should_through(world: World, fault: Fault) -> None:
    rollout = roll_out(world, fault.name, fault)
    assert rollout.violations == [], "\n".join([*rollout.violations, replica_logs(world)])
    assert rollout.samples > 0, "the monitor checked no routes during the rollout"
    status = rollout.status
    if fault.phase == "Succeeded":
        assert status["primaryImage"] == f"app:{fault.name}"
        assert status["rollouts"][-1]["result"] == "Promoted"
    else:
        assert status["rollouts"][-1]["result"] == "RolledBack"
        assert status["failedRevisions"], "the rolled-back release is failed"
        assert world.monitor.failed_revisions >= set(status["failedRevisions"]), "the monitor saw them"
    if fault.inject is restart_prometheus:
        stopped, restarted = world.notes["prometheus-outage"]
        during = world.monitor.checks_between(stopped, restarted)
        assert any(check.outcome == "QueryFailed" for check in during), f"no check failed its query: {during}"
        # A check's time has whole seconds and the readiness poll sees Prometheus back a poll late: a check
        # within that slack of either end may have asked a Prometheus that was (still or again) there.
        judged = world.monitor.checks_between(stopped + CHECK_SLACK_SECONDS, restarted - CHECK_SLACK_SECONDS)
        assert all(check.outcome == "QueryFailed" for check in judged), f"checks judged silence: {judged}"
        if fault.phase == "Succeeded":
            # At most the step decided on the last answer before the outage; no advance on silence.
            assert world.monitor.canary_raises_between(stopped, restarted) <= 1, world.monitor.weights
