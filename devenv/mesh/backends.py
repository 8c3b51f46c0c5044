"""The processes behind the routes: one status-code-server per backend the resolved Deployments use, a backend
being an image tag with the behaviour variables of the main container (`routing.Backend`)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
from collections.abc import Set
from pathlib import Path

from devenv.mesh.routing import BEHAVIOUR_VARIABLES, Backend
from devenv.processes import REPO_ROOT, ProcessGroup, wait_until

log = logging.getLogger(__name__)

STATUS_CODE_SERVER = REPO_ROOT / "examples" / "status-code-server" / "server.py"
LISTENING_LINE = re.compile(r"^listening on 127\.0\.0\.1:(\d+) ", re.MULTILINE)


class BackendPool:
    """One status-code-server process per backend: it reports the image tag as its `--version` and runs with
    the backend's behaviour variables in its environment (and no other value of them), each process in its
    own process group, logging into `log_dir`."""

    def __init__(self, log_dir: Path) -> None:
        self._processes = ProcessGroup(log_dir)
        self._running: dict[Backend, tuple[subprocess.Popen[bytes], str]] = {}

    def addresses(self) -> dict[Backend, str]:
        return {backend: address for backend, (_, address) in self._running.items()}

    def ensure(self, backends: Set[Backend]) -> None:
        """Starts a process for each backend not running yet, and again the ones whose process exited."""
        for backend in sorted(backends):
            running = self._running.get(backend)
            if running is not None and running[0].poll() is None:
                continue
            if running is not None:
                log.warning(
                    "Restarted exited status-code-server backend",
                    extra={**_fields(backend), "exit_code": running[0].returncode},
                )
                self._processes.stop(_backend_name(backend))
            self._running[backend] = self._start(backend)

    def retain(self, backends: Set[Backend]) -> None:
        """Stops the process of every backend not in `backends`."""
        for backend in sorted(set(self._running) - set(backends)):
            self._processes.stop(_backend_name(backend))
            del self._running[backend]
            log.info("Stopped status-code-server backend", extra=_fields(backend))

    def stop_all(self) -> None:
        self._processes.stop_all()
        self._running.clear()

    def _start(self, backend: Backend) -> tuple[subprocess.Popen[bytes], str]:
        name = _backend_name(backend)
        log_path = self._processes.log_dir / f"{name}.log"
        # The log is appended to across restarts: only what this process writes counts.
        offset = log_path.stat().st_size if log_path.exists() else 0
        server = [sys.executable, str(STATUS_CODE_SERVER)]
        env = {key: value for key, value in os.environ.items() if key not in BEHAVIOUR_VARIABLES}
        process = self._processes.start(
            name,
            [*server, "--version", backend.image_tag, "--port", "0", "--host", "127.0.0.1"],
            env={**env, **dict(backend.behaviour)},
        )
        ports: list[int] = []

        def listening_or_exited() -> bool:
            with log_path.open("rb") as log_file:
                log_file.seek(offset)
                found = LISTENING_LINE.search(log_file.read().decode(errors="replace"))
            if found:
                ports.append(int(found.group(1)))
            return bool(found) or process.poll() is not None

        wait_until(listening_or_exited, timeout=30, what=f"status-code-server {name}", interval=0.05)
        if not ports:
            tail = self._processes.log_tail(name)
            self._processes.stop(name)
            raise RuntimeError(
                f"status-code-server {backend.image_tag} {_describe(backend)} exited with code "
                f"{process.returncode} before listening; its log is {log_path}:\n{tail}"
            )
        address = f"127.0.0.1:{ports[0]}"
        log.info(
            "Started status-code-server backend",
            extra={**_fields(backend), "address": address, "pid": process.pid},
        )
        return process, address


def _backend_name(backend: Backend) -> str:
    """The process's name (and log file's): the tag, and a digest of the behaviour when it has one (its
    values are a pod template's, so never part of a file name)."""
    if not backend.behaviour:
        return f"status-code-server-{backend.image_tag}"
    digest = hashlib.sha256(repr(backend.behaviour).encode()).hexdigest()[:8]
    return f"status-code-server-{backend.image_tag}-{digest}"


def _describe(backend: Backend) -> str:
    return " ".join(f"{name}={value!r}" for name, value in backend.behaviour) or "(default behaviour)"


def _fields(backend: Backend) -> dict[str, object]:
    return {"image_tag": backend.image_tag, "behaviour": dict(backend.behaviour)}
