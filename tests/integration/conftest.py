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
from reconciler.core.names import Router
from tests.integration.helpers import reconciler_flags

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


@pytest.fixture
def gateway_controller(cluster: LocalCluster) -> Iterator[GatewayController]:
    """The local traffic layer's Gateway API controller, for the test that asks for it: it writes the status
    of the local GatewayClass, its Gateway and every HTTPRoute naming it, as an implementation in a real
    cluster does (devenv/mesh/). Not for the whole session: it reads every namespace and Service of the
    cluster twice a second, and on a worker's cluster they pile up test after test."""
    controller = GatewayController(cluster.kubeconfig)
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture
def router() -> Router:
    """The router of a test's CanaryApps: Istio, unless the test is parametrized by `router`."""
    return Router.ISTIO


@pytest.fixture
def reconciler(
    cluster: LocalCluster, namespace: str, tmp_path: Path, router: Router, request: pytest.FixtureRequest
) -> Iterator[ReconcilerProcess]:
    """`canaryapp run` for the test's namespace; for the Gateway API with the local Gateway allowed and its
    controller running (it accepts the routes the reconciler waits for)."""
    if router == Router.GATEWAY_API:
        request.getfixturevalue("gateway_controller")
    process = ReconcilerProcess(
        cluster.kubeconfig, namespace, tmp_path / "reconciler", *reconciler_flags(router)
    )
    process.start()
    yield process
    process.stop()
