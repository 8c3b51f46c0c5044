"""The local mesh stand-in (devenv/mesh.py): its pure parts table-driven, then the proxy with real
status-code-server processes and fake routes, no cluster.

The routes follow CanaryApp's layout: one Service `x` selecting the pods of both Deployments `x-primary` and
`x-canary`, a DestinationRule `x` with the subsets `primary` and `canary`, a VirtualService sending a weighted
share to each subset."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devenv.mesh import (
    GENERATOR_WORKLOAD,
    NO_CLUSTER,
    NO_HEALTHY_UPSTREAM,
    NO_ROUTE,
    Answer,
    Destination,
    LoadGenerator,
    MeshProxy,
    Reporter,
    RouteTable,
    Selection,
    SmoothWeightedRoundRobin,
    Workload,
    image_tag,
    is_nothello,
    request_labels,
    resolve_routes,
)
from devenv.processes import wait_until

NAMESPACE = "shop"
APP_SELECTOR = {"canary.atze.io/app": "x"}


def host(service: str) -> str:
    return f"{service}.{NAMESPACE}.svc.cluster.local"


def pod_labels(track: str) -> dict[str, str]:
    return {**APP_SELECTOR, "canary.atze.io/track": track, "app": "x", "version": track}


def workload(track: str, tag: str, available: int = 1, services: tuple[str, ...] = ("x",)) -> Workload:
    return Workload(f"x-{track}", NAMESPACE, pod_labels(track), tag, available, services)


def subset(name: str, weight: int, *workloads: Workload) -> Destination:
    return Destination("x", NAMESPACE, weight, name, workloads)


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
        (subset("primary", 100, primary), subset("canary", 0, workload("canary", "v2"))), {"v1": "h:1"}
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
    table.apply((subset("primary", 0, workload("primary", "v1")), canary), {"v1": "h:1", "v2": "h:2"})
    selection = table.select()
    assert selection == Selection(canary, None, None, NO_HEALTHY_UPSTREAM)
    assert Answer(503, b"no healthy upstream", "UH") == NO_HEALTHY_UPSTREAM


def test_route_table_answers_no_cluster_for_a_subset_no_destination_rule_defines() -> None:
    table = RouteTable()
    undefined = Destination("x", NAMESPACE, 100, "canary", missing_subset=True)
    table.apply((subset("primary", 0, workload("primary", "v1")), undefined), {"v1": "h:1"})
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
    table.apply(routes, {"v1": "h:1"})
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
    table.apply((apex,), {"v1": "h:1", "v2": "h:2", "v3": "h:3"})
    for _ in range(3):
        picks = Counter(table.select().upstream for _ in range(4))
        assert picks == {"h:1": 3, "h:2": 1}


def test_route_table_picks_by_weight_before_spreading_over_deployments() -> None:
    table = RouteTable()
    apex = Destination("x", NAMESPACE, 50, workloads=(workload("primary", "v1"), workload("canary", "v2")))
    table.apply((apex, subset("canary", 50, workload("canary", "v2"))), {"v1": "h:1", "v2": "h:2"})
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
    name: str, labels: Mapping[str, str], image: str, available_replicas: int | None = 1
) -> dict[str, Any]:
    status = {} if available_replicas is None else {"availableReplicas": available_replicas}
    return {
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "app", "image": image}]},
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


# Metric labels and the request mix --------------------------------------------------------------------


ISTIO_STANDARD_LABELS = {
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "destination_version",
    "destination_app",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
}
REPORTERS: tuple[Reporter, ...] = ("source", "destination")


def labels_of(reporter: Reporter, route: Destination | None, answered_by: Workload | None) -> dict[str, str]:
    return request_labels(
        reporter,
        route,
        answered_by,
        source_workload=GENERATOR_WORKLOAD,
        source_namespace=NAMESPACE,
        response_code=200,
        response_flags="-",
    )


def canary_pod(*services: str) -> Workload:
    """The canary Deployment's pod, selected by `services`."""
    return workload("canary", "v2", services=services)


