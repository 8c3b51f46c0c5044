"""The dry run: what the reconciler's next step for one CanaryApp would declare.

`pulumi preview --stack <namespace>.<name>` runs `stacks/__main__.py`, which calls `next_step()`: the same
observation and `decide()` as the reconciler's next pass, read from the cluster, with Prometheus queried if a
check is due. The preview's diff against the stack's state is then exactly what that step would change.

Whoever runs the preview reads the CanaryApp's Secret with their own rights, so the dry run queries nothing
the reconciler would not: a CanaryApp the reconciler's MetricsPolicy refuses is an error, and a check goes
through the reconciler's own `check_canary` (the Secret's label and grant) and a client bound by the policy.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from reconciler.adapters.kube import KubeCluster, load_client_config
from reconciler.adapters.prometheus import PrometheusMetrics
from reconciler.core.decisions import Decision
from reconciler.core.desired import DesiredStack, desired_stack
from reconciler.core.errors import PermanentError
from reconciler.core.machine import decide
from reconciler.core.model import DEFAULT_ROUTER, CanaryApp
from reconciler.core.policy import METRIC_URLS_VARIABLE, MetricsPolicy
from reconciler.core.ports import Cluster
from reconciler.runtime.observe import check_canary, observe
from reconciler.runtime.reconcile import utc_now


@dataclass(frozen=True)
class NextStep:
    decision: Decision
    desired: DesiredStack


def split_stack_name(stack: str) -> tuple[str, str]:
    namespace, dot, name = stack.partition(".")
    if not (namespace and dot and name):
        raise PermanentError(
            f"stack {stack!r} does not name a CanaryApp: "
            "use `--stack <namespace>.<name>`, e.g. default.canaryapp-sample"
        )
    return namespace, name


def next_step(stack: str, metrics_policy: MetricsPolicy, kubeconfig: str | None = None) -> NextStep:
    namespace, name = split_stack_name(stack)
    cluster = KubeCluster(load_client_config(kubeconfig))
    return next_step_of(cluster, namespace, name, metrics_policy, utc_now())


def next_step_of(
    cluster: Cluster, namespace: str, name: str, metrics_policy: MetricsPolicy, now: datetime.datetime
) -> NextStep:
    raw = cluster.get_canary_app(namespace, name)
    if raw is None:
        raise PermanentError(
            f"CanaryApp {namespace}/{name} does not exist: check the stack name and KUBECONFIG"
        )
    app = CanaryApp.model_validate(raw)
    # The router in effect: the spec's, else the one the reconciler applied last (its --default-router then).
    app = app.model_copy(update={"spec": app.spec.with_router(app.status.router or DEFAULT_ROUTER)})
    refused = metrics_policy.violations(namespace, name, app.spec)
    if refused:
        raise PermanentError(
            f"CanaryApp {namespace}/{name}: the reconciler refuses it: {'; '.join(refused)}. The dry run "
            f"applies the reconciler's policy: set {METRIC_URLS_VARIABLE} as the reconciler has it"
        )
    metrics = PrometheusMetrics(metrics_policy)
    try:
        observations = observe(
            app, cluster, lambda a, at: check_canary(metrics, a, a.status, at, cluster), now
        )
    finally:
        metrics.close()
    decision = decide(app.spec, app.status, observations, now)
    return NextStep(decision, desired_stack(name, namespace, app.metadata.uid, app.spec, decision.status))
