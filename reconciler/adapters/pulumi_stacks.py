"""Runs each step as a Pulumi Automation API `stack.up` (or `destroy`) of the inline program in `stacks/`.

Steps run in a small pool of worker processes: `up` blocks for seconds, the Python SDK keeps program state
in process globals, and a process per concurrent step keeps two CanaryApps' programs apart. Each worker
builds the `pulumi` command once and reuses it, so a step pays for the engine run and nothing else.
"""

from __future__ import annotations

import enum
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Collection, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from pulumi import automation as auto

from reconciler.adapters.s3 import S3Bucket, S3UnavailableError
from reconciler.desired import DesiredStack
from reconciler.errors import PermanentError, ReconcileError, StackBusyError, TransientError
from reconciler.names import stack_name
from reconciler.ports import StepReport

log = logging.getLogger(__name__)

PROJECT_NAME = "canaryapp"
_STACK_ERROR_RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class PulumiSettings:
    """Where Pulumi keeps its state and plugins. The passphrase comes from PULUMI_CONFIG_PASSPHRASE."""

    backend_url: str
    work_root: str
    pulumi_home: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        return {
            "PULUMI_BACKEND_URL": self.backend_url,
            "PULUMI_HOME": self.pulumi_home,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", ""),
            **self.extra_env,
        }

    @property
    def file_backend_path(self) -> Path | None:
        parsed = urlparse(self.backend_url)
        return Path(parsed.path) if parsed.scheme == "file" else None


_LOCKS_PREFIX = ".pulumi/locks/"


class _FileLocks:
    """The same two calls as S3Bucket, on a `file://` backend's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def keys(self, prefix: str) -> Iterator[str]:
        folder = self.root / prefix
        return (
            (path.relative_to(self.root).as_posix() for path in folder.rglob("*.json"))
            if folder.exists()
            else iter(())
        )

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def close(self) -> None:
        pass


def _lock_store(backend_url: str) -> _FileLocks | S3Bucket:
    parsed = urlparse(backend_url)
    if parsed.scheme == "file":
        return _FileLocks(Path(parsed.path))
    if parsed.scheme == "s3":
        return S3Bucket(backend_url)
    raise S3UnavailableError(f"{parsed.scheme}:// backends are not supported; clear their locks by hand")


class Step(enum.StrEnum):
    UP = "up"
    DESTROY = "destroy"


class Failure(enum.Enum):
    """How a failed step is retried (mapped from the Automation API's exceptions in `classify_failure`)."""

    BUSY = enum.auto()  # another update holds the stack lock
    PERMANENT = enum.auto()  # the program itself is broken: the same input fails the same way
    TRANSIENT = enum.auto()  # anything else the engine reported: retry later


# The Automation API's exceptions mapped to ours, most specific first (as httpx maps its transports' errors).
_FAILURES: tuple[tuple[type[Exception], Failure], ...] = (
    (auto.errors.ConcurrentUpdateError, Failure.BUSY),
    (auto.errors.CompilationError, Failure.PERMANENT),
    (auto.errors.InlineSourceRuntimeError, Failure.PERMANENT),
    (auto.errors.CommandError, Failure.TRANSIENT),
)


def classify_failure(error: Exception) -> Failure | None:
    """The kind of a step's exception; None for an exception that is not the engine's (a bug: re-raised)."""
    return next((kind for exception, kind in _FAILURES if isinstance(error, exception)), None)


@dataclass(frozen=True)
class _Outcome:
    changes: dict[str, int]
    seconds: float
    failure: Failure | None = None
    error: str = ""


_worker_command: auto.PulumiCommand | None = None
# Stacks this worker has selected before: selecting again costs a CLI run per step for nothing.
_cached_stacks: dict[str, auto.Stack] = {}
_worker_settings: PulumiSettings | None = None


def _init_worker(settings: PulumiSettings) -> None:
    global _worker_command, _worker_settings  # noqa: PLW0603 - one per worker process, set once
    os.environ.update(settings.environment())
    _worker_settings = settings
    _worker_command = auto.PulumiCommand()


def _workspace_stack(name: str, *, create: bool) -> auto.Stack:
    assert _worker_settings is not None
    settings = _worker_settings
    work_dir = Path(settings.work_root) / name
    work_dir.mkdir(parents=True, exist_ok=True)
    options = auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        pulumi_home=settings.pulumi_home,
        env_vars=settings.environment(),
        secrets_provider="passphrase",
        pulumi_command=_worker_command,
        project_settings=auto.ProjectSettings(
            name=PROJECT_NAME, runtime="python", backend=auto.ProjectBackend(url=settings.backend_url)
        ),
    )
    select = auto.create_or_select_stack if create else auto.select_stack
    return select(stack_name=name, project_name=PROJECT_NAME, program=lambda: None, opts=options)