@pytest.mark.parametrize(
    ("route", "answered_by", "by_source", "by_destination"),
    [
        pytest.param(
            subset("canary", 20), canary_pod("x"), "x.shop", "x.shop", id="canary-pod-selected-by-the-apex"
        ),
        pytest.param(
            Destination("x-canary", NAMESPACE, 20),
            canary_pod("x", "x-canary"),
            "x-canary.shop",
            "x-canary.shop",
            id="flagger-route-to-the-canary-service",
        ),
        pytest.param(
            subset("canary", 20),
            canary_pod("x", "x-canary"),
            "x.shop",
            "x.shop",
            id="two-selecting-services-the-routed-one-first",
        ),
        pytest.param(
            subset("canary", 20),
            canary_pod("x-canary", "x-pods"),
            "x.shop",
            "x-canary.shop",
            id="two-selecting-services-neither-routed-first-by-name",
        ),
        pytest.param(
            subset("canary", 20), canary_pod(), "x.shop", "x.shop", id="no-selecting-service-the-host"
        ),
        pytest.param(
            Destination("x", "edge", 20),
            canary_pod(),
            "x.edge",
            "x.edge",
            id="no-selecting-service-the-host-in-its-namespace",
        ),
        pytest.param(
            Destination("x", "edge", 20),
            canary_pod("x"),
            "x.edge",
            "x.shop",
            id="the-pods-service-not-the-same-name-elsewhere",
        ),
        pytest.param(subset("canary", 20), None, "x.shop", "x.shop", id="no-pod-answered-the-host"),
    ],
)
def test_destination_service_per_reporter(
    route: Destination, answered_by: Workload | None, by_source: str, by_destination: str
) -> None:
    """The rule, `<service>.<namespace>` per reporter. reporter="source": the Service the route's host names.
    reporter="destination": among the Services that select the answering pod, the one the route's host names,
    else the first by name; when none does or no pod answered, the route's host."""
    expected: dict[Reporter, str] = {"source": by_source, "destination": by_destination}
    for reporter, service in expected.items():
        labels = labels_of(reporter, route, answered_by)
        service_name, service_namespace = service.split(".")
        assert (
            labels["destination_service"],
            labels["destination_service_name"],
            labels["destination_service_namespace"],
        ) == (f"{service}.svc.cluster.local", service_name, service_namespace), reporter


@pytest.mark.parametrize("reporter", REPORTERS)
def test_request_labels_use_istios_names_and_values(reporter: Reporter) -> None:
    labels = request_labels(
        reporter,
        subset("canary", 20),
        workload("canary", "v2"),
        source_workload=GENERATOR_WORKLOAD,
        source_namespace=NAMESPACE,
        response_code=500,
        response_flags="-",
    )
    assert set(labels) == ISTIO_STANDARD_LABELS
    assert labels == {
        "reporter": reporter,
        "source_workload": "local-traffic-generator",
        "source_workload_namespace": NAMESPACE,
        "destination_service": "x.shop.svc.cluster.local",
        "destination_service_name": "x",
        "destination_service_namespace": NAMESPACE,
        "destination_workload": "x-canary",
        "destination_workload_namespace": NAMESPACE,
        "destination_version": "canary",
        "destination_app": "x",
        "request_protocol": "http",
        "response_code": "500",
        "response_flags": "-",
        "connection_security_policy": "unknown",
    }


@pytest.mark.parametrize(
    ("labels", "version", "app"),
    [
        pytest.param({"app": "x", "version": "canary"}, "canary", "x", id="istio-labels"),
        pytest.param(
            {"app.kubernetes.io/name": "x", "app.kubernetes.io/version": "2.0"},
            "2.0",
            "x",
            id="recommended-labels",
        ),
        pytest.param(
            {
                "app": "x",
                "version": "canary",
                "app.kubernetes.io/name": "y",
                "app.kubernetes.io/version": "2.0",
            },
            "canary",
            "x",
            id="istio-labels-first",
        ),
        pytest.param({"canary.atze.io/track": "canary"}, "unknown", "unknown", id="neither"),
    ],
)
def test_destination_version_and_app_are_the_pods_labels_not_the_image_tag(
    labels: dict[str, str], version: str, app: str
) -> None:
    pod = Workload("x-canary", NAMESPACE, labels, image_tag="v9", available_replicas=1)
    for reporter in REPORTERS:
        reported = labels_of(reporter, subset("canary", 20, pod), pod)
        assert (reported["destination_version"], reported["destination_app"]) == (version, app)


@pytest.mark.parametrize("reporter", REPORTERS)
@pytest.mark.parametrize(
    ("route", "service_name"),
    [pytest.param(None, "unknown", id="no-route"), pytest.param(subset("canary", 0), "x", id="no-pod")],
)
def test_request_labels_without_an_answering_pod_leave_the_workload_unknown(
    reporter: Reporter, route: Destination | None, service_name: str
) -> None:
    labels = labels_of(reporter, route, None)
    assert set(labels) == ISTIO_STANDARD_LABELS
    assert labels["destination_service_name"] == service_name
    assert {
        key: value
        for key, value in labels.items()
        if key.startswith(("destination_workload", "destination_v", "destination_app"))
    } == {
        "destination_workload": "unknown",
        "destination_workload_namespace": "unknown",
        "destination_version": "unknown",
        "destination_app": "unknown",
    }


