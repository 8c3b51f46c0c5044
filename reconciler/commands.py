"""What the two command lines share (`canaryapp` and the kubectl plugin `kubectl-canaryapp`): the backtest
command and reading a CanaryApp with errors a person can act on."""

from __future__ import annotations

import argparse
import datetime

import kubernetes
from kubernetes.client.exceptions import ApiException

from reconciler import backtest
from reconciler.adapters.kube import KubeCluster
from reconciler.adapters.prometheus import PrometheusMetrics
from reconciler.model import GROUP, PLURAL, VERSION, CanaryApp
from reconciler.reconcile import check_canary, utc_now


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
        "--prometheus-url", help="query this Prometheus instead of spec.prometheusURL (e.g. a port-forward)"
    )


def run_backtest(
    api: kubernetes.client.ApiClient, namespace: str, name: str, args: argparse.Namespace
) -> int:
    """Prints the backtest. Exit code: 0 if it would have promoted, 1 if rolled back, 3 if neither."""
    try:
        end = _moment(args.end) if args.end else utc_now()
        start = _moment(args.start) if args.start else end - backtest.parse_duration(args.last)
    except ValueError as error:
        raise SystemExit(f"backtest: {error}") from error
    if start >= end:
        raise SystemExit("backtest: --from must be before --to")
    cluster = KubeCluster(api)
    raw = cluster.get_canary_app(namespace, name)
    if raw is None:
        raise SystemExit(f"backtest: CanaryApp {namespace}/{name} not found (check the kubeconfig)")
    app = CanaryApp.model_validate(raw)
    if args.prometheus_url:
        app = app.model_copy(
            update={"spec": app.spec.model_copy(update={"prometheus_url": args.prometheus_url})}
        )
    metrics = PrometheusMetrics()
    try:
        result = backtest.replay(
            app, lambda a, status, at: check_canary(metrics, a, status, at, cluster), start, end
        )
    finally:
        metrics.close()
    print(backtest.render(app, result, start, end))
    return 0 if result.promoted else 1 if result.rolled_back else 3


def _moment(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
