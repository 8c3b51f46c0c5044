"""The router registry: routers picked by name, each a module of its own (the import contract's unit), one
for every router a CanaryApp may name."""

from __future__ import annotations

import inspect

import pytest

from reconciler.core.names import Router
from stacks.routers import ROUTERS, gateway_api, istio, router_named


def test_routers_are_picked_by_the_names_a_canaryapp_gives_them() -> None:
    assert router_named("istio") is istio
    assert router_named("gateway-api") is gateway_api
    assert router_named(Router.GATEWAY_API) is gateway_api


def test_every_router_the_crd_knows_is_registered() -> None:
    assert set(ROUTERS) == {router.value for router in Router}


def test_an_unknown_router_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"^router 'linkerd' is not known: name one of gateway-api, istio$"):
        router_named("linkerd")


def test_every_router_is_a_module_in_stacks_routers() -> None:
    # Import-linter keeps the modules stacks.routers.* independent of each other; a router elsewhere escapes.
    for router in ROUTERS.values():
        assert inspect.ismodule(router)
        assert router.__name__.startswith("stacks.routers.")
