"""The local mesh's routes (devenv/mesh/routing.py), table-driven: smooth weighted round-robin, the choice
of a destination and a Deployment per request, and the routes resolved from API objects."""

from __future__ import annotations

import math
import runpy
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from devenv.mesh.backends import STATUS_CODE_SERVER
from devenv.mesh.routing import (
    BEHAVIOUR_VARIABLES,
    INVALID_BACKEND,
    NO_CLUSTER,
    NO_HEALTHY_UPSTREAM,
    NO_ROUTE,
    Answer,
    Backend,
    Destination,
    RouteTable,
    Selection,
    SmoothWeightedRoundRobin,
    Workload,
    behaviour,
    image_tag,
    resolve_http_route,
    resolve_routes,
)
from tests.devenv.mesh.builders import APP_SELECTOR, NAMESPACE, host, pod_labels, subset, workload

# Smooth weighted round-robin -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param([80, 20], id="80-20"),
        pytest.param([50, 50], id="50-50"),
        pytest.param([90, 10], id="90-10"),
        pytest.param([60, 40], id="60-40"),
        pytest.param([1, 99], id="1-99"),
        pytest.param([34, 33, 33], id="three-way"),
    ],
)
def test_smooth_round_robin_follows_the_weights_in_every_cycle(weights: list[int]) -> None:
    divisor = math.gcd(*weights)
    cycle = sum(weights) // divisor
    balancer = SmoothWeightedRoundRobin()
    for _ in range(3):
        picks = Counter(balancer.pick(weights) for _ in range(cycle))
        assert picks == {index: weight // divisor for index, weight in enumerate(weights)}


def test_smooth_round_robin_interleaves_rather_than_runs() -> None:
    balancer = SmoothWeightedRoundRobin()
    picks = [balancer.pick([80, 20]) for _ in range(10)]
    assert picks == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]


@pytest.mark.parametrize(
    "weights",
    [pytest.param([100, 0], id="canary-0"), pytest.param([0, 100], id="primary-0"), pytest.param([0, 5, 0])],
)
def test_smooth_round_robin_never_picks_weight_zero(weights: list[int]) -> None:
    balancer = SmoothWeightedRoundRobin()
    picks = {balancer.pick(weights) for _ in range(500)}
    assert picks == {index for index, weight in enumerate(weights) if weight > 0}


@pytest.mark.parametrize("weights", [pytest.param([0, 0], id="all-zero"), pytest.param([], id="no-routes")])
def test_smooth_round_robin_picks_nothing_without_weight(weights: list[int]) -> None:
    assert SmoothWeightedRoundRobin().pick(weights) is None


def test_smooth_round_robin_is_exact_from_a_weight_change_on() -> None:
    balancer = SmoothWeightedRoundRobin()
    for _ in range(7):
        balancer.pick([90, 10])
    assert Counter(balancer.pick([70, 30]) for _ in range(10)) == {0: 7, 1: 3}


# Route selection ---------------------------------------------------------------------------------------


def test_route_table_forwards_to_the_chosen_workloads_process() -> None:
    table = RouteTable()
    primary = workload("primary", "v1")
    table.apply(
        (subset("primary", 100, primary), subset("canary", 0, workload("canary", "v2"))),
        {Backend("v1"): "h:1"},
    )
    selection = table.select()
    assert selection == Selection(subset("primary", 100, primary), primary, "h:1", None)


@pytest.mark.parametrize(
    "canary",
    [
        pytest.param(
            subset("canary", 100, workload("canary", "v2", available=0)), id="no-available-replicas"
        ),
        pytest.param(subset("canary", 100), id="no-deployment"),
        pytest.param(subset("canary", 100, workload("canary", "v3")), id="no-backend-process"),
    ],
)
def test_route_table_answers_no_healthy_upstream_for_an_unavailable_destination(canary: Destination) -> None:
    table = RouteTable()
    table.apply(
        (subset("primary", 0, workload("primary", "v1")), canary),
        {Backend("v1"): "h:1", Backend("v2"): "h:2"},
    )
    selection = table.select()
    assert selection == Selection(canary, None, None, NO_HEALTHY_UPSTREAM)
    assert Answer(503, b"no healthy upstream", "UH") == NO_HEALTHY_UPSTREAM