@pytest.mark.parametrize(
    ("fraction", "requests", "expected"),
    [
        pytest.param(0.0, 100, 0, id="none"),
        pytest.param(0.5, 100, 50, id="half"),
        pytest.param(0.1, 100, 10, id="tenth"),
        pytest.param(0.29, 100, 29, id="float-rounding"),
        pytest.param(1 / 3, 99, 33, id="third"),
        pytest.param(1.0, 40, 40, id="all"),
    ],
)
def test_nothello_pattern_gives_the_exact_fraction(fraction: float, requests: int, expected: int) -> None:
    assert sum(is_nothello(sequence, fraction) for sequence in range(requests)) == expected


@pytest.mark.parametrize(("fraction", "block"), [(0.5, 2), (0.1, 10), (0.25, 4)])
def test_nothello_pattern_is_exact_in_every_block(fraction: float, block: int) -> None:
    for start in range(0, 50 * block, block):
        assert sum(is_nothello(sequence, fraction) for sequence in range(start, start + block)) == 1


def test_nothello_pattern_is_deterministic() -> None:
    assert [is_nothello(sequence, 0.3) for sequence in range(200)] == [
        is_nothello(sequence, 0.3) for sequence in range(200)
    ]


@pytest.mark.parametrize(
    ("weights", "fraction"),
    [
        pytest.param([50, 50], 0.5, id="50-50-half"),
        pytest.param([90, 10], 0.1, id="90-10-tenth"),
        pytest.param([80, 20], 0.2, id="80-20-fifth"),
        pytest.param([60, 40], 0.2, id="60-40-fifth"),
    ],
)
def test_nothello_pattern_does_not_fall_into_step_with_the_round_robin(
    weights: list[int], fraction: float
) -> None:
    balancer = SmoothWeightedRoundRobin()
    canary_paths = [
        is_nothello(sequence, fraction) for sequence in range(2000) if balancer.pick(weights) == 1
    ]
    canary_share = sum(canary_paths) / len(canary_paths)
    assert fraction / 2 < canary_share < fraction * 1.5


def test_load_generator_mix_restarts_exactly_on_change() -> None:
    generator = LoadGenerator(rate=0, nothello_fraction=0.0)
    assert [generator.next_path() for _ in range(3)] == ["/hello"] * 3
    generator.set_mix(0.5)
    paths = [generator.next_path() for _ in range(6)]
    assert [sorted(paths[index : index + 2]) for index in range(0, 6, 2)] == [["/hello", "/nothello"]] * 3


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_load_generator_rejects_a_fraction_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        LoadGenerator(rate=1, nothello_fraction=fraction)


def test_load_generator_only_targets_loopback() -> None:
    with pytest.raises(ValueError, match=r"only targets 127\.0\.0\.1"):
        LoadGenerator(rate=1, nothello_fraction=0).start("http://example.com:80")


# The proxy with real status-code-server processes ---------------------------------------------------------


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[MeshProxy]:
    mesh_proxy = MeshProxy(tmp_path, NAMESPACE)
    mesh_proxy.start()
    yield mesh_proxy
    mesh_proxy.stop()


def requests_total(proxy: MeshProxy, **labels: str) -> float:
    """The sum of istio_requests_total over the series whose labels include `labels`."""
    text = httpx.get(f"http://{proxy.metrics_address}/stats/prometheus", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "istio_requests_total" and labels.items() <= sample.labels.items()
    )


def bodies(url: str, path: str, count: int) -> Counter[tuple[int, str]]:
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        answers = [client.get(path) for _ in range(count)]
    return Counter((answer.status_code, answer.text) for answer in answers)


def test_proxy_routes_real_requests_by_weight_and_counts_them_for_both_reporters(proxy: MeshProxy) -> None:
    proxy.apply(
        (subset("primary", 80, workload("primary", "v1")), subset("canary", 20, workload("canary", "v2")))
    )
    assert set(proxy.backends()) == {"v1", "v2"}

    assert bodies(proxy.url, "/hello", 50) == {(200, "Hello! v1"): 40, (200, "Hello! v2"): 10}
    assert bodies(proxy.url, "/nothello", 20) == {(500, "NotHello! v1"): 16, (500, "NotHello! v2"): 4}

    for reporter in REPORTERS:
        canary = {
            "reporter": reporter,
            "destination_service_name": "x",
            "destination_workload": "x-canary",
            "destination_version": "canary",
            "source_workload": "unknown",
        }
        assert requests_total(proxy, **canary, response_code="200", response_flags="-") == 10
        assert requests_total(proxy, **canary, response_code="500", response_flags="-") == 4
        assert (
            requests_total(proxy, reporter=reporter, destination_workload="x-primary", response_code="500")
            == 16
        )
        assert requests_total(proxy, reporter=reporter, destination_service="x.shop.svc.cluster.local") == 70
    assert requests_total(proxy) == 140
    metrics = httpx.get(proxy.url + "/stats/prometheus", timeout=5).text
    assert 'istio_request_duration_milliseconds_count{connection_security_policy="unknown"' in metrics


