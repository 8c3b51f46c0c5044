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
- **Metric endpoints.** Which URLs the reconciler may query for a CanaryApp (`MetricsPolicy`): by default
  Istio's Prometheus add-on only. A URL outside it is never contacted, nor is a redirect to one followed.
"""

from __future__ import annotations

import fnmatch
import urllib.parse
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


# Istio's Prometheus add-on (samples/addons/prometheus.yaml), as a CanaryApp in any namespace may spell it.
DEFAULT_METRIC_URLS = (
    "http://prometheus.istio-system:9090",
    "http://prometheus.istio-system.svc:9090",
    "http://prometheus.istio-system.svc.cluster.local:9090",
)


@dataclass(frozen=True)
class MetricsPolicy:
    """Set by the operator of the reconciler (`--allowed-metric-urls`): the metric endpoints it may query.

    A pattern is a URL: the scheme must match exactly, the port too (the scheme's default port when none is
    given; `:*` allows any port), the host is a shell-style glob (`*.monitoring.svc`), `{namespace}` stands
    for the CanaryApp's namespace, and the pattern's path is a prefix that ends at a `/`
    (`https://mimir.example.com/prometheus` allows `.../prometheus/tenant-a` but not `.../prometheus-other`).
    A URL with a user name or password in it is never allowed (credentials go in `prometheusSecretRef`).
    """

    allowed_urls: tuple[str, ...] = DEFAULT_METRIC_URLS

    def allows(self, namespace: str, url: str) -> bool:
        target = _url_parts(url)
        if target is None:
            return False
        return any(
            (pattern := _url_parts(allowed.replace(NAMESPACE_PLACEHOLDER, namespace), pattern=True))
            is not None
            and _url_matches(target, pattern)
            for allowed in self.allowed_urls
        )

    def violations(self, namespace: str, spec: CanaryAppSpec) -> list[str]:
        url = str(spec.prometheus_url)
        if self.allows(namespace, url):
            return []
        return [
            f"spec.prometheusURL: {url!r} is not allowed: the reconciler queries only what its "
            f"--allowed-metric-urls permits ({_shown(self.allowed_urls)}); use one of those, or ask its "
            "operator to allow this endpoint"
        ]


@dataclass(frozen=True)
class _UrlParts:
    scheme: str
    host: str
    port: int | None  # None: any port (a pattern's `:*`)
    path: str
    has_credentials: bool


def _url_parts(url: str, *, pattern: bool = False) -> _UrlParts | None:
    any_port = pattern and urllib.parse.urlsplit(url.strip()).netloc.endswith(":*")
    try:
        parsed = urllib.parse.urlsplit(url.strip().replace(":*", "", 1) if any_port else url.strip())
        port = parsed.port
    except ValueError:
        return None
    scheme = parsed.scheme.lower()
    if scheme not in {"http", "https"} or not parsed.hostname:
        return None
    return _UrlParts(
        scheme=scheme,
        host=parsed.hostname.lower().rstrip("."),
        port=None if any_port else port or (443 if scheme == "https" else 80),
        path=parsed.path.rstrip("/") + "/",
        has_credentials=parsed.username is not None or parsed.password is not None,
    )


def _url_matches(target: _UrlParts, pattern: _UrlParts) -> bool:
    return (
        not target.has_credentials
        and target.scheme == pattern.scheme
        and (pattern.port is None or target.port == pattern.port)
        and fnmatch.fnmatchcase(target.host, pattern.host)
        and target.path.startswith(pattern.path)
    )
