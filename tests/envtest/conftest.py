"""Fixtures of the envtest tier: the reconciler in this process (the Controller and Reconciler that
`canaryapp run` wires, with its real Kubernetes and Prometheus adapters and its flags' defaults) against the
local API server, with a recording stack runner in place of the Pulumi engine. What needs an API server but
not a `stack.up` (validation, refusals, status writes, finalizers, RBAC, the CRD's rules) is tested here,
at a fraction of an e2e test's cost; tests/integration runs everything real."""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Collection
from pathlib import Path

import pytest

from devenv.reconciler_process import LOCAL_METRIC_URLS
from reconciler.adapters.kube import KubeCluster, load_client_config
from reconciler.adapters.prometheus import PrometheusMetrics
from reconciler.cli import controller_for
from reconciler.config import add_run_arguments, run_config
from reconciler.core.desired import DesiredStack
from reconciler.core.ports import StepReport
from reconciler.logs import TextFormatter

pytestmark = pytest.mark.envtest

# The loggers of `canaryapp run` (reconciler.* modules and the command's own).
RECONCILER_LOGGERS = ("reconciler", "canaryapp")


@pytest.fixture(scope="session", autouse=True)
def tools_on_path(tools_on_path: None) -> None:
    """The envtest tier runs the pinned tools (kube-apiserver, etcd, kubectl) found on PATH."""


class RecordingStacks:
    """A StackRunner that records each desired stack and each destroy, and reports success: no engine runs,
    so nothing the stack declares exists in the cluster."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.applied: list[DesiredStack] = []
        self.destroyed: list[tuple[str, str]] = []

    def apply(self, desired: DesiredStack) -> StepReport:
        with self._lock:
            self.applied.append(desired)
        return StepReport(changes={}, seconds=0.0)

    def destroy(self, namespace: str, name: str, keep: Collection[tuple[str, str]] = ()) -> StepReport:
        with self._lock:
            self.destroyed.append((namespace, name))
        return StepReport(changes={}, seconds=0.0)


class InProcessReconciler:
    """`canaryapp run --namespace=NAMESPACE` (with ReconcilerProcess's flags) in this process, on a
    RecordingStacks; its log (in the text format, uncaught thread errors included) goes to a file."""

    def __init__(self, kubeconfig: Path, namespace: str, state_dir: Path, *extra: str) -> None:
        parser = argparse.ArgumentParser()
        add_run_arguments(parser)
        self.config = run_config(
            parser.parse_args(
                [
                    f"--kubeconfig={kubeconfig}",
                    f"--namespace={namespace}",
                    f"--state-dir={state_dir}",
                    "--workers=2",
                    "--resync-seconds=30",
                    f"--allowed-metric-urls={','.join(LOCAL_METRIC_URLS)}",
                    *extra,
                ]
            )
        )
        self.stacks = RecordingStacks()
        self.log_path = state_dir / "reconciler.log"
        self.metrics = PrometheusMetrics(self.config.metrics_policy)
        cluster = KubeCluster(
            load_client_config(self.config.kubeconfig),
            namespace=self.config.namespace,
            selector=self.config.shard_selector,
        )
        self.controller = controller_for(self.config, cluster, self.stacks, self.metrics)
        self._handler: logging.FileHandler | None = None
        self._levels: dict[str, int] = {}
        self._excepthook = threading.excepthook

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(self.log_path)
        self._handler.setFormatter(TextFormatter())
        for name in RECONCILER_LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.INFO)
            logger.addHandler(self._handler)
        threading.excepthook = self._log_uncaught
        self.controller.start()

    def stop(self) -> None:
        try:
            self.controller.stop()
            self.metrics.close()
        finally:
            threading.excepthook = self._excepthook
            for name, level in self._levels.items():
                logger = logging.getLogger(name)
                logger.setLevel(level)
                if self._handler is not None:
                    logger.removeHandler(self._handler)
            if self._handler is not None:
                self._handler.close()

    def healthy(self) -> bool:
        return self.controller.healthy()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _log_uncaught(self, arguments: threading.ExceptHookArgs) -> None:
        logging.getLogger("canaryapp").error(
            "Thread ended with an uncaught error",
            exc_info=(arguments.exc_type, arguments.exc_value, arguments.exc_traceback),  # type: ignore[arg-type]
            extra={"failed_thread": arguments.thread.name if arguments.thread is not None else "?"},
        )
