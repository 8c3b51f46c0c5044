"""Control and visibility on the real cluster, driven the way a user does it: the real kubectl finding the
`kubectl-canaryapp` plugin on PATH, a real reconciler process, real Pulumi steps.

- promote, pause/resume, abort and retry during real rollouts, checked against the world (weights,
  Deployments, status), and the notification receiver getting the events in order;
- `plan` at the start of a rollout matches the observed timeline within one interval;
- with --max-concurrent-rollouts 1 two rollouts run one after the other (and a dead notification receiver
  changes nothing);
- a primary that never rolls out during the promotion is rolled back at the progress deadline.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from devenv.cluster import LocalCluster
from devenv.processes import free_port
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from tests.integration.helpers import Apps, WeightRecorder, plugin, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 180
INTERVAL = 2  # the helpers' trafficShiftUpdateInterval
QUOTA = "no-more-pods"


class Receiver:
    """A local notification receiver: records every JSON document POSTed to it, in order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.events.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, name: str) -> list[str]:
        return [event["event"] for event in self.events if event["name"] == name]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    local = Receiver()
    yield local
    local.server.shutdown()


def started(cluster: LocalCluster, namespace: str, tmp_path: Path, *flags: str) -> ReconcilerProcess:
    process = ReconcilerProcess(cluster.kubeconfig, namespace, tmp_path / "reconciler", *flags)
    process.start()
    return process


