"""`make demo`: the canary story of the original project, told on this machine with real parts.

A local cluster, Prometheus, the reconciler (`canaryapp run`) and the local traffic layer (the stand-in for
Istio's data plane, `devenv/mesh/`) start. With the Istio router the story is told twice: with the sample
CanaryApp (its query counts the canary workload's own errors), then with the original operator's manifest and
its query unchanged (it filters on `destination_service_name`). With the Gateway API router
(`make demo ROUTER=gateway-api`) it is told with the Gateway API example attached to the local Gateway, whose
controller (the traffic layer's) accepts its HTTPRoute; the original's query cannot serve there (under that
router the apex Service's name labels no canary request). Each time v2 is rolled out with clean traffic and
promoted, and v3 is rolled out while a share of the traffic hits `/nothello`, and rolled back. Each step is
printed as it happens with the check's value and the canary's request count, a summary at the end, and the
exit code is 0 only if the story happened.
`demo-up` / `demo-down` keep the same environment running for the walkthrough by hand.
"""

from __future__ import annotations

import datetime
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

from devenv.cluster import LOCAL_GATEWAY, LOCAL_GATEWAY_NAMESPACE, LocalCluster, running
from devenv.kube import (
    DELETION_TIMEOUT_SECONDS,
    api_client,
    read_weights,
    stack_synced,
    wait_deployment_gone,
)
from devenv.mesh import GatewayController, LocalMesh
from devenv.processes import REPO_ROOT, tools_bin, wait_until
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from reconciler.core import analysis
from reconciler.core.model import GROUP, PLURAL, VERSION, CanaryAppSpec, CanaryAppStatus
from reconciler.core.names import Router

NAMESPACE = "default"
# How long the traffic layer may take to apply the VirtualService's last weights before the demo says so.
MESH_TIMEOUT_SECONDS = 30.0
# How long the start's errors may take to leave an error query's window (the original's is 1m) and scrapes.
QUERY_CLEAN_TIMEOUT_SECONDS = 150.0
# Scrapes (1 s each) to wait after the traffic layer first serves, before its error query may read clean.
CLEAN_SETTLE_SECONDS = 3.0
NAME = "canaryapp-sample"
SAMPLE = REPO_ROOT / "examples" / "canaryapp-sample.yaml"
ORIGINAL_NAME = "canaryapp-original"
ORIGINAL = REPO_ROOT / "examples" / "original-operator-sample.yaml"
GATEWAY_API_SAMPLE = REPO_ROOT / "examples" / "canaryapp-gateway-api.yaml"
# The manifests each router's story is told with, in order; the first is the one the walkthrough curls.
MANIFESTS = {Router.ISTIO: (SAMPLE, ORIGINAL), Router.GATEWAY_API: (GATEWAY_API_SAMPLE,)}
IMAGE = "status-code-server"
DEMO_INTERVAL_SECONDS = 3
LOCAL_PARENT = f"{LOCAL_GATEWAY_NAMESPACE}/{LOCAL_GATEWAY}"
ROLLOUT_TIMEOUT_SECONDS = 240


def manifest_name(path: Path) -> str:
    return str(yaml.safe_load(path.read_text())["metadata"]["name"])


@dataclass
class Environment:
    cluster: LocalCluster
    prometheus: PrometheusServer
    meshes: dict[str, LocalMesh]  # the traffic layer of each CanaryApp, by name, in the story's order
    reconciler: ReconcilerProcess
    custom: kubernetes.client.CustomObjectsApi
    apps: kubernetes.client.AppsV1Api
    router: Router = Router.ISTIO

    @property
    def mesh(self) -> LocalMesh:
        """The first CanaryApp's traffic layer (the one the walkthrough curls)."""
        return next(iter(self.meshes.values()))

    def env_lines(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "PROMETHEUS_URL": self.prometheus.url,
            "MESH_URL": self.mesh.url,
            "RECONCILER_LOG": str(self.reconciler.log_path),
            "PATH": f"{tools_bin()}:{REPO_ROOT / '.venv' / 'bin'}:$PATH",
        }


