"""What a CanaryApp may make the reconciler do (policy.py): ownership, reserved names, gateways (Istio's and
Gateway API parents) and hosts, `{namespace}` standing for one namespace only, the router in effect and a
switch of routers, queries that could never see a canary's errors, and no CanaryApp becoming a metric
endpoint, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core.model import CanaryAppSpec, CanaryAppStatus
from reconciler.core.names import Router
from reconciler.core.policy import (
    DEFAULT_METRIC_URLS,
    MetricsPolicy,
    RoutingPolicy,
    gateway_reference,
    is_ours,
    metric_url_bounded,
    namespace_bounded,
    router_switch_problems,
)


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


@pytest.mark.parametrize(
    ("pattern", "bounded"),
    [
        pytest.param("istio-system/public", True, id="no placeholder"),
        pytest.param("{namespace}/*", True, id="any gateway of the namespace"),
        pytest.param("*.{namespace}.example.com", True, id="subdomains of the namespace's domain"),
        pytest.param("{namespace}.*.example.com", True, id="glob after a whole label"),
        pytest.param("prometheus.{namespace}.svc", True, id="no glob at all"),
        pytest.param("{namespace}-gw", True, id="no glob: one value per namespace"),
        pytest.param("istio-system/{namespace}-*", False, id="gateway prefix"),
        pytest.param("{namespace}-*.example.com", False, id="host prefix"),
        pytest.param("*-{namespace}.example.com", False, id="host suffix"),
        pytest.param("{namespace}*.example.com", False, id="glob right after"),
        pytest.param("*{namespace}.example.com", False, id="glob right before"),
        pytest.param("*.{namespace}.*", False, id="globs on both sides"),
        pytest.param("{namespace}{namespace}.*", False, id="two placeholders back to back"),
    ],
)
def test_namespace_bounded(pattern: str, bounded: bool) -> None:
    assert namespace_bounded(pattern) is bounded


@pytest.mark.parametrize(
    ("policy", "fields"),
    [
        pytest.param(
            RoutingPolicy(allowed_gateways=("istio-system/{namespace}-*",)),
            {"gateways": ["istio-system/a-b-public"]},
            id="gateway of namespace a-b",
        ),
        pytest.param(
            RoutingPolicy(allowed_hosts=("{namespace}-*.example.com",)),
            {"hosts": ["a-b-web.example.com"]},
            id="host of namespace a-b",
        ),
        pytest.param(
            RoutingPolicy(allowed_hosts=("*-{namespace}.example.com",)),
            {"hosts": ["web-b-a.example.com"]},
            id="host of namespace b-a",
        ),
        pytest.param(
            RoutingPolicy(allowed_hosts=("*.{namespace}.*",)), {"hosts": ["x.a.b.example"]}, id="both sides"
        ),
    ],
)
def test_namespace_a_gets_nothing_of_namespace_a_b(policy: RoutingPolicy, fields: dict[str, Any]) -> None:
    [problem] = policy.violations("a", "web", spec(**fields))
    assert "(ignored: {namespace} is not a whole name there)" in problem


@pytest.mark.parametrize(
    ("policy", "fields"),
    [
        pytest.param(RoutingPolicy(allowed_gateways=("{namespace}/*",)), {"gateways": ["a/public"]}, id="gw"),
        pytest.param(
            RoutingPolicy(allowed_hosts=("*.{namespace}.example.com",)),
            {"hosts": ["web.a.example.com"]},
            id="host",
        ),
    ],
)
def test_a_bounded_namespace_pattern_still_allows_its_own(
    policy: RoutingPolicy, fields: dict[str, Any]
) -> None:
    assert policy.violations("a", "web", spec(**fields)) == []
    other = {key: [value.replace("a", "a-b", 1) for value in values] for key, values in fields.items()}
    assert len(policy.violations("a", "web", spec(**other))) == 1


@pytest.mark.parametrize(
    ("pattern", "bounded"),
    [
        pytest.param("http://prometheus.{namespace}.svc:9090", True, id="no glob"),
        pytest.param("https://*.{namespace}.svc/prometheus/{namespace}-x", True, id="whole label, path"),
        pytest.param("http://{namespace}-*.monitoring.svc:9090", False, id="tenant prefix"),
        pytest.param("http://[::1/", False, id="not a URL"),
    ],
)
def test_metric_url_bounded(pattern: str, bounded: bool) -> None:
    assert metric_url_bounded(pattern) is bounded


def test_a_metric_url_pattern_with_an_unbounded_namespace_allows_nothing() -> None:
    tenants = MetricsPolicy(("http://{namespace}-*.monitoring.svc:9090",))
    assert not tenants.allows("a", "http://a-b-prometheus.monitoring.svc:9090")
    assert not tenants.allows("a", "http://a-prometheus.monitoring.svc:9090")
    bounded = MetricsPolicy(("http://prometheus.{namespace}.svc:9090",))
    assert bounded.allows("a", "http://prometheus.a.svc:9090")
    assert not bounded.allows("a", "http://prometheus.a-b.svc:9090")


SHOP_PROMETHEUS = ("http://prometheus.{namespace}.svc:9090",)


@pytest.mark.parametrize(
    ("allowed", "namespace", "name", "refused"),
    [
        pytest.param(SHOP_PROMETHEUS, "shop", "prometheus", True, id="the namespace's Prometheus"),
        pytest.param(SHOP_PROMETHEUS, "shop", "web", False, id="another name"),
        pytest.param(SHOP_PROMETHEUS, "shop", "prometheus-canary", False, id="a longer name"),
        pytest.param(DEFAULT_METRIC_URLS, "istio-system", "prometheus", True, id="Istio's add-on"),
        pytest.param(DEFAULT_METRIC_URLS, "shop", "prometheus", False, id="Istio's add-on elsewhere"),
        pytest.param(("http://prometheus:9090",), "shop", "prometheus", True, id="a bare name"),
        pytest.param(
            ("https://prometheus.{namespace}.svc.cluster.local/",), "shop", "prometheus", True, id="FQDN"
        ),
        pytest.param(("http://prometheus.{namespace}:*",), "shop", "prometheus", True, id="any port"),
        pytest.param(("https://*.monitoring.svc",), "monitoring", "mimir", True, id="a host glob"),
        pytest.param(("https://*.monitoring.svc",), "shop", "mimir", False, id="a host glob elsewhere"),
        pytest.param(("http://127.0.0.1:*",), "shop", "prometheus", False, id="an address"),
    ],
)
def test_a_canaryapp_may_not_become_a_metric_endpoint(
    allowed: tuple[str, ...], namespace: str, name: str, refused: bool
) -> None:
    url = allowed[0].replace("{namespace}", namespace).replace(":*", ":9090").replace("*", "x")
    problems = MetricsPolicy(allowed).violations(namespace, name, spec(prometheusURL=url))
    assert [problem.split(":", 1)[0] for problem in problems] == (["metadata.name"] if refused else [])


def test_the_refusal_names_the_canaryapp_the_pattern_and_the_fix() -> None:
    [problem] = MetricsPolicy(SHOP_PROMETHEUS).violations(
        "shop", "prometheus", spec(prometheusURL="http://prometheus.shop.svc:9090")
    )
    assert problem == (
        "metadata.name: the CanaryApp's Service shop/prometheus would be the metric endpoint of "
        "'http://prometheus.{namespace}.svc:9090', which the reconciler's --allowed-metric-urls allows, and "
        "so would receive other CanaryApps' queries and credentials; rename the CanaryApp"
    )


GATEWAY_API = RoutingPolicy(
    allowed_gateways=("{namespace}/*", "gateways/public"), default_router=Router.GATEWAY_API
)
CLEAN_QUERY = (
    'sum(rate(istio_requests_total{destination_workload="{{ canary }}",response_code=~"5.."}[1m])) > 0'
)


@pytest.mark.parametrize(
    ("policy", "fields", "problem_fields"),
    [
        pytest.param(
            GATEWAY_API,
            {"parentRefs": [{"name": "public", "namespace": "gateways"}]},
            [],
            id="allowed gateway",
        ),
        pytest.param(GATEWAY_API, {"parentRefs": [{"name": "own"}]}, [], id="a gateway of its own namespace"),
        pytest.param(
            GATEWAY_API,
            {"parentRefs": [{"name": "internal", "namespace": "gateways"}]},
            ["spec.parentRefs"],
            id="gateway not allowed",
        ),
        pytest.param(
            GATEWAY_API,
            {"parentRefs": [{"name": "gw", "namespace": "other"}]},
            ["spec.parentRefs"],
            id="{namespace}/* is the canaryapp's namespace only",
        ),
        pytest.param(
            RoutingPolicy(default_router=Router.GATEWAY_API),
            {"parentRefs": [{"name": "own"}]},
            ["spec.parentRefs"],
            id="no pattern: no gateway at all",
        ),
        pytest.param(GATEWAY_API, {}, ["spec.parentRefs"], id="by default: a route attached to nothing"),
        pytest.param(
            GATEWAY_API,
            {"parentRefs": [{"name": "own"}], "gateways": ["mesh"]},
            ["spec.gateways"],
            id="istio gateways under the default gateway-api router",
        ),
        pytest.param(
            RoutingPolicy(allowed_gateways=("{namespace}/*",)),
            {"parentRefs": [{"name": "own"}]},
            ["spec.parentRefs"],
            id="parentRefs under the default istio router",
        ),
        pytest.param(
            RoutingPolicy(allowed_gateways=("{namespace}/*",)),
            {"parentRefs": [{"name": "own"}], "router": "gateway-api"},
            [],
            id="the spec's router over the default",
        ),
    ],
)
def test_routing_policy_of_gateway_api(
    policy: RoutingPolicy, fields: dict[str, Any], problem_fields: list[str]
) -> None:
    routed = policy.routed(spec(prometheusQuery=CLEAN_QUERY, **fields))
    problems = policy.violations("shop", "web", routed)
    assert [problem.split(":", 1)[0] for problem in problems] == problem_fields


@pytest.mark.parametrize(
    ("query", "refused"),
    [
        pytest.param(
            'istio_requests_total{destination_service_name="web",response_code=~"5.."}', True, id="name"
        ),
        pytest.param(
            'istio_requests_total{destination_service_name = "{{ name }}"}', True, id="name template"
        ),
        pytest.param(
            'istio_requests_total{destination_service="web.shop.svc.cluster.local"}', True, id="fqdn"
        ),
        pytest.param(
            'istio_requests_total{destination_service=~"{{ name }}.{{ namespace }}.svc.cluster.local"}',
            True,
            id="fqdn template as a regex",
        ),
        pytest.param(
            'istio_requests_total{destination_service_name="web-canary"}', False, id="canary service"
        ),
        pytest.param(
            'istio_requests_total{destination_workload="{{ canary }}"}', False, id="canary workload"
        ),
        pytest.param('istio_requests_total{destination_service_name="webshop"}', False, id="another service"),
    ],
)
def test_a_query_on_the_apex_service_is_refused_under_gateway_api(query: str, refused: bool) -> None:
    routed = GATEWAY_API.routed(spec(prometheusQuery=query, parentRefs=[{"name": "own"}]))
    problems = GATEWAY_API.violations("shop", "web", routed)
    assert bool(problems) is refused
    if refused:
        [problem] = problems
        assert problem.startswith("spec.prometheusQuery: it filters on destination_service")
        assert "web-canary" in problem
        assert 'destination_workload="{{ canary }}"' in problem
    # The same query means what it says under Istio, where the apex Service labels both tracks' requests.
    assert RoutingPolicy().violations("shop", "web", spec(prometheusQuery=query)) == []


def test_a_traffic_query_on_the_apex_service_is_refused_too() -> None:
    routed = GATEWAY_API.routed(
        spec(
            prometheusQuery=CLEAN_QUERY,
            canaryTrafficQuery='sum(increase(istio_requests_total{destination_service_name="web"}[1m]))',
            parentRefs=[{"name": "own"}],
        )
    )
    [problem] = GATEWAY_API.violations("shop", "web", routed)
    assert problem.startswith("spec.canaryTrafficQuery:")


def applied(router: Router | None, canary: bool) -> CanaryAppStatus:
    return CanaryAppStatus(
        router=router,
        last_applied_hash="h" if router else None,
        canary_revision="r2" if canary else None,
        canary_weight=10 if canary else 0,
    )


@pytest.mark.parametrize(
    ("status", "router", "refused"),
    [
        pytest.param(applied(Router.ISTIO, canary=True), Router.GATEWAY_API, True, id="switch mid-rollout"),
        pytest.param(applied(Router.GATEWAY_API, canary=True), Router.ISTIO, True, id="and back"),
        pytest.param(
            CanaryAppStatus(last_applied_hash="h", canary_revision="r2", canary_weight=10),
            Router.GATEWAY_API,
            True,
            id="a stack applied before routers were recorded is Istio's",
        ),
        pytest.param(applied(Router.ISTIO, canary=False), Router.GATEWAY_API, False, id="steady: switched"),
        pytest.param(applied(Router.ISTIO, canary=True), Router.ISTIO, False, id="same router"),
        pytest.param(applied(None, canary=False), Router.GATEWAY_API, False, id="nothing applied yet"),
        pytest.param(
            CanaryAppStatus(router=Router.ISTIO, last_applied_hash="h", canary_revision="r2"),
            Router.GATEWAY_API,
            False,
            id="a canary at weight 0 carries no traffic: switched with it",
        ),
    ],
)
def test_a_router_switch_waits_for_the_rollout_to_end(
    status: CanaryAppStatus, router: Router, refused: bool
) -> None:
    problems = router_switch_problems(router, status)
    assert bool(problems) is refused
    if refused:
        [problem] = problems
        carried = f"carries 10% of the traffic through the {status.applied_router} router"
        assert problem.startswith(f"spec.router: the canary r2 {carried}")
        assert f"set spec.router back to {status.applied_router}" in problem
