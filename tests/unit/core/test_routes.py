"""When an HTTPRoute counts as applied (routes.py): every parentRef of the spec accepted, with resolved
references, at the route's current generation, and carrying the declared weights; table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core.model import ParentRef
from reconciler.core.routes import GatewayRef, declared_weights, gateway_refs, route_state

PUBLIC = GatewayRef("gateways", "public")
OWN = GatewayRef("shop", "own", "http")
WEIGHTS = (90, 10)


def condition(
    kind: str, status: str = "True", generation: int = 3, reason: str = "", message: str = ""
) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "observedGeneration": generation,
        "reason": reason or (kind if status == "True" else f"Not{kind}"),
        "message": message,
    }


ACCEPTED = [condition("Accepted"), condition("ResolvedRefs")]


def parent(ref: dict[str, Any], conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"parentRef": ref, "controllerName": "example.com/gateway", "conditions": conditions}


def route(
    *parents: dict[str, Any], weights: tuple[int, ...] = WEIGHTS, generation: int = 3
) -> dict[str, Any]:
    tracks = ("primary", "canary", "baseline")
    return {
        "metadata": {"name": "web", "namespace": "shop", "generation": generation},
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": f"web-{track}", "port": 80, "weight": weight}
                        for track, weight in zip(tracks, weights, strict=False)
                    ]
                }
            ]
        },
        "status": {"parents": list(parents)},
    }


PUBLIC_REF = {
    "group": "gateway.networking.k8s.io",
    "kind": "Gateway",
    "namespace": "gateways",
    "name": "public",
}
# As a controller may write it back: defaults left out (group, kind, the route's own namespace).
OWN_REF = {"name": "own", "sectionName": "http"}


@pytest.mark.parametrize(
    ("served", "parents", "accepted", "evidence"),
    [
        pytest.param(
            route(parent(PUBLIC_REF, ACCEPTED)), [PUBLIC], True, "accepted by every parent", id="accepted"
        ),
        pytest.param(
            route(parent(PUBLIC_REF, ACCEPTED), parent(OWN_REF, ACCEPTED)),
            [PUBLIC, OWN],
            True,
            "accepted by every parent",
            id="two parents, defaults left out by the controller",
        ),
        pytest.param(None, [PUBLIC], False, "the HTTPRoute does not exist yet", id="no route"),
        pytest.param(
            route(),
            [PUBLIC],
            False,
            "Gateway gateways/public: Pending: no status from the Gateway's controller yet",
            id="no status yet",
        ),
        pytest.param(
            route(parent(PUBLIC_REF, ACCEPTED)),
            [PUBLIC, OWN],
            False,
            "Gateway shop/own listener http: Pending: no status from the Gateway's controller yet",
            id="one parent of two answered",
        ),
        pytest.param(
            route(parent(PUBLIC_REF, [condition("Accepted", generation=2), condition("ResolvedRefs")])),
            [PUBLIC],
            False,
            "Gateway gateways/public: StaleGeneration: Accepted describes generation 2, the route is at 3",
            id="accepted an older generation",
        ),
        pytest.param(
            route(
                parent(
                    PUBLIC_REF,
                    [
                        condition(
                            "Accepted", "False", reason="NotAllowedByListeners", message="namespace shop"
                        ),
                        condition("ResolvedRefs"),
                    ],
                )
            ),
            [PUBLIC],
            False,
            "Gateway gateways/public: NotAllowedByListeners: namespace shop",
            id="rejected by its parent",
        ),
        pytest.param(
            route(
                parent(
                    PUBLIC_REF,
                    [condition("Accepted"), condition("ResolvedRefs", "False", reason="BackendNotFound")],
                )
            ),
            [PUBLIC],
            False,
            "Gateway gateways/public: BackendNotFound",
            id="a backend does not resolve",
        ),
        pytest.param(
            route(parent(PUBLIC_REF, [condition("Accepted")])),
            [PUBLIC],
            False,
            "Gateway gateways/public: Pending: no ResolvedRefs condition yet",
            id="no ResolvedRefs yet",
        ),
        pytest.param(
            route(parent({**PUBLIC_REF, "name": "other"}, ACCEPTED)),
            [PUBLIC],
            False,
            "Gateway gateways/public: Pending: no status from the Gateway's controller yet",
            id="accepted by another gateway",
        ),
        pytest.param(
            route(parent({**PUBLIC_REF, "kind": "Service", "group": ""}, ACCEPTED)),
            [PUBLIC],
            False,
            "Gateway gateways/public: Pending: no status from the Gateway's controller yet",
            id="a parent of another kind",
        ),
        pytest.param(
            route(parent(PUBLIC_REF, ACCEPTED), weights=(80, 20)),
            [PUBLIC],
            False,
            "Gateway gateways/public: Pending: the route carries weights (80, 20), not (90, 10)",
            id="other weights than declared",
        ),
        pytest.param(
            route(
                parent(PUBLIC_REF, [condition("Accepted", "False", reason="X", message="\x1b[31mred\nline")])
            ),
            [PUBLIC],
            False,
            "Gateway gateways/public: X: red\nline",
            id="the controller's words kept printable",
        ),
    ],
)
def test_route_state(
    served: dict[str, Any] | None, parents: list[GatewayRef], accepted: bool, evidence: str
) -> None:
    state = route_state(served, parents, WEIGHTS)
    assert state.accepted is accepted
    assert state.describe() == evidence


def test_a_route_without_parents_is_never_accepted() -> None:
    assert not route_state(route(parent(PUBLIC_REF, ACCEPTED)), [], WEIGHTS).accepted


def test_rejected_names_only_the_parents_that_refused_this_generation() -> None:
    refused = [condition("Accepted", "False", reason="NoMatchingListenerHostname"), condition("ResolvedRefs")]
    state = route_state(route(parent(PUBLIC_REF, refused)), [PUBLIC, OWN], WEIGHTS)
    assert [verdict.parent for verdict in state.rejected] == [PUBLIC]
    assert [verdict.reason for verdict in state.rejected] == ["NoMatchingListenerHostname"]


def test_gateway_refs_default_to_the_canaryapps_namespace() -> None:
    refs = (
        ParentRef(name="own"),
        ParentRef(name="public", namespace="gateways", section_name="https", port=443),
    )
    assert gateway_refs("shop", refs) == (
        GatewayRef("shop", "own"),
        GatewayRef("gateways", "public", "https", 443),
    )


def test_with_a_baseline_the_route_carries_three_weights() -> None:
    three = declared_weights(20, with_baseline=True)
    assert three == (60, 20, 20)
    assert declared_weights(20, with_baseline=False) == (80, 20)
    assert route_state(route(parent(PUBLIC_REF, ACCEPTED), weights=three), [PUBLIC], three).accepted
    # The route of the step before the baseline started (or after it went) does not carry this weight.
    before = route_state(route(parent(PUBLIC_REF, ACCEPTED), weights=(80, 20)), [PUBLIC], three)
    assert not before.accepted
    assert "the route carries weights (80, 20), not (60, 20, 20)" in before.describe()
