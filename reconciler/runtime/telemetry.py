"""The reconciler's own metrics (prometheus-client), served on /metrics by `canaryapp run`."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from reconciler.core.decisions import AbandonCanary, CompletePromotion, Decision, Rollback, StartCanary
from reconciler.core.model import Phase

# The decisions that end a rollout, and the `result` label each gives it.
_ROLLOUT_RESULTS: tuple[tuple[type[Decision], str], ...] = (
    (CompletePromotion, "promoted"),
    (Rollback, "rolled_back"),
    (AbandonCanary, "abandoned"),
)


class Telemetry:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rollouts_started = Counter(
            "canaryapp_rollouts_started", "Canary rollouts started", registry=self.registry
        )
        self.rollouts_finished = Counter(
            "canaryapp_rollouts_finished",
            "Canary rollouts finished, by result",
            ["result"],
            registry=self.registry,
        )
        self.canary_weight = Gauge(
            "canaryapp_canary_weight",
            "Percent of traffic sent to the canary",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.phase = Gauge(
            "canaryapp_phase",
            "1 for the CanaryApp's current phase",
            ["namespace", "name", "phase"],
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "canaryapp_step_duration_seconds",
            "Duration of Pulumi steps (stack.up, destroy)",
            ["step"],
            buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120),
            registry=self.registry,
        )
        self.checks = Counter(
            "canaryapp_checks", "Metric checks, by outcome", ["outcome"], registry=self.registry
        )
        self.reconcile_errors = Counter(
            "canaryapp_reconcile_errors",
            "Reconcile passes that failed (any error: API, Pulumi step, conflict)",
            registry=self.registry,
        )

    def decided(self, namespace: str, name: str, decision: Decision) -> None:
        if isinstance(decision, StartCanary):
            self.rollouts_started.inc()
        for ending, result in _ROLLOUT_RESULTS:
            if isinstance(decision, ending):
                self.rollouts_finished.labels(result).inc()
        self.canary_weight.labels(namespace, name).set(decision.status.canary_weight)
        for phase in Phase:
            self.phase.labels(namespace, name, phase.value).set(1 if decision.status.phase == phase else 0)

    def step_finished(self, step: str, seconds: float) -> None:
        self.step_seconds.labels(step).observe(seconds)

    def check_finished(self, outcome: str) -> None:
        self.checks.labels(str(outcome)).inc()

    def reconcile_failed(self) -> None:
        self.reconcile_errors.inc()

    def forget(self, namespace: str, name: str) -> None:
        series: list[tuple[Gauge, tuple[str, ...]]] = [(self.canary_weight, (namespace, name))]
        series += [(self.phase, (namespace, name, phase.value)) for phase in Phase]
        for gauge, label_values in series:
            with contextlib.suppress(KeyError):
                gauge.remove(*label_values)
