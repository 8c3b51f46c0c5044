"""The routers the Pulumi program may ask for a CanaryApp's traffic objects, by name (the seam:
stacks/routing.py). A router is a module of its own here that imports no other router; it joins with one line
in ROUTERS.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.core.names import Router as RouterName
from stacks.routers import gateway_api, istio
from stacks.routing import Router

ROUTERS: Mapping[str, Router] = {RouterName.ISTIO: istio, RouterName.GATEWAY_API: gateway_api}


def router_named(name: str) -> Router:
    try:
        return ROUTERS[name]
    except KeyError:
        known = ", ".join(sorted(ROUTERS))
        raise ValueError(f"router {name!r} is not known: name one of {known}") from None