@contextmanager
def environment(
    workdir: Path, prometheus_port: int = 0, mesh_port: int = 0, router: Router = Router.ISTIO
) -> Iterator[Environment]:
    """Starts every part of the demo in `workdir` for the story of `router`; stops all of them on exit."""
    os.environ["PATH"] = f"{tools_bin()}:{REPO_ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"
    workdir.mkdir(parents=True, exist_ok=True)
    with running(workdir / "cluster") as cluster:
        cluster.apply_project_crds()
        names = [manifest_name(manifest) for manifest in MANIFESTS[router]]
        meshes = {
            name: LocalMesh(
                cluster.kubeconfig,
                NAMESPACE,
                name,
                workdir / f"mesh-{name}",
                router=router.value,
                listen_port=mesh_port if index == 0 else 0,
            )
            for index, name in enumerate(names)
        }
        gateway_controller = GatewayController(cluster.kubeconfig) if router == Router.GATEWAY_API else None
        if gateway_controller is not None:
            gateway_controller.start()
        for mesh in meshes.values():
            mesh.start()
        prometheus = PrometheusServer(
            workdir / "prometheus",
            {f"local-mesh-{name}": [mesh.metrics_address] for name, mesh in meshes.items()},
            metrics_paths={f"local-mesh-{name}": "/stats/prometheus" for name in meshes},
            port=prometheus_port,
        )
        allowed = () if router == Router.ISTIO else (f"--allowed-gateways={LOCAL_PARENT}",)
        reconciler = ReconcilerProcess(cluster.kubeconfig, NAMESPACE, workdir / "reconciler", *allowed)
        try:
            prometheus.start()
            reconciler.start()
            api = api_client(cluster.kubeconfig)
            yield Environment(
                cluster,
                prometheus,
                meshes,
                reconciler,
                kubernetes.client.CustomObjectsApi(api),
                kubernetes.client.AppsV1Api(api),
                router,
            )
        finally:
            reconciler.stop()
            prometheus.stop()
            for mesh in meshes.values():
                mesh.stop()
            if gateway_controller is not None:
                gateway_controller.stop()


def local_manifest(path: Path, prometheus_url: str) -> dict[str, Any]:
    """A CanaryApp manifest with the local Prometheus and a short interval, so the demo takes minutes, and a
    Gateway API manifest attached to the local Gateway; the rest, its query included, as written."""
    manifest: dict[str, Any] = yaml.safe_load(path.read_text())
    manifest["spec"]["prometheusURL"] = prometheus_url
    manifest["spec"]["trafficShiftUpdateInterval"] = DEMO_INTERVAL_SECONDS
    if manifest["spec"].get("parentRefs"):
        manifest["spec"]["parentRefs"] = [{"name": LOCAL_GATEWAY, "namespace": LOCAL_GATEWAY_NAMESPACE}]
    return manifest