def _run(step: Step, name: str, desired_json: str) -> _Outcome:
    from stacks.program import build_program  # noqa: PLC0415 - imported in the worker, not the loop

    started = time.monotonic()
    try:
        if step == Step.UP:
            desired = DesiredStack.from_json(desired_json)
            stack = _cached_stacks.get(name) or _workspace_stack(name, create=True)
            stack.workspace.program = build_program(desired)
            _cached_stacks[name] = stack
            result = stack.up(color="never", suppress_progress=True, on_output=lambda _line: None)
            changes = {str(op): count for op, count in (result.summary.resource_changes or {}).items()}
        else:
            try:
                cached = _cached_stacks.pop(name) if name in _cached_stacks else None
                stack = cached or _workspace_stack(name, create=False)
            except auto.errors.StackNotFoundError:
                return _Outcome({}, time.monotonic() - started)
            destroyed = stack.destroy(color="never", suppress_progress=True, on_output=lambda _line: None)
            changes = {str(op): count for op, count in (destroyed.summary.resource_changes or {}).items()}
            stack.workspace.remove_stack(name)
    except auto.errors.CommandError as error:
        failure = classify_failure(error) or Failure.TRANSIENT
        if failure != Failure.BUSY:
            _cached_stacks.pop(name, None)  # select the stack afresh next time (its state may have gone)
        return _Outcome({}, time.monotonic() - started, failure, summarize_step_error(error))
    return _Outcome(changes, time.monotonic() - started)


# Engine lines that follow any failed update and say nothing about its cause.
_GENERIC_ERRORS = ("error: update failed", "error: Resource monitor has terminated", "error: preview failed")


def summarize_step_error(error: Exception, lines: int = 2) -> str:
    """The engine's error lines about the cause (deduplicated, stable from one attempt to the next), or the
    last lines of its output when it printed none."""
    text = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line[line.index("error:") :] for line in text if "error:" in line]
    causes = list(dict.fromkeys(line for line in errors if not line.startswith(_GENERIC_ERRORS)))
    return " | ".join(causes[:lines] or errors[:lines] or text[-lines:])


def outcome_error(step: Step, name: str, outcome: _Outcome) -> ReconcileError | None:
    """The error a failed step raises, by its kind; None for a step that succeeded."""
    if outcome.failure == Failure.BUSY:
        return StackBusyError(
            f"stack {name} is locked by another update; retrying ({outcome.error})", retry_after=5.0
        )
    if outcome.failure == Failure.PERMANENT:
        return PermanentError(f"the Pulumi program for stack {name} failed: {outcome.error}")
    if outcome.failure == Failure.TRANSIENT:
        return TransientError(
            f"`pulumi {step}` of stack {name} failed: {outcome.error}", retry_after=_STACK_ERROR_RETRY_SECONDS
        )
    return None


class PulumiStacks:
    """The StackRunner port: one Pulumi stack per CanaryApp, named `<namespace>.<name>`."""

    def __init__(self, settings: PulumiSettings, workers: int = 2) -> None:
        self.settings = settings
        self.workers = workers
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.settings,),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def clear_stale_locks(self, stack_names: Collection[str]) -> int:
        """Removes update locks of these stacks left by a reconciler that died mid-`up`, in a `file://` or an
        `s3://` backend (another backend: logged and left alone).

        Only the leader of a shard runs steps, one per stack at a time, and every shard has its own stacks; so
        at start every lock of this shard's stacks is stale, while other shards' locks sharing the backend are
        live and kept. A lock lives at `.pulumi/locks/[<org>/<project>/]<stack>/<id>.json`.
        """
        try:
            store = _lock_store(self.settings.backend_url)
        except S3UnavailableError as error:
            log.warning(
                "Left stale stack locks alone: cannot reach the backend's lock objects",
                extra={"detail": str(error)},
            )
            return 0
        try:
            stale = [
                key for key in store.keys(_LOCKS_PREFIX) if PurePosixPath(key).parent.name in stack_names
            ]
            for key in stale:
                store.delete(key)
        except S3UnavailableError as error:
            log.warning("Failed to clear stale stack locks", extra={"detail": str(error)})
            return 0
        finally:
            store.close()
        return len(stale)

    def apply(self, desired: DesiredStack) -> StepReport:
        return self._step(Step.UP, desired.stack_name, desired.to_json())

    def destroy(self, namespace: str, name: str) -> StepReport:
        return self._step(Step.DESTROY, stack_name(namespace, name), "")

    def _step(self, step: Step, name: str, desired_json: str) -> StepReport:
        with self._lock:
            pool = self._pool
        try:
            outcome = pool.submit(_run, step, name, desired_json).result()
        except BrokenProcessPool as error:
            with self._lock:
                if self._pool is pool:
                    self._pool = self._new_pool()
            raise TransientError(f"a Pulumi worker process died during `{step}` of stack {name}") from error
        failed = outcome_error(step, name, outcome)
        if failed is not None:
            raise failed
        return StepReport(changes=outcome.changes, seconds=outcome.seconds)
