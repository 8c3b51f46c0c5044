"""The objects a CanaryApp owns (names.py), per router: what the ownership check before every step and the
finalizer cover."""

from __future__ import annotations

import pytest

from reconciler.core.names import Router, owned_objects, router_objects, track_name


def kinds_and_names(refs: object) -> list[tuple[str, str]]:
    return [(ref.kind, ref.name) for ref in refs]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("routers", "expected"),
    [
        pytest.param(
            (Router.ISTIO,),
            [("Service", "web"), ("DestinationRule", "web"), ("VirtualService", "web")],
            id="istio",
        ),
        pytest.param(
            (Router.GATEWAY_API,),
            [("Service", "web"), ("Service", "web-primary"), ("Service", "web-canary"), ("HTTPRoute", "web")],
            id="gateway-api: no Istio object",
        ),
        pytest.param(
            (Router.ISTIO, Router.GATEWAY_API),
            [
                ("Service", "web"),
                ("DestinationRule", "web"),
                ("VirtualService", "web"),
                ("Service", "web-primary"),
                ("Service", "web-canary"),
                ("HTTPRoute", "web"),
            ],
            id="a switch: both routers' objects",
        ),
        pytest.param(
            (Router.ISTIO, Router.ISTIO),
            [("Service", "web"), ("DestinationRule", "web"), ("VirtualService", "web")],
            id="each once",
        ),
    ],
)
def test_owned_objects_per_router(routers: tuple[Router, ...], expected: list[tuple[str, str]]) -> None:
    assert kinds_and_names(owned_objects("web", routers, with_canary=False)) == [
        ("Deployment", "web-primary"),
        *expected,
    ]


def test_the_canary_and_the_autoscalers_come_with_every_router() -> None:
    for router in Router:
        owned = kinds_and_names(owned_objects("web", (router,), with_canary=True, autoscaled=True))
        assert owned[:4] == [
            ("Deployment", "web-primary"),
            ("Deployment", "web-canary"),
            ("HorizontalPodAutoscaler", "web-primary"),
            ("HorizontalPodAutoscaler", "web-canary"),
        ]


def test_router_objects_carry_their_api_versions() -> None:
    assert {(ref.kind, ref.api_version) for ref in router_objects("web", Router.GATEWAY_API)} == {
        ("Service", "v1"),
        ("HTTPRoute", "gateway.networking.k8s.io/v1"),
    }


@pytest.mark.parametrize(
    ("router", "baseline_objects"),
    [
        pytest.param(Router.ISTIO, [], id="istio: the subset is in the DestinationRule"),
        pytest.param(Router.GATEWAY_API, [("Service", "web-baseline")], id="gateway-api: its own Service"),
    ],
)
def test_a_baseline_adds_its_deployment_autoscaler_and_routers_objects(
    router: Router, baseline_objects: list[tuple[str, str]]
) -> None:
    without = kinds_and_names(owned_objects("web", (router,), with_canary=True, autoscaled=True))
    with_baseline = kinds_and_names(
        owned_objects("web", (router,), with_canary=True, autoscaled=True, with_baseline=True)
    )
    assert sorted(set(with_baseline) - set(without)) == sorted(
        [("Deployment", "web-baseline"), ("HorizontalPodAutoscaler", "web-baseline"), *baseline_objects]
    )
    assert set(without) <= set(with_baseline)
    assert len(with_baseline) == len(set(with_baseline))


def test_each_track_has_its_name() -> None:
    assert [track_name("web", track) for track in ("primary", "canary", "baseline")] == [
        "web-primary",
        "web-canary",
        "web-baseline",
    ]
