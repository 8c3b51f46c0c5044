"""The reconciler as a real process (`canaryapp run`): used by the integration tests and the demo."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

from devenv.processes import REPO_ROOT, free_port

# The local Prometheus servers (and the test doubles of bad ones) listen on loopback ports chosen at start.
LOCAL_METRIC_URLS = ("http://127.0.0.1:*", "https://127.0.0.1:*")


def read_metrics(url: str) -> dict[str, float]:
    """A reconciler's /metrics as {'name{labels}': value} (prometheus text format, comments dropped)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples}


class ReconcilerProcess:
    """`canaryapp run` as a real process, scoped to one namespace, with its own Pulumi state folder."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        state_dir: Path,
        *extra: str,
        log_name: str = "reconciler.log",
        environment: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.environment = environment or {}
        self.namespace = namespace
        self.state_dir = state_dir
        self.extra = extra
        self.log_path = state_dir / log_name
        self.metrics_port = free_port()
        self.passphrase = "test-passphrase"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(REPO_ROOT / ".venv" / "bin" / "canaryapp"),
                "run",
                f"--kubeconfig={self.kubeconfig}",
                f"--namespace={self.namespace}",
                f"--state-dir={self.state_dir}",
                f"--metrics-address=127.0.0.1:{self.metrics_port}",
                "--workers=2",
                "--resync-seconds=30",
                f"--allowed-metric-urls={','.join(LOCAL_METRIC_URLS)}",
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.environment, "PULUMI_CONFIG_PASSPHRASE": self.passphrase},
            start_new_session=True,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, with no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self._reap()
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._reap()

    def _reap(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def metrics(self) -> dict[str, float]:
        return read_metrics(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