def test_proxy_spreads_a_destination_over_its_deployments_by_available_replicas(proxy: MeshProxy) -> None:
    apex = Destination(
        "x", NAMESPACE, 100, workloads=(workload("primary", "v1", available=3), workload("canary", "v2"))
    )
    proxy.apply((apex,))
    assert bodies(proxy.url, "/hello", 40) == {(200, "Hello! v1"): 30, (200, "Hello! v2"): 10}
    for reporter in REPORTERS:
        assert (
            requests_total(
                proxy, reporter=reporter, destination_service_name="x", destination_workload="x-canary"
            )
            == 10
        )


def test_proxy_refuses_without_a_pod_and_only_the_source_reports_it(proxy: MeshProxy) -> None:
    proxy.apply(
        (subset("primary", 50, workload("primary", "v1")), subset("canary", 50, workload("canary", "v2")))
    )
    v2_address = proxy.backends()["v2"]
    assert httpx.get(f"http://{v2_address}/healthz", timeout=5).text == "ok"

    proxy.apply((subset("primary", 50, workload("primary", "v1")), subset("canary", 50)))
    assert set(proxy.backends()) == {"v1"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{v2_address}/healthz", timeout=5)
    assert bodies(proxy.url, "/hello", 10) == {(200, "Hello! v1"): 5, (503, "no healthy upstream"): 5}
    no_healthy_upstream = {"response_code": "503", "response_flags": "UH", "destination_service_name": "x"}
    assert (
        requests_total(proxy, reporter="source", destination_workload="unknown", **no_healthy_upstream) == 5
    )
    assert requests_total(proxy, reporter="destination", response_code="503") == 0

    undefined = Destination("x", NAMESPACE, 50, "canary", missing_subset=True)
    proxy.apply((subset("primary", 50, workload("primary", "v1")), undefined))
    assert bodies(proxy.url, "/hello", 4) == {(200, "Hello! v1"): 2, (503, ""): 2}
    assert requests_total(proxy, reporter="source", response_flags="NC", destination_service_name="x") == 2

    proxy.apply(None)
    assert proxy.backends() == {}
    assert bodies(proxy.url, "/hello", 2) == {(503, "no route"): 2}
    assert (
        requests_total(proxy, reporter="source", response_flags="NR", destination_service_name="unknown") == 2
    )
    assert requests_total(proxy, reporter="destination", response_code="503") == 0


def test_proxy_restarts_a_backend_that_exited(proxy: MeshProxy) -> None:
    routes = (subset("primary", 100, workload("primary", "v1")),)
    proxy.apply(routes)
    process, _ = proxy._backends._running["v1"]
    process.kill()
    process.wait(timeout=10)
    upstream_failure = (503, "upstream connect error or disconnect/reset before headers")
    assert bodies(proxy.url, "/hello", 1) == {upstream_failure: 1}
    failed = {"response_code": "503", "destination_workload": "x-primary"}
    assert requests_total(proxy, reporter="destination", response_flags="UF", **failed) == 1
    assert requests_total(proxy, reporter="source", response_flags="-", **failed) == 1

    proxy.apply(routes)
    assert bodies(proxy.url, "/hello", 3) == {(200, "Hello! v1"): 3}


def test_generated_traffic_takes_the_proxy_path_with_the_exact_mix(proxy: MeshProxy) -> None:
    proxy.apply(
        (subset("primary", 50, workload("primary", "v1")), subset("canary", 50, workload("canary", "v2")))
    )
    generator = LoadGenerator(rate=100, nothello_fraction=0.5)
    generator.start(proxy.url)
    try:
        wait_until(lambda: generator.requests_sent() >= 20, timeout=30, what="20 generated requests")
    finally:
        generator.stop()
    sent = generator.requests_sent()
    nothello = sum(is_nothello(i, 0.5) for i in range(sent))
    for reporter in REPORTERS:
        source = {
            "reporter": reporter,
            "source_workload": GENERATOR_WORKLOAD,
            "source_workload_namespace": NAMESPACE,
        }
        assert requests_total(proxy, **source) == sent
        assert requests_total(proxy, **source, response_code="500") == nothello
    assert requests_total(proxy, source_workload="unknown") == 0
