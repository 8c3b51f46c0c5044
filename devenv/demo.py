"""`make demo`: the canary story of the original project, told on this machine with real parts.

A local cluster, Prometheus, the reconciler (`canaryapp run`) and the local traffic layer (the stand-in for
Istio's data plane, `devenv/mesh.py`) start; the sample CanaryApp is applied; v2 is rolled out with clean
traffic and promoted; v3 is rolled out while a share of the traffic hits `/nothello`, and rolled back. Each
step is printed as it happens, a summary at the end, and the exit code is 0 only if the story happened.
`demo-up` / `demo-down` keep the same environment running for the walkthrough by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from devenv.cluster import LocalCluster, running
from devenv.mesh import LocalMesh
from devenv.processes import REPO_ROOT, tools_bin, wait_until
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from reconciler.model import GROUP, PLURAL, VERSION

NAMESPACE = "default"
NAME = "canaryapp-sample"
SAMPLE = REPO_ROOT / "examples" / "canaryapp-sample.yaml"
IMAGE = "status-code-server"
DEMO_INTERVAL_SECONDS = 3
ROLLOUT_TIMEOUT_SECONDS = 240


@dataclass
class Environment:
    cluster: LocalCluster
    prometheus: PrometheusServer
    mesh: LocalMesh
    reconciler: ReconcilerProcess
    custom: kubernetes.client.CustomObjectsApi
    apps: kubernetes.client.AppsV1Api

    def env_lines(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "PROMETHEUS_URL": self.prometheus.url,
            "MESH_URL": self.mesh.url,
            "RECONCILER_LOG": str(self.reconciler.log_path),
            "PATH": f"{tools_bin()}:{REPO_ROOT / '.venv' / 'bin'}:$PATH",
        }


@contextmanager
def environment(workdir: Path, prometheus_port: int = 0, mesh_port: int = 0) -> Iterator[Environment]:
    """Starts every part of the demo in `workdir`; stops all of them on exit."""
    os.environ["PATH"] = f"{tools_bin()}:{REPO_ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"
    workdir.mkdir(parents=True, exist_ok=True)
    with running(workdir / "cluster") as cluster:
        cluster.apply_crd_file(REPO_ROOT / "crds" / "canary.atze.io_canaryapps.yaml")
        mesh = LocalMesh(cluster.kubeconfig, NAMESPACE, NAME, workdir / "mesh", listen_port=mesh_port)
        mesh.start()
        prometheus = PrometheusServer(
            workdir / "prometheus",
            {"local-mesh": [mesh.metrics_address]},
            metrics_paths={"local-mesh": "/stats/prometheus"},
            port=prometheus_port,
        )
        reconciler = ReconcilerProcess(cluster.kubeconfig, NAMESPACE, workdir / "reconciler")
        try:
            prometheus.start()
            reconciler.start()
            configuration = kubernetes.client.Configuration()
            kubernetes.config.load_kube_config(str(cluster.kubeconfig), client_configuration=configuration)
            api = kubernetes.client.ApiClient(configuration)
            yield Environment(
                cluster,
                prometheus,
                mesh,
                reconciler,
                kubernetes.client.CustomObjectsApi(api),
                kubernetes.client.AppsV1Api(api),
            )
        finally:
            reconciler.stop()
            prometheus.stop()
            mesh.stop()


def local_sample(prometheus_url: str) -> dict[str, Any]:
    """The sample CanaryApp with the local Prometheus and a short interval, so the demo takes minutes."""
    sample: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    sample["spec"]["prometheusURL"] = prometheus_url
    sample["spec"]["trafficShiftUpdateInterval"] = DEMO_INTERVAL_SECONDS
    return sample


@dataclass
class Rollout:
    image: str
    started: float
    steps: list[int] = field(default_factory=list)
    result: str = ""
    seconds: float = 0.0


class Story:
    def __init__(self, env: Environment) -> None:
        self.env = env
        self.started = time.monotonic()
        self.rollouts: list[Rollout] = []

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def status(self) -> dict[str, Any]:
        app: Any = self.env.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
        return dict(app.get("status") or {})

    def weights(self) -> tuple[int, int]:
        vs: Any = self.env.custom.get_namespaced_custom_object(
            "networking.istio.io", "v1", NAMESPACE, "virtualservices", NAME
        )
        route = vs["spec"]["http"][0]["route"]
        return int(route[0]["weight"]), int(route[1]["weight"])

    @staticmethod
    def _synced(status: dict[str, Any]) -> bool:
        return any(c["type"] == "StackSynced" and c["status"] == "True" for c in status.get("conditions", []))

    def settled(self, phase: str) -> bool:
        status = self.status()
        return status.get("phase") == phase and self._synced(status)

    def curl(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.env.mesh.url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def apply_sample(self) -> None:
        self.env.custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, local_sample(self.env.prometheus.url)
        )
        self.say(f"applied {NAME} with {IMAGE}:v1 (examples/canaryapp-sample.yaml, local Prometheus)")
        wait_until(lambda: self.settled("Ready"), timeout=ROLLOUT_TIMEOUT_SECONDS, what=f"{NAME} Ready")
        self.say(f"Ready: primary serves {IMAGE}:v1; curl /hello -> {self.curl('/hello')}")

    def roll_out(self, version: str, until: str) -> Rollout:
        rollout = Rollout(f"{IMAGE}:{version}", time.monotonic())
        self.env.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, NAME, {"spec": {"image": rollout.image}}
        )
        self.say(f"patched spec.image to {rollout.image}")
        last_line = ""
        deadline = time.monotonic() + ROLLOUT_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            status, (primary, canary) = self.status(), self.weights()
            if canary and (not rollout.steps or rollout.steps[-1] != canary):
                rollout.steps.append(canary)
            applying = "" if self._synced(status) else " (applying)"
            line = (
                f"weights primary {primary:3d}% / canary {canary:3d}% | "
                f"check {status.get('lastCheckOutcome') or '-':<11} | phase {status.get('phase')}{applying}"
            )
            if line != last_line:
                self.say(line)
                last_line = line
            if self.settled(until):
                break
            time.sleep(0.25)
        rollout.seconds = time.monotonic() - rollout.started
        rollout.result = str(self.status().get("phase"))
        self.say(f"{rollout.result}: {self.status().get('message')}")
        self.rollouts.append(rollout)
        return rollout

    def check_world(self) -> list[str]:
        """What the story promised, read from the world; returns the broken promises."""
        problems = []
        status = self.status()
        primary: Any = self.env.apps.read_namespaced_deployment(f"{NAME}-primary", NAMESPACE)
        if primary.spec.template.spec.containers[0].image != f"{IMAGE}:v2":
            problems.append("the primary does not run v2")
        with contextlib.suppress(kubernetes.client.exceptions.ApiException):
            self.env.apps.read_namespaced_deployment(f"{NAME}-canary", NAMESPACE)
            problems.append("a canary Deployment is left")
        if f"{IMAGE}:v3" not in status.get("failedImages", []):
            problems.append("v3 is not recorded in failedImages")
        if self.weights() != (100, 0):
            problems.append(f"weights are {self.weights()}, not 100/0")
        answers = {self.curl("/hello") for _ in range(10)}
        if answers != {(200, "Hello! v2")}:
            problems.append(f"/hello through the traffic layer answered {sorted(answers)}")
        return problems

    def summary(self, problems: list[str]) -> None:
        print("\nSummary", flush=True)
        for rollout in self.rollouts:
            steps = " -> ".join(f"{weight}%" for weight in rollout.steps) or "none"
            print(f"  {rollout.image}: {rollout.result} after {rollout.seconds:.0f}s; canary weights {steps}")
        print(f"  failedImages: {self.status().get('failedImages', [])}")
        print(f"  /hello through the traffic layer: {self.curl('/hello')}")
        print(f"  total: {time.monotonic() - self.started:.0f}s")
        print("  story: " + ("as told" if not problems else "BROKEN: " + "; ".join(problems)), flush=True)


def tell_story(env: Environment) -> Story:
    """The story itself: v1, a clean v2 promoted, a v3 under failing traffic rolled back."""
    story = Story(env)
    story.say(f"up: local cluster, Prometheus {env.prometheus.url}, reconciler, traffic layer {env.mesh.url}")
    story.apply_sample()
    story.roll_out("v2", until="Succeeded")
    env.mesh.set_mix(0.5)
    story.say("the traffic layer now sends half of the requests to /nothello (500 from any version)")
    story.roll_out("v3", until="Failed")
    env.mesh.set_mix(0.0)
    return story


def run_demo(workdir: Path) -> int:
    with environment(workdir) as env:
        story = tell_story(env)
        problems = story.check_world()
        story.summary(problems)
    return 0 if not problems else 1


# --- demo-up / demo-down: the same environment, kept running for the walkthrough by hand ---

DEMO_DIR = REPO_ROOT / ".demo"
STATE_FILE = DEMO_DIR / "env.json"
DEMO_PROMETHEUS_PORT = 19090
DEMO_MESH_PORT = 18088


def serve_environment(workdir: Path) -> int:
    """Runs the environment in the foreground until SIGTERM, with its addresses in `.demo/env.json`."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with environment(workdir, DEMO_PROMETHEUS_PORT, DEMO_MESH_PORT) as env:
        state = {"pid": os.getpid(), **env.env_lines()}
        STATE_FILE.write_text(json.dumps(state, indent=2))
        (DEMO_DIR / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in env.env_lines().items()))
        stop.wait()
    STATE_FILE.unlink(missing_ok=True)
    return 0


