"""Istio's router under Pulumi's mocks: the DestinationRule and the VirtualService it declares for a route."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from hypothesis import given
from hypothesis import strategies as st

from stacks.routers import istio
from stacks.routers.istio import destination_rule_spec, virtual_service_spec
from stacks.routing import Route
from tests.stacks.pulumi_mocks import Recorder, urn
from tests.stacks.pulumi_mocks import run as run_program

ROUTE = Route(
    service="shop",
    namespace="team-a",
    port=8088,
    hosts=("shop",),
    gateways=(),
    parent_refs=(),
    primary_weight=70,
    canary_weight=30,
    metadata={"name": "shop", "namespace": "team-a", "labels": {"canary.atze.io/app": "shop"}},
)
DESTINATION_RULE = "kubernetes:networking.istio.io/v1:DestinationRule"
VIRTUAL_SERVICE = "kubernetes:networking.istio.io/v1:VirtualService"


def run(
    route: Route, recorder: Recorder, opts: Callable[[], pulumi.ResourceOptions] = pulumi.ResourceOptions
) -> dict[str, dict[str, Any]]:
    return run_program(lambda: istio.declare(route, opts()), recorder)


def test_declares_a_destination_rule_and_a_virtual_service_with_the_routes_metadata(
    recorder: Recorder,
) -> None:
    resources = run(ROUTE, recorder)
    assert sorted(resources) == ["destinationrule", "virtualservice"]
    rule, service = resources["destinationrule"], resources["virtualservice"]
    assert (rule["type"], rule["apiVersion"], rule["kind"]) == (
        DESTINATION_RULE,
        "networking.istio.io/v1",
        "DestinationRule",
    )
    assert (service["type"], service["apiVersion"], service["kind"]) == (
        VIRTUAL_SERVICE,
        "networking.istio.io/v1",
        "VirtualService",
    )
    assert rule["metadata"] == service["metadata"] == ROUTE.metadata


def test_destination_rule_splits_the_apex_service_by_track(recorder: Recorder) -> None:
    rule = run(ROUTE, recorder)["destinationrule"]
    assert rule["spec"] == {
        "host": "shop.team-a.svc.cluster.local",
        "subsets": [
            {"name": "primary", "labels": {"canary.atze.io/track": "primary"}},
            {"name": "canary", "labels": {"canary.atze.io/track": "canary"}},
        ],
    }


def test_virtual_service_weights_sum_to_100(recorder: Recorder) -> None:
    vs = run(ROUTE, recorder)["virtualservice"]
    assert vs["spec"]["http"][0]["name"] == "canary-split"
    route = vs["spec"]["http"][0]["route"]
    assert [(r["destination"]["host"], r["destination"]["subset"], r["weight"]) for r in route] == [
        ("shop.team-a.svc.cluster.local", "primary", 70),
        ("shop.team-a.svc.cluster.local", "canary", 30),
    ]
    assert all(r["destination"]["port"]["number"] == 8088 for r in route)
    assert vs["spec"]["hosts"] == ["shop"]
    assert "gateways" not in vs["spec"]


def test_gateways_and_hosts_are_passed_through(recorder: Recorder) -> None:
    route = dataclasses.replace(ROUTE, hosts=("*",), gateways=("istio-system/gw", "mesh"))
    vs = run(route, recorder)["virtualservice"]
    assert vs["spec"]["hosts"] == ["*"]
    assert vs["spec"]["gateways"] == ["istio-system/gw", "mesh"]


def test_both_objects_take_the_options_and_the_virtual_service_waits_for_the_rule(recorder: Recorder) -> None:
    run(ROUTE, recorder, lambda: pulumi.ResourceOptions(provider=k8s.Provider("other-cluster")))
    provider = f"{urn('pulumi:providers:kubernetes', 'other-cluster')}::other-cluster-id"
    rule, service = recorder.registrations["destinationrule"], recorder.registrations["virtualservice"]
    assert rule.provider == service.provider == provider
    assert rule.urn == urn(DESTINATION_RULE, "destinationrule")
    assert service.urn == urn(VIRTUAL_SERVICE, "virtualservice")
    # A route to a subset the DestinationRule does not define yet would answer 503.
    assert service.dependencies == {rule.urn}


@given(canary_weight=st.integers(min_value=0, max_value=100))
def test_the_virtual_service_routes_the_weights_to_subsets_the_rule_defines(canary_weight: int) -> None:
    route = dataclasses.replace(ROUTE, primary_weight=100 - canary_weight, canary_weight=canary_weight)
    subsets = {subset["name"] for subset in destination_rule_spec(route)["subsets"]}
    destinations = virtual_service_spec(route)["http"][0]["route"]
    weights = {entry["destination"]["subset"]: entry["weight"] for entry in destinations}
    assert weights == {"primary": 100 - canary_weight, "canary": canary_weight}
    assert set(weights) <= subsets
    assert sum(weights.values()) == 100


BASELINE_ROUTE = dataclasses.replace(ROUTE, primary_weight=40, canary_weight=30, baseline_weight=30)


def test_a_baseline_gets_a_subset_and_a_destination_of_its_own(recorder: Recorder) -> None:
    resources = run(BASELINE_ROUTE, recorder)
    assert sorted(resources) == ["destinationrule", "virtualservice"]
    assert resources["destinationrule"]["spec"]["subsets"] == [
        {"name": "primary", "labels": {"canary.atze.io/track": "primary"}},
        {"name": "canary", "labels": {"canary.atze.io/track": "canary"}},
        {"name": "baseline", "labels": {"canary.atze.io/track": "baseline"}},
    ]
    route = resources["virtualservice"]["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route] == [
        ("primary", 40),
        ("canary", 30),
        ("baseline", 30),
    ]
    # The same objects under the same logical names as without a baseline: its start is an update.
    assert recorder.registrations["virtualservice"].urn == urn(VIRTUAL_SERVICE, "virtualservice")


def test_without_a_baseline_no_baseline_subset_or_destination() -> None:
    assert [subset["name"] for subset in destination_rule_spec(ROUTE)["subsets"]] == ["primary", "canary"]
    assert len(virtual_service_spec(ROUTE)["http"][0]["route"]) == 2


@given(canary_weight=st.integers(min_value=0, max_value=50))
def test_with_a_baseline_the_route_sends_every_weight_to_a_subset_the_rule_defines(
    canary_weight: int,
) -> None:
    route = dataclasses.replace(
        ROUTE,
        primary_weight=100 - 2 * canary_weight,
        canary_weight=canary_weight,
        baseline_weight=canary_weight,
    )
    subsets = {subset["name"] for subset in destination_rule_spec(route)["subsets"]}
    destinations = virtual_service_spec(route)["http"][0]["route"]
    weights = {entry["destination"]["subset"]: entry["weight"] for entry in destinations}
    assert weights == {"primary": 100 - 2 * canary_weight, "canary": canary_weight, "baseline": canary_weight}
    assert set(weights) == subsets
    assert sum(weights.values()) == 100