def test_route_table_answers_no_cluster_for_a_subset_no_destination_rule_defines() -> None:
    table = RouteTable()
    undefined = Destination("x", NAMESPACE, 100, "canary", missing_subset=True)
    table.apply((subset("primary", 0, workload("primary", "v1")), undefined), {Backend("v1"): "h:1"})
    assert table.select() == Selection(undefined, None, None, NO_CLUSTER)
    assert Answer(503, b"", "NC") == NO_CLUSTER


@pytest.mark.parametrize(
    "routes",
    [
        pytest.param(None, id="no-virtual-service"),
        pytest.param((subset("primary", 0, workload("primary", "v1")),), id="zero"),
    ],
)
def test_route_table_answers_no_route(routes: tuple[Destination, ...] | None) -> None:
    table = RouteTable()
    table.apply(routes, {Backend("v1"): "h:1"})
    assert table.select() == Selection(None, None, None, NO_ROUTE)
    assert Answer(503, b"no route", "NR") == NO_ROUTE


def test_route_table_spreads_a_destination_over_its_deployments_by_available_replicas() -> None:
    table = RouteTable()
    apex = Destination(
        "x",
        NAMESPACE,
        100,
        workloads=(
            workload("primary", "v1", available=3),
            workload("canary", "v2", available=1),
            workload("debug", "v3", available=0),
        ),
    )
    table.apply((apex,), {Backend("v1"): "h:1", Backend("v2"): "h:2", Backend("v3"): "h:3"})
    for _ in range(3):
        picks = Counter(table.select().upstream for _ in range(4))
        assert picks == {"h:1": 3, "h:2": 1}


def test_route_table_picks_by_weight_before_spreading_over_deployments() -> None:
    table = RouteTable()
    apex = Destination("x", NAMESPACE, 50, workloads=(workload("primary", "v1"), workload("canary", "v2")))
    table.apply(
        (apex, subset("canary", 50, workload("canary", "v2"))), {Backend("v1"): "h:1", Backend("v2"): "h:2"}
    )
    assert Counter(table.select().upstream for _ in range(40)) == {"h:1": 10, "h:2": 30}


@pytest.mark.parametrize(
    ("destination", "name"),
    [
        pytest.param(subset("canary", 0, workload("canary", "v2")), "x-canary", id="one-deployment"),
        pytest.param(subset("canary", 0), "x-canary", id="subset-without-deployment"),
        pytest.param(
            Destination("x", NAMESPACE, 0, "canary", missing_subset=True), "x-canary", id="undefined"
        ),
        pytest.param(Destination("x-canary", NAMESPACE, 0), "x-canary", id="service-without-deployment"),
        pytest.param(
            Destination("x", NAMESPACE, 0, workloads=(workload("primary", "v1"), workload("canary", "v2"))),
            "x",
            id="several-deployments",
        ),
    ],
)
def test_destination_name_is_its_workload_else_service_and_subset(
    destination: Destination, name: str
) -> None:
    assert destination.name == name


def test_route_table_reports_weights_by_destination_name() -> None:
    table = RouteTable()
    table.apply((subset("primary", 70, workload("primary", "v1")), subset("canary", 30)), {})
    assert table.weights() == {"x-primary": 70, "x-canary": 30}


# Route resolution from API objects -------------------------------------------------------------------------


