"""`pulumi preview --stack <namespace>.<name>` on the top-level Pulumi.yaml shows the reconciler's next step
against the reconciler's own Pulumi state, and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.processes import REPO_ROOT
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import LOCAL_METRIC_URLS, ReconcilerProcess
from reconciler.adapters.pulumi.settings import PulumiSettings
from tests.integration.helpers import Apps

pytestmark = pytest.mark.integration


def test_preview_shows_the_next_step_without_taking_it(
    kube: object,
    namespace: str,
    reconciler: ReconcilerProcess,
    cluster: LocalCluster,
    exporter: ControlledExporter,
    prometheus: PrometheusServer,
) -> None:
    apps = Apps(kube, namespace)  # type: ignore[arg-type]
    apps.create_ready("web", prometheus.url)
    reconciler.stop()
    apps.patch_spec("web", image="app:v2")

    settings = PulumiSettings(
        backend_url=f"file://{reconciler.state_dir / 'state'}",
        work_root=str(reconciler.state_dir / "workspaces"),
        pulumi_home=str(reconciler.state_dir / "pulumi-home"),
        extra_env={"KUBECONFIG": str(cluster.kubeconfig), "PULUMI_CONFIG_PASSPHRASE": reconciler.passphrase},
    )
    # The dry run is a deputy too: it queries only what the reconciler's metric URL policy allows.
    env = {
        **os.environ,
        **settings.environment(),
        "CANARYAPP_ALLOWED_METRIC_URLS": ",".join(LOCAL_METRIC_URLS),
    }
    try:
        preview = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler.adapters.pulumi.keys",  # the stacks' data keys are wrapped by a key service
                "pulumi",
                "preview",
                "--stack",
                f"{namespace}.web",
                "--non-interactive",
                "--color=never",
                "--diff",
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        # `pulumi preview` writes the stack's settings file next to Pulumi.yaml, in the work tree.
        (REPO_ROOT / f"Pulumi.{namespace}.web.yaml").unlink(missing_ok=True)
    output = preview.stdout + preview.stderr
    assert preview.returncode == 0, output
    assert "next step: StartCanary" in output
    assert "canary-deployment" in output
    assert "+ 1 to create" in output
    assert "app:v2" in output
    assert apps.deployment("web-canary") is None
    assert apps.status("web")["phase"] == "Ready"
