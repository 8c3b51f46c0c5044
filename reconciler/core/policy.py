"""What a CanaryApp may make the reconciler do: pure predicates, set by whoever runs the reconciler.

The reconciler holds more power than the people who write CanaryApps (it may change Deployments, Services and
Istio routes in every namespace). Nothing a CanaryApp says may let its author use that power beyond their
own objects:

- **Ownership.** The reconciler creates objects and changes or deletes only the ones that carry an owner
  reference with this CanaryApp's UID (`is_ours`). A derived name that is already taken by anything else is a
  conflict, reported on the CanaryApp, and no step runs until it is resolved.
- **Reserved names.** Some names are never a CanaryApp's, whoever created what (`RESERVED_SERVICES`: the API
  server's own Service).
- **Routing.** Which gateways a CanaryApp may bind (Istio gateways, or the Gateways of Gateway API
  parentRefs) and which hosts it may claim (`RoutingPolicy`): by default the mesh only (no Gateway at all),
  and the CanaryApp's own service names only. The router a CanaryApp names no router gets is the
  operator's too (`--default-router`), and a query that could never see the canary's errors under its
  router is refused (`apex_service_filters`).
- **Metric endpoints.** Which URLs the reconciler may query for a CanaryApp (`MetricsPolicy`): by default
  Istio's Prometheus add-on only. A URL outside it is never contacted, nor is a redirect to one followed; a
  CanaryApp whose own Service would be one of those endpoints is refused (it would receive the other
  CanaryApps' queries and credentials). The command lines (backtest, dry run) apply the same policy.
- **`{namespace}` in a pattern** stands for one namespace only: see `namespace_bounded`.
"""

from __future__ import annotations

import fnmatch
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Set
from dataclasses import dataclass

from reconciler.core import templates
from reconciler.core.model import CanaryAppSpec, CanaryAppStatus, router_field_problems
from reconciler.core.names import Router, baseline_name, canary_name, primary_name
from reconciler.core.routes import gateway_refs
from reconciler.core.text import shown_url

MESH_GATEWAY = "mesh"
# (namespace, Service name) pairs that no CanaryApp may take as its apex Service.
RESERVED_SERVICES = frozenset({("default", "kubernetes")})
NAMESPACE_PLACEHOLDER = "{namespace}"
# Characters no namespace name has (DNS labels: a-z, 0-9, "-"), which end it inside a host or a reference.
_NAMESPACE_SEPARATORS = frozenset("./")
_GLOB_CHARACTERS = frozenset("*?[")


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


def namespace_bounded(pattern: str) -> bool:
    """Whether `{namespace}` in the glob `pattern` (a host, or a `<namespace>/<gateway>` reference) can stand
    for the CanaryApp's namespace only, never for a longer one that starts or ends the same way.

    Without a bound, namespace `a` would match what belongs to namespace `a-b`: `{namespace}-*.example.com`
    becomes `a-*.example.com`, which matches `a-b-web.example.com`; `istio-system/{namespace}-*` matches
    the gateway `istio-system/a-b-public`. So in a pattern with a glob character (`*`, `?`, `[`), each
    `{namespace}` must be a whole label or segment (between the pattern's start or end, `.` and `/`, which no
    namespace name contains), and on one side of it up to the pattern's end there may be no glob character
    (`*.{namespace}.example.com` and `{namespace}/*` qualify; `*.{namespace}.*` does not, as its `*`s also
    match `x.a.b.y` for namespace `b`). A pattern without a glob character matches one value per namespace
    and is always bounded. An unbounded pattern allows nothing.
    """
    pieces = pattern.split(NAMESPACE_PLACEHOLDER)
    if len(pieces) == 1 or not _GLOB_CHARACTERS.intersection("".join(pieces)):
        return True
    last = len(pieces) - 2
    for index in range(last + 1):
        before, after = pieces[index], pieces[index + 1]
        whole = (before[-1:] in _NAMESPACE_SEPARATORS if before else index == 0) and (
            after[:1] in _NAMESPACE_SEPARATORS if after else index == last
        )
        left, right = "".join(pieces[: index + 1]), "".join(pieces[index + 1 :])
        anchored = not _GLOB_CHARACTERS.intersection(left) or not _GLOB_CHARACTERS.intersection(right)
        if not (whole and anchored):
            return False
    return True


