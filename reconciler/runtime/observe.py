"""What a pass observes before `decide()`: the Deployments (the baseline's while one runs), the HTTPRoute of
a gateway-api canary carrying weight (whether its Gateways accepted it), the metrics when a check is due and
the weight counts, and the rollout slots when the CanaryApp is about to start one. Every read comes from a
port: Deployments and CanaryApps from the caches, the HTTPRoute and the metrics Secret by name (read live, so
an acceptance or a rotated credential counts at once)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.core import analysis, comparison, reasons
from reconciler.core.analysis import CheckResult, QueryResult
from reconciler.core.decisions import Observations, RolloutSlots
from reconciler.core.desired import baseline_runs
from reconciler.core.endpoints import EndpointError, MetricsEndpoint, endpoint_for
from reconciler.core.machine import about_to_start, baseline_ready, wants_check
from reconciler.core.metrics import TemplateError, TemplateRef
from reconciler.core.model import Action, CanaryApp, CanaryAppStatus, CheckOutcome, Phase
from reconciler.core.names import Router, baseline_name, canary_name, primary_name
from reconciler.core.ports import (
    CanaryAppCache,
    ClusterReader,
    MetricsReader,
    MetricTemplateReader,
    RangeResult,
)
from reconciler.core.routes import RouteState, declared_weights, gateway_refs, route_state
from reconciler.runtime.telemetry import Telemetry

ACTIVE_PHASES = frozenset({Phase.PROGRESSING.value, Phase.PROMOTING.value})


def observe(
    app: CanaryApp,
    cluster: ClusterReader,
    check: Callable[[CanaryApp, datetime.datetime], CheckResult],
    now: datetime.datetime,
    slots: Callable[[CanaryApp], RolloutSlots] | None = None,
) -> Observations:
    """Reads what `decide()` needs: the Deployments and, only when a check is due, the metrics."""
    namespace, name, status = app.metadata.namespace, app.metadata.name, app.status
    route = observe_route(app, cluster)
    baseline = (
        cluster.deployment_state(namespace, baseline_name(name)) if baseline_runs(app.spec, status) else None
    )
    # A check compares the canary with a ready baseline: none is asked for while the baseline is not.
    counts = (route is None or (route.accepted and status.route_pending_since is None)) and baseline_ready(
        app.spec, status, baseline
    )
    return Observations(
        generation=app.metadata.generation,
        primary=cluster.deployment_state(namespace, primary_name(name)),
        canary=cluster.deployment_state(namespace, canary_name(name)) if status.canary_image else None,
        baseline=baseline,
        check=check(app, now) if counts and wants_check(app.spec, status, now) else None,
        route=route,
        requests={
            action: token for action in Action if (token := app.metadata.annotations.get(action.annotation))
        },
        slots=slots(app) if slots is not None and about_to_start(app.spec, status) else None,
    )


def observe_route(app: CanaryApp, cluster: ClusterReader) -> RouteState | None:
    """The HTTPRoute's state for the weight the status declares, when there is one to confirm: a gateway-api
    CanaryApp whose canary carries weight (None otherwise: Istio's router confirms nothing)."""
    spec, status = app.spec, app.status
    if (
        spec.effective_router != Router.GATEWAY_API
        or status.phase != Phase.PROGRESSING
        or not status.canary_weight
    ):
        return None
    namespace, name = app.metadata.namespace, app.metadata.name
    weights = declared_weights(status.canary_weight, baseline_runs(spec, status))
    return route_state(
        cluster.http_route(namespace, name), gateway_refs(namespace, spec.parent_refs), weights
    )


def check_canary(
    metrics: MetricsReader,
    app: CanaryApp,
    status: CanaryAppStatus,
    now: datetime.datetime,
    cluster: ClusterReader,
) -> CheckResult:
    """One check: the error query and the traffic query, rendered for `now`, answered and assessed, then the
    metrics of spec.analysis (their templates read, their queries asked for the canary and the baseline, the
    answers judged; comparison.py).

    Instant queries are evaluated at `now` to the second, the time the check's record carries, and a
    continuous metric's range ends there: a backtest that replays the record asks Prometheus about exactly
    the same instants (and so sees exactly the same samples). The endpoint's Secret (prometheusSecretRef) and
    the metric templates are read at every check, so a rotated credential or a fixed template is used at
    once; a missing or unusable Secret is a failed query, never a query sent without it.
    """
    spec, namespace = app.spec, app.metadata.namespace
    variables = analysis.query_variables(app.metadata.name, namespace, spec, status, now)
    queries = analysis.render_queries(spec, variables)
    reference = spec.prometheus_secret_ref
    try:
        secret = cluster.read_secret(namespace, reference.name) if reference is not None else None
        endpoint = endpoint_for(spec, namespace, app.metadata.name, secret)
    except EndpointError as error:
        return CheckResult(CheckOutcome.QUERY_FAILED, str(error), query=queries.errors or "")
    at = now.replace(microsecond=0)
    errors = (
        metrics.query(endpoint, queries.errors, at) if queries.errors else QueryResult(CheckOutcome.CLEAN)
    )
    traffic = metrics.query(endpoint, queries.traffic, at) if queries.traffic is not None else None
    legacy = analysis.assess(queries, errors, traffic, spec.min_canary_requests)
    if not spec.metrics:
        return legacy
    found = {ref: _template(cluster, namespace, ref) for ref in comparison.template_refs(spec.analysis)}
    plan = comparison.plan(spec, variables, found)
    if legacy.outcome == CheckOutcome.QUERY_FAILED:
        # The endpoint failed already: the check is a failed query (or a template problem) whatever the
        # metrics would say, and an endpoint that times out costs no more deadlines.
        return comparison.assess(legacy, comparison.Compared(plan))
    answers = PrometheusAnswers(metrics, endpoint, comparison.window(spec, status, now))
    compared = comparison.compare(plan, answers, comparison.judge_config(spec.analysis))
    return comparison.assess(legacy, compared)


def _template(cluster: MetricTemplateReader, namespace: str, ref: TemplateRef) -> comparison.TemplateAnswer:
    try:
        return cluster.metric_template(namespace, ref)
    except TemplateError as error:
        return error


@dataclass(frozen=True)
class PrometheusAnswers:
    """The metrics source as one check asks it (comparison.Answers): ranges over the check's window, instant
    queries at its end."""

    metrics: MetricsReader
    endpoint: MetricsEndpoint
    window: comparison.Window

    def samples(self, query: str) -> RangeResult:
        window = self.window
        return self.metrics.query_range(self.endpoint, query, window.start, window.end, window.step_seconds)

    def count(self, query: str) -> QueryResult:
        return self.metrics.query(self.endpoint, query, self.window.end)


def rollout_slots(app: CanaryApp, items: list[dict[str, Any]], limit: int) -> RolloutSlots:
    """The slots `app` may take among `items` (every CanaryApp this reconciler sees): how many hold one, and
    how many queued before it."""
    others = [item for item in items if _key(item) != app.key]
    active = sum(1 for item in others if _holds_slot(item))
    mine = (app.status.queued_at or "~", app.key)  # "~" sorts after every timestamp
    waiting_before = sum(
        1
        for item in others
        if (queued_at := (item.get("status") or {}).get("queuedAt")) and (queued_at, _key(item)) < mine
    )
    return RolloutSlots(limit=limit, active=active, waiting_before=waiting_before)


def _key(item: dict[str, Any]) -> str:
    return f"{item['metadata']['namespace']}/{item['metadata']['name']}"


def _holds_slot(item: dict[str, Any]) -> bool:
    """Whether a CanaryApp's rollout counts toward --max-concurrent-rollouts: it is progressing or promoting,
    not paused (the user holds it), and its current spec is not invalid (the reconciler acts on it not at
    all). A paused or invalid rollout that continues later continues even when the slots are full then: it
    is under way already."""
    status = item.get("status") or {}
    if status.get("phase") not in ACTIVE_PHASES:
        return False
    if status.get("invalidGeneration") is not None and status["invalidGeneration"] == item["metadata"].get(
        "generation"
    ):
        return False
    paused = next(
        (c for c in status.get("conditions") or [] if c.get("type") == reasons.CONDITION_PAUSED), None
    )
    return not (paused is not None and paused.get("status") == "True")


class Observer:
    """A pass's observation of one CanaryApp, from the caches and the metrics source."""

    def __init__(
        self,
        apps: CanaryAppCache,
        cluster: ClusterReader,
        metrics: MetricsReader,
        telemetry: Telemetry,
        max_concurrent_rollouts: int | None,
    ) -> None:
        self.apps = apps
        self.cluster = cluster
        self.metrics = metrics
        self.telemetry = telemetry
        self.max_concurrent_rollouts = max_concurrent_rollouts

    def observe(self, app: CanaryApp, now: datetime.datetime) -> Observations:
        return observe(
            app, self.cluster, self._check, now, self.slots if self.max_concurrent_rollouts else None
        )

    def slots(self, app: CanaryApp) -> RolloutSlots:
        """Rollout slots from the cached CanaryApps (restart-proof: only what the cluster stores counts)."""
        return rollout_slots(app, self.apps.canary_apps(), self.max_concurrent_rollouts or 0)

    def _check(self, app: CanaryApp, now: datetime.datetime) -> CheckResult:
        result = check_canary(self.metrics, app, app.status, now, self.cluster)
        self.telemetry.check_finished(result.outcome)
        return result
