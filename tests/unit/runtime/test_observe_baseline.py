"""What a pass observes of a baseline (reconciler/runtime/observe.py): its Deployment is read only while one
runs beside the canary, no metric check is asked for while it is not ready with the primary's release, and a
gateway-api route counts only when it carries the three weights."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from reconciler.core.analysis import CheckResult
from reconciler.core.model import CanaryApp, CheckOutcome
from reconciler.core.readiness import DeploymentState
from reconciler.runtime.observe import observe
from tests.unit.core.statuses import revision, written
from tests.unit.runtime.test_observe_route import Checks, accepted_route

NOW = datetime.datetime(2026, 1, 1, 0, 1, tzinfo=datetime.UTC)
PRIMARY = DeploymentState("app:v1", ready=True, revision=revision("app:v1"))
CANARY = DeploymentState("app:v2", ready=True, revision=revision("app:v2"))


class Cluster:
    def __init__(self, deployments: dict[str, DeploymentState], route: dict[str, Any] | None = None) -> None:
        self.deployments = deployments
        self.route = route
        self.reads: list[str] = []

    def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        self.reads.append(name)
        return self.deployments.get(name)

    def http_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.route


def app(
    baseline: bool = True, phase: str = "Progressing", router: str = "istio", weight: int = 20
) -> CanaryApp:
    spec: dict[str, Any] = {
        "image": "app:v2",
        "imageListenPort": 8088,
        "prometheusQuery": "q",
        "prometheusURL": "http://prometheus.istio-system:9090",
        "router": router,
        "analysis": {"baseline": baseline},
    }
    if router == "gateway-api":
        spec["parentRefs"] = [{"name": "public", "namespace": "gateways"}]
    status = written(
        primary="app:v1",
        canary="app:v2",
        **{"phase": phase, "canaryWeight": weight, "lastCheckTime": "2026-01-01T00:00:00Z"},
    )
    return CanaryApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": spec,
            "status": status.model_dump(by_alias=True, exclude_none=True),
        }
    )


def test_a_ready_baseline_is_read_and_the_check_runs() -> None:
    cluster, checks = (
        Cluster({"web-primary": PRIMARY, "web-canary": CANARY, "web-baseline": PRIMARY}),
        Checks(),
    )
    seen = observe(app(), cluster, checks, NOW)  # type: ignore[arg-type]
    assert seen.baseline == PRIMARY
    assert "web-baseline" in cluster.reads
    assert seen.check == CheckResult(CheckOutcome.CLEAN)
    assert checks.asked == 1


@pytest.mark.parametrize(
    "baseline",
    [
        pytest.param(None, id="not there"),
        pytest.param(DeploymentState("app:v1", ready=False, revision=revision("app:v1")), id="not ready"),
        pytest.param(CANARY, id="the canary's release"),
    ],
)
def test_no_check_while_the_baseline_is_not_ready_with_the_primarys_release(
    baseline: DeploymentState | None,
) -> None:
    deployments = {"web-primary": PRIMARY, "web-canary": CANARY}
    if baseline is not None:
        deployments["web-baseline"] = baseline
    checks = Checks()
    seen = observe(app(), Cluster(deployments), checks, NOW)  # type: ignore[arg-type]
    assert seen.baseline == baseline
    assert seen.check is None
    assert checks.asked == 0


@pytest.mark.parametrize(
    "the_app",
    [
        pytest.param(app(baseline=False), id="no analysis.baseline"),
        pytest.param(app(phase="Promoting"), id="promoting"),
    ],
)
def test_the_baseline_is_read_only_while_one_runs(the_app: CanaryApp) -> None:
    cluster, checks = (
        Cluster({"web-primary": PRIMARY, "web-canary": CANARY, "web-baseline": PRIMARY}),
        Checks(),
    )
    seen = observe(the_app, cluster, checks, NOW)  # type: ignore[arg-type]
    assert seen.baseline is None
    assert "web-baseline" not in cluster.reads


def three_weight_route(weights: tuple[int, ...]) -> dict[str, Any]:
    route = accepted_route((weights[0], weights[1]))
    refs = route["spec"]["rules"][0]["backendRefs"]
    refs.extend({"name": "web-baseline", "port": 8088, "weight": weight} for weight in weights[2:])
    return route


@pytest.mark.parametrize(
    ("weights", "counts"),
    [
        pytest.param((60, 20, 20), True, id="the three weights"),
        pytest.param((80, 20), False, id="the weights without the baseline"),
    ],
)
def test_a_gateway_api_route_counts_with_the_baselines_weight(weights: tuple[int, ...], counts: bool) -> None:
    deployments = {"web-primary": PRIMARY, "web-canary": CANARY, "web-baseline": PRIMARY}
    checks = Checks()
    cluster = Cluster(deployments, three_weight_route(weights))
    seen = observe(app(router="gateway-api"), cluster, checks, NOW)  # type: ignore[arg-type]
    assert seen.route is not None
    assert seen.route.accepted is counts
    assert (seen.check is not None) is counts
