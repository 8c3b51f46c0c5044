"""What a pass observes of a gateway-api CanaryApp's HTTPRoute (reconciler/runtime/observe.py): read by name
only while a canary carries weight, judged for the weights the status declares, and no metric check while
the weight does not count yet."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from reconciler.core.analysis import CheckResult
from reconciler.core.model import CanaryApp, CheckOutcome
from reconciler.core.readiness import DeploymentState
from reconciler.runtime.observe import observe

NOW = datetime.datetime(2026, 1, 1, 0, 1, tzinfo=datetime.UTC)
PARENT = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "gateways", "name": "public"}


def accepted_route(weights: tuple[int, int], generation: int = 2) -> dict[str, Any]:
    conditions = [
        {"type": kind, "status": "True", "reason": kind, "observedGeneration": generation}
        for kind in ("Accepted", "ResolvedRefs")
    ]
    return {
        "metadata": {"name": "web", "namespace": "ns", "generation": generation},
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "web-primary", "port": 8088, "weight": weights[0]},
                        {"name": "web-canary", "port": 8088, "weight": weights[1]},
                    ]
                }
            ]
        },
        "status": {"parents": [{"parentRef": PARENT, "conditions": conditions}]},
    }


class Cluster:
    def __init__(self, route: dict[str, Any] | None) -> None:
        self.route = route
        self.route_reads: list[tuple[str, str]] = []

    def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        return None

    def http_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.route_reads.append((namespace, name))
        return self.route


def app(
    router: str = "gateway-api", weight: int = 10, phase: str = "Progressing", **status: Any
) -> CanaryApp:
    spec: dict[str, Any] = {
        "image": "app:v2",
        "imageListenPort": 8088,
        "prometheusQuery": "q",
        "prometheusURL": "http://prometheus.istio-system:9090",
        "router": router,
    }
    if router == "gateway-api":
        spec["parentRefs"] = [{"name": "public", "namespace": "gateways"}]
    return CanaryApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": spec,
            "status": {
                "phase": phase,
                "canaryWeight": weight,
                "lastCheckTime": "2026-01-01T00:00:00Z",
                **status,
            },
        }
    )


class Checks:
    def __init__(self) -> None:
        self.asked = 0

    def __call__(self, app: CanaryApp, now: datetime.datetime) -> CheckResult:
        self.asked += 1
        return CheckResult(CheckOutcome.CLEAN)


def test_an_accepted_route_at_the_declared_weights_counts_and_the_check_runs() -> None:
    cluster, checks = Cluster(accepted_route((90, 10))), Checks()
    seen = observe(app(), cluster, checks, NOW)  # type: ignore[arg-type]
    assert cluster.route_reads == [("ns", "web")]
    assert seen.route is not None
    assert seen.route.accepted
    assert seen.check is not None
    assert checks.asked == 1


@pytest.mark.parametrize(
    ("route", "status"),
    [
        pytest.param(None, {}, id="no route"),
        pytest.param(accepted_route((80, 20)), {}, id="the route still carries the last weights"),
        pytest.param(
            accepted_route((90, 10)), {"routePendingSince": "2026-01-01T00:00:30Z"}, id="just accepted"
        ),
    ],
)
def test_no_check_while_the_weight_does_not_count(
    route: dict[str, Any] | None, status: dict[str, Any]
) -> None:
    checks = Checks()
    seen = observe(app(**status), Cluster(route), checks, NOW)  # type: ignore[arg-type]
    assert seen.route is not None
    assert seen.check is None
    assert checks.asked == 0


@pytest.mark.parametrize(
    "the_app",
    [
        pytest.param(app(router="istio"), id="istio"),
        pytest.param(app(weight=0), id="no weight yet"),
        pytest.param(app(phase="Succeeded", weight=0), id="steady"),
    ],
)
def test_the_route_is_read_only_when_a_weight_awaits_confirmation(the_app: CanaryApp) -> None:
    cluster = Cluster(accepted_route((90, 10)))
    assert observe(the_app, cluster, Checks(), NOW).route is None  # type: ignore[arg-type]
    assert cluster.route_reads == []
