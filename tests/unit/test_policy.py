"""What a CanaryApp may make the reconciler do (reconciler/policy.py): ownership, reserved names, gateways
and hosts, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.model import CanaryAppSpec
from reconciler.policy import RoutingPolicy, gateway_reference, is_ours


def spec(**fields: Any) -> CanaryAppSpec:
    base = {"image": "a:v1", "imageListenPort": 80, "prometheusQuery": "q", "prometheusURL": "http://p:9090"}
    return CanaryAppSpec.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("owners", "uid", "ours"),
    [
        pytest.param(None, "u1", True, id="absent: ours to create"),
        pytest.param(frozenset({"u1"}), "u1", True, id="owner reference with our uid"),
        pytest.param(frozenset({"u0", "u1"}), "u1", True, id="one of several owners"),
        pytest.param(frozenset(), "u1", False, id="no owner at all"),
        pytest.param(frozenset({"u2"}), "u1", False, id="another owner"),
        pytest.param(frozenset({""}), "", False, id="no uid never matches"),
    ],
)
def test_is_ours(owners: frozenset[str] | None, uid: str, ours: bool) -> None:
    assert is_ours(owners, uid) is ours


@pytest.mark.parametrize(
    ("gateway", "reference"),
    [
        pytest.param("mesh", "mesh", id="mesh"),
        pytest.param("public", "shop/public", id="bare name: own namespace"),
        pytest.param("istio-system/public", "istio-system/public", id="namespace/name"),
        pytest.param("public.istio-system.svc.cluster.local", "istio-system/public", id="fqdn"),
    ],
)
def test_gateway_reference(gateway: str, reference: str) -> None:
    assert gateway_reference("shop", gateway) == reference


@pytest.mark.parametrize(
    ("policy", "fields", "problem_fields"),
    [
        pytest.param(RoutingPolicy(), {}, [], id="defaults: mesh and own name"),
        pytest.param(RoutingPolicy(), {"hosts": ["web", "web.shop.svc.cluster.local"]}, [], id="own hosts"),
        pytest.param(RoutingPolicy(), {"hosts": ["api.example.com"]}, ["spec.hosts"], id="foreign host"),
        pytest.param(RoutingPolicy(), {"hosts": ["*"]}, ["spec.hosts"], id="wildcard host"),
        pytest.param(RoutingPolicy(), {"hosts": ["other"]}, ["spec.hosts"], id="another app's service"),
        pytest.param(RoutingPolicy(), {"gateways": ["mesh"]}, [], id="mesh gateway"),
        pytest.param(RoutingPolicy(), {"gateways": ["istio-system/gw"]}, ["spec.gateways"], id="gateway"),
        pytest.param(
            RoutingPolicy(allowed_gateways=("istio-system/public",), allowed_hosts=("*.example.com",)),
            {"gateways": ["istio-system/public", "mesh"], "hosts": ["web.example.com"]},
            [],
            id="allowed by the operator",
        ),
        pytest.param(
            RoutingPolicy(allowed_gateways=("{namespace}/*",), allowed_hosts=("*.{namespace}.example.com",)),
            {"gateways": ["own-gw"], "hosts": ["web.shop.example.com"]},
            [],
            id="namespace placeholder allows",
        ),
        pytest.param(
            RoutingPolicy(allowed_gateways=("{namespace}/*",), allowed_hosts=("*.{namespace}.example.com",)),
            {"gateways": ["other/gw"], "hosts": ["web.other.example.com"]},
            ["spec.hosts", "spec.gateways"],
            id="namespace placeholder refuses other namespaces",
        ),
    ],
)
def test_routing_policy(policy: RoutingPolicy, fields: dict[str, Any], problem_fields: list[str]) -> None:
    problems = policy.violations("shop", "web", spec(**fields))
    assert [problem.split(":", 1)[0] for problem in problems] == problem_fields


def test_the_api_servers_own_service_is_reserved() -> None:
    problems = RoutingPolicy().violations("default", "kubernetes", spec())
    assert len(problems) == 1
    assert problems[0].startswith("metadata.name: the Service default/kubernetes is reserved")
    assert RoutingPolicy().violations("shop", "kubernetes", spec()) == []
