"""The reconciler image, run with podman as config/default's Deployment runs its pod
(devenv/reconciler_image.py): its command with --leader-elect, uid 65532 on a read-only root filesystem, its
state on a volume, /tmp on tmpfs, its memory and CPU limits, the passphrase from its environment, and its
ServiceAccount's token and CA at the in-cluster paths with the RBAC of config/rbac. On the local cluster it
takes the Lease, rolls a CanaryApp out and deletes it, answers its probes and /metrics, and on SIGTERM
releases the Lease and exits 0 within the pod's grace period. `make image` builds the image; `make test`
builds it when it is missing."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.processes import REPO_ROOT, free_port, tool
from devenv.prometheus import PrometheusServer
from devenv.reconciler_image import (
    ImageMissingError,
    ReconcilerContainer,
    built_image,
    owner_in_container,
    pod_run,
    write_service_account,
)
from devenv.reconciler_process import LOCAL_METRIC_URLS
from tests.integration.helpers import (
    RECONCILER_ACCOUNT,
    SYSTEM_NAMESPACE,
    Apps,
    reconciler_token,
    wait_for,
)

pytestmark = pytest.mark.integration

PASSPHRASE = "image-test-passphrase"
LEASE = "canaryapp-reconciler"


@pytest.fixture(scope="module")
def image() -> str:
    try:
        return built_image()
    except ImageMissingError as error:
        pytest.fail(f"{error} (`make test` builds it when it is missing)")


def installed_deployment() -> dict[str, Any]:
    """The reconciler's Deployment as `kubectl kustomize config/default` renders it for installation."""
    rendered = subprocess.run(
        [tool("kubectl"), "kustomize", str(REPO_ROOT / "config" / "default")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return next(
        document
        for document in yaml.safe_load_all(rendered)
        if document
        and document["kind"] == "Deployment"
        and document["metadata"]["name"] == RECONCILER_ACCOUNT
    )


@pytest.fixture
def container(
    image: str,
    kube: kubernetes.client.ApiClient,
    cluster: LocalCluster,
    namespace: str,
    tmp_path: Path,
) -> Iterator[ReconcilerContainer]:
    run = pod_run(
        installed_deployment(),
        claims={"canaryapp-state": tmp_path / "state"},
        secrets={("canaryapp-pulumi", "passphrase"): PASSPHRASE},
        command_overrides={
            # The container shares the host's network: a free loopback port instead of 0.0.0.0:8080.
            "--metrics-address": f"127.0.0.1:{free_port()}",
            # Only this test's namespace, with this test's Prometheus allowed.
            "--namespace": namespace,
            "--allowed-metric-urls": ",".join(LOCAL_METRIC_URLS),
        },
    )
    assert run.service_account == RECONCILER_ACCOUNT
    account = write_service_account(
        tmp_path / "serviceaccount", reconciler_token(kube, cluster), cluster.info.ca_cert, SYSTEM_NAMESPACE
    )
    reconciler = ReconcilerContainer(
        image,
        run,
        name=f"canaryapp-reconciler-{uuid.uuid4().hex[:8]}",
        api_port=cluster.api_port,
        log_path=tmp_path / "container.log",
    )
    reconciler.start(account)
    yield reconciler
    reconciler.remove()
    print(f"container log ({reconciler.log_path}), last lines:")
    print("\n".join(reconciler.log().splitlines()[-40:]))


def probes_answer(container: ReconcilerContainer) -> bool:
    assert not container.exited(), "the container exited"
    return container.get("/healthz")[0] == 200 and container.get("/readyz")[0] == 200


def lease_holder(kube: kubernetes.client.ApiClient) -> str | None:
    lease = kubernetes.client.CoordinationV1Api(kube).read_namespaced_lease(LEASE, SYSTEM_NAMESPACE)
    holder: str | None = lease.spec.holder_identity
    return holder


def test_the_image_rolls_out_and_deletes_as_its_pod_and_stops_on_sigterm(
    container: ReconcilerContainer,
    kube: kubernetes.client.ApiClient,
    namespace: str,
    exporter: ControlledExporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    wait_for(lambda: probes_answer(container), 120, "/healthz and /readyz answering 200")
    wait_for(lambda: lease_holder(kube) == container.name, 60, f"the Lease held by {container.name}")
    apps = Apps(kube, namespace)
    apps.create_ready("web", prometheus.url)
    apps.patch_spec("web", image="app:v2")
    status = wait_for(lambda: apps.phase_is("web", "Succeeded"), 180, "v2 promoted")
    assert status["primaryImage"] == "app:v2"
    assert apps.deployment_image("web-primary") == "app:v2"
    apps.delete("web")
    wait_for(lambda: not apps.exists("web"), 120, "deleted through the finalizer")
    apps.wait_deleted("web-primary")

    metrics = container.metrics()
    assert metrics["canaryapp_reconcile_errors_total"] == 0.0
    assert metrics['canaryapp_rollouts_finished_total{result="promoted"}'] == 1.0
    # The Pulumi state went to the state volume, written by the container's user.
    state_files = [path for path in (tmp_path / "state").rglob("*") if path.is_file()]
    assert state_files, "nothing was written to the state volume"
    assert {owner_in_container(path) for path in state_files} == {65532}

    assert container.stop() == 0, "the container did not exit 0 on SIGTERM within the grace period"
    assert lease_holder(kube) is None, "the Lease was not released at SIGTERM"
