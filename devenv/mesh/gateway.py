"""What the local traffic layer, as a Gateway API implementation, writes into the status of the objects it is
responsible for, as the Gateway API specifies it: its GatewayClasses Accepted; their Gateways Accepted and
Programmed with one status per listener; and for every HTTPRoute that names such a Gateway (or a Gateway
that does not exist: no other implementation runs in the local cluster) one `status.parents[]` entry per
parentRef, `Accepted` and `ResolvedRefs` at the route's current generation.

The reconciler counts a weight as applied only once these entries say so, so they must be the real verdicts:

- `Accepted=False`, `NoMatchingParent`: the Gateway does not exist, or none of its listeners has the
  parentRef's sectionName or port;
- `Accepted=False`, `NotAllowedByListeners`: listeners match, but none admits an HTTPRoute from the route's
  namespace (`allowedRoutes.namespaces.from`: `Same`, the default; `All`; `Selector` by `matchLabels`,
  while `matchExpressions` admit nothing here) or of its kind (`allowedRoutes.kinds`);
- `ResolvedRefs=False`: `InvalidKind` for a backendRef that is not a core Service, `RefNotPermitted` for
  one in another namespace (the local layer reads no ReferenceGrants, so it permits none),
  `BackendNotFound` for a Service that does not exist.

Entries of other controllers are kept as they are; a condition keeps its `lastTransitionTime` while its
status stays the same, so a status computed twice from the same objects is the same, and is written once.
Pure: API objects in (as dicts), statuses out; `devenv.mesh.cluster` reads and writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The controllerName this implementation answers to; devenv/cluster.py creates a GatewayClass naming it.
CONTROLLER_NAME = "canary.atze.io/local-traffic-layer"
GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
GATEWAY_KIND = "Gateway"
ROUTE_KIND = "HTTPRoute"
# A listener's protocol decides the route kinds it admits when allowedRoutes.kinds is empty.
ROUTE_KINDS_BY_PROTOCOL = {"HTTP": (ROUTE_KIND,), "HTTPS": (ROUTE_KIND,)}

GatewayKey = tuple[str, str]


@dataclass(frozen=True)
class Verdict:
    """One condition as this implementation decides it."""

    type: str
    status: bool
    reason: str
    message: str


def condition(
    verdict: Verdict, generation: int, previous: Sequence[Mapping[str, Any]], now: str
) -> dict[str, Any]:
    """A metav1.Condition for `verdict`, its lastTransitionTime kept from `previous` while its status is."""
    status = "True" if verdict.status else "False"
    before = next((c for c in previous if c.get("type") == verdict.type), None)
    unchanged = before is not None and before.get("status") == status and "lastTransitionTime" in before
    return {
        "type": verdict.type,
        "status": status,
        "reason": verdict.reason,
        "message": verdict.message,
        "observedGeneration": generation,
        "lastTransitionTime": before["lastTransitionTime"] if before is not None and unchanged else now,
    }


def _conditions(
    verdicts: Sequence[Verdict], generation: int, previous: Sequence[Mapping[str, Any]], now: str
) -> list[dict[str, Any]]:
    return [condition(verdict, generation, previous, now) for verdict in verdicts]


def _generation(obj: Mapping[str, Any]) -> int:
    return int(obj["metadata"].get("generation") or 0)


def gateway_class_status(gateway_class: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The status of a GatewayClass of this implementation: Accepted."""
    previous = (gateway_class.get("status") or {}).get("conditions") or []
    accepted = Verdict("Accepted", True, "Accepted", "Handled by the local traffic layer (devenv/mesh)")
    return {"conditions": _conditions([accepted], _generation(gateway_class), previous, now)}