def demo_up() -> int:
    if _running_pid() is not None:
        print(f"The demo environment is already up ({STATE_FILE}); `make demo-down` stops it.")
        return 0
    STATE_FILE.unlink(missing_ok=True)
    DEMO_DIR.mkdir(exist_ok=True)
    # A new environment every time: the last run's cluster data, logs and Pulumi state would only get in
    # the way (its cluster is gone).
    shutil.rmtree(DEMO_DIR / "run", ignore_errors=True)
    log = (DEMO_DIR / "environment.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "devenv.cli", "demo-serve", "--dir", str(DEMO_DIR / "run")],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    wait_until(
        lambda: STATE_FILE.exists() or process.poll() is not None, timeout=300, what="demo environment"
    )
    if process.poll() is not None:
        print(f"The demo environment failed to start; see {DEMO_DIR / 'environment.log'}")
        return 1
    print(
        "The demo environment is up. In your shell:\n"
        f"  source {DEMO_DIR / 'env.sh'}\n"
        '  sed "s#http://prometheus.istio-system:9090#$PROMETHEUS_URL#" examples/canaryapp-sample.yaml'
        " | kubectl apply -f -\n"
        "  kubectl get canaryapps -w\n"
        "Then follow the README's walkthrough; `make demo-down` stops everything."
    )
    return 0


def _running_pid() -> int | None:
    if not STATE_FILE.exists():
        return None
    pid = int(json.loads(STATE_FILE.read_text())["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def demo_down() -> int:
    pid = _running_pid()
    if pid is None:
        STATE_FILE.unlink(missing_ok=True)
        print("The demo environment is not running.")
        return 0
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not STATE_FILE.exists(), timeout=60, what="demo environment to stop")
    print("The demo environment is down.")
    return 0
