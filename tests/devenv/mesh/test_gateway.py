"""The local traffic layer as a Gateway API implementation (devenv/mesh/gateway.py), table-driven: the status
of its GatewayClass and Gateways, and the verdicts it writes into an HTTPRoute's `status.parents`."""

from __future__ import annotations

from typing import Any

import pytest

from devenv.mesh.gateway import (
    CONTROLLER_NAME,
    Verdict,
    accepted_by,
    attached_routes,
    condition,
    gateway_class_status,
    gateway_status,
    route_parents,
)

NOW = "2026-12-01T21:00:00Z"
LATER = "2026-12-01T21:05:00Z"
CLASS = "canaryapp-local"
GATEWAY_NAMESPACE = "gateway-system"
ROUTE_NAMESPACE = "shop"


def listener(name: str = "http", port: int = 80, protocol: str = "HTTP", **allowed: Any) -> dict[str, Any]:
    return {"name": name, "port": port, "protocol": protocol, "allowedRoutes": allowed}


ALL_NAMESPACES = {"namespaces": {"from": "All"}}


def gateway(
    name: str = "ingress", gateway_class: str = CLASS, namespace: str = GATEWAY_NAMESPACE, *listeners: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": 2},
        "spec": {
            "gatewayClassName": gateway_class,
            "listeners": list(listeners) or [listener(**ALL_NAMESPACES)],
        },
    }


def parent(name: str = "ingress", namespace: str | None = GATEWAY_NAMESPACE, **more: Any) -> dict[str, Any]:
    ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name, **more}
    return ref if namespace is None else {**ref, "namespace": namespace}


def route(
    *parent_refs: dict[str, Any], backends: tuple[str, ...] = ("x-primary", "x-canary")
) -> dict[str, Any]:
    return {
        "metadata": {"name": "x", "namespace": ROUTE_NAMESPACE, "generation": 3},
        "spec": {
            "parentRefs": list(parent_refs),
            "rules": [{"backendRefs": [{"name": name, "port": 8088, "weight": 50} for name in backends]}],
        },
    }


SERVICES = ["x", "x-primary", "x-canary"]
INGRESS = gateway()
GATEWAYS = {(GATEWAY_NAMESPACE, "ingress"): INGRESS}


def verdicts(entry: dict[str, Any]) -> dict[str, tuple[str, str, int]]:
    return {c["type"]: (c["status"], c["reason"], c["observedGeneration"]) for c in entry["conditions"]}


def parents_of(
    http_route: dict[str, Any],
    gateways: dict[tuple[str, str], dict[str, Any]] = GATEWAYS,
    services: list[str] = SERVICES,
    namespace_labels: dict[str, dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    return route_parents(
        http_route, gateways, [CLASS], CONTROLLER_NAME, services, namespace_labels or {}, NOW
    )


def test_an_attached_route_is_accepted_with_resolved_refs_at_its_generation() -> None:
    (entry,) = parents_of(route(parent()))
    assert entry["controllerName"] == CONTROLLER_NAME
    assert entry["parentRef"] == parent()
    assert verdicts(entry) == {
        "Accepted": ("True", "Accepted", 3),
        "ResolvedRefs": ("True", "ResolvedRefs", 3),
    }
    assert accepted_by([entry], CONTROLLER_NAME, 3)
    assert not accepted_by([entry], CONTROLLER_NAME, 4), "a verdict on an older generation accepts nothing"
    assert not accepted_by([entry], "example.com/other", 3)


@pytest.mark.parametrize(
    ("parent_ref", "listeners", "reason"),
    [
        pytest.param(parent("missing"), [], "NoMatchingParent", id="no-such-gateway"),
        pytest.param(parent(sectionName="https"), [], "NoMatchingParent", id="no-listener-of-that-name"),
        pytest.param(parent(port=8443), [], "NoMatchingParent", id="no-listener-on-that-port"),
        pytest.param(
            parent(), [listener(protocol="TCP", **ALL_NAMESPACES)], "NoMatchingParent", id="no-http-listener"
        ),
        pytest.param(parent(), [listener()], "NotAllowedByListeners", id="same-namespace-by-default"),
        pytest.param(
            parent(),
            [listener(namespaces={"from": "Selector", "selector": {"matchLabels": {"team": "web"}}})],
            "NotAllowedByListeners",
            id="selector-not-matching",
        ),
        pytest.param(
            parent(),
            [listener(namespaces={"from": "All"}, kinds=[{"kind": "GRPCRoute"}])],
            "NotAllowedByListeners",
            id="other-route-kinds-only",
        ),
    ],
)
def test_a_route_no_listener_admits_is_not_accepted_with_the_reason(
    parent_ref: dict[str, Any], listeners: list[dict[str, Any]], reason: str
) -> None:
    gateways = {(GATEWAY_NAMESPACE, "ingress"): gateway("ingress", CLASS, GATEWAY_NAMESPACE, *listeners)}
    (entry,) = parents_of(route(parent_ref), gateways)
    assert verdicts(entry)["Accepted"] == ("False", reason, 3)
    assert entry["conditions"][0]["message"]
    assert not accepted_by([entry], CONTROLLER_NAME, 3)


@pytest.mark.parametrize(
    ("namespaces", "labels"),
    [
        pytest.param({"from": "All"}, {}, id="all"),
        pytest.param(
            {"from": "Selector", "selector": {"matchLabels": {"team": "web"}}}, {"team": "web"}, id="sel"
        ),
    ],
)
def test_listeners_admit_other_namespaces_as_allowed_routes_say(
    namespaces: dict[str, Any], labels: dict[str, str]
) -> None:
    gateways = {
        (GATEWAY_NAMESPACE, "ingress"): gateway(
            "ingress", CLASS, GATEWAY_NAMESPACE, listener(namespaces=namespaces)
        )
    }
    (entry,) = parents_of(route(parent()), gateways, namespace_labels={ROUTE_NAMESPACE: labels})
    assert verdicts(entry)["Accepted"] == ("True", "Accepted", 3)


def test_a_gateway_in_the_routes_namespace_is_the_default_parent_namespace() -> None:
    own = gateway("local", CLASS, ROUTE_NAMESPACE, listener())
    (entry,) = parents_of(route(parent("local", namespace=None)), {(ROUTE_NAMESPACE, "local"): own})
    assert verdicts(entry)["Accepted"] == ("True", "Accepted", 3)


@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        pytest.param({"name": "x-canary", "port": 8088}, "BackendNotFound", id="missing-service"),
        pytest.param(
            {"name": "x-primary", "namespace": "other", "port": 8088}, "RefNotPermitted", id="other-ns"
        ),
        pytest.param({"name": "bucket", "group": "example.com", "kind": "Bucket"}, "InvalidKind", id="kind"),
    ],
)
def test_a_backend_that_does_not_resolve_is_reported_with_the_reason(
    backend: dict[str, Any], reason: str
) -> None:
    http_route = route(parent())
    http_route["spec"]["rules"][0]["backendRefs"] = [{"name": "x-primary", "port": 8088}, backend]
    (entry,) = parents_of(http_route, services=["x", "x-primary"])
    assert verdicts(entry) == {"Accepted": ("True", "Accepted", 3), "ResolvedRefs": ("False", reason, 3)}


