"""The seam between the Pulumi program and a traffic router: what the program asks of a router.

The program declares the Deployments and the apex Service; a router declares the objects that split the
apex Service's traffic between the primary and the canary tracks at the desired weights (Istio's
DestinationRule and VirtualService: stacks/routers/istio.py). The program never knows which objects those
are, so a second router (Gateway API's HTTPRoute is next) is one new module in stacks/routers/.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi


@dataclass(frozen=True)
class Route:
    """One CanaryApp's traffic split, as the program hands it to a router."""

    # The apex Service: it selects both tracks' pods, told apart by their track label (names.TRACK_LABEL).
    service: str
    namespace: str
    port: int
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]
    primary_weight: int
    canary_weight: int
    # Name, namespace, labels, annotations and owner references of an object named after the CanaryApp.
    metadata: Mapping[str, Any]


class Router(Protocol):
    """Declares a route's traffic objects in the current Pulumi program, each with `opts`.

    The logical names and types a router declares are part of every stack's state: changing them replaces
    the objects of every CanaryApp routed by it.
    """

    def declare(self, route: Route, opts: pulumi.ResourceOptions) -> None: ...
