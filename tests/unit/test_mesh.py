"""The local mesh stand-in (devenv/mesh.py): its pure parts table-driven, then the proxy with real
status-code-server processes and fake routes, no cluster."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devenv.mesh import (
    GENERATOR_WORKLOAD,
    NO_HEALTHY_UPSTREAM,
    NO_ROUTE,
    Destination,
    LoadGenerator,
    MeshProxy,
    RouteTable,
    SmoothWeightedRoundRobin,
    image_version,
    is_nothello,
    request_labels,
    resolve_routes,
)
from devenv.processes import wait_until

NAMESPACE = "shop"


def host(service: str) -> str:
    return f"{service}.{NAMESPACE}.svc.cluster.local"


def destination(
    service: str, weight: int, version: str | None, *, available: bool = True, workload: str | None = ""
) -> Destination:
    return Destination(
        host=host(service),
        service=service,
        namespace=NAMESPACE,
        weight=weight,
        workload=service if workload == "" else workload,
        version=version,
        app="x",
        available=available,
    )


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


def test_route_table_forwards_to_the_chosen_versions_process() -> None:
    table = RouteTable()
    table.apply(
        (destination("x-primary", 100, "v1"), destination("x-canary", 0, "v2")), {"v1": "127.0.0.1:1"}
    )
    selection = table.select()
    assert selection.upstream == "127.0.0.1:1"
    assert selection.refusal is None
    assert selection.destination is not None
    assert selection.destination.workload == "x-primary"


@pytest.mark.parametrize(
    "canary",
    [
        pytest.param(destination("x-canary", 100, "v2", available=False), id="no-available-replicas"),
        pytest.param(destination("x-canary", 100, None, available=False, workload=None), id="no-deployment"),
        pytest.param(destination("x-canary", 100, "v3"), id="no-backend-process"),
    ],
)
def test_route_table_answers_no_healthy_upstream_for_an_unavailable_destination(canary: Destination) -> None:
    table = RouteTable()
    table.apply((destination("x-primary", 0, "v1"), canary), {"v1": "127.0.0.1:1", "v2": "127.0.0.1:2"})
    selection = table.select()
    assert selection.refusal == NO_HEALTHY_UPSTREAM
    assert (selection.refusal.status, selection.refusal.body, selection.refusal.response_flags) == (
        503,
        b"no healthy upstream",
        "UH",
    )
    assert selection.destination == canary


@pytest.mark.parametrize(
    "routes",
    [
        pytest.param(None, id="no-virtual-service"),
        pytest.param((destination("x-primary", 0, "v1"),), id="zero"),
    ],
)
def test_route_table_answers_no_route(routes: tuple[Destination, ...] | None) -> None:
    table = RouteTable()
    table.apply(routes, {"v1": "127.0.0.1:1"})
    selection = table.select()
    assert selection.refusal == NO_ROUTE
    assert (selection.refusal.status, selection.refusal.body, selection.refusal.response_flags) == (
        503,
        b"no route",
        "NR",
    )
    assert selection.destination is None


def test_route_table_reports_weights_by_workload() -> None:
    table = RouteTable()
    table.apply((destination("x-primary", 70, "v1"), destination("x-canary", 30, None, workload=None)), {})
    assert table.weights() == {"x-primary": 70, "x-canary": 30}


# Route resolution from API objects -------------------------------------------------------------------------


def virtual_service(weights: dict[str, int]) -> dict[str, Any]:
    return {
        "metadata": {"name": "x", "namespace": NAMESPACE},
        "spec": {
            "hosts": ["x"],
            "http": [
                {
                    "name": "canary-split",
                    "route": [
                        {"destination": {"host": host(service), "port": {"number": 8088}}, "weight": weight}
                        for service, weight in weights.items()
                    ],
                }
            ],
        },
    }


def service(name: str, track: str) -> dict[str, Any]:
    selector = {"canary.atze.io/app": "x", "canary.atze.io/track": track}
    return {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": {"selector": selector}}


def deployment(name: str, track: str, image: str, available_replicas: int | None) -> dict[str, Any]:
    labels = {"canary.atze.io/app": "x", "canary.atze.io/track": track, "app": "x", "version": track}
    status = {} if available_replicas is None else {"availableReplicas": available_replicas}
    return {
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            }
        },
        "status": status,
    }


SERVICES = [service("x", "primary"), service("x-primary", "primary"), service("x-canary", "canary")]


def test_resolve_routes_follows_service_selectors_to_deployments() -> None:
    deployments = [
        deployment("x-primary", "primary", "status-code-server:v1", 2),
        deployment("x-canary", "canary", "registry.local:5000/status-code-server:v2", 1),
        deployment("unrelated", "other", "other:v9", 1),
    ]
    routes = resolve_routes(virtual_service({"x-primary": 80, "x-canary": 20}), SERVICES, deployments)
    assert routes == (
        Destination(host("x-primary"), "x-primary", NAMESPACE, 80, "x-primary", "v1", "x", available=True),
        Destination(host("x-canary"), "x-canary", NAMESPACE, 20, "x-canary", "v2", "x", available=True),
    )


def test_resolve_routes_marks_a_missing_or_unready_canary() -> None:
    primary_only = [deployment("x-primary", "primary", "status-code-server:v1", 2)]
    routes = resolve_routes(virtual_service({"x-primary": 100, "x-canary": 0}), SERVICES, primary_only)
    assert routes is not None
    assert routes[1] == Destination(host("x-canary"), "x-canary", NAMESPACE, 0)
    assert not routes[1].available

    unready = [*primary_only, deployment("x-canary", "canary", "status-code-server:v2", None)]
    routes = resolve_routes(virtual_service({"x-primary": 90, "x-canary": 10}), SERVICES, unready)
    assert routes is not None
    assert (routes[1].workload, routes[1].version, routes[1].available) == ("x-canary", "v2", False)


def test_resolve_routes_without_a_service_leaves_the_destination_unresolved() -> None:
    deployments = [deployment("x-primary", "primary", "status-code-server:v1", 2)]
    routes = resolve_routes(virtual_service({"x-primary": 100}), [], deployments)
    assert routes == (Destination(host("x-primary"), "x-primary", NAMESPACE, 100),)


def test_resolve_routes_without_a_virtual_service_is_no_route() -> None:
    assert resolve_routes(None, SERVICES, []) is None


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("status-code-server:v2", "v2"),
        ("status-code-server", "latest"),
        ("localhost:5000/status-code-server", "latest"),
        ("localhost:5000/team/status-code-server:v3", "v3"),
        ("status-code-server:v1@sha256:" + "a" * 64, "v1"),
    ],
)
def test_image_version_is_the_tag(image: str, version: str) -> None:
    assert image_version(image) == version


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


def test_request_labels_use_istios_names_and_values() -> None:
    labels = request_labels(
        destination("x-canary", 20, "v2"),
        source_workload=GENERATOR_WORKLOAD,
        source_namespace=NAMESPACE,
        response_code=500,
        response_flags="-",
    )
    assert set(labels) == ISTIO_STANDARD_LABELS
    assert labels == {
        "reporter": "destination",
        "source_workload": "local-traffic-generator",
        "source_workload_namespace": NAMESPACE,
        "destination_service": "x-canary.shop.svc.cluster.local",
        "destination_service_name": "x-canary",
        "destination_service_namespace": NAMESPACE,
        "destination_workload": "x-canary",
        "destination_workload_namespace": NAMESPACE,
        "destination_version": "v2",
        "destination_app": "x",
        "request_protocol": "http",
        "response_code": "500",
        "response_flags": "-",
        "connection_security_policy": "unknown",
    }


def test_request_labels_without_a_route_are_unknown() -> None:
    labels = request_labels(
        None, source_workload="unknown", source_namespace="unknown", response_code=503, response_flags="NR"
    )
    assert set(labels) == ISTIO_STANDARD_LABELS
    assert labels["destination_workload"] == labels["destination_service_name"] == "unknown"
    assert (labels["response_code"], labels["response_flags"]) == ("503", "NR")


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


def test_proxy_routes_real_requests_by_weight_and_counts_them(proxy: MeshProxy) -> None:
    proxy.apply((destination("x-primary", 80, "v1"), destination("x-canary", 20, "v2")))
    assert set(proxy.backends()) == {"v1", "v2"}

    assert bodies(proxy.url, "/hello", 50) == {(200, "Hello! v1"): 40, (200, "Hello! v2"): 10}
    assert bodies(proxy.url, "/nothello", 20) == {(500, "NotHello! v1"): 16, (500, "NotHello! v2"): 4}

    canary = {"destination_workload": "x-canary", "destination_version": "v2", "source_workload": "unknown"}
    assert requests_total(proxy, **canary, response_code="200", response_flags="-") == 10
    assert requests_total(proxy, **canary, response_code="500", response_flags="-") == 4
    assert requests_total(proxy, destination_workload="x-primary", response_code="500") == 16
    metrics = httpx.get(proxy.url + "/stats/prometheus", timeout=5).text
    assert 'istio_request_duration_milliseconds_count{connection_security_policy="unknown"' in metrics
    assert 'reporter="destination"' in metrics


def test_proxy_answers_503_for_an_unavailable_canary_and_stops_unused_backends(proxy: MeshProxy) -> None:
    proxy.apply((destination("x-primary", 50, "v1"), destination("x-canary", 50, "v2")))
    v2_address = proxy.backends()["v2"]
    assert httpx.get(f"http://{v2_address}/healthz", timeout=5).text == "ok"

    proxy.apply((destination("x-primary", 50, "v1"), destination("x-canary", 50, None, workload=None)))
    assert set(proxy.backends()) == {"v1"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{v2_address}/healthz", timeout=5)
    assert bodies(proxy.url, "/hello", 10) == {(200, "Hello! v1"): 5, (503, "no healthy upstream"): 5}
    assert (
        requests_total(proxy, response_code="503", response_flags="UH", destination_service_name="x-canary")
        == 5
    )

    proxy.apply(None)
    assert proxy.backends() == {}
    assert bodies(proxy.url, "/hello", 2) == {(503, "no route"): 2}
    assert requests_total(proxy, response_code="503", response_flags="NR") == 2


def test_proxy_restarts_a_backend_that_exited(proxy: MeshProxy) -> None:
    routes = (destination("x-primary", 100, "v1"),)
    proxy.apply(routes)
    process, _ = proxy._backends._running["v1"]
    process.kill()
    process.wait(timeout=10)
    upstream_failure = (503, "upstream connect error or disconnect/reset before headers")
    assert bodies(proxy.url, "/hello", 1) == {upstream_failure: 1}
    assert requests_total(proxy, response_code="503", response_flags="UF") == 1

    proxy.apply(routes)
    assert bodies(proxy.url, "/hello", 3) == {(200, "Hello! v1"): 3}


def test_generated_traffic_takes_the_proxy_path_with_the_exact_mix(proxy: MeshProxy) -> None:
    proxy.apply((destination("x-primary", 50, "v1"), destination("x-canary", 50, "v2")))
    generator = LoadGenerator(rate=100, nothello_fraction=0.5)
    generator.start(proxy.url)
    try:
        wait_until(lambda: generator.requests_sent() >= 20, timeout=30, what="20 generated requests")
    finally:
        generator.stop()
    sent = generator.requests_sent()
    source = {"source_workload": GENERATOR_WORKLOAD, "source_workload_namespace": NAMESPACE}
    assert requests_total(proxy, **source) == sent
    assert requests_total(proxy, **source, response_code="500") == sum(
        is_nothello(i, 0.5) for i in range(sent)
    )
    assert requests_total(proxy, source_workload="unknown") == 0
