"""What a CanaryApp may make the reconciler do: pure predicates, set by whoever runs the reconciler.

The reconciler holds more power than the people who write CanaryApps (it may change Deployments, Services and
Istio routes in every namespace). Nothing a CanaryApp says may let its author use that power beyond their
own objects:

- **Ownership.** The reconciler creates objects and changes or deletes only the ones that carry an owner
  reference with this CanaryApp's UID (`is_ours`). A derived name that is already taken by anything else is a
  conflict, reported on the CanaryApp, and no step runs until it is resolved.
- **Reserved names.** Some names are never a CanaryApp's, whoever created what (`RESERVED_SERVICES`: the API
  server's own Service).
- **Routing.** Which gateways a CanaryApp may bind and which hosts it may claim (`RoutingPolicy`): by
  default the mesh only, and the CanaryApp's own service names only.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Set
from dataclasses import dataclass

from reconciler.model import CanaryAppSpec

MESH_GATEWAY = "mesh"
# (namespace, Service name) pairs that no CanaryApp may take as its apex Service.
RESERVED_SERVICES = frozenset({("default", "kubernetes")})
NAMESPACE_PLACEHOLDER = "{namespace}"


def is_ours(owner_uids: Set[str] | None, uid: str) -> bool:
    """Whether an object may be changed by this CanaryApp's stack: it does not exist (None), or one of its
    owner references carries the CanaryApp's UID (assigned by the API server, never chosen by a user)."""
    return owner_uids is None or (bool(uid) and uid in owner_uids)


def own_hosts(namespace: str, name: str) -> tuple[str, ...]:
    """The names of a CanaryApp's own apex Service, as a VirtualService may spell them."""
    return (name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local")


def gateway_reference(namespace: str, gateway: str) -> str:
    """A VirtualService gateway as `<namespace>/<name>`: a bare name is in the VirtualService's namespace."""
    if gateway == MESH_GATEWAY or "/" in gateway:
        return gateway
    name, dot, rest = gateway.partition(".")
    return f"{rest.split('.', 1)[0]}/{name}" if dot else f"{namespace}/{gateway}"


@dataclass(frozen=True)
class RoutingPolicy:
    """Set by the operator of the reconciler (`--allowed-gateways`, `--allowed-hosts`).

    Patterns are shell-style globs (`*.example.com`, `istio-system/*`); `{namespace}` stands for the
    CanaryApp's namespace (`{namespace}/*`: any gateway in the CanaryApp's own namespace). The mesh gateway
    and the CanaryApp's own service names are always allowed.
    """

    allowed_gateways: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()

    def violations(self, namespace: str, name: str, spec: CanaryAppSpec) -> list[str]:
        """Every way `spec` asks for more than this policy allows, each naming the field and the fix."""
        problems = []
        if (namespace, name) in RESERVED_SERVICES:
            problems.append(
                f"metadata.name: the Service {namespace}/{name} is reserved (it is the API server's own "
                "Service); give the CanaryApp another name"
            )
        own = set(own_hosts(namespace, name))
        for host in spec.hosts:
            if host.lower() not in own and not _matches(host.lower(), self.allowed_hosts, namespace):
                problems.append(
                    f"spec.hosts: {host!r} is not allowed: a CanaryApp may claim its own service names "
                    f"({', '.join(sorted(own))}) and what the reconciler's --allowed-hosts permits "
                    f"({_shown(self.allowed_hosts)}); ask its operator or remove the host"
                )
        for gateway in spec.gateways:
            reference = gateway_reference(namespace, gateway).lower()
            if reference != MESH_GATEWAY and not _matches(reference, self.allowed_gateways, namespace):
                problems.append(
                    f"spec.gateways: {gateway!r} is not allowed: the reconciler's --allowed-gateways "
                    f"permits {_shown(self.allowed_gateways)} besides the mesh; ask its operator or remove "
                    "the gateway"
                )
        return problems


def _matches(value: str, patterns: tuple[str, ...], namespace: str) -> bool:
    return any(
        fnmatch.fnmatchcase(value, pattern.replace(NAMESPACE_PLACEHOLDER, namespace).lower())
        for pattern in patterns
    )


def _shown(patterns: tuple[str, ...]) -> str:
    return ", ".join(patterns) if patterns else "nothing"