def virtual_service(*routes: tuple[str, str | None, int]) -> dict[str, Any]:
    """A VirtualService `x` with one HTTP route of (host, subset, weight) destinations."""

    def destination(route_host: str, subset_name: str | None) -> dict[str, Any]:
        named_subset = {} if subset_name is None else {"subset": subset_name}
        return {"host": route_host, **named_subset, "port": {"number": 8088}}

    return {
        "metadata": {"name": "x", "namespace": NAMESPACE},
        "spec": {
            "hosts": ["x"],
            "http": [
                {
                    "name": "canary-split",
                    "route": [
                        {"destination": destination(route_host, subset_name), "weight": weight}
                        for route_host, subset_name, weight in routes
                    ],
                }
            ],
        },
    }


def service(name: str, selector: Mapping[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": {"selector": dict(selector)}}


def destination_rule(name: str, rule_host: str, subsets: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "host": rule_host,
            "subsets": [
                {"name": subset_name, "labels": dict(labels)} for subset_name, labels in subsets.items()
            ],
        },
    }


def deployment(
    name: str,
    labels: Mapping[str, str],
    image: str,
    available_replicas: int | None = 1,
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status = {} if available_replicas is None else {"availableReplicas": available_replicas}
    container: dict[str, Any] = {"name": "app", "image": image, **({"env": env} if env is not None else {})}
    return {
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [container, {"name": "sidecar", "image": "proxy:v1"}]},
            }
        },
        "status": status,
    }


TRACK_SUBSETS = {"primary": {"canary.atze.io/track": "primary"}, "canary": {"canary.atze.io/track": "canary"}}
RULES = [destination_rule("x", host("x"), TRACK_SUBSETS)]
SERVICES = [service("x", APP_SELECTOR)]
PRIMARY = deployment("x-primary", pod_labels("primary"), "status-code-server:v1", 2)
CANARY = deployment("x-canary", pod_labels("canary"), "registry.local:5000/status-code-server:v2", 1)
SPLIT = virtual_service((host("x"), "primary", 80), (host("x"), "canary", 20))


def test_resolve_routes_follows_subsets_to_the_deployments_of_the_service() -> None:
    unrelated = deployment("other", {"app": "other", "canary.atze.io/track": "canary"}, "other:v9")
    routes = resolve_routes(SPLIT, RULES, SERVICES, [PRIMARY, CANARY, unrelated])
    assert routes == (
        subset("primary", 80, Workload("x-primary", NAMESPACE, pod_labels("primary"), "v1", 2, ("x",))),
        subset("canary", 20, Workload("x-canary", NAMESPACE, pod_labels("canary"), "v2", 1, ("x",))),
    )


def test_resolve_routes_between_rollouts_has_an_empty_canary_subset() -> None:
    between_rollouts = virtual_service((host("x"), "primary", 100), (host("x"), "canary", 0))
    routes = resolve_routes(between_rollouts, RULES, SERVICES, [PRIMARY])
    assert routes is not None
    assert routes[1] == subset("canary", 0)
    assert {destination.name: destination.weight for destination in routes} == {
        "x-primary": 100,
        "x-canary": 0,
    }


def test_resolve_routes_keeps_an_unready_canary_with_no_available_replicas() -> None:
    unready = deployment("x-canary", pod_labels("canary"), "status-code-server:v2", None)
    routes = resolve_routes(SPLIT, RULES, SERVICES, [PRIMARY, unready])
    assert routes is not None
    assert routes[1] == subset(
        "canary", 20, Workload("x-canary", NAMESPACE, pod_labels("canary"), "v2", 0, ("x",))
    )