@dataclass(frozen=True)
class RoutingPolicy:
    """Set by the operator of the reconciler (`--allowed-gateways`, `--allowed-hosts`).

    Patterns are shell-style globs (`*.example.com`, `istio-system/*`); `{namespace}` stands for the
    CanaryApp's namespace (`{namespace}/*`: any gateway in the CanaryApp's own namespace), and only for it: a
    pattern where it could also stand for a longer namespace (`{namespace}-*.example.com`) allows nothing
    (`namespace_bounded`). The mesh gateway and the CanaryApp's own service names are always allowed.
    """

    allowed_gateways: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    default_router: Router = Router.ISTIO

    def routed(self, spec: CanaryAppSpec) -> CanaryAppSpec:
        """`spec` with the router in effect written in (its own, else `default_router`)."""
        return spec.with_router(self.default_router)

    def violations(
        self, namespace: str, name: str, spec: CanaryAppSpec, status: CanaryAppStatus | None = None
    ) -> list[str]:
        """Every way `spec` (routed: its router resolved) asks for more than this policy allows, each naming
        the field and the fix; with the `status`, a router switch the stack cannot make now."""
        router = spec.effective_router
        problems = router_field_problems(spec, router)
        if status is not None:
            problems.extend(router_switch_problems(router, status))
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
        for parent in gateway_refs(namespace, spec.parent_refs):
            reference = f"{parent.namespace}/{parent.name}".lower()
            if not _matches(reference, self.allowed_gateways, namespace):
                problems.append(
                    f"spec.parentRefs: Gateway {parent.namespace}/{parent.name} is not allowed: the "
                    f"reconciler's --allowed-gateways permits {_shown(self.allowed_gateways)}; ask its "
                    "operator or name another Gateway"
                )
        if router == Router.GATEWAY_API:
            problems.extend(apex_service_filters(namespace, name, spec))
        return problems


def router_switch_problems(router: Router, status: CanaryAppStatus) -> list[str]:
    """A change of router while a canary carries traffic is refused: the new router's objects would start at
    that weight with no Gateway having accepted them, and the old ones would be deleted under traffic. With no
    traffic split (a steady CanaryApp, or a canary still at weight 0) the next step declares the new router's
    objects and deletes the old router's."""
    applied = status.applied_router
    if applied is None or applied == router or not status.canary_weight:
        return []
    return [
        f"spec.router: the canary {status.canary_image or status.canary_revision} carries "
        f"{status.canary_weight}% of the traffic through the {applied} router; set spec.router back to "
        f"{applied} until the rollout ends (or abort it: kubectl canaryapp abort), then change it to {router}"
    ]


# A label matcher on the Service a request was routed to, as Istio's stats name it.
_SERVICE_MATCHER = re.compile(r'\b(destination_service_name|destination_service)\s*(=~?)\s*"([^"]*)"')


