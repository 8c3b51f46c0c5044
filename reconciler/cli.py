"""`canaryapp run`: the reconciler process (in a pod with in-cluster config, or locally with a kubeconfig)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from reconciler import commands, logs
from reconciler.adapters.kube import KubeCluster, load_client_config
from reconciler.adapters.prometheus import PrometheusMetrics
from reconciler.adapters.pulumi.runner import PulumiStacks
from reconciler.adapters.pulumi.settings import PulumiSettings
from reconciler.adapters.webhook import WebhookNotifier
from reconciler.config import RunConfig, add_run_arguments, run_config
from reconciler.core import backtest
from reconciler.core.names import stack_name
from reconciler.core.policy import RoutingPolicy
from reconciler.core.ports import MetricsReader, Notifier, StackRunner
from reconciler.runtime.cache import CanaryAppStore, WriteThrough
from reconciler.runtime.health import StatusServer
from reconciler.runtime.leader import LeaderElector
from reconciler.runtime.loop import Controller
from reconciler.runtime.reconcile import Reconciler
from reconciler.runtime.telemetry import Telemetry

log = logging.getLogger("canaryapp")
REQUIRED_BINARIES = ("pulumi", "pulumi-resource-kubernetes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="canaryapp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(commands.add_parser("run", help="run the reconciler"))
    add_backtest_arguments(
        commands.add_parser(
            "backtest",
            help="replay a CanaryApp's analysis against Prometheus history",
            description=backtest.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    args = parser.parse_args(argv)
    if args.command == "backtest":
        return backtest_command(args)
    config = run_config(args)
    logs.configure(config.log_format, config.log_level)
    missing = [binary for binary in REQUIRED_BINARIES if shutil.which(binary) is None]
    if missing:
        parser.exit(
            2,
            f"canaryapp: {', '.join(missing)} not found on PATH. The reconciler runs every step with the "
            "Pulumi CLI and the Kubernetes provider plugin: in this repository run `make tools` and add "
            ".tools/bin to PATH; elsewhere install both (see docs/toolchain.md).\n",
        )
    if not os.environ.get("PULUMI_CONFIG_PASSPHRASE") and config.secrets_provider in ("", "passphrase"):
        log.warning(
            "PULUMI_CONFIG_PASSPHRASE is empty: stack secrets are encrypted with an empty passphrase; "
            "set it from a Secret (config/manager does)"
        )
    return run(config)


def add_backtest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("canaryapp", metavar="NAMESPACE/NAME", help="the CanaryApp whose analysis to replay")
    parser.add_argument("--kubeconfig", default=os.environ.get("CANARYAPP_KUBECONFIG"), help="kubeconfig")
    commands.add_backtest_window(parser)


def backtest_command(args: argparse.Namespace) -> int:
    namespace, slash, name = args.canaryapp.partition("/")
    if not slash or not namespace or not name:
        raise SystemExit(f"canaryapp backtest: {args.canaryapp!r} is not NAMESPACE/NAME, e.g. default/web")
    return commands.run_backtest(load_client_config(args.kubeconfig), namespace, name, args)


def controller_for(
    config: RunConfig,
    cluster: KubeCluster,
    stacks: StackRunner,
    metrics: MetricsReader,
    *,
    telemetry: Telemetry | None = None,
    notifier: Notifier | None = None,
) -> Controller:
    """The controller `canaryapp run` runs, configured from its flags: one informer cache of CanaryApps that
    the loop fills and every pass reads (its own writes put into it at once), and the reconciler of a pass."""
    cache = CanaryAppStore()
    reconciler = Reconciler(
        cache,
        cluster,
        WriteThrough(cluster, cache),
        stacks,
        metrics,
        cluster,
        telemetry=telemetry,
        policy=RoutingPolicy(config.allowed_gateways, config.allowed_hosts, config.default_router),
        pod_policy=config.pod_policy,
        pod_security_level=config.pod_security_level,
        metrics_policy=config.metrics_policy,
        max_concurrent_rollouts=config.max_concurrent_rollouts,
        notifier=notifier,
    )
    return Controller(
        cluster, reconciler, cache, workers=config.workers, resync_seconds=config.resync_seconds
    )


@dataclass(frozen=True)
class _Process:
    """What `canaryapp run` starts and, in the end, closes."""

    elector: LeaderElector | None
    cluster: KubeCluster
    metrics: PrometheusMetrics
    notifier: WebhookNotifier | None
    stacks: PulumiStacks
    telemetry: Telemetry
    controller: Controller


def _pulumi_settings(config: RunConfig) -> PulumiSettings:
    return PulumiSettings(
        backend_url=config.backend_url,
        work_root=str(config.work_root),
        pulumi_home=str(config.pulumi_home),
        extra_env={"KUBECONFIG": str(Path(config.kubeconfig).resolve())} if config.kubeconfig else {},
        long_lived_provider=not config.provider_per_step,
        secrets_provider=config.secrets_provider,
    )


def _assemble(config: RunConfig) -> _Process:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    settings = _pulumi_settings(config)
    if settings.file_backend_path is not None:
        settings.file_backend_path.mkdir(parents=True, exist_ok=True)
    api_client = load_client_config(config.kubeconfig)
    elector = (
        LeaderElector(api_client, config.lease_namespace, config.lease_name, config.identity)
        if config.leader_elect
        else None
    )
    fence = elector.fence if elector is not None else None
    cluster = KubeCluster(api_client, namespace=config.namespace, selector=config.shard_selector, fence=fence)
    metrics = PrometheusMetrics(config.metrics_policy)
    notifier = WebhookNotifier(config.notify_url) if config.notify_url else None
    # Worker processes start with the first step, so a standby replica runs no Pulumi processes.
    stacks = PulumiStacks(
        settings, workers=config.step_workers, step_timeout=config.step_timeout, fence=fence
    )
    telemetry = Telemetry()
    controller = controller_for(config, cluster, stacks, metrics, telemetry=telemetry, notifier=notifier)
    return _Process(elector, cluster, metrics, notifier, stacks, telemetry, controller)


def run(config: RunConfig, stop: threading.Event | None = None) -> int:
    """Runs until SIGTERM/SIGINT (exit 0) or until leadership is lost (exit 1, so the pod restarts clean)."""
    stop = stop or threading.Event()
    lost_leadership = threading.Event()
    _stop_on_signals(stop)
    process = _assemble(config)
    status_server = _status_server(config, process, stop)
    status_server.start()
    try:
        if process.elector is not None and not _lead(
            process.elector, config, stop, lost_leadership, process.stacks
        ):
            return 0
        _log_started(config, process)
        process.controller.start()
        stop.wait()
    finally:
        _close(process, lost_leadership)
        status_server.stop()
        log.info("Stopped CanaryApp reconciler")
    return 1 if lost_leadership.is_set() else 0


def _stop_on_signals(stop: threading.Event) -> None:
    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("Received signal; stopping", extra={"signal": signum})
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)


def _status_server(config: RunConfig, process: _Process, stop: threading.Event) -> StatusServer:
    elector, controller = process.elector, process.controller

    def ready() -> bool:
        # A standby is ready (it is healthy and waiting); a leader once its first list of CanaryApps is done.
        return (elector is not None and not elector.is_leader.is_set()) or controller.synced.is_set()

    def healthy() -> bool:
        # The leader's renewal (or the standby's acquisition) loop is part of health: stuck means restart me.
        return controller.healthy() and (elector is None or elector.alive() or stop.is_set())

    return StatusServer(config.metrics_address, process.telemetry.registry, healthy, ready)


def _log_started(config: RunConfig, process: _Process) -> None:
    elector = process.elector
    log.info(
        "Started CanaryApp reconciler",
        extra={
            "namespace": config.namespace or "*",
            "workers": config.workers,
            "step_workers": config.step_workers,
            "shard": str(config.shard_selector or "*"),
            "backend": _redacted(config.backend_url),
            "cleared_locks": process.stacks.clear_stale_locks(
                _stack_names(process.cluster),
                acquired_at=elector.acquired_at if elector is not None else None,
            ),
        },
    )


def _close(process: _Process, lost_leadership: threading.Event) -> None:
    process.controller.stop()
    process.stacks.close()
    if process.elector is not None and not lost_leadership.is_set():
        process.elector.release()
    process.metrics.close()
    if process.notifier is not None:
        process.notifier.close()


def _lead(
    elector: LeaderElector,
    config: RunConfig,
    stop: threading.Event,
    lost_leadership: threading.Event,
    stacks: PulumiStacks,
) -> bool:
    """Waits for the Lease (False: stopped first), then renews it in the background; losing it stops the
    steps in flight at once (engine and provider included: the next leader must find no `up` running, and
    it clears the locks they leave), then sets `lost_leadership` and `stop`."""
    log.info(
        "Waiting for leadership",
        extra={
            "lease": f"{config.lease_namespace}/{config.lease_name}",
            "shard": str(config.shard_selector or "*"),
        },
    )
    if not elector.acquire(stop):
        return False

    def on_lost() -> None:
        stacks.abort(reason="this replica lost leadership")
        lost_leadership.set()
        stop.set()

    threading.Thread(target=elector.keep_renewing, args=(stop, on_lost), name="leader", daemon=True).start()
    return True


def _stack_names(cluster: KubeCluster) -> set[str]:
    """The stacks of this shard's CanaryApps (those being deleted too: their stacks are still to destroy)."""
    items, _ = cluster.list_canary_apps()
    return {stack_name(item["metadata"]["namespace"], item["metadata"]["name"]) for item in items}


def _redacted(url: str) -> str:
    """A backend URL for logs: credentials (user:password@ or query secrets) removed."""
    scheme, _, rest = url.partition("://")
    rest = rest.rsplit("@", 1)[-1]
    return f"{scheme}://{rest.split('?', 1)[0]}"
