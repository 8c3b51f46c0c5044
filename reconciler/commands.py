"""What the two command lines share (`canaryapp` and the kubectl plugin `kubectl-canaryapp`): the backtest
command and reading a CanaryApp with errors a person can act on.

The backtest is a deputy too: whoever runs it (often an administrator) reads the CanaryApp's Secret with
their own rights and sends it to the CanaryApp's URL. So it queries nothing the reconciler would not: the
reconciler's MetricsPolicy (`--allowed-metric-urls`, else CANARYAPP_ALLOWED_METRIC_URLS, else the default)
and its Secret rules (the label and this CanaryApp's grant) are checked before any request. Only a URL the
person gives themselves (`--prometheus-url`) is theirs to trust.
"""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Mapping

import kubernetes
from kubernetes.client.exceptions import ApiException

from reconciler.adapters.kube import KubeCluster
from reconciler.adapters.prometheus import PrometheusMetrics
from reconciler.core import backtest
from reconciler.core.analysis import CheckResult
from reconciler.core.endpoints import EndpointError, endpoint_for
from reconciler.core.model import GROUP, PLURAL, VERSION, CanaryApp, CanaryAppStatus
from reconciler.core.policy import DEFAULT_METRIC_URLS, METRIC_URLS_FLAG, METRIC_URLS_VARIABLE, MetricsPolicy
from reconciler.core.ports import Cluster
from reconciler.core.text import printable
from reconciler.runtime.observe import check_canary
from reconciler.runtime.reconcile import utc_now


class CommandError(Exception):
    """A problem to print (it names the object and what to do) with exit code 1 — never a traceback."""


def read_canary_app(api: kubernetes.client.ApiClient, namespace: str, name: str) -> CanaryApp:
    try:
        raw = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as error:
        raise api_problem(error, f"read CanaryApp {namespace}/{name}") from error
    return CanaryApp.model_validate(raw)


def api_problem(error: ApiException, doing: str) -> CommandError:
    if error.status == 404:
        return CommandError(f"could not {doing}: not found (check the name, --namespace and --context)")
    if error.status == 403:
        return CommandError(
            f"could not {doing}: forbidden, your account lacks the permission ({error.reason})"
        )
    return CommandError(f"could not {doing}: HTTP {error.status} {error.reason}")


def add_backtest_window(parser: argparse.ArgumentParser) -> None:
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--last", default="1h", help="replay the last DURATION (1h, 30m, 2h30m; default 1h)")
    window.add_argument("--from", dest="start", help="start time, ISO 8601 (e.g. 2026-11-28T10:00:00Z)")
    parser.add_argument("--to", dest="end", help="end time with --from, ISO 8601 (default: now)")
    parser.add_argument(
        "--prometheus-url",
        help="query this Prometheus instead of spec.prometheusURL (e.g. a port-forward); yours to trust: the "
        "CanaryApp's Secret goes there",
    )
    parser.add_argument(
        METRIC_URLS_FLAG,
        help="the reconciler's URL patterns, which spec.prometheusURL must match, as `canaryapp run` takes "
        f"them (default: ${METRIC_URLS_VARIABLE}, else Istio's Prometheus add-on: "
        f"{', '.join(DEFAULT_METRIC_URLS)})",
    )


def run_backtest(
    api: kubernetes.client.ApiClient, namespace: str, name: str, args: argparse.Namespace
) -> int:
    """Prints the backtest. Exit code: 0 if it would have promoted, 1 if rolled back, 3 if neither."""
    return backtest_canary_app(KubeCluster(api), namespace, name, args, os.environ)


def backtest_canary_app(
    cluster: Cluster, namespace: str, name: str, args: argparse.Namespace, environment: Mapping[str, str]
) -> int:
    """`run_backtest` on `cluster`, with the policy `args` or `environment` set."""
    try:
        end = _moment(args.end) if args.end else utc_now()
        start = _moment(args.start) if args.start else end - backtest.parse_duration(args.last)
    except ValueError as error:
        raise SystemExit(f"backtest: {error}") from error
    if start >= end:
        raise SystemExit("backtest: --from must be before --to")
    raw = cluster.get_canary_app(namespace, name)
    if raw is None:
        raise SystemExit(f"backtest: CanaryApp {namespace}/{name} not found (check the kubeconfig)")
    app = CanaryApp.model_validate(raw)
    policy = MetricsPolicy.configured(args.allowed_metric_urls, environment)
    _refuse_unless_admitted(app, policy, cluster)
    if args.prometheus_url:
        app = app.model_copy(
            update={"spec": app.spec.model_copy(update={"prometheus_url": args.prometheus_url})}
        )
        policy = MetricsPolicy((*policy.allowed_urls, args.prometheus_url))
    metrics = PrometheusMetrics(policy)

    def check(a: CanaryApp, status: CanaryAppStatus, at: datetime.datetime) -> CheckResult:
        return check_canary(metrics, a, status, at, cluster)

    try:
        result = backtest.replay(app, check, start, end)
        rejudged = backtest.rejudge(app, check)
    finally:
        metrics.close()
    print(printable(backtest.render(app, result, start, end, rejudged)))
    return 0 if result.promoted else 1 if result.rolled_back else 3


def _refuse_unless_admitted(app: CanaryApp, policy: MetricsPolicy, cluster: Cluster) -> None:
    """Exits, naming the fields or the Secret and the fix, unless the reconciler would query the CanaryApp's
    metric endpoint with its Secret under `policy`."""
    namespace, name, spec = app.metadata.namespace, app.metadata.name, app.spec
    refused = policy.violations(namespace, name, spec)
    if refused:
        raise SystemExit(
            f"backtest: the reconciler would not query for CanaryApp {namespace}/{name}: "
            f"{'; '.join(refused)}. The backtest applies the reconciler's policy: give it the reconciler's "
            f"{METRIC_URLS_FLAG} (or set {METRIC_URLS_VARIABLE})"
        )
    reference = spec.prometheus_secret_ref
    secret = cluster.read_secret(namespace, reference.name) if reference is not None else None
    try:
        endpoint_for(spec, namespace, name, secret)
    except EndpointError as error:
        raise SystemExit(f"backtest: {error}") from error


def _moment(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