def test_other_controllers_parents_are_left_to_them() -> None:
    theirs_gateway = gateway("envoy", "other-class", GATEWAY_NAMESPACE)
    theirs = {
        "parentRef": parent("envoy"),
        "controllerName": "example.com/envoy",
        "conditions": [{"type": "X"}],
    }
    http_route = route(parent(), parent("envoy"))
    http_route["status"] = {"parents": [theirs]}
    gateways = {**GATEWAYS, (GATEWAY_NAMESPACE, "envoy"): theirs_gateway}
    parents = parents_of(http_route, gateways)
    assert parents[0] == theirs
    assert [entry["parentRef"]["name"] for entry in parents[1:]] == ["ingress"]


def test_parent_refs_to_other_kinds_are_not_ours() -> None:
    mesh_service = {"group": "", "kind": "Service", "name": "x"}
    assert parents_of(route(mesh_service)) == []


def test_the_same_verdicts_later_keep_their_transition_time_and_a_changed_one_moves() -> None:
    http_route = route(parent())
    http_route["status"] = {"parents": parents_of(http_route)}
    again = route_parents(http_route, GATEWAYS, [CLASS], CONTROLLER_NAME, SERVICES, {}, LATER)
    assert again == http_route["status"]["parents"], "an unchanged status is not written again"
    changed = route_parents(http_route, GATEWAYS, [CLASS], CONTROLLER_NAME, ["x-primary"], {}, LATER)
    times = {c["type"]: c["lastTransitionTime"] for c in changed[0]["conditions"]}
    assert times == {"Accepted": NOW, "ResolvedRefs": LATER}


def test_condition_keeps_the_transition_time_only_while_the_status_stays() -> None:
    before = [condition(Verdict("Ready", True, "Fine", "ok"), 1, [], NOW)]
    assert condition(Verdict("Ready", True, "Still", "ok"), 2, before, LATER)["lastTransitionTime"] == NOW
    assert condition(Verdict("Ready", False, "Broken", "no"), 2, before, LATER)["lastTransitionTime"] == LATER


def test_gateway_class_is_accepted_at_its_generation() -> None:
    status = gateway_class_status({"metadata": {"name": CLASS, "generation": 1}, "spec": {}}, NOW)
    assert [(c["type"], c["status"], c["observedGeneration"]) for c in status["conditions"]] == [
        ("Accepted", "True", 1)
    ]


def test_gateway_is_programmed_and_counts_the_routes_each_listener_admits() -> None:
    ingress = gateway(
        "ingress",
        CLASS,
        GATEWAY_NAMESPACE,
        listener(**ALL_NAMESPACES),
        listener("same", 8080),
        listener("tcp", 9000, "TCP"),
    )
    routes = [
        route(parent()),
        route(parent(port=80)),
        route(parent(sectionName="same")),
        route(parent("missing")),
    ]
    attached = attached_routes(ingress, routes, {})
    assert attached == {"http": 2}
    status = gateway_status(ingress, attached, NOW)
    assert [(c["type"], c["status"], c["observedGeneration"]) for c in status["conditions"]] == [
        ("Accepted", "True", 2),
        ("Programmed", "True", 2),
    ]
    by_name = {entry["name"]: entry for entry in status["listeners"]}
    assert by_name["http"]["attachedRoutes"] == 2
    assert by_name["http"]["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]
    assert by_name["same"]["attachedRoutes"] == 0
    tcp = {c["type"]: (c["status"], c["reason"]) for c in by_name["tcp"]["conditions"]}
    assert tcp["Accepted"] == ("False", "UnsupportedProtocol")
    assert by_name["tcp"]["supportedKinds"] == []
