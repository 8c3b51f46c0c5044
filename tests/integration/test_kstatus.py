"""The status as Flux, Helm and `kubectl wait` read it, through a whole rollout on the local cluster: kstatus
itself (tools/kstatus, built from sigs.k8s.io/cli-utils) and the real kubectl judge the live CanaryApp at each
stage, so the proof is their reading, not ours. Applied → InProgress; the first release ready → Current; a
spec change the reconciler has not seen → InProgress, and no stale Ready for `kubectl wait`; a clean canary
→ InProgress until promoted, Current after; a failing canary → Failed as it is rolled back."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.processes import tool
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from tests.integration.helpers import Apps, canary_app, error_query, kubectl, traffic_query, wait_for

pytestmark = pytest.mark.integration

ROLLOUT_TIMEOUT = 180


@pytest.fixture
def apps(kube: object, namespace: str) -> Apps:
    return Apps(kube, namespace)  # type: ignore[arg-type]


class Judge:
    """kubectl apply, kubectl wait and kstatus on one CanaryApp, as a GitOps tool would run them."""

    def __init__(self, cluster: LocalCluster, namespace: str, manifest: Path) -> None:
        self.kubeconfig = cluster.kubeconfig
        self.namespace = namespace
        self.manifest = manifest

    def apply(self, body: dict[str, Any]) -> None:
        self.manifest.write_text(json.dumps(body))
        applied = kubectl(self.kubeconfig, "apply", "-n", self.namespace, "-f", str(self.manifest))
        assert applied.returncode == 0, applied.stderr

    def kstatus(self, name: str) -> dict[str, str]:
        got = kubectl(self.kubeconfig, "get", "canaryapp", name, "-n", self.namespace, "-o", "json")
        assert got.returncode == 0, got.stderr
        computed = subprocess.run(
            [tool("kstatus")], input=got.stdout, capture_output=True, text=True, timeout=30, check=True
        )
        result: dict[str, str] = json.loads(computed.stdout)
        return result

    def wait(self, name: str, condition: str, timeout: str) -> subprocess.Popen[str]:
        """`kubectl wait --for=condition=...`, started in the background."""
        return subprocess.Popen(
            [
                tool("kubectl"),
                "wait",
                f"--for=condition={condition}",
                f"canaryapp/{name}",
                f"--namespace={self.namespace}",
                f"--timeout={timeout}",
            ],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def finished(waiting: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    out, err = waiting.communicate(timeout=timeout)
    return waiting.returncode, out + err


def test_kstatus_and_kubectl_wait_follow_a_whole_rollout(
    cluster: LocalCluster,
    apps: Apps,
    namespace: str,
    reconciler: ReconcilerProcess,
    exporter: ControlledExporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    labels = {"namespace": namespace, "canaryapp": "web"}
    exporter.set("canary_errors", labels, 0)
    exporter.set("canary_requests", labels, 50)
    judge = Judge(cluster, namespace, tmp_path / "web.json")
    spec = {"canaryTrafficQuery": traffic_query(), "minCanaryRequests": 1}

    def release(image: str) -> dict[str, Any]:
        return canary_app("web", image, error_query(namespace, "web"), prometheus.url, **spec)

    # Applied: in progress from the first moment, even before the reconciler writes a status (it is stopped:
    # the CRD's default observedGeneration 0 is what kstatus reads), and while the first release rolls out.
    reconciler.stop()
    judge.apply(release("app:v1"))
    assert judge.kstatus("web") == {
        "status": "InProgress",
        "message": "CanaryApp generation is 1, but latest observed generation is 0",
    }
    reconciler.start()
    code, output = finished(judge.wait("web", "Ready", f"{ROLLOUT_TIMEOUT}s"), ROLLOUT_TIMEOUT + 10)
    assert code == 0, output
    assert apps.status("web")["phase"] == "Ready"
    assert judge.kstatus("web") == {"status": "Current", "message": "Resource is Ready"}

    # A spec change the reconciler has not seen (it is stopped): the Ready of generation 1 is not Ready for 2.
    reconciler.stop()
    judge.apply(release("app:v2"))
    assert apps.get("web")["metadata"]["generation"] == 2
    unseen = judge.kstatus("web")
    assert unseen["status"] == "InProgress"
    assert "generation is 2, but latest observed generation is 1" in unseen["message"]
    code, output = finished(judge.wait("web", "Ready", "2s"), 30)
    assert code != 0, output  # a stale Ready=True (observedGeneration 1) does not satisfy kubectl wait

    # The clean canary: in progress while it runs, and kubectl wait returns only once it is promoted.
    waiting = judge.wait("web", "Ready", f"{ROLLOUT_TIMEOUT}s")
    reconciler.start()
    running = wait_for(
        lambda: apps.status("web") if apps.status("web").get("canaryWeight", 0) > 0 else None,
        ROLLOUT_TIMEOUT,
        "the canary carrying traffic",
    )
    assert running["phase"] == "Progressing"
    assert judge.kstatus("web")["status"] == "InProgress"
    assert waiting.poll() is None  # still waiting while the canary runs
    code, output = finished(waiting, ROLLOUT_TIMEOUT + 10)
    assert code == 0, output
    promoted = apps.get("web")
    assert promoted["status"]["phase"] == "Succeeded"
    assert promoted["status"]["primaryImage"] == "app:v2"
    assert promoted["status"]["observedGeneration"] == promoted["metadata"]["generation"] == 2
    assert judge.kstatus("web") == {"status": "Current", "message": "Resource is Ready"}

    # A failing canary: Failed as soon as the rollback is decided, and kubectl wait sees Stalled.
    exporter.set("canary_errors", labels, 1)
    wait_for(lambda: prometheus.query(error_query(namespace, "web")), 30, "errors scraped")
    judge.apply(release("app:v3"))
    assert judge.kstatus("web")["status"] == "InProgress"
    rolled_back = wait_for(lambda: apps.phase_is("web", "Failed"), ROLLOUT_TIMEOUT, "v3 rolled back")
    assert rolled_back["failedImages"] == ["app:v3"]
    failed = judge.kstatus("web")
    assert failed["status"] == "Failed"
    assert "app:v3" in failed["message"]
    assert "rolled back" in failed["message"].lower()
    code, output = finished(judge.wait("web", "Stalled", "30s"), 40)
    assert code == 0, output