@pytest.mark.parametrize(
    "rule_host",
    [
        pytest.param("x", id="short-name"),
        pytest.param("x.shop", id="name-dot-namespace"),
        pytest.param(host("x"), id="fqdn"),
    ],
)
@pytest.mark.parametrize(
    "route_host", [pytest.param("x", id="route-short-name"), pytest.param(host("x"), id="route-fqdn")]
)
def test_resolve_routes_matches_the_destination_rule_by_the_service_its_host_names(
    rule_host: str, route_host: str
) -> None:
    rules = [destination_rule("x", rule_host, TRACK_SUBSETS)]
    routes = resolve_routes(virtual_service((route_host, "canary", 100)), rules, SERVICES, [PRIMARY, CANARY])
    assert routes is not None
    assert [workload.name for workload in routes[0].workloads] == ["x-canary"]


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param([], id="no-destination-rule"),
        pytest.param([destination_rule("y", "y", TRACK_SUBSETS)], id="rule-for-another-host"),
        pytest.param(
            [destination_rule("x", "x.other.svc.cluster.local", TRACK_SUBSETS)], id="another-namespace"
        ),
        pytest.param([destination_rule("x", "x", {"primary": {}})], id="subset-not-defined"),
    ],
)
def test_resolve_routes_marks_a_subset_no_destination_rule_defines(rules: list[dict[str, Any]]) -> None:
    routes = resolve_routes(virtual_service(("x", "canary", 100)), rules, SERVICES, [PRIMARY, CANARY])
    assert routes == (Destination("x", NAMESPACE, 100, "canary", missing_subset=True),)


def test_resolve_routes_merges_the_rules_for_one_host_the_first_by_name_winning() -> None:
    rules = [
        destination_rule("x-b", "x", {"canary": TRACK_SUBSETS["canary"]}),
        destination_rule(
            "x-a", "x", {"canary": TRACK_SUBSETS["primary"], "primary": TRACK_SUBSETS["primary"]}
        ),
    ]
    routes = resolve_routes(SPLIT, rules, SERVICES, [PRIMARY, CANARY])
    assert routes is not None
    assert [destination.name for destination in routes] == ["x-primary", "x-primary"]


def test_resolve_routes_ands_the_subset_labels_with_the_service_selector() -> None:
    other_app_canary = deployment("y-canary", {"app": "y", "canary.atze.io/track": "canary"}, "y:v1")
    routes = resolve_routes(SPLIT, RULES, SERVICES, [PRIMARY, CANARY, other_app_canary])
    assert routes is not None
    assert [workload.name for workload in routes[1].workloads] == ["x-canary"]


def test_resolve_routes_spreads_a_destination_without_subset_over_every_selected_deployment() -> None:
    routes = resolve_routes(virtual_service(("x", None, 100)), RULES, SERVICES, [PRIMARY, CANARY])
    assert routes is not None
    assert routes[0].subset is None
    assert [(workload.name, workload.available_replicas) for workload in routes[0].workloads] == [
        ("x-canary", 1),
        ("x-primary", 2),
    ]


def test_resolve_routes_follows_flaggers_layout_too() -> None:
    services = [
        service("x", APP_SELECTOR),
        service("x-primary", {**APP_SELECTOR, "canary.atze.io/track": "primary"}),
        service("x-canary", {**APP_SELECTOR, "canary.atze.io/track": "canary"}),
    ]
    flagger = virtual_service((host("x-primary"), None, 90), (host("x-canary"), None, 10))
    routes = resolve_routes(flagger, [], services, [PRIMARY, CANARY])
    assert routes == (
        Destination(
            "x-primary",
            NAMESPACE,
            90,
            workloads=(Workload("x-primary", NAMESPACE, pod_labels("primary"), "v1", 2, ("x", "x-primary")),),
        ),
        Destination(
            "x-canary",
            NAMESPACE,
            10,
            workloads=(Workload("x-canary", NAMESPACE, pod_labels("canary"), "v2", 1, ("x", "x-canary")),),
        ),
    )


@pytest.mark.parametrize(
    ("other_services", "selecting"),
    [
        pytest.param([], ("x",), id="only-the-routed-service"),
        pytest.param([service("a-pods", APP_SELECTOR)], ("a-pods", "x"), id="two-by-name"),
        pytest.param(
            [service("x-canary", {**APP_SELECTOR, "canary.atze.io/track": "canary"})],
            ("x", "x-canary"),
            id="track-service",
        ),
        pytest.param(
            [service("x-primary", {**APP_SELECTOR, "canary.atze.io/track": "primary"})],
            ("x",),
            id="other-track",
        ),
        pytest.param([service("headless", {})], ("x",), id="empty-selector-selects-nothing"),
    ],
)
def test_resolved_workloads_list_the_services_selecting_their_pods(
    other_services: list[dict[str, Any]], selecting: tuple[str, ...]
) -> None:
    routes = resolve_routes(
        virtual_service(("x", "canary", 100)), RULES, [*SERVICES, *other_services], [CANARY]
    )
    assert routes is not None
    assert [workload.services for workload in routes[0].workloads] == [selecting]