def _listeners(gateway: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((gateway.get("spec") or {}).get("listeners") or [])


def _listener_kinds(listener: Mapping[str, Any]) -> tuple[str, ...]:
    kinds = (listener.get("allowedRoutes") or {}).get("kinds") or []
    if kinds:
        return tuple(str(kind["kind"]) for kind in kinds if kind.get("group", GROUP) == GROUP)
    return ROUTE_KINDS_BY_PROTOCOL.get(str(listener.get("protocol")), ())


def gateway_status(
    gateway: Mapping[str, Any], attached_routes: Mapping[str, int], now: str
) -> dict[str, Any]:
    """The status of a Gateway of this implementation's class: Accepted and Programmed, and per listener
    its route kinds, the number of routes attached to it (`attached_routes` by listener name) and its
    conditions. Only HTTP(S) listeners are supported; another protocol is not Accepted."""
    generation = _generation(gateway)
    previous_status = gateway.get("status") or {}
    previous_listeners = {
        str(listener.get("name")): listener.get("conditions") or []
        for listener in previous_status.get("listeners") or []
    }
    listeners = []
    for listener in _listeners(gateway):
        name = str(listener["name"])
        protocol = str(listener.get("protocol"))
        supported = protocol in ROUTE_KINDS_BY_PROTOCOL
        verdicts = [
            Verdict(
                "Accepted",
                supported,
                "Accepted" if supported else "UnsupportedProtocol",
                "Listener accepted" if supported else f"protocol {protocol} is not supported (HTTP, HTTPS)",
            ),
            Verdict(
                "Programmed",
                supported,
                "Programmed" if supported else "Invalid",
                "Listener programmed" if supported else "Listener not accepted",
            ),
            Verdict("ResolvedRefs", True, "ResolvedRefs", "No references to resolve"),
            Verdict("Conflicted", False, "NoConflicts", "No conflicts"),
        ]
        listeners.append(
            {
                "name": name,
                "supportedKinds": [{"group": GROUP, "kind": kind} for kind in _listener_kinds(listener)],
                "attachedRoutes": attached_routes.get(name, 0) if supported else 0,
                "conditions": _conditions(verdicts, generation, previous_listeners.get(name, []), now),
            }
        )
    verdicts = [
        Verdict("Accepted", True, "Accepted", "Handled by the local traffic layer (devenv/mesh)"),
        Verdict("Programmed", True, "Programmed", "Served by the local traffic layer's proxy"),
    ]
    return {
        "conditions": _conditions(verdicts, generation, previous_status.get("conditions") or [], now),
        "listeners": listeners,
    }


def _admits_namespace(
    listener: Mapping[str, Any],
    gateway_namespace: str,
    route_namespace: str,
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> bool:
    namespaces = (listener.get("allowedRoutes") or {}).get("namespaces") or {}
    admitted_from = namespaces.get("from", "Same")
    if admitted_from == "All":
        return True
    if admitted_from == "Selector":
        selector = namespaces.get("selector") or {}
        if selector.get("matchExpressions"):
            return False
        labels = namespace_labels.get(route_namespace, {})
        return (selector.get("matchLabels") or {}).items() <= labels.items()
    return route_namespace == gateway_namespace


def accepting_listeners(
    parent_ref: Mapping[str, Any],
    gateway: Mapping[str, Any],
    route_namespace: str,
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> tuple[list[str], Verdict]:
    """The names of the Gateway's listeners that admit an HTTPRoute of `route_namespace` through
    `parent_ref`, and the Accepted verdict that follows."""
    gateway_name = f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}"
    section, port = parent_ref.get("sectionName"), parent_ref.get("port")
    matching = [
        listener
        for listener in _listeners(gateway)
        if (section is None or listener.get("name") == section)
        and (port is None or listener.get("port") == port)
        and listener.get("protocol") in ROUTE_KINDS_BY_PROTOCOL
    ]
    if not matching:
        wanted = " and ".join(
            part for part in (section and f"named {section}", port and f"on port {port}") if part
        )
        return [], Verdict(
            "Accepted", False, "NoMatchingParent", f"Gateway {gateway_name} has no HTTP listener {wanted}"
        )
    admitting = [
        str(listener["name"])
        for listener in matching
        if ROUTE_KIND in _listener_kinds(listener)
        and _admits_namespace(listener, gateway["metadata"]["namespace"], route_namespace, namespace_labels)
    ]
    if not admitting:
        names = ", ".join(str(listener["name"]) for listener in matching)
        return [], Verdict(
            "Accepted",
            False,
            "NotAllowedByListeners",
            f"no listener of Gateway {gateway_name} ({names}) admits HTTPRoutes from namespace "
            f"{route_namespace}",
        )
    return admitting, Verdict(
        "Accepted", True, "Accepted", f"Accepted by Gateway {gateway_name} listener {', '.join(admitting)}"
    )


def _parent_key(parent_ref: Mapping[str, Any], route_namespace: str) -> GatewayKey | None:
    """The Gateway a parentRef names; None when it names another kind."""
    if parent_ref.get("group", GROUP) != GROUP or parent_ref.get("kind", GATEWAY_KIND) != GATEWAY_KIND:
        return None
    return str(parent_ref.get("namespace") or route_namespace), str(parent_ref["name"])


def resolved_refs(route: Mapping[str, Any], service_names: Sequence[str]) -> Verdict:
    """ResolvedRefs for every backendRef of every rule; `service_names` are the Services of the route's
    namespace."""
    namespace = route["metadata"]["namespace"]
    for rule in (route.get("spec") or {}).get("rules") or []:
        for backend in rule.get("backendRefs") or []:
            name = backend["name"]
            group, kind = backend.get("group", ""), backend.get("kind", "Service")
            if group != "" or kind != "Service":
                return Verdict(
                    "ResolvedRefs",
                    False,
                    "InvalidKind",
                    f"backendRef {name}: {kind}.{group} is not a Service",
                )
            if backend.get("namespace", namespace) != namespace:
                return Verdict(
                    "ResolvedRefs",
                    False,
                    "RefNotPermitted",
                    f"backendRef {backend['namespace']}/{name}: no ReferenceGrant is honoured here",
                )
            if name not in service_names:
                return Verdict(
                    "ResolvedRefs",
                    False,
                    "BackendNotFound",
                    f"backendRef {name}: Service {namespace}/{name} does not exist",
                )
    return Verdict("ResolvedRefs", True, "ResolvedRefs", "All backendRefs resolved")


def route_parents(
    route: Mapping[str, Any],
    gateways: Mapping[GatewayKey, Mapping[str, Any]],
    own_classes: Sequence[str],
    controller_name: str,
    service_names: Sequence[str],
    namespace_labels: Mapping[str, Mapping[str, str]],
    now: str,
) -> list[dict[str, Any]]:
    """The route's `status.parents` with this implementation's verdicts: other controllers' entries kept,
    one entry of ours per parentRef naming a Gateway of `own_classes` or a Gateway that does not exist
    (`gateways` holds every Gateway of the cluster by (namespace, name))."""
    namespace = route["metadata"]["namespace"]
    generation = _generation(route)
    previous = (route.get("status") or {}).get("parents") or []
    kept = [entry for entry in previous if entry.get("controllerName") != controller_name]
    ours = []
    for parent_ref in (route.get("spec") or {}).get("parentRefs") or []:
        key = _parent_key(parent_ref, namespace)
        if key is None:
            continue
        gateway = gateways.get(key)
        if gateway is not None and (gateway.get("spec") or {}).get("gatewayClassName") not in own_classes:
            continue
        if gateway is None:
            accepted = Verdict(
                "Accepted", False, "NoMatchingParent", f"Gateway {key[0]}/{key[1]} does not exist"
            )
        else:
            _, accepted = accepting_listeners(parent_ref, gateway, namespace, namespace_labels)
        before = next(
            (
                entry.get("conditions") or []
                for entry in previous
                if entry.get("controllerName") == controller_name and entry.get("parentRef") == parent_ref
            ),
            [],
        )
        verdicts = [accepted, resolved_refs(route, service_names)]
        ours.append(
            {
                "parentRef": dict(parent_ref),
                "controllerName": controller_name,
                "conditions": _conditions(verdicts, generation, before, now),
            }
        )
    return kept + ours


def attached_routes(
    gateway: Mapping[str, Any],
    routes: Sequence[Mapping[str, Any]],
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> dict[str, int]:
    """How many of `routes` each listener of the Gateway admits, by listener name."""
    counts: dict[str, int] = {}
    key = (gateway["metadata"]["namespace"], gateway["metadata"]["name"])
    for route in routes:
        namespace = route["metadata"]["namespace"]
        names: set[str] = set()
        for parent_ref in (route.get("spec") or {}).get("parentRefs") or []:
            if _parent_key(parent_ref, namespace) == key:
                names.update(accepting_listeners(parent_ref, gateway, namespace, namespace_labels)[0])
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return counts


def accepted_by(
    route_parents_status: Sequence[Mapping[str, Any]], controller_name: str, generation: int
) -> bool:
    """Whether an entry of `controller_name` accepts the route at `generation` (what a data plane of this
    implementation serves)."""
    return any(
        entry.get("controllerName") == controller_name
        and any(
            c.get("type") == "Accepted"
            and c.get("status") == "True"
            and c.get("observedGeneration") == generation
            for c in entry.get("conditions") or []
        )
        for entry in route_parents_status
    )
