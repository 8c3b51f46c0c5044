"""Gateway API's router under Pulumi's mocks: the per-track Services and the HTTPRoute it declares, and what
a stack that switches routers declares (the objects a real `up` then keeps, adds and deletes)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.desired import AutoscalerSpec, DesiredStack
from reconciler.core.names import Router, owned_objects
from reconciler.core.routes import GatewayRef
from reconciler.core.workload import effective_template
from stacks.program import declare
from stacks.routers import gateway_api
from stacks.routers.gateway_api import http_route_spec
from stacks.routing import Route
from tests.stacks.pulumi_mocks import Recorder, recording, urn
from tests.stacks.pulumi_mocks import run as run_program

OWNER = {"apiVersion": "canary.atze.io/v1", "kind": "CanaryApp", "name": "shop", "uid": "uid-1"}
ROUTE = Route(
    service="shop",
    namespace="team-a",
    port=8088,
    hosts=("shop.example.com",),
    gateways=(),
    parent_refs=(
        GatewayRef("gateways", "public", "https", None),
        GatewayRef("team-a", "internal", None, 8080),
    ),
    primary_weight=70,
    canary_weight=30,
    metadata={
        "name": "shop",
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/managed-by": "canaryapp", "canary.atze.io/app": "shop"},
        "annotations": {"pulumi.com/patchForce": "true"},
        "ownerReferences": [OWNER],
    },
)
HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
SERVICE = "kubernetes:core/v1:Service"
DESIRED = DesiredStack(
    name="shop",
    namespace="team-a",
    owner_uid="uid-1",
    port=8088,
    replicas=2,
    test_replicas=1,
    hosts=(),
    gateways=(),
    primary_image="shop:v1",
    canary_image=None,
    canary_weight=0,
    primary_template=effective_template(None, "shop:v1", 8088),
    primary_revision="r1",
    router=Router.GATEWAY_API,
    parent_refs=(GatewayRef("gateways", "public"),),
)


def run(route: Route, recorder: Recorder) -> dict[str, dict[str, Any]]:
    return run_program(lambda: gateway_api.declare(route, pulumi.ResourceOptions()), recorder)


def test_declares_a_service_per_track_and_an_http_route_with_the_routes_metadata(recorder: Recorder) -> None:
    resources = run(ROUTE, recorder)
    assert sorted(resources) == ["canary-service", "httproute", "primary-service"]
    route = resources["httproute"]
    assert (route["type"], route["apiVersion"], route["kind"]) == (
        HTTP_ROUTE,
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
    )
    assert route["metadata"]["name"] == "shop"
    assert route["metadata"]["ownerReferences"] == [OWNER]
    # The reconciler watches the route's acceptance itself: no `up` waits for it.
    assert route["metadata"]["annotations"] == {
        "pulumi.com/patchForce": "true",
        "pulumi.com/skipAwait": "true",
    }
    for track in ("primary", "canary"):
        service = resources[f"{track}-service"]
        assert service["type"] == SERVICE
        assert service["metadata"]["name"] == f"shop-{track}"
        assert service["metadata"]["namespace"] == "team-a"
        assert service["metadata"]["ownerReferences"] == [OWNER]
        assert service["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "canaryapp",
            "canary.atze.io/app": "shop",
            "canary.atze.io/track": track,
        }
        # A Service without ready endpoints (the canary's, between rollouts) must not hold up a step.
        assert service["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
        assert service["spec"] == {
            "selector": {"canary.atze.io/app": "shop", "canary.atze.io/track": track},
            "ports": [{"name": "http", "port": 8088, "targetPort": "http"}],
        }


def test_the_route_attaches_to_the_parent_gateways_and_splits_by_weight(recorder: Recorder) -> None:
    assert run(ROUTE, recorder)["httproute"]["spec"] == {
        "parentRefs": [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "namespace": "gateways",
                "name": "public",
                "sectionName": "https",
            },
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "namespace": "team-a",
                "name": "internal",
                "port": 8080,
            },
        ],
        "hostnames": ["shop.example.com"],
        "rules": [
            {
                "backendRefs": [
                    {"name": "shop-primary", "port": 8088, "weight": 70},
                    {"name": "shop-canary", "port": 8088, "weight": 30},
                ]
            }
        ],
    }


def test_the_route_depends_on_both_services(recorder: Recorder) -> None:
    run(ROUTE, recorder)
    assert recorder.registrations["httproute"].dependencies == {
        urn(SERVICE, "primary-service"),
        urn(SERVICE, "canary-service"),
    }


def test_without_hosts_the_route_takes_its_parents_hostnames() -> None:
    assert "hostnames" not in http_route_spec(dataclasses.replace(ROUTE, hosts=()))


@given(st.integers(min_value=0, max_value=100))
def test_weights_are_integers_that_sum_to_100_and_the_canary_ref_is_always_there(canary: int) -> None:
    spec = http_route_spec(dataclasses.replace(ROUTE, primary_weight=100 - canary, canary_weight=canary))
    refs = spec["rules"][0]["backendRefs"]
    assert [ref["name"] for ref in refs] == ["shop-primary", "shop-canary"]
    assert [ref["weight"] for ref in refs] == [100 - canary, canary]


def test_a_gateway_api_stack_declares_the_apex_service_and_the_routers_objects(recorder: Recorder) -> None:
    resources = run_program(lambda: declare(DESIRED), recorder)
    assert sorted(resources) == [
        "apex-service",
        "canary-service",
        "httproute",
        "primary-deployment",
        "primary-service",
    ]
    route = resources["httproute"]["spec"]
    # No canary runs: the canary's backendRef is there at weight 0; no hostnames: the Gateway's.
    assert route["rules"][0]["backendRefs"][1] == {"name": "shop-canary", "port": 8088, "weight": 0}
    assert "hostnames" not in route
    assert route["parentRefs"][0]["name"] == "public"


def names_of(resources: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (resource["type"].rsplit(":", 1)[1], resource["metadata"]["name"]) for resource in resources.values()
    }


def declared_by(desired: DesiredStack) -> dict[str, dict[str, Any]]:
    with recording() as recorder:
        return dict(run_program(lambda: declare(desired), recorder))


def test_switching_a_steady_stack_keeps_the_workload_and_swaps_only_the_routers_objects() -> None:
    """Istio to Gateway API and back: the Deployments and the apex Service keep their logical names and
    inputs (no replacement, so no outage: an `up` updates nothing of them), the new router's objects are
    declared and the old router's are not (so the `up` deletes them, and nothing is left behind). What each
    stack declares is what the ownership check covers (names.owned_objects) for its router."""
    istio = dataclasses.replace(DESIRED, router=Router.ISTIO, parent_refs=(), hosts=("shop",))
    declared_by_istio, declared_by_gateway_api = declared_by(istio), declared_by(DESIRED)
    for kept in ("primary-deployment", "apex-service"):
        assert declared_by_istio[kept] == declared_by_gateway_api[kept]
    assert set(declared_by_istio) - set(declared_by_gateway_api) == {"destinationrule", "virtualservice"}
    assert set(declared_by_gateway_api) - set(declared_by_istio) == {
        "primary-service",
        "canary-service",
        "httproute",
    }
    for stack, declared in ((istio, declared_by_istio), (DESIRED, declared_by_gateway_api)):
        owned = {(ref.kind, ref.name) for ref in owned_objects("shop", (stack.router,), with_canary=False)}
        assert names_of(declared) == owned


BASELINE_ROUTE = dataclasses.replace(ROUTE, primary_weight=40, canary_weight=30, baseline_weight=30)


def test_a_baseline_gets_a_service_and_a_backend_ref_of_its_own(recorder: Recorder) -> None:
    resources = run(BASELINE_ROUTE, recorder)
    assert sorted(resources) == ["baseline-service", "canary-service", "httproute", "primary-service"]
    service = resources["baseline-service"]
    assert service["metadata"]["name"] == "shop-baseline"
    assert service["metadata"]["labels"]["canary.atze.io/track"] == "baseline"
    assert service["metadata"]["ownerReferences"] == [OWNER]
    assert service["spec"]["selector"] == {"canary.atze.io/app": "shop", "canary.atze.io/track": "baseline"}
    assert resources["httproute"]["spec"]["rules"][0]["backendRefs"] == [
        {"name": "shop-primary", "port": 8088, "weight": 40},
        {"name": "shop-canary", "port": 8088, "weight": 30},
        {"name": "shop-baseline", "port": 8088, "weight": 30},
    ]
    assert recorder.registrations["httproute"].dependencies == {
        urn(SERVICE, "primary-service"),
        urn(SERVICE, "canary-service"),
        urn(SERVICE, "baseline-service"),
    }


def test_a_baseline_at_weight_0_is_routed_at_weight_0() -> None:
    refs = http_route_spec(dataclasses.replace(ROUTE, primary_weight=100, canary_weight=0, baseline_weight=0))
    assert [(ref["name"], ref["weight"]) for ref in refs["rules"][0]["backendRefs"]] == [
        ("shop-primary", 100),
        ("shop-canary", 0),
        ("shop-baseline", 0),
    ]


@pytest.mark.parametrize("router", list(Router))
def test_a_stack_with_a_baseline_declares_what_the_ownership_check_covers(router: Router) -> None:
    """Canary and baseline running, each with an autoscaler: every object declared is one the ownership
    check covers (names.owned_objects with the baseline), and nothing it covers is missing."""
    autoscaler = AutoscalerSpec(1, 3, 80)
    desired = dataclasses.replace(
        DESIRED,
        router=router,
        parent_refs=DESIRED.parent_refs if router == Router.GATEWAY_API else (),
        hosts=() if router == Router.GATEWAY_API else ("shop",),
        canary_image="shop:v2",
        canary_weight=20,
        canary_template=effective_template(None, "shop:v2", 8088),
        canary_revision="r2",
        primary_autoscaler=autoscaler,
        canary_autoscaler=autoscaler,
        baseline_template=DESIRED.primary_template,
        baseline_revision="r1",
        baseline_autoscaler=autoscaler,
    )
    owned = owned_objects("shop", (router,), with_canary=True, autoscaled=True, with_baseline=True)
    assert names_of(declared_by(desired)) == {(ref.kind, ref.name) for ref in owned}
