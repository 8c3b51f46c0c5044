"""The dry run: what the reconciler's next step for one CanaryApp would declare.

`pulumi preview --stack <namespace>.<name>` runs `stacks/__main__.py`, which calls `next_desired()`: the same
observation and `decide()` as the reconciler's next pass, read from the cluster, with Prometheus queried if a
check is due. The preview's diff against the stack's state is then exactly what that step would change.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.adapters.kube import KubeCluster, load_client_config
from reconciler.adapters.prometheus import PrometheusMetrics
from reconciler.decide import Decision, decide
from reconciler.desired import DesiredStack, desired_stack
from reconciler.errors import PermanentError
from reconciler.model import CanaryApp
from reconciler.reconcile import check_canary, observe, utc_now


@dataclass(frozen=True)
class NextStep:
    decision: Decision
    desired: DesiredStack


def split_stack_name(stack: str) -> tuple[str, str]:
    namespace, dot, name = stack.partition(".")
    if not dot or not name:
        raise PermanentError(
            f"stack {stack!r} does not name a CanaryApp: "
            "use `--stack <namespace>.<name>`, e.g. default.canaryapp-sample"
        )
    return namespace, name


def next_step(stack: str, kubeconfig: str | None = None) -> NextStep:
    namespace, name = split_stack_name(stack)
    cluster = KubeCluster(load_client_config(kubeconfig))
    raw = cluster.get_canary_app(namespace, name)
    if raw is None:
        raise PermanentError(
            f"CanaryApp {namespace}/{name} does not exist: check the stack name and KUBECONFIG"
        )
    app = CanaryApp.model_validate(raw)
    metrics = PrometheusMetrics()
    try:
        now = utc_now()
        observations = observe(
            app, cluster, lambda a, at: check_canary(metrics, a, a.status, at, cluster), now
        )
    finally:
        metrics.close()
    decision = decide(app.spec, app.status, observations, now)
    return NextStep(decision, desired_stack(name, namespace, app.metadata.uid, app.spec, decision.status))
