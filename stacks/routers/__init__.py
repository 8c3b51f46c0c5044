"""The routers the Pulumi program may ask for a CanaryApp's traffic objects, by name (the seam:
stacks/routing.py). A router is a module of its own here that imports no other router; it joins with one line
in ROUTERS.
"""

from __future__ import annotations

from collections.abc import Mapping

from stacks.routers import istio
from stacks.routing import Router

ROUTERS: Mapping[str, Router] = {"istio": istio}
# The CanaryApp names no router yet (issue 23 adds the field with Gateway API's router): every one is Istio's.
DEFAULT_ROUTER = "istio"


def router_named(name: str) -> Router:
    try:
        return ROUTERS[name]
    except KeyError:
        known = ", ".join(sorted(ROUTERS))
        raise ValueError(f"router {name!r} is not known: name one of {known}") from None