@dataclass
class Rollout:
    app: str
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

    @property
    def names(self) -> list[str]:
        return list(self.env.meshes)

    def status(self, name: str | None = None) -> dict[str, Any]:
        """The status of CanaryApp `name`, by default the story's first."""
        name = name or self.names[0]
        app: Any = self.env.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        return dict(app.get("status") or {})

    def weights(self, name: str | None = None) -> tuple[int, int]:
        name = name or self.names[0]
        return read_weights(self.env.custom, NAMESPACE, name, self.env.router) or (100, 0)

    def settled(self, phase: str, name: str) -> bool:
        status = self.status(name)
        return status.get("phase") == phase and stack_synced(status)

    def curl(self, path: str, name: str | None = None) -> tuple[int, str]:
        name = name or self.names[0]
        try:
            with urllib.request.urlopen(self.env.meshes[name].url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def apply(self, manifest: Path) -> str:
        body = local_manifest(manifest, self.env.prometheus.url)
        name = str(body["metadata"]["name"])
        self.env.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
        source = manifest.relative_to(REPO_ROOT)
        self.say(f"applied {name} with {body['spec']['image']} ({source}, local Prometheus)")
        self.say(f"  its query: {' '.join(body['spec']['prometheusQuery'].split())}")
        wait_until(lambda: self.settled("Ready", name), timeout=ROLLOUT_TIMEOUT_SECONDS, what=f"{name} Ready")
        self.say(f"Ready: primary serves {body['spec']['image']}; curl /hello -> {self.curl('/hello', name)}")
        self.wait_clean_start(name, CanaryAppSpec.model_validate(body["spec"]))
        return name

    def wait_clean_start(self, name: str, spec: CanaryAppSpec) -> None:
        """Waits, bounded, until the traffic layer reaches the new primary and the app's own error query is
        clean. Until the traffic layer sees the primary's pods, requests are answered 503 `no healthy
        upstream`, as Envoy does; a query that counts the primary's errors too (the original's) holds them for
        its window, and a rollout started inside it would be judged on them."""
        started = time.monotonic()
        wait_until(
            lambda: self.curl("/hello", name)[0] == 200, timeout=MESH_TIMEOUT_SECONDS, what=f"{name} served"
        )
        now = datetime.datetime.now(datetime.UTC)
        variables = analysis.query_variables(name, NAMESPACE, spec, CanaryAppStatus(), now)
        query = analysis.render_queries(spec, variables).errors or "vector(1) < 0"
        # Clean only once Prometheus has scraped what the traffic layer counted until it served (the last
        # 503s): asked sooner, the query is clean because it has not seen them yet (CI met that once).
        time.sleep(CLEAN_SETTLE_SECONDS)
        wait_until(
            lambda: not self.env.prometheus.query(query),
            timeout=QUERY_CLEAN_TIMEOUT_SECONDS,
            what=f"{name}'s error query clean",
        )
        self.say(
            f"the traffic layer serves {name}; its error query is clean ({time.monotonic() - started:.0f}s)"
        )

    def roll_out(self, version: str, until: str, name: str) -> Rollout:
        rollout = Rollout(name, f"{IMAGE}:{version}", time.monotonic())
        self.env.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name, {"spec": {"image": rollout.image}}
        )
        self.say(f"patched {name} spec.image to {rollout.image}")
        last_line = ""
        deadline = time.monotonic() + ROLLOUT_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            status, (primary, canary) = self.status(name), self.weights(name)
            if canary and (not rollout.steps or rollout.steps[-1] != canary):
                rollout.steps.append(canary)
            applying = "" if stack_synced(status) else " (applying)"
            line = (
                f"weights primary {primary:3d}% / canary {canary:3d}% | {check_line(status):<44} | "
                f"phase {status.get('phase')}{applying}"
            )
            if line != last_line:
                self.say(line)
                last_line = line
            if self.settled(until, name):
                break
            time.sleep(0.25)
        rollout.seconds = time.monotonic() - rollout.started
        rollout.result = str(self.status(name).get("phase"))
        self.say(f"{rollout.result}: {self.status(name).get('message')}")
        self.rollouts.append(rollout)
        return rollout

    def check_world(self) -> list[str]:
        """What the story promised, read from the world; returns the broken promises."""
        problems = []
        for name in self.names:
            status = self.status(name)
            primary: Any = self.env.apps.read_namespaced_deployment(f"{name}-primary", NAMESPACE)
            if primary.spec.template.spec.containers[0].image != f"{IMAGE}:v2":
                problems.append(f"the primary of {name} does not run v2")
            left = wait_deployment_gone(self.env.apps, NAMESPACE, f"{name}-canary")
            if left is not None:
                being = "still being deleted" if left.metadata.deletion_timestamp else "not deleted"
                problems.append(
                    f"the canary Deployment of {name} is left ({being} {DELETION_TIMEOUT_SECONDS:.0f}s after "
                    "the rollback)"
                )
            if f"{IMAGE}:v3" not in status.get("failedImages", []):
                problems.append(f"v3 is not recorded in the failedImages of {name}")
            if self.weights(name) != (100, 0):
                problems.append(f"the weights of {name} are {self.weights(name)}, not 100/0")
            if not self.mesh_follows_rollback(name):
                routes = self.env.meshes[name].routes()
                problems.append(
                    f"the traffic layer of {name} still routes {routes} {MESH_TIMEOUT_SECONDS:.0f}s on"
                )
            answers = {self.curl("/hello", name) for _ in range(10)}
            if answers != {(200, "Hello! v2")}:
                problems.append(f"/hello of {name} through the traffic layer answered {sorted(answers)}")
        return problems

    def mesh_follows_rollback(self, name: str) -> bool:
        """Waits, bounded, until the traffic layer applies what the route says (it reads it every half
        second; on a busy machine later): nothing to the canary any more."""
        deadline = time.monotonic() + MESH_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            routes = self.env.meshes[name].routes()
            if not any(weight for destination, weight in routes.items() if destination.endswith("-canary")):
                return True
            time.sleep(0.2)
        return False

    def summary(self, problems: list[str]) -> None:
        print("\nSummary", flush=True)
        for rollout in self.rollouts:
            steps = " -> ".join(f"{weight}%" for weight in rollout.steps) or "none"
            print(
                f"  {rollout.app} {rollout.image}: {rollout.result} after {rollout.seconds:.0f}s; "
                f"canary weights {steps}"
            )
        for name in self.names:
            print(f"  {name}: failedImages {self.status(name).get('failedImages', [])}")
        print(f"  /hello through the traffic layer: {self.curl('/hello')}")
        print(f"  total: {time.monotonic() - self.started:.0f}s")
        print("  story: " + ("as told" if not problems else "BROKEN: " + "; ".join(problems)), flush=True)