def test_resolve_routes_without_a_service_has_no_deployments() -> None:
    routes = resolve_routes(virtual_service((host("x"), None, 100)), RULES, [], [PRIMARY])
    assert routes == (Destination("x", NAMESPACE, 100),)


def test_resolve_routes_without_an_http_route_is_no_route() -> None:
    assert (
        resolve_routes({"metadata": {"name": "x", "namespace": NAMESPACE}, "spec": {}}, RULES, SERVICES, [])
        is None
    )


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("status-code-server:v2", "v2"),
        ("status-code-server", "latest"),
        ("localhost:5000/status-code-server", "latest"),
        ("localhost:5000/team/status-code-server:v3", "v3"),
        ("status-code-server:v1@sha256:" + "a" * 64, "v1"),
    ],
)
def test_image_tag(image: str, tag: str) -> None:
    assert image_tag(image) == tag


# HTTPRoute backendRefs -------------------------------------------------------------------------------------

TRACK_SERVICES = [
    *SERVICES,
    service("x-primary", {**APP_SELECTOR, "canary.atze.io/track": "primary"}),
    service("x-canary", {**APP_SELECTOR, "canary.atze.io/track": "canary"}),
]


def http_route(*backends: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "x", "namespace": NAMESPACE, "generation": 1},
        "spec": {"parentRefs": [{"name": "ingress"}], "rules": [{"backendRefs": list(backends)}]},
    }


def test_resolve_http_route_follows_each_backend_service_to_the_deployments_it_selects() -> None:
    route = http_route(
        {"name": "x-primary", "port": 8088, "weight": 80}, {"name": "x-canary", "port": 8088, "weight": 20}
    )
    routes = resolve_http_route(route, TRACK_SERVICES, [PRIMARY, CANARY])
    services = ("x", "x-primary")
    primary = Workload("x-primary", NAMESPACE, pod_labels("primary"), "v1", 2, services)
    canary = Workload("x-canary", NAMESPACE, pod_labels("canary"), "v2", 1, ("x", "x-canary"))
    assert routes == (
        Destination("x-primary", NAMESPACE, 80, workloads=(primary,)),
        Destination("x-canary", NAMESPACE, 20, workloads=(canary,)),
    )
    assert {d.name: d.weight for d in routes or ()} == {"x-primary": 80, "x-canary": 20}


def test_resolve_http_route_between_rollouts_keeps_the_canary_backend_at_weight_zero() -> None:
    route = http_route({"name": "x-primary", "weight": 100}, {"name": "x-canary", "weight": 0})
    routes = resolve_http_route(route, TRACK_SERVICES, [PRIMARY])
    assert routes is not None
    assert [(d.name, d.weight, len(d.workloads)) for d in routes] == [
        ("x-primary", 100, 1),
        ("x-canary", 0, 0),
    ]


def test_resolve_http_route_gives_a_backend_without_weight_the_apis_default_of_one() -> None:
    routes = resolve_http_route(http_route({"name": "x-primary"}), TRACK_SERVICES, [PRIMARY])
    assert routes is not None
    assert routes[0].weight == 1


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param({"name": "x-gone", "weight": 100}, id="no-such-service"),
        pytest.param({"name": "x-primary", "namespace": "other", "weight": 100}, id="other-namespace"),
        pytest.param(
            {"name": "x-primary", "group": "example.com", "kind": "Bucket", "weight": 100}, id="kind"
        ),
    ],
)
def test_resolve_http_route_marks_a_backend_that_does_not_resolve(backend: dict[str, Any]) -> None:
    routes = resolve_http_route(http_route(backend), TRACK_SERVICES, [PRIMARY])
    assert routes is not None
    assert routes[0].invalid_backend
    table = RouteTable()
    table.apply(routes, {Backend("v1"): "127.0.0.1:1"})
    assert table.select().refusal == INVALID_BACKEND


