"""Analysis you can trust, end to end with real traffic: the local traffic layer (labelling requests as
Istio's stats filter does), a real Prometheus scraping it, the reconciler process and the real Pulumi engine.

- The original operator's manifest, its query unchanged (it filters on destination_service_name="<name>"),
  promotes a healthy canary and rolls back a failing one, and the status carries the evidence.
- `canaryapp backtest` over the recorded history reaches the same verdicts at the same intervals.
- A query whose window starts at the last weight change ({{ window }}) promotes a healthy rollout started
  right after a failed one, where a fixed one-minute window still sees the old errors.
- The Gateway API example (examples/canaryapp-gateway-api.yaml), its query unchanged (it filters on the
  canary's workload), attached to the local Gateway: the HTTPRoute's weights split real traffic, the
  requests carry the labels Istio gives them as a Gateway API implementation, and a healthy canary is
  promoted, a failing one rolled back.
"""

from __future__ import annotations

import datetime
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from devenv.cluster import LocalCluster
from devenv.kube import stack_synced
from devenv.mesh import METRICS_PATH, LocalMesh
from devenv.processes import REPO_ROOT
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import LOCAL_METRIC_URLS, ReconcilerProcess
from reconciler.core.names import Router
from tests.integration.helpers import LOCAL_PARENT_REFS, Apps, reconciler_flags, wait_for

pytestmark = pytest.mark.integration

INTERVAL = 3
ROLLOUT_TIMEOUT = 180
ORIGINAL = REPO_ROOT / "examples" / "original-operator-sample.yaml"
GATEWAY_API_SAMPLE = REPO_ROOT / "examples" / "canaryapp-gateway-api.yaml"
# Shown when a rollout does not end as expected: which answers were errors, from where, and why.
ERRORS_BY_CAUSE = (
    "sum by (destination_workload, response_code, response_flags, reporter) "
    '(increase(istio_requests_total{response_code=~"5.."}[3m])) > 0'
)


@dataclass
class World:
    apps: Apps
    mesh: LocalMesh
    prometheus: PrometheusServer
    kubeconfig: Path


@pytest.fixture
def world_for(
    cluster: LocalCluster,
    kube: kubernetes.client.ApiClient,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Any]:
    """Starts, for one CanaryApp name and router: the traffic layer following its route (for the Gateway API
    with the local Gateway's controller), a Prometheus scraping the traffic layer, and the reconciler for the
    namespace."""
    started: list[Any] = []

    def start(name: str, router: Router = Router.ISTIO) -> World:
        if router == Router.GATEWAY_API:
            request.getfixturevalue("gateway_controller")
        mesh = LocalMesh(
            cluster.kubeconfig, namespace, name, tmp_path / "mesh", router=router.value, request_rate=20
        )
        mesh.start()
        started.append(mesh)
        prometheus = PrometheusServer(
            tmp_path / "prometheus", {"mesh": [mesh.metrics_address]}, metrics_paths={"mesh": METRICS_PATH}
        )
        prometheus.start()
        started.append(prometheus)
        reconciler = ReconcilerProcess(
            cluster.kubeconfig, namespace, tmp_path / "reconciler", *reconciler_flags(router)
        )
        reconciler.start()
        started.append(reconciler)
        return World(Apps(kube, namespace, router), mesh, prometheus, cluster.kubeconfig)

    yield start
    for part in reversed(started):
        part.stop()


def roll_out(world: World, name: str, image: str, phase: str) -> dict[str, Any]:
    world.apps.patch_spec(name, image=image)
    seen: list[dict[str, Any]] = []

    def finished() -> dict[str, Any] | None:
        status = world.apps.status(name)
        seen[:] = [status]
        done = (
            status.get("phase") == phase
            and stack_synced(status)
            and status.get("rollouts", [{}])[-1].get("image") == image
        )
        return status if done else None

    try:
        return wait_for(finished, ROLLOUT_TIMEOUT, f"{image} {phase}")
    except AssertionError as error:
        errors = world.prometheus.query(ERRORS_BY_CAUSE)
        raise AssertionError(
            f"{error}\nlast status: {yaml.safe_dump(seen[-1] if seen else {})}\n5xx by cause: {errors}"
        ) from None


def scraped_since(world: World, moment: float) -> bool:
    """Prometheus holds a sample of the mesh's requests taken after `moment` (seconds since the epoch)."""
    latest = world.prometheus.query("max(timestamp(istio_requests_total))")
    return bool(latest) and float(latest[0]["value"][1]) >= moment


def quiet(world: World, name: str, window: str) -> bool:
    """Prometheus saw requests to the app's Service within `window`, and no 5xx among them."""
    requests = world.prometheus.query(
        f'sum(increase(istio_requests_total{{destination_service_name="{name}"}}[{window}]))'
    )
    seen = bool(requests) and float(requests[0]["value"][1]) > 0
    return seen and not world.prometheus.query(errors_query(name, window))


