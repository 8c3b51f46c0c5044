"""Fixtures for the integration tests: a real local cluster, Prometheus, an exporter the tests control, and
the reconciler as a real process (`canaryapp run`) with the real Pulumi engine and Kubernetes provider."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from devenv.cluster import POD_SECURITY_LABELS, LocalCluster, running
from devenv.exporter import ControlledExporter
from devenv.kube import api_client
from devenv.processes import REPO_ROOT, tools_bin
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from tests.integration.helpers import LIMITED_USER, LIMITED_USER_EXAMPLE, kubectl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def tools_on_path() -> None:
    venv_bin = REPO_ROOT / ".venv" / "bin"
    os.environ["PATH"] = f"{tools_bin()}:{venv_bin}:{os.environ['PATH']}"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running(tmp_path_factory.mktemp("cluster")) as local:
        local.apply_crd_file(REPO_ROOT / "crds" / "canary.atze.io_canaryapps.yaml")
        yield local


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster) -> kubernetes.client.ApiClient:
    return api_client(cluster.kubeconfig)


@pytest.fixture(scope="session")
def exporter() -> Iterator[ControlledExporter]:
    server = ControlledExporter()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prometheus(
    exporter: ControlledExporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), {"controlled": [exporter.address]})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def namespace(kube: kubernetes.client.ApiClient) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    body = {"metadata": {"name": name, "labels": POD_SECURITY_LABELS}}
    kubernetes.client.CoreV1Api(kube).create_namespace(body)
    return name


@pytest.fixture
def reconciler(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[ReconcilerProcess]:
    process = ReconcilerProcess(cluster.kubeconfig, namespace, tmp_path / "reconciler")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def limited_user(cluster: LocalCluster) -> Iterator[kubernetes.client.ApiClient]:
    """An API client that acts as examples/limited-user's user (impersonated by the admin), with the example
    applied: it may manage CanaryApps in `default` and nothing else."""
    example = str(LIMITED_USER_EXAMPLE / "rbac.yaml")
    applied = kubectl(cluster.kubeconfig, "apply", "-f", example)
    assert applied.returncode == 0, applied.stderr
    client = api_client(cluster.kubeconfig)
    client.set_default_header("Impersonate-User", LIMITED_USER)
    yield client
    client.close()
    deleted = kubectl(cluster.kubeconfig, "delete", "-f", example, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
