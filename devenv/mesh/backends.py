"""The processes behind the routes: one status-code-server per image tag the resolved Deployments use."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Set
from pathlib import Path

from devenv.processes import REPO_ROOT, ProcessGroup, wait_until

log = logging.getLogger(__name__)

STATUS_CODE_SERVER = REPO_ROOT / "examples" / "status-code-server" / "server.py"
LISTENING_LINE = re.compile(r"^listening on 127\.0\.0\.1:(\d+) ", re.MULTILINE)


class BackendPool:
    """One status-code-server process per image tag, which it reports as its `--version`, each in its own
    process group, logging into `log_dir`."""

    def __init__(self, log_dir: Path) -> None:
        self._processes = ProcessGroup(log_dir)
        self._running: dict[str, tuple[subprocess.Popen[bytes], str]] = {}

    def addresses(self) -> dict[str, str]:
        return {tag: address for tag, (_, address) in self._running.items()}

    def ensure(self, tags: Set[str]) -> None:
        """Starts a process for each tag not running yet, and again the ones whose process exited."""
        for tag in sorted(tags):
            running = self._running.get(tag)
            if running is not None and running[0].poll() is None:
                continue
            if running is not None:
                log.warning(
                    "Restarted exited status-code-server backend",
                    extra={"image_tag": tag, "exit_code": running[0].returncode},
                )
                self._processes.stop(_backend_name(tag))
            self._running[tag] = self._start(tag)

    def retain(self, tags: Set[str]) -> None:
        """Stops the process of every tag not in `tags`."""
        for tag in sorted(set(self._running) - set(tags)):
            self._processes.stop(_backend_name(tag))
            del self._running[tag]
            log.info("Stopped status-code-server backend", extra={"image_tag": tag})

    def stop_all(self) -> None:
        self._processes.stop_all()
        self._running.clear()

    def _start(self, tag: str) -> tuple[subprocess.Popen[bytes], str]:
        name = _backend_name(tag)
        log_path = self._processes.log_dir / f"{name}.log"
        # The log is appended to across restarts: only what this process writes counts.
        offset = log_path.stat().st_size if log_path.exists() else 0
        server = [sys.executable, str(STATUS_CODE_SERVER)]
        process = self._processes.start(
            name, [*server, "--version", tag, "--port", "0", "--host", "127.0.0.1"]
        )
        ports: list[int] = []

        def listening_or_exited() -> bool:
            with log_path.open("rb") as log_file:
                log_file.seek(offset)
                found = LISTENING_LINE.search(log_file.read().decode(errors="replace"))
            if found:
                ports.append(int(found.group(1)))
            return bool(found) or process.poll() is not None

        wait_until(listening_or_exited, timeout=30, what=f"status-code-server {tag}", interval=0.05)
        if not ports:
            tail = self._processes.log_tail(name)
            self._processes.stop(name)
            raise RuntimeError(
                f"status-code-server {tag} exited with code {process.returncode} before listening; "
                f"its log is {log_path}:\n{tail}"
            )
        address = f"127.0.0.1:{ports[0]}"
        log.info(
            "Started status-code-server backend",
            extra={"image_tag": tag, "address": address, "pid": process.pid},
        )
        return process, address


def _backend_name(tag: str) -> str:
    return f"status-code-server-{tag}"
