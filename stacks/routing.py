"""The seam between the Pulumi program and a traffic router: what the program asks of a router.

The program declares the Deployments and the apex Service; a router declares the objects that split the
apex Service's traffic between the primary and the canary tracks (and the baseline's, when one runs) at the
desired weights (Istio's DestinationRule and VirtualService: stacks/routers/istio.py; Gateway API's
per-track Services and HTTPRoute: stacks/routers/gateway_api.py). The program never knows which objects
those are; which objects each router owns is data in the core (reconciler/core/names.py `router_objects`),
for the ownership check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi

from reconciler.core.routes import GatewayRef

# Every `up` returns once the API server accepted the change; the reconciler watches readiness (and a route's
# acceptance) itself.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}


@dataclass(frozen=True)
class Route:
    """One CanaryApp's traffic split, as the program hands it to a router."""

    # The apex Service: it selects both tracks' pods, told apart by their track label (names.TRACK_LABEL).
    service: str
    namespace: str
    port: int
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]  # Istio's VirtualService gateways
    parent_refs: tuple[GatewayRef, ...]  # Gateway API's parent Gateways
    primary_weight: int
    canary_weight: int
    # Name, namespace, labels, annotations and owner references of an object named after the CanaryApp.
    metadata: Mapping[str, Any]
    # None: no baseline runs, and the router declares exactly what it declared before baselines existed.
    baseline_weight: int | None = None

    @property
    def tracks(self) -> tuple[str, ...]:
        """The tracks the route splits the traffic between, in the order of its destinations."""
        return ("primary", "canary", *(("baseline",) if self.baseline_weight is not None else ()))

    def weight(self, track: str) -> int:
        weights = {
            "primary": self.primary_weight,
            "canary": self.canary_weight,
            "baseline": self.baseline_weight or 0,
        }
        return weights[track]


class Router(Protocol):
    """Declares a route's traffic objects in the current Pulumi program, each with `opts`.

    The logical names and types a router declares are part of every stack's state: changing them replaces
    the objects of every CanaryApp routed by it.
    """

    def declare(self, route: Route, opts: pulumi.ResourceOptions) -> None: ...
