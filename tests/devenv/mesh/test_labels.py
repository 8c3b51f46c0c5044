"""Istio's metric labels as the local mesh sets them (devenv/mesh/labels.py), table-driven."""

from __future__ import annotations

import pytest

from devenv.mesh.labels import GENERATOR_WORKLOAD, Reporter, request_labels
from devenv.mesh.routing import Destination, Workload
from tests.devenv.mesh.builders import NAMESPACE, REPORTERS, subset, workload

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


@pytest.mark.parametrize("reporter", REPORTERS)
@pytest.mark.parametrize(
    ("route", "services", "service_name"),
    [
        pytest.param(subset("baseline", 10), ("x",), "x", id="istio-subset-of-the-apex"),
        pytest.param(
            Destination("x-baseline", NAMESPACE, 10),
            ("x", "x-baseline"),
            "x-baseline",
            id="gateway-api-service",
        ),
    ],
)
def test_a_baseline_request_is_labelled_as_istio_labels_the_canarys(
    reporter: Reporter, route: Destination, services: tuple[str, ...], service_name: str
) -> None:
    """The baseline is one more track: its workload and version name it, and the Service is the route's, as
    for the canary and the primary (the apex under Istio, its own Service under the Gateway API)."""
    baseline_pod = workload("baseline", "v1", services=services)
    labels = labels_of(reporter, route, baseline_pod)
    assert {key: labels[key] for key in labels if key.startswith("destination_")} == {
        "destination_service": f"{service_name}.{NAMESPACE}.svc.cluster.local",
        "destination_service_name": service_name,
        "destination_service_namespace": NAMESPACE,
        "destination_workload": "x-baseline",
        "destination_workload_namespace": NAMESPACE,
        "destination_version": "baseline",
        "destination_app": "x",
    }