def check_line(status: dict[str, Any]) -> str:
    """The last check as a demo line: outcome, the error query's value, the canary's request count."""
    checks = status.get("checks") or []
    if not checks:
        return "check -"
    last = checks[-1]
    value = short_number(last["series"][0]["value"]) if last.get("series") else "none"
    requests = last.get("canaryRequests")
    counted = "?" if requests is None else short_number(str(requests))
    return f"check {last['outcome']:<15} value {value:<5} canary requests {counted}"


def short_number(value: str) -> str:
    """A Prometheus sample value for a person: 2.0099666 -> 2.01, 34.6667 -> 34.7."""
    try:
        return f"{float(value):.3g}"
    except ValueError:
        return value


def tell_story(env: Environment) -> Story:
    """The story of each manifest of the router: v1, a clean v2 promoted, a v3 under failing traffic rolled
    back. With Istio: first the sample's canary-scoped query, then the original operator's manifest and query
    as written; with the Gateway API: its example, through the local Gateway."""
    story = Story(env)
    story.say(
        f"up: local cluster, Prometheus {env.prometheus.url}, reconciler, traffic layer {env.mesh.url} "
        f"(router {env.router.value})"
    )
    if env.router == Router.GATEWAY_API:
        story.say(f"  its HTTPRoute attaches to the Gateway {LOCAL_PARENT} (GatewayClass canaryapp-local)")
    for manifest in MANIFESTS[env.router]:
        name = story.apply(manifest)
        mesh = env.meshes[name]
        story.roll_out("v2", until="Succeeded", name=name)
        mesh.set_mix(0.5)
        story.say("the traffic layer now sends half of the requests to /nothello (500 from any version)")
        story.roll_out("v3", until="Failed", name=name)
        mesh.set_mix(0.0)
    return story


def run_demo(workdir: Path, router: Router = Router.ISTIO) -> int:
    with environment(workdir, router=router) as env:
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