def parse(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def backtest(world: World, name: str, start: datetime.datetime, end: datetime.datetime) -> tuple[int, str]:
    result = subprocess.run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "canaryapp"),
            "backtest",
            f"{world.apps.namespace}/{name}",
            "--from",
            start.isoformat(),
            "--to",
            end.isoformat(),
            f"--kubeconfig={world.kubeconfig}",
            f"--prometheus-url={world.prometheus.url}",
            f"--allowed-metric-urls={','.join(LOCAL_METRIC_URLS)}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout


def test_the_original_manifest_and_query_promote_a_healthy_canary_and_roll_back_a_failing_one(
    world_for: Any,
) -> None:
    manifest = yaml.safe_load(ORIGINAL.read_text())
    name = manifest["metadata"]["name"]
    world: World = world_for(name)
    manifest["spec"]["prometheusURL"] = world.prometheus.url
    manifest["spec"]["trafficShiftUpdateInterval"] = INTERVAL
    original_query = yaml.safe_load(ORIGINAL.read_text())["spec"]["prometheusQuery"]
    assert manifest["spec"]["prometheusQuery"] == original_query
    world.apps.create(manifest)
    wait_for(lambda: world.apps.phase_is(name, "Ready"), ROLLOUT_TIMEOUT, "v1 Ready")
    # The original query sees the whole Service over a fixed minute: the 503s (no healthy upstream) that v1's
    # first requests got while its pods came up would fail a canary started within that minute, as they would
    # with the original operator. A healthy v2 starts once they are out of the window.
    ready = time.time()
    wait_for(
        lambda: scraped_since(world, ready + 2), 30, "Prometheus to hold what the mesh did until v1 was Ready"
    )
    wait_for(lambda: not world.prometheus.query(original_query), 90, "v1's start-up errors out of the window")

    promoted = roll_out(world, name, "status-code-server:v2", "Succeeded")
    # Each step needed a clean check that saw canary traffic (a check that saw none would only hold).
    v2_checks = [check for check in promoted["checks"] if check["outcome"] == "Clean"]
    assert [check["weight"] for check in v2_checks] == [10, 20, 30, 40, 50]
    assert all(check["canaryRequests"] >= 1 for check in v2_checks)
    assert {check["outcome"] for check in promoted["checks"]} <= {"Clean", "NoCanaryTraffic"}
    assert promoted["rollouts"][-1]["weights"] == [10, 20, 30, 40, 50]

    world.mesh.set_mix(0.5)
    failed = roll_out(world, name, "status-code-server:v3", "Failed")
    assert failed["failedImages"] == ["status-code-server:v3"]
    assert world.apps.deployment_image(f"{name}-primary") == "status-code-server:v2"
    assert world.apps.weights(name) == (100, 0)
    v3_check = failed["checks"][-1]
    assert v3_check["outcome"] == "ErrorsFound"
    assert v3_check["weight"] == 10
    assert v3_check["query"] == original_query
    assert v3_check["series"][0]["labels"]["response_code"] == "500"
    # No canary request count is asserted here: errors are evidence on their own (the first check may come
    # before Prometheus has scraped the canary's requests); only a clean check needs traffic.
    assert failed["rollouts"][-1]["reason"].startswith("ChecksFailed")
    world.mesh.set_mix(0.0)

    # The backtest replays the recorded history and reaches the same verdicts at the same intervals.
    v2_start = parse(v2_checks[0]["time"]) - datetime.timedelta(seconds=INTERVAL)
    code, output = backtest(
        world, name, v2_start, parse(v2_checks[-1]["time"]) + datetime.timedelta(seconds=1)
    )
    assert code == 0, output
    assert "verdict: promoted at" in output
    v3_time = parse(v3_check["time"])
    code, output = backtest(
        world, name, v3_time - datetime.timedelta(seconds=INTERVAL), v3_time + datetime.timedelta(seconds=30)
    )
    assert code == 1, output
    assert f"verdict: rolled back at {v3_check['time']}" in output


def errors_query(service: str, window: str) -> str:
    """5xx answers of the app's Service (both tracks: the primary's errors count too) within `window`."""
    selector = f'destination_service_name="{service}",response_code=~"5.."'
    return f"sum by (destination_workload) (increase(istio_requests_total{{{selector}}}[{window}])) > 0"


