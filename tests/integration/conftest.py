"""Fixtures of the e2e tier: a real local cluster (tests/conftest.py), Prometheus, an exporter the tests
control, and the reconciler as a real process (`canaryapp run`) with the real Pulumi engine and Kubernetes
provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.mesh import GatewayController
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def tools_on_path(tools_on_path: None) -> None:
    """Every e2e test runs the pinned tools (kubectl, pulumi) found on PATH, as a user's shell would."""


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


@pytest.fixture(scope="session")
def gateway_controller(cluster: LocalCluster) -> Iterator[GatewayController]:
    """The local traffic layer's Gateway API controller, for the whole session: it writes the status of the
    local GatewayClass, its Gateway and every HTTPRoute naming it, as an implementation in a real cluster
    does (devenv/mesh/)."""
    controller = GatewayController(cluster.kubeconfig)
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture
def reconciler(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[ReconcilerProcess]:
    process = ReconcilerProcess(cluster.kubeconfig, namespace, tmp_path / "reconciler")
    process.start()
    yield process
    process.stop()
