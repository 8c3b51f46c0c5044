"""Supervised child processes for the local environment: started in their own process group, logged to
files, and always ended (group-wide) when the environment closes, even after a failed test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class ToolMissingError(RuntimeError):
    """A pinned binary is not built yet."""


def tools_bin() -> Path:
    return Path(os.environ.get("CANARYAPP_TOOLS_BIN", REPO_ROOT / ".tools" / "bin"))


def tools_share() -> Path:
    return tools_bin().parent / "share"


def tool(name: str) -> str:
    """The path of a pinned tool: .tools/bin first (what `make tools` links), then PATH."""
    candidate = tools_bin() / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ToolMissingError(f"{name} is not built: run `make tools` (it builds every pinned binary)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as error:
            last_error = error
        time.sleep(interval)
    raise TimeoutError(f"{what} was not ready after {timeout:.0f}s (last error: {last_error})")


class ProcessGroup:
    """Starts named processes and stops all of them, newest first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        # Each name's command, environment and folder: a process killed on purpose starts again as it was.
        self._commands: dict[str, tuple[list[str], dict[str, str] | None, Path | None]] = {}

    def start(
        self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        log.close()
        self._processes.append((name, process))
        self._commands[name] = (list(argv), env, cwd)
        return process

    def check_alive(self) -> None:
        for name, process in self._processes:
            if process.poll() is not None:
                tail = self.log_tail(name)
                raise RuntimeError(f"{name} exited with code {process.returncode}; last log lines:\n{tail}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, name: str, timeout: float = 10.0) -> None:
        for entry in [entry for entry in self._processes if entry[0] == name]:
            _terminate(entry[1], timeout)
            self._processes.remove(entry)

    def signal(self, name: str, signum: int) -> None:
        """Sends `signum` to the process group of `name` (SIGSTOP freezes it, SIGCONT resumes it)."""
        for entry_name, process in self._processes:
            if entry_name == name and process.poll() is None:
                os.killpg(process.pid, signum)

    def kill(self, name: str, timeout: float = 10.0) -> None:
        """SIGKILLs `name` with its group, a crash with no chance to clean up; `start_again` revives it."""
        for entry in [entry for entry in self._processes if entry[0] == name]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(entry[1].pid, signal.SIGKILL)
            entry[1].wait(timeout=timeout)
            self._processes.remove(entry)

    def start_again(self, name: str) -> subprocess.Popen[bytes]:
        """Starts `name` again with the command, environment and folder it was last started with."""
        argv, env, cwd = self._commands[name]
        return self.start(name, argv, env=env, cwd=cwd)

    def stop_all(self, timeout: float = 10.0) -> None:
        while self._processes:
            _, process = self._processes.pop()
            _terminate(process, timeout)


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
    else:
        # The leader exited, but children it started may still hold the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