def parse(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


class Controlled:
    """A reconciler with a notification receiver, a Ready CanaryApp `web`, and the plugin to drive it."""

    def __init__(self, apps: Apps, receiver: Receiver, kubeconfig: Path) -> None:
        self.apps = apps
        self.receiver = receiver
        self.kubeconfig = kubeconfig

    def plugin(self, *args: str) -> subprocess.CompletedProcess[str]:
        return plugin(self.kubeconfig, *args, "--namespace", self.apps.namespace)

    def at_weight(self, image: str, weight: int) -> None:
        self.apps.patch_spec("web", image=image)
        wait_for(
            lambda: (
                (
                    (s := self.apps.status("web")).get("canaryImage") == image
                    and (s.get("canaryWeight") or 0) >= weight
                )
                or None
            ),
            TIMEOUT,
            f"{image} at {weight}%",
        )


@pytest.fixture
def controlled(
    cluster: LocalCluster,
    kube: kubernetes.client.ApiClient,
    namespace: str,
    prometheus: PrometheusServer,
    receiver: Receiver,
    tmp_path: Path,
) -> Iterator[Controlled]:
    reconciler = started(cluster, namespace, tmp_path, f"--notify-url={receiver.url}")
    apps = Apps(kube, namespace)
    try:
        apps.create_ready("web", prometheus.url, maxWeight=60)
        yield Controlled(apps, receiver, cluster.kubeconfig)
    finally:
        reconciler.stop()


def test_plan_at_the_start_of_a_rollout_matches_the_observed_timeline(controlled: Controlled) -> None:
    apps = controlled.apps
    interval = 5  # a realistic interval: the plan assumes pods ready at once, which takes the world seconds
    apps.patch_spec("web", trafficShiftUpdateInterval=interval)
    apps.patch_spec("web", image="app:v2")
    planned = controlled.plugin("plan", "web")
    assert planned.returncode == 0, planned.stderr
    earliest = re.search(r"earliest promotion: (\S+)", planned.stdout)
    assert earliest, planned.stdout
    promoted = wait_for(lambda: apps.phase_is("web", "Succeeded"), TIMEOUT, "v2 promoted")
    promotion_check = next(c for c in reversed(promoted["checks"]) if c["weight"] == 60)
    drift = (parse(promotion_check["time"]) - parse(earliest.group(1))).total_seconds()
    assert -interval <= drift <= interval, (planned.stdout, promotion_check)
    status = controlled.plugin("status", "web")
    assert status.returncode == 0
    assert "Succeeded" in status.stdout
    assert "primary 100% [####################] canary   0%" in status.stdout
    assert controlled.receiver.of("web") == ["started", "advanced", "advanced", "advanced", "promoted"]


def test_pause_holds_the_weight_resume_goes_on_promote_skips_the_remaining_steps(
    controlled: Controlled,
) -> None:
    apps = controlled.apps
    # Long enough that the plugin's pause, resume and promote (processes of seconds each at a load of 20)
    # fall between steps: at 6 s the rollout once promoted itself before the promote request arrived.
    interval = 12
    apps.patch_spec("web", trafficShiftUpdateInterval=interval)
    controlled.at_weight("app:v2", 20)
    paused = controlled.plugin("pause", "web")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    held = apps.status("web")
    assert held["paused"] is True
    assert {c["type"]: c["status"] for c in held["conditions"]}["Paused"] == "True"
    checks_when_paused = len(held.get("checks", []))
    with WeightRecorder(apps, "web") as recorder:
        threading.Event().wait(1.5 * interval)
    assert len(set(recorder.seen)) == 1  # the weight held
    assert len(apps.status("web").get("checks", [])) == checks_when_paused  # and no check ran
    assert "(paused)" in controlled.plugin("status", "web").stdout
    assert controlled.plugin("resume", "web").returncode == 0
    assert apps.status("web")["paused"] is False
    assert controlled.plugin("promote", "web").returncode == 0
    promoted = wait_for(lambda: apps.phase_is("web", "Succeeded"), TIMEOUT, "v2 promoted on request")
    assert promoted["rollouts"][-1]["weights"][-1] < 60  # the remaining steps were skipped
    assert apps.deployment_image("web-primary") == "app:v2"
    events = [event for event in controlled.receiver.of("web") if event != "advanced"]
    assert events == ["started", "paused", "resumed", "promoted"]


def test_abort_rolls_back_and_retry_rolls_out_again(controlled: Controlled) -> None:
    apps = controlled.apps
    # Steps far enough apart that the abort (a plugin process, seconds on a loaded machine) reaches the
    # rollout before it promotes: at 2 s a step it once came after the promotion and was rightly ignored.
    apps.patch_spec("web", trafficShiftUpdateInterval=10)
    controlled.at_weight("app:v2", 20)
    assert controlled.plugin("abort", "web").returncode == 0
    failed = wait_for(lambda: apps.phase_is("web", "Failed"), TIMEOUT, "v2 aborted")
    assert failed["failedImages"] == ["app:v2"]
    assert failed["rollouts"][-1]["reason"].startswith("Aborted")
    assert apps.weights("web") == (100, 0)
    assert apps.deployment_image("web-primary") == "app:v1"
    apps.wait_deleted("web-canary")
    assert controlled.plugin("status", "web").returncode == 1  # the last rollout failed
    assert "Aborted: aborted on request" in controlled.plugin("history", "web").stdout
    apps.patch_spec("web", trafficShiftUpdateInterval=2)
    assert controlled.plugin("retry", "web").returncode == 0
    wait_for(
        lambda: apps.phase_is("web", "Succeeded") and apps.deployment_image("web-primary") == "app:v2",
        TIMEOUT,
        "v2 rolled out again on retry",
    )
    events = controlled.receiver.of("web")
    assert events[0] == "started"
    assert events.index("aborted") < events.index("promoted")
    assert events.count("started") == 2


def test_one_rollout_at_a_time_and_a_dead_receiver_changes_nothing(
    cluster: LocalCluster,
    kube: kubernetes.client.ApiClient,
    namespace: str,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    reconciler = started(cluster, namespace, tmp_path, "--max-concurrent-rollouts=1", f"--notify-url={dead}")
    apps = Apps(kube, namespace)
    try:
        apps.create_ready("first", prometheus.url)
        apps.create_ready("second", prometheus.url)
        apps.patch_spec("first", image="app:v2")
        wait_for(lambda: apps.status("first").get("phase") == "Progressing" or None, TIMEOUT, "first starts")
        apps.patch_spec("second", image="app:v2")
        waiting = wait_for(
            lambda: (s := apps.status("second")).get("queuedAt") and s, TIMEOUT, "second waits for a slot"
        )
        assert "waits for a rollout slot: 1 of 1 rollouts in progress" in waiting["message"]
        assert waiting["phase"] == "Ready"
        first = wait_for(lambda: apps.phase_is("first", "Succeeded"), TIMEOUT, "first promoted")
        second = wait_for(lambda: apps.phase_is("second", "Succeeded"), TIMEOUT, "second promoted")
        assert parse(second["rollouts"][-1]["startedAt"]) >= parse(first["rollouts"][-1]["finishedAt"])
        assert second.get("queuedAt") is None
        assert apps.deployment_image("second-primary") == "app:v2"
    finally:
        reconciler.stop()


def test_a_primary_that_never_rolls_out_is_rolled_back_at_the_progress_deadline(
    cluster: LocalCluster,
    kube: kubernetes.client.ApiClient,
    namespace: str,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    reconciler = started(cluster, namespace, tmp_path)
    apps = Apps(kube, namespace)
    core = kubernetes.client.CoreV1Api(kube)
    try:
        apps.create_ready("stuck", prometheus.url, replicas=1, progressDeadlineSeconds=10)
        apps.patch_spec("stuck", image="app:v2")
        wait_for(lambda: (apps.status("stuck").get("canaryWeight") or 0) > 0 or None, TIMEOUT, "canary live")
        # From now on no pod can be added: the primary's rolling update (one surge pod) cannot progress.
        core.create_namespaced_resource_quota(
            namespace, {"metadata": {"name": QUOTA}, "spec": {"hard": {"pods": "2"}}}
        )
        wait_for(
            lambda: (core.read_namespaced_resource_quota("no-more-pods", namespace).status.used or {}).get(
                "pods"
            ),
            60,
            "the quota counted",
        )
        wait_for(lambda: apps.status("stuck").get("phase") == "Promoting" or None, TIMEOUT, "promoting")
        failed = wait_for(lambda: apps.phase_is("stuck", "Failed"), TIMEOUT, "rolled back at the deadline")
        assert failed["rollouts"][-1]["reason"].startswith("PrimaryNotReady: the primary did not roll out")
        assert failed["failedImages"] == ["app:v2"]
        assert failed["primaryImage"] == "app:v1"
        assert apps.weights("stuck") == (100, 0)
        assert apps.deployment_image("stuck-primary") == "app:v1"
    finally:
        reconciler.stop()
