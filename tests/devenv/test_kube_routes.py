"""The tests' reading of a CanaryApp's route (devenv/kube.py): the (primary, canary) weights and the
baseline's, from the objects each router declares (stacks/routers/)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from devenv.kube import route_baseline_weight, route_weights
from reconciler.core.routes import GatewayRef
from stacks.routers.gateway_api import http_route_spec
from stacks.routers.istio import virtual_service_spec
from stacks.routing import Route

ROUTE = Route(
    service="web",
    namespace="shop",
    port=8080,
    hosts=("web",),
    gateways=(),
    parent_refs=(GatewayRef("gateways", "public"),),
    primary_weight=80,
    canary_weight=20,
    metadata={"name": "web", "namespace": "shop"},
)


def served(route: Route, router: str) -> dict[str, Any]:
    spec = virtual_service_spec(route) if router == "istio" else http_route_spec(route)
    return {"metadata": dict(route.metadata), "spec": spec}


@pytest.mark.parametrize("router", ["istio", "gateway-api"])
def test_the_baselines_weight_is_read_beside_the_tracks_weights(router: str) -> None:
    with_baseline = dataclasses.replace(ROUTE, primary_weight=60, baseline_weight=20)
    assert route_weights(served(with_baseline, router)) == (60, 20)
    assert route_baseline_weight(served(with_baseline, router)) == 20
    assert route_baseline_weight(served(dataclasses.replace(with_baseline, baseline_weight=0), router)) == 0


@pytest.mark.parametrize("router", ["istio", "gateway-api"])
def test_a_route_without_a_baseline_has_no_baseline_weight(router: str) -> None:
    assert route_weights(served(ROUTE, router)) == (80, 20)
    assert route_baseline_weight(served(ROUTE, router)) is None