def apex_service_filters(namespace: str, name: str, spec: CanaryAppSpec) -> list[str]:
    """Under the gateway-api router a request to the canary is labelled with the backend Service the route
    chose, `<name>-canary`; a query that filters on the apex Service `<name>` would match nothing, and a
    check whose error query matches nothing is Clean although it could never have failed. So such a query is
    refused, with the label to use instead."""
    values = {
        "name": name,
        "namespace": namespace,
        "canary": canary_name(name),
        "primary": primary_name(name),
        "baseline": baseline_name(name),
        "interval": "1m",
        "window": "1m",
    }
    apex = {name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"}
    problems = []
    for field, query in (
        ("prometheusQuery", spec.prometheus_query),
        ("canaryTrafficQuery", spec.canary_traffic_query),
    ):
        for label, operator, value in _SERVICE_MATCHER.findall(templates.render(query or "", values)):
            if value in apex:
                problems.append(
                    f'spec.{field}: it filters on {label}{operator}"{value}", but under the gateway-api '
                    f"router a canary's requests carry {label}=\"{canary_name(name)}"
                    f'{"" if label == "destination_service_name" else f".{namespace}.svc.cluster.local"}" '
                    "(the backend Service the route chose), so it would match nothing and no check could "
                    f'fail; filter on destination_workload="{{{{ canary }}}}" instead (docs/routing.md)'
                )
    return problems


def _matches(value: str, patterns: tuple[str, ...], namespace: str) -> bool:
    return any(
        fnmatch.fnmatchcase(value, pattern.replace(NAMESPACE_PLACEHOLDER, namespace).lower())
        for pattern in patterns
        if namespace_bounded(pattern.lower())
    )


def _shown(patterns: tuple[str, ...], bounded: Callable[[str], bool] = namespace_bounded) -> str:
    """The patterns for a message, each one that allows nothing (an unbounded `{namespace}`) marked so."""
    ignored = " (ignored: {namespace} is not a whole name there)"
    marked = [pattern + ("" if bounded(pattern.lower()) else ignored) for pattern in patterns]
    return ", ".join(marked) if marked else "nothing"


def split_patterns(text: str) -> tuple[str, ...]:
    """A comma-separated list of patterns (a flag's value), without blanks."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


# Istio's Prometheus add-on (samples/addons/prometheus.yaml), as a CanaryApp in any namespace may spell it.
DEFAULT_METRIC_URLS = (
    "http://prometheus.istio-system:9090",
    "http://prometheus.istio-system.svc:9090",
    "http://prometheus.istio-system.svc.cluster.local:9090",
)


METRIC_URLS_FLAG = "--allowed-metric-urls"
METRIC_URLS_VARIABLE = "CANARYAPP_ALLOWED_METRIC_URLS"
METRIC_URLS_SETTING = f"{METRIC_URLS_FLAG} (or {METRIC_URLS_VARIABLE})"


@dataclass(frozen=True)
class MetricsPolicy:
    """Set by the operator of the reconciler (`--allowed-metric-urls`): the metric endpoints it may query.

    A pattern is a URL: the scheme must match exactly, the port too (the scheme's default port when none is
    given; `:*` allows any port), the host is a shell-style glob (`*.monitoring.svc`), `{namespace}` stands
    for the CanaryApp's namespace (in the host, bounded as `namespace_bounded` says), and the pattern's path
    is a prefix that ends at a `/` (`https://mimir.example.com/prometheus` allows `.../prometheus/tenant-a`
    but not `.../prometheus-other`). A path is compared as the server will read it: percent-encoded letters,
    digits and `-._~` decoded and dot segments resolved (`/prometheus/%2e%2e/admin` is `/admin`); a path that
    could hide a separator (a backslash, an encoded `/`, backslash or `%`, a `..;` segment) is never allowed.
    A URL with a user name or password in it is never allowed (credentials go in `prometheusSecretRef`).

    A CanaryApp gets a Service named after it, run by its author's pods; so a CanaryApp whose Service would be
    the host of an allowed pattern (`prometheus` in namespace `shop` with `http://prometheus.{namespace}.svc`)
    is refused: it would receive the queries, and the credentials, of every CanaryApp that uses that URL.
    """

    allowed_urls: tuple[str, ...] = DEFAULT_METRIC_URLS

    @classmethod
    def configured(cls, flag: str | None, environment: Mapping[str, str]) -> MetricsPolicy:
        """The policy as `canaryapp run` takes it: the flag's value, else the environment variable's, else
        the default (Istio's Prometheus add-on). An empty value allows nothing."""
        text = flag if flag is not None else environment.get(METRIC_URLS_VARIABLE)
        return cls() if text is None else cls(split_patterns(text))

    def allows(self, namespace: str, url: str) -> bool:
        target = _url_parts(url)
        return target is not None and any(
            _url_matches(target, pattern) for _, pattern in self._patterns(namespace)
        )

    def violations(self, namespace: str, name: str, spec: CanaryAppSpec) -> list[str]:
        """Every way CanaryApp `namespace`/`name` would make the reconciler query what it must not, each
        naming the field and the fix."""
        problems = []
        served = self._endpoints_served_by(namespace, name)
        if served:
            problems.append(
                f"metadata.name: the CanaryApp's Service {namespace}/{name} would be the metric endpoint of "
                f"{', '.join(map(repr, served))}, which the reconciler's {METRIC_URLS_FLAG} allows, and so "
                "would receive other CanaryApps' queries and credentials; rename the CanaryApp"
            )
        url = str(spec.prometheus_url)
        if not self.allows(namespace, url):
            problems.append(self._refusal(url))
        return problems

    def _refusal(self, url: str) -> str:
        shown = shown_url(url)
        target = _url_parts(url)
        if target is not None and target.has_credentials:
            return (
                f"spec.prometheusURL: {shown!r} carries a user name or password, which are never sent that "
                "way: remove them from the URL and put the credentials in a Secret (spec.prometheusSecretRef)"
            )
        return (
            f"spec.prometheusURL: {shown!r} is not allowed: the reconciler queries only what its "
            f"{METRIC_URLS_SETTING} permits ({_shown(self.allowed_urls, metric_url_bounded)}); use one of "
            "those, or ask its operator to allow this endpoint"
        )

    def _patterns(self, namespace: str) -> Iterator[tuple[str, _UrlParts]]:
        """Each allowed pattern that can stand for `namespace` alone, with `{namespace}` replaced, parsed."""
        for allowed in self.allowed_urls:
            if metric_url_bounded(allowed):
                pattern = _url_parts(allowed.replace(NAMESPACE_PLACEHOLDER, namespace), pattern=True)
                if pattern is not None:
                    yield allowed, pattern

    def _endpoints_served_by(self, namespace: str, name: str) -> list[str]:
        """The allowed patterns whose host the CanaryApp's own Service would be (by any of its names)."""
        own = [host.lower() for host in own_hosts(namespace, name)]
        return [
            allowed
            for allowed, pattern in self._patterns(namespace)
            if any(fnmatch.fnmatchcase(host, pattern.host) for host in own)
        ]


@dataclass(frozen=True)
class _UrlParts:
    scheme: str
    host: str
    port: int | None  # None: any port (a pattern's `:*`)
    path: str
    has_credentials: bool


# A target's host: a DNS name or an IP address, nothing a resolver or HTTP client might read another way.
_HOST = re.compile(r"[a-z0-9._-]+|[0-9a-f:.]+")
_PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")


def _url_parts(url: str, *, pattern: bool = False) -> _UrlParts | None:
    try:
        any_port = pattern and urllib.parse.urlsplit(url.strip()).netloc.endswith(":*")
        parsed = urllib.parse.urlsplit(url.strip().replace(":*", "", 1) if any_port else url.strip())
        port = parsed.port
    except ValueError:
        return None
    scheme = parsed.scheme.lower()
    host = (parsed.hostname or "").lower().rstrip(".")
    path = _normalized_path(parsed.path)
    if scheme not in {"http", "https"} or not host or path is None:
        return None
    if not pattern and _HOST.fullmatch(host) is None:
        return None
    return _UrlParts(
        scheme=scheme,
        host=host,
        port=None if any_port else port or (443 if scheme == "https" else 80),
        path=path.rstrip("/") + "/",
        has_credentials=parsed.username is not None or parsed.password is not None,
    )


def metric_url_bounded(pattern: str) -> bool:
    """Whether a metric URL pattern parses and `{namespace}` in its host is bounded (`namespace_bounded`):
    else it allows nothing."""
    parts = _url_parts(pattern, pattern=True)
    return parts is not None and namespace_bounded(parts.host)


def _decoded_if_unreserved(escape: re.Match[str]) -> str:
    character = chr(int(escape[1], 16))
    return character if character in _UNRESERVED else escape[0].upper()


def _normalized_path(path: str) -> str | None:
    """The path as a server reads it (RFC 3986 6.2.2): escapes of unreserved characters decoded, dot segments
    removed. None for a path that could mean something else to some server: a backslash, an encoded `/`, `\\`
    or `%` (decoded twice), or a dot segment with parameters (`..;`)."""
    decoded = _PERCENT_ESCAPE.sub(_decoded_if_unreserved, path)
    if "\\" in decoded or any(escape in decoded for escape in ("%2F", "%5C", "%25")):
        return None
    segments = decoded.split("/")
    if any(";" in segment and segment.split(";", 1)[0] in {".", ".."} for segment in segments):
        return None
    resolved: list[str] = []
    for segment in segments:
        if segment == "..":
            if len(resolved) > 1:
                resolved.pop()
        elif segment != ".":
            resolved.append(segment)
    if segments[-1] in {".", ".."}:
        resolved.append("")
    return "/".join(resolved) or "/"


def _url_matches(target: _UrlParts, pattern: _UrlParts) -> bool:
    return (
        not target.has_credentials
        and target.scheme == pattern.scheme
        and (pattern.port is None or target.port == pattern.port)
        and fnmatch.fnmatchcase(target.host, pattern.host)
        and target.path.startswith(pattern.path)
    )
