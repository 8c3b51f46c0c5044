"""The I/O edges of the reconciler as small Protocols, split by who needs them: the loop a source of events
(CanaryAppSource), a pass its reads (CanaryAppCache, ClusterReader, MetricsReader) and its writes
(CanaryAppWriter, StackRunner, EventSink, Notifier). One real adapter each lives in `adapters/` (the cache
in `runtime/cache.py`); tests use in-memory fakes. The pure core (`machine.py`, `desired.py`) needs none."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.core.analysis import QueryResult
from reconciler.core.desired import DesiredStack
from reconciler.core.endpoints import MetricsEndpoint, SecretData
from reconciler.core.metrics import MetricTemplateSpec, TemplateRef
from reconciler.core.names import ObjectRef
from reconciler.core.readiness import DeploymentState


@dataclass(frozen=True)
class StepReport:
    """What one `stack.up` or `destroy` did."""

    changes: dict[str, int]
    seconds: float


class StackRunner(Protocol):
    def apply(self, desired: DesiredStack) -> StepReport: ...

    def destroy(self, namespace: str, name: str, keep: Collection[tuple[str, str]] = ()) -> StepReport:
        """Deletes the stack's objects and the stack. Objects named in `keep` ((kind, name): not this
        CanaryApp's any more) are left in the cluster and only dropped from the state."""
        ...


class MetricsSource(Protocol):
    def query(
        self, endpoint: MetricsEndpoint, query: str, at: datetime.datetime | None = None
    ) -> QueryResult: ...


# Prometheus refuses a range query of more than 11,000 points per series: the adapter never asks for more,
# and a check samples a longer window at a coarser step instead (comparison.range_step).
MAX_RANGE_POINTS = 11_000


@dataclass(frozen=True)
class RangeResult:
    """The answer of a range query (query_range): each series' finite and non-finite values, as numbers, in
    time order; `error` names why there is no usable answer (None: there is one, possibly empty)."""

    values: tuple[tuple[float, ...], ...] = ()
    error: str | None = None

    def samples(self) -> tuple[float, ...]:
        """Every value of every series, pooled (the judge's samples of one side)."""
        return tuple(value for series in self.values for value in series)


class RangeSource(Protocol):
    def query_range(
        self,
        endpoint: MetricsEndpoint,
        query: str,
        start: datetime.datetime,
        end: datetime.datetime,
        step_seconds: int,
    ) -> RangeResult:
        """The query evaluated from `start` to `end` every `step_seconds` (Prometheus' /api/v1/query_range),
        bounded in time and in the number of points; never raises for an answer it cannot use."""
        ...


class MetricsReader(MetricsSource, RangeSource, Protocol):
    """What a check asks the metrics source: instant queries (the legacy query, the traffic guard, counts)
    and range queries (a continuous metric's samples)."""


class MetricTemplateReader(Protocol):
    def metric_template(self, namespace: str, ref: TemplateRef) -> MetricTemplateSpec | None:
        """The spec of the MetricTemplate `ref.name` in `namespace`, or of the ClusterMetricTemplate
        `ref.name` (ref.kind); None when it does not exist. Raises TemplateError when it exists but its
        spec does not parse (its message names the object and the field)."""
        ...


class SecretReader(Protocol):
    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        """One Secret by name (None: it does not exist). Never lists Secrets."""
        ...


# A watch event's type (ADDED, MODIFIED, DELETED) and the object, as JSON.
EventHandler = Callable[[str, dict[str, Any]], None]


class CanaryAppSource(Protocol):
    """What the loop needs: the CanaryApps this reconciler sees, listed and then watched, and the changes of
    their Deployments."""

    def list_canary_apps(self) -> tuple[list[dict[str, Any]], str]:
        """Every CanaryApp, with the resourceVersion of the list's snapshot."""
        ...

    def watch_canary_apps(
        self, resource_version: str, on_event: EventHandler, until: Callable[[], bool]
    ) -> None:
        """Streams each change after `resource_version` to `on_event` until `until()` is true or the API
        server answers 410 Gone (the caller then lists again); any other failure raises."""
        ...

    def follow_deployments(self, stop: threading.Event, on_change: Callable[[str, str], None]) -> None:
        """Keeps the Deployment readings current from a watch until `stop`, calling `on_change(namespace,
        canaryapp)` when one of a CanaryApp's Deployments changes readiness or image."""
        ...


class CanaryAppReader(Protocol):
    def get_canary_app(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class CanaryAppCache(CanaryAppReader, Protocol):
    """What a pass reads of CanaryApps: the informer's cache, never the API server."""

    def canary_apps(self) -> list[dict[str, Any]]:
        """Every cached CanaryApp (rollout slots are counted from them)."""
        ...


class ClusterReader(SecretReader, MetricTemplateReader, Protocol):
    """What a pass reads of everything else: Deployments (from the adapter's cache when it holds them) and the
    reads by name that stay live (Secrets, metric templates, namespaces, grants, owners, a server-side dry
    run)."""

    def deployment_state(self, namespace: str, name: str) -> DeploymentState | None: ...

    def http_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Gateway API HTTPRoute as the API server serves it (JSON; None: it does not exist), by name."""
        ...

    def owner_uids(self, namespace: str, ref: ObjectRef) -> frozenset[str] | None:
        """The UIDs in the object's owner references; None when it does not exist."""
        ...

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        """The labels of a namespace (None: it does not exist). A read by name, never a list."""
        ...

    def object_annotations(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        """The annotations of a ServiceAccount or Secret (None: it does not exist), by name."""
        ...

    def pod_security_warnings(self, namespace: str, deployment: dict[str, Any]) -> list[str]:
        """The warnings the API server answers to a server-side dry run creating `deployment` (nothing is
        stored)."""
        ...


class Cluster(CanaryAppReader, ClusterReader, Protocol):
    """Everything a one-off command (dry run, backtest) reads, live."""


class CanaryAppWriter(Protocol):
    """What a pass writes to its CanaryApp, on the API server. Each answers the object as stored."""

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]: ...

    def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]: ...


class Notifier(Protocol):
    def notify(self, event: dict[str, Any]) -> None:
        """Hands a rollout event to the receiver; must never block or raise."""
        ...


class EventSink(Protocol):
    def emit(self, app: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None: ...