def test_a_window_from_the_last_weight_change_promotes_a_healthy_rollout_right_after_a_failed_one(
    world_for: Any,
) -> None:
    name = "web"
    world: World = world_for(name)
    world.apps.create(
        {
            "apiVersion": "canary.atze.io/v1",
            "kind": "CanaryApp",
            "metadata": {"name": name},
            "spec": {
                "image": "status-code-server:v1",
                "imageListenPort": 8088,
                "prometheusQuery": errors_query("{{ name }}", "{{ window }}"),
                "prometheusURL": world.prometheus.url,
                "trafficShiftUpdateInterval": INTERVAL,
            },
        }
    )
    wait_for(lambda: world.apps.phase_is(name, "Ready"), ROLLOUT_TIMEOUT, "v1 Ready")
    world.mesh.set_mix(0.5)
    roll_out(world, name, "status-code-server:v2", "Failed")
    world.mesh.set_mix(0.0)
    calm = time.time()
    # Quiet means Prometheus holds samples taken after the mix changed and they show requests and no 5xx: on
    # a loaded machine the last /nothello answers arrive a moment later and Prometheus scrapes late, and an
    # empty answer (one sample in the window) would start v3 with errors inside its first window.
    wait_for(lambda: scraped_since(world, calm + 3) and quiet(world, name, "3s"), 30, "no new errors for 3s")
    fixed_minute = errors_query(name, "1m")
    assert world.prometheus.query(fixed_minute), "a one-minute window still sees the failed rollout's errors"

    promoted = roll_out(world, name, "status-code-server:v3", "Succeeded")
    assert promoted["failedImages"] == ["status-code-server:v2"]
    assert world.apps.deployment_image(f"{name}-primary") == "status-code-server:v3"
    assert promoted["rollouts"][-1]["weights"] == [10, 20, 30, 40, 50]
    clean = [check for check in promoted["checks"] if check["outcome"] == "Clean"]
    assert len(clean) == 5
    windows = [int(re.search(r"\[(\d+)s\]", check["query"]).group(1)) for check in clean]  # type: ignore[union-attr]
    assert all(INTERVAL <= window <= 3 * INTERVAL for window in windows), windows


def test_the_gateway_api_example_promotes_a_healthy_canary_and_rolls_back_a_failing_one(
    world_for: Any,
) -> None:
    manifest = yaml.safe_load(GATEWAY_API_SAMPLE.read_text())
    name = manifest["metadata"]["name"]
    world: World = world_for(name, Router.GATEWAY_API)
    manifest["spec"]["parentRefs"] = LOCAL_PARENT_REFS
    manifest["spec"]["prometheusURL"] = world.prometheus.url
    manifest["spec"]["trafficShiftUpdateInterval"] = INTERVAL
    assert "{{ canary }}" in manifest["spec"]["prometheusQuery"]
    world.apps.create(manifest)
    wait_for(lambda: world.apps.phase_is(name, "Ready"), ROLLOUT_TIMEOUT, "v1 Ready")
    # The Gateway's controller polls: it may accept the first route a moment after the CanaryApp is Ready.
    wait_for(lambda: world.apps.route_accepted(name), 30, "the first HTTPRoute accepted")

    promoted = roll_out(world, name, "status-code-server:v2", "Succeeded")
    v2_checks = [check for check in promoted["checks"] if check["outcome"] == "Clean"]
    assert [check["weight"] for check in v2_checks] == [10, 20, 30, 40, 50]
    assert all(check["canaryRequests"] >= 1 for check in v2_checks)
    assert world.apps.weights(name) == (100, 0)
    # The canary's requests passed the local Gateway and carry the backend Service's name, never the apex's.
    through_gateway = (
        f'sum by (destination_service_name) (istio_requests_total{{reporter="destination",'
        f'source_workload="ingress-canaryapp-local",destination_workload="{name}-canary"}})'
    )
    labelled = world.prometheus.query(through_gateway)
    assert [series["metric"]["destination_service_name"] for series in labelled] == [f"{name}-canary"]
    assert not world.prometheus.query(f'istio_requests_total{{destination_service_name="{name}"}}')

    world.mesh.set_mix(0.5)
    failed = roll_out(world, name, "status-code-server:v3", "Failed")
    world.mesh.set_mix(0.0)
    assert failed["failedImages"] == ["status-code-server:v3"]
    assert world.apps.deployment_image(f"{name}-primary") == "status-code-server:v2"
    assert world.apps.weights(name) == (100, 0)
    v3_check = failed["checks"][-1]
    # Its window starts at the last weight change, so the first check may come before Prometheus holds two
    # samples of the canary's errors: the failing check is the one at the rollout's last weight.
    assert v3_check["outcome"] == "ErrorsFound"
    assert v3_check["weight"] == failed["rollouts"][-1]["weights"][-1]
    assert f'destination_workload="{name}-canary"' in v3_check["query"]
    assert v3_check["series"][0]["labels"] == {"destination_workload": f"{name}-canary"}
    assert failed["rollouts"][-1]["reason"].startswith("ChecksFailed")
    wait_for(lambda: world.apps.route_accepted(name), 10, "the 100/0 HTTPRoute accepted")
