"""`canaryapp run`: the reconciler process (in a pod with in-cluster config, or locally with a kubeconfig)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from prometheus_client import start_http_server

from reconciler import logs
from reconciler.adapters.kube import KubeCluster, load_client_config
from reconciler.adapters.prometheus import PrometheusMetrics
from reconciler.adapters.pulumi_stacks import PulumiSettings, PulumiStacks
from reconciler.config import RunConfig, add_run_arguments, run_config
from reconciler.loop import Controller
from reconciler.reconcile import Reconciler
from reconciler.telemetry import Telemetry

log = logging.getLogger("canaryapp")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="canaryapp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(commands.add_parser("run", help="run the reconciler"))
    args = parser.parse_args(argv)
    config = run_config(args)
    logs.configure(config.log_format, config.log_level)
    return run(config)


def run(config: RunConfig, stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("Received signal; stopping", extra={"signal": signum})
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    config.state_dir.mkdir(parents=True, exist_ok=True)
    settings = PulumiSettings(
        backend_url=config.backend_url,
        work_root=str(config.work_root),
        pulumi_home=str(config.pulumi_home),
        extra_env={"KUBECONFIG": str(Path(config.kubeconfig).resolve())} if config.kubeconfig else {},
    )
    if settings.file_backend_path is not None:
        settings.file_backend_path.mkdir(parents=True, exist_ok=True)
    telemetry = Telemetry()
    host, _, port = config.metrics_address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=telemetry.registry)

    api_client = load_client_config(config.kubeconfig)
    cluster = KubeCluster(api_client, namespace=config.namespace)
    stacks = PulumiStacks(settings, workers=min(config.workers, 4))
    metrics = PrometheusMetrics()
    reconciler = Reconciler(cluster, stacks, metrics, cluster, telemetry=telemetry)
    controller = Controller(cluster, reconciler, workers=config.workers, resync_seconds=config.resync_seconds)
    try:
        cleared = stacks.clear_stale_locks()
        log.info(
            "Started CanaryApp reconciler",
            extra={
                "namespace": config.namespace or "*",
                "workers": config.workers,
                "backend": _redacted(config.backend_url),
                "cleared_locks": cleared,
            },
        )
        controller.start()
        stop.wait()
    finally:
        controller.stop()
        stacks.close()
        metrics.close()
        log.info("Stopped CanaryApp reconciler")
    return 0


def _redacted(url: str) -> str:
    """A backend URL for logs: credentials (user:password@ or query secrets) removed."""
    scheme, _, rest = url.partition("://")
    rest = rest.rsplit("@", 1)[-1]
    return f"{scheme}://{rest.split('?', 1)[0]}"