def test_resolve_http_route_without_rules_is_no_route() -> None:
    route = http_route()
    route["spec"]["rules"] = []
    assert resolve_http_route(route, TRACK_SERVICES, [PRIMARY]) is None


# The baseline: a third destination, as Istio and the Gateway API route it --------------------------------

BASELINE_SUBSETS = {**TRACK_SUBSETS, "baseline": {"canary.atze.io/track": "baseline"}}
BASELINE = deployment("x-baseline", pod_labels("baseline"), "status-code-server:v1", 1)
WITH_BASELINE = virtual_service(
    (host("x"), "primary", 80), (host("x"), "canary", 10), (host("x"), "baseline", 10)
)


def test_resolve_routes_sends_the_baseline_subset_to_the_baseline_deployment_alone() -> None:
    rules = [destination_rule("x", host("x"), BASELINE_SUBSETS)]
    routes = resolve_routes(WITH_BASELINE, rules, SERVICES, [PRIMARY, CANARY, BASELINE])
    assert routes == (
        subset("primary", 80, Workload("x-primary", NAMESPACE, pod_labels("primary"), "v1", 2, ("x",))),
        subset("canary", 10, Workload("x-canary", NAMESPACE, pod_labels("canary"), "v2", 1, ("x",))),
        subset("baseline", 10, Workload("x-baseline", NAMESPACE, pod_labels("baseline"), "v1", 1, ("x",))),
    )
    table = RouteTable()
    table.apply(routes, {Backend("v1"): "h:1", Backend("v2"): "h:2"})
    assert table.weights() == {"x-primary": 80, "x-canary": 10, "x-baseline": 10}
    for _ in range(2):
        picks = Counter(table.select().destination.name for _ in range(100))  # type: ignore[union-attr]
        assert picks == {"x-primary": 80, "x-canary": 10, "x-baseline": 10}


def test_resolve_routes_refuses_the_baseline_subset_until_the_destination_rule_defines_it() -> None:
    """The rule may lag the route by a moment (the stack declares the rule first): Envoy's NC meanwhile."""
    routes = resolve_routes(WITH_BASELINE, RULES, SERVICES, [PRIMARY, CANARY, BASELINE])
    assert routes is not None
    assert routes[2] == Destination("x", NAMESPACE, 10, "baseline", missing_subset=True)
    assert routes[2].name == "x-baseline"


def test_resolve_routes_keeps_the_apex_destination_off_the_baseline_pods_only_by_subset() -> None:
    """Without subsets the apex Service's pods include the baseline's, as Kubernetes' Service would."""
    routes = resolve_routes(
        virtual_service((host("x"), None, 100)), RULES, SERVICES, [PRIMARY, CANARY, BASELINE]
    )
    assert routes is not None
    assert [workload.name for workload in routes[0].workloads] == ["x-baseline", "x-canary", "x-primary"]


def test_resolve_http_route_sends_the_baseline_backend_to_its_own_service() -> None:
    services = [
        *TRACK_SERVICES,
        service("x-baseline", {**APP_SELECTOR, "canary.atze.io/track": "baseline"}),
    ]
    route = http_route(
        {"name": "x-primary", "port": 8088, "weight": 60},
        {"name": "x-canary", "port": 8088, "weight": 20},
        {"name": "x-baseline", "port": 8088, "weight": 20},
    )
    routes = resolve_http_route(route, services, [PRIMARY, CANARY, BASELINE])
    baseline = Workload("x-baseline", NAMESPACE, pod_labels("baseline"), "v1", 1, ("x", "x-baseline"))
    assert routes is not None
    assert routes[2] == Destination("x-baseline", NAMESPACE, 20, workloads=(baseline,))
    assert {d.name: d.weight for d in routes} == {"x-primary": 60, "x-canary": 20, "x-baseline": 20}


