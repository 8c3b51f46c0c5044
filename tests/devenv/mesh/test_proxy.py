"""The local mesh's proxy (devenv/mesh/proxy.py) with real status-code-server processes and fake routes, no
cluster."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devenv.mesh.labels import GENERATOR_WORKLOAD
from devenv.mesh.load import LoadGenerator, is_nothello
from devenv.mesh.proxy import MeshProxy
from devenv.mesh.routing import Backend, Destination, Workload
from devenv.processes import wait_until
from tests.devenv.mesh.builders import NAMESPACE, REPORTERS, pod_labels, subset, workload


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
    assert set(proxy.backends()) == {Backend("v1"), Backend("v2")}

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
    v2_address = proxy.backends()[Backend("v2")]
    assert httpx.get(f"http://{v2_address}/healthz", timeout=5).text == "ok"

    proxy.apply((subset("primary", 50, workload("primary", "v1")), subset("canary", 50)))
    assert set(proxy.backends()) == {Backend("v1")}
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


def test_proxy_playing_a_gateway_labels_its_requests_as_istios_gateway_and_the_backend_service(
    proxy: MeshProxy,
) -> None:
    """Istio as a Gateway API implementation: the Gateway's pods (`<gateway>-<class>`) send every request,
    and each names the backend Service of the HTTPRoute, `x-canary` for the canary."""
    primary = Destination(
        "x-primary", NAMESPACE, 75, workloads=(workload("primary", "v1", 1, ("x", "x-primary")),)
    )
    canary = Destination(
        "x-canary", NAMESPACE, 25, workloads=(workload("canary", "v2", 1, ("x", "x-canary")),)
    )
    proxy.apply((primary, canary), ("ingress-canaryapp-local", "gateway-system"))
    assert bodies(proxy.url, "/hello", 8) == {(200, "Hello! v1"): 6, (200, "Hello! v2"): 2}
    for reporter in REPORTERS:
        gateway_to_canary = {
            "reporter": reporter,
            "source_workload": "ingress-canaryapp-local",
            "source_workload_namespace": "gateway-system",
            "destination_service": "x-canary.shop.svc.cluster.local",
            "destination_service_name": "x-canary",
            "destination_workload": "x-canary",
        }
        assert requests_total(proxy, **gateway_to_canary) == 2
        assert requests_total(proxy, reporter=reporter, destination_service_name="x") == 0

    invalid = Destination("x-canary", NAMESPACE, 25, invalid_backend=True)
    proxy.apply((primary, invalid), ("ingress-canaryapp-local", "gateway-system"))
    assert bodies(proxy.url, "/hello", 4) == {(200, "Hello! v1"): 3, (500, ""): 1}
    assert (
        requests_total(proxy, reporter="source", response_code="500", destination_service_name="x-canary")
        == 1
    )
    assert requests_total(proxy, reporter="destination", response_code="500") == 0


def test_proxy_restarts_a_backend_that_exited(proxy: MeshProxy) -> None:
    routes = (subset("primary", 100, workload("primary", "v1")),)
    proxy.apply(routes)
    process, _ = proxy._backends._running[Backend("v1")]
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


def test_proxy_runs_a_backend_per_image_and_behaviour_and_the_baseline_shares_the_primarys(
    proxy: MeshProxy,
) -> None:
    """The baseline runs the primary's pod template: one process serves both. The canary of the same image
    whose template sets ERROR_SHARE runs apart, and exactly that share of its /hello answers fail."""
    plain = (("LATENCY_MS", "1"),)
    failing = (("ERROR_SHARE", "0.25"), ("LATENCY_MS", "1"))
    primary = Workload("x-primary", NAMESPACE, pod_labels("primary"), "v1", 1, ("x",), plain)
    baseline = Workload("x-baseline", NAMESPACE, pod_labels("baseline"), "v1", 1, ("x",), plain)
    canary = Workload("x-canary", NAMESPACE, pod_labels("canary"), "v1", 1, ("x",), failing)
    proxy.apply(
        (subset("primary", 50, primary), subset("canary", 25, canary), subset("baseline", 25, baseline))
    )
    assert set(proxy.backends()) == {Backend("v1", plain), Backend("v1", failing)}

    assert bodies(proxy.url, "/hello", 80) == {(200, "Hello! v1"): 75, (500, "Hello failed! v1"): 5}
    for reporter in REPORTERS:
        assert (
            requests_total(proxy, reporter=reporter, destination_workload="x-canary", response_code="500")
            == 5
        )
        assert requests_total(proxy, reporter=reporter, destination_workload="x-baseline") == 20
        assert (
            requests_total(proxy, reporter=reporter, destination_workload="x-baseline", response_code="500")
            == 0
        )
        assert (
            requests_total(
                proxy, reporter=reporter, destination_version="baseline", destination_service_name="x"
            )
            == 20
        )

    proxy.apply((subset("primary", 100, primary),))
    assert set(proxy.backends()) == {Backend("v1", plain)}


def test_proxy_keeps_the_last_routes_when_a_backend_refuses_its_behaviour(proxy: MeshProxy) -> None:
    primary = workload("primary", "v1")
    proxy.apply((subset("primary", 100, primary),))
    broken = Workload("x-canary", NAMESPACE, pod_labels("canary"), "v2", 1, ("x",), (("SLOW_SHARE", "2"),))
    with pytest.raises(
        RuntimeError, match=r"(?s)SLOW_SHARE='2' exited with code 2 .*SLOW_SHARE must be a share from 0 to 1"
    ):
        proxy.apply((subset("primary", 90, primary), subset("canary", 10, broken)))
    assert proxy.table.weights() == {"x-primary": 100}
    assert bodies(proxy.url, "/hello", 2) == {(200, "Hello! v1"): 2}
