"""The step workers' processes, and how they end.

Steps run in a small pool of worker processes: `up` blocks for seconds, the Python SDK keeps program state
in process globals, and a process per concurrent step keeps two CanaryApps' programs apart.

Each worker leads a session of its own, so a step can be killed with everything it started: the `pulumi` CLI,
the engine's plugins (in process groups of their own) and the long-lived provider. That takes the worker out
of the reconciler's process group, so it watches its parent and kills its session once the reconciler is gone.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.process import BaseProcess
from pathlib import Path

from reconciler.adapters.pulumi import worker
from reconciler.adapters.pulumi.settings import PulumiSettings

log = logging.getLogger(__name__)

PARENT_WATCH_SECONDS = 1.0
# How long killed step processes may take to be gone before their locks are judged (SIGKILL: milliseconds).
_KILL_WAIT_SECONDS = 5.0


def _init_worker(settings: PulumiSettings) -> None:
    # A session of its own, so that stopping a step (`kill_workers`) kills everything this worker started.
    os.setsid()
    # ...which also takes it out of the reconciler's process group: it must still die with the reconciler.
    threading.Thread(target=_die_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    worker.start(settings)


def _die_with_parent(parent: int) -> None:
    """In a worker: once the reconciler that spawned it is gone (killed outright, say), kills this worker's
    session — its `pulumi` run and itself (the provider dies with the worker) — within a second, so no step
    of a dead reconciler goes on."""
    while os.getppid() == parent:
        time.sleep(PARENT_WATCH_SECONDS)
    os.killpg(0, signal.SIGKILL)


class StepPool(ProcessPoolExecutor):
    """Step workers, with what stopping them needs: the workers started, the stacks in flight, why and
    whether the pool was stopped (`PulumiStacks._stop`)."""

    def __init__(self, settings: PulumiSettings, workers: int) -> None:
        super().__init__(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(settings,),
        )
        self.started_workers: dict[int, BaseProcess] = {}
        self.running: list[str] = []
        self.stopped_because: str | None = None
        self.stopped_stacks: tuple[str, ...] = ()
        self.clears_locks = False
        self.killed: set[int] | None = None
        self.stopping = threading.Lock()

    def note_workers(self) -> None:
        """Records the workers started so far (a submit may start one), so that stopping kills them all."""
        self.started_workers.update(_worker_processes(self))

    def kill(self) -> set[int] | None:
        """Kills the workers with everything they started and returns the pids killed once they are all gone;
        None to every caller after the first (which waited for the kill)."""
        with self.stopping:
            if self.killed is not None:
                return None
            self.killed = _kill_workers(self.started_workers.values())
            self.shutdown(wait=False, cancel_futures=True)
            return self.killed


def _worker_processes(executor: ProcessPoolExecutor) -> dict[int, BaseProcess]:
    """The executor's worker processes by pid. ProcessPoolExecutor does not expose them: they are in its
    private `_processes` (CPython 3.11; None after shutdown). The step-timeout tests fail if that changes."""
    return dict(executor._processes or {})


def _live_processes() -> Iterator[tuple[int, int, int]]:
    """(pid, process group, session) of every process not yet dead."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (ids := _group_and_session(entry)) is not None:
            yield int(entry.name), *ids


def _is_live(pid: int) -> bool:
    return _group_and_session(Path(f"/proc/{pid}")) is not None


def _group_and_session(process: Path) -> tuple[int, int] | None:
    """A process's group and session, from /proc; None once it is dead (a zombie has finished dying)."""
    try:
        text = (process / "stat").read_text()
    except OSError:
        return None
    state, _parent, group, session = text[text.rindex(")") + 2 :].split()[:4]
    return None if state in ("Z", "X") else (int(group), int(session))


def _kill_workers(workers: Iterable[BaseProcess], wait_seconds: float = _KILL_WAIT_SECONDS) -> set[int]:
    """SIGKILLs step workers and every process of their sessions (the `pulumi` CLI, the long-lived provider,
    plugins the engine started in process groups of their own), and waits until all are gone (at most
    `wait_seconds`). Returns the pids it killed.

    Only groups inside a worker's own session are signalled, never this process's group (a worker killed
    before its `setsid` is killed through its Process alone)."""
    started = [process for process in workers if process.pid is not None]
    for process in started:
        process.kill()  # through its Process: never signals the pid once it is reaped (and maybe reused)
    sessions = {process.pid for process in started if process.pid is not None}
    killed = set(sessions)
    deadline = time.monotonic() + wait_seconds
    while True:
        members = {pid: group for pid, group, session in _live_processes() if session in sessions}
        left = sorted(members.keys() | {pid for pid in sessions if _is_live(pid)})
        if not left:
            return killed
        killed.update(left)
        if time.monotonic() > deadline:
            log.error("Failed to stop Pulumi step processes", extra={"pids": left})
            return killed
        for group in set(members.values()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        time.sleep(0.005)