def test_resolve_http_route_answers_500_for_a_baseline_backend_without_its_service() -> None:
    route = http_route({"name": "x-primary", "weight": 50}, {"name": "x-baseline", "weight": 50})
    routes = resolve_http_route(route, TRACK_SERVICES, [PRIMARY, BASELINE])
    assert routes is not None
    assert routes[1] == Destination("x-baseline", NAMESPACE, 50, invalid_backend=True)


# A backend: the image tag and the main container's behaviour variables ------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(None, (), id="no-env"),
        pytest.param(
            [{"name": "SLOW_SHARE", "value": "0.1"}, {"name": "LATENCY_MS", "value": "200"}],
            (("LATENCY_MS", "200"), ("SLOW_SHARE", "0.1")),
            id="sorted-by-name",
        ),
        pytest.param(
            [{"name": "PATH", "value": "/tmp"}, {"name": "PYTHONPATH", "value": "/x"}, {"name": "VERSION"}],
            (),
            id="other-variables-never",
        ),
        pytest.param(
            [{"name": "ERROR_SHARE", "value": "0.1"}, {"name": "ERROR_SHARE", "value": "0.15"}],
            (("ERROR_SHARE", "0.15"),),
            id="last-wins",
        ),
        pytest.param(
            [
                {"name": "LATENCY_MS", "value": "200"},
                {"name": "LATENCY_MS", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
            ],
            (),
            id="value-from-unknown",
        ),
    ],
)
def test_behaviour_is_the_literal_behaviour_variables_of_the_container(
    env: list[dict[str, Any]] | None, expected: tuple[tuple[str, str], ...]
) -> None:
    container = {"name": "app", "image": "a:v1", **({"env": env} if env is not None else {})}
    assert behaviour(container) == expected


def test_backends_are_told_apart_by_behaviour_and_shared_by_equal_pods() -> None:
    """The baseline runs the primary's pod template: one process serves both; a canary of the same image
    made slower by its template runs apart."""
    slow = [{"name": "SLOW_SHARE", "value": "0.1"}, {"name": "SLOW_FACTOR", "value": "1.3"}]
    plain = [{"name": "LATENCY_MS", "value": "200"}]
    deployments = [
        deployment("x-primary", pod_labels("primary"), "status-code-server:v1", 2, plain),
        deployment("x-baseline", pod_labels("baseline"), "status-code-server:v1", 1, plain),
        deployment("x-canary", pod_labels("canary"), "status-code-server:v1", 1, [*plain, *slow]),
    ]
    rules = [destination_rule("x", host("x"), BASELINE_SUBSETS)]
    routes = resolve_routes(WITH_BASELINE, rules, SERVICES, deployments)
    assert routes is not None
    primary, canary, baseline = (destination.workloads[0].backend for destination in routes)
    assert primary == baseline == Backend("v1", (("LATENCY_MS", "200"),))
    assert canary == Backend("v1", (("LATENCY_MS", "200"), ("SLOW_FACTOR", "1.3"), ("SLOW_SHARE", "0.1")))

    table = RouteTable()
    table.apply(routes, {primary: "h:1", canary: "h:2"})
    upstreams = Counter((s.destination.name, s.upstream) for s in (table.select() for _ in range(100)))  # type: ignore[union-attr]
    assert upstreams == {("x-primary", "h:1"): 80, ("x-baseline", "h:1"): 10, ("x-canary", "h:2"): 10}


def test_behaviour_variables_are_the_status_code_servers() -> None:
    """The mesh passes exactly the variables the server reads (examples/status-code-server/server.py)."""
    server = runpy.run_path(str(STATUS_CODE_SERVER), run_name="status_code_server")
    assert server["BEHAVIOUR_VARIABLES"] == BEHAVIOUR_VARIABLES
