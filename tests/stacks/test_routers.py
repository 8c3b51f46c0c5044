"""The router registry: routers picked by name, each a module of its own (the import contract's unit)."""

from __future__ import annotations

import inspect

import pytest

from stacks.routers import DEFAULT_ROUTER, ROUTERS, istio, router_named


def test_istio_is_picked_by_name_and_by_default() -> None:
    assert router_named("istio") is istio
    assert router_named(DEFAULT_ROUTER) is istio


def test_an_unknown_router_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"^router 'gateway-api' is not known: name one of istio$"):
        router_named("gateway-api")


def test_every_router_is_a_module_in_stacks_routers() -> None:
    # Import-linter keeps the modules stacks.routers.* independent of each other; a router elsewhere escapes.
    for router in ROUTERS.values():
        assert inspect.ismodule(router)
        assert router.__name__.startswith("stacks.routers.")
