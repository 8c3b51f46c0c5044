"""Runs each step as a Pulumi Automation API `stack.up` (or `destroy`) of the inline program in `stacks/`.

Steps run in a small pool of worker processes: `up` blocks for seconds, the Python SDK keeps program state
in process globals, and a process per concurrent step keeps two CanaryApps' programs apart. Each worker
builds the `pulumi` command once and reuses it, so a step pays for the engine run and nothing else:

- the step's result (its resource changes) comes from the engine's own event stream during the `up`, not
  from the three CLI runs the Automation API makes after it to read the outputs and the last history entry
  back (each one decrypting the passphrase again): they cost more CPU than the `up` itself;
- the Kubernetes provider outlives the run (`pulumi_provider.LongLivedProvider`), so a step does not start
  it and wait for it to fetch the cluster's OpenAPI schema again.

`bench/step_profile.py` shows where a step's time goes.
"""

from __future__ import annotations

import datetime
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
from pulumi.automation._stack import StackInitMode  # not re-exported; Stack's constructor takes it

from reconciler.adapters.pulumi_provider import LongLivedProvider
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
    # False: every `up` starts its own provider, as the Pulumi CLI does on its own (slower; a fallback).
    long_lived_provider: bool = True

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


class _StepStack(auto.Stack):
    """A stack whose `up` does not read its outputs and last history entry back after the run: the step's
    changes come from the engine's summary event instead (see `_changes`). `up` still calls these two, so
    they answer without running the CLI."""

    def outputs(self) -> auto.OutputMap:
        return {}

    def info(self, show_secrets: bool = True) -> auto.UpdateSummary | None:
        return _PLACEHOLDER_SUMMARY


_PLACEHOLDER_SUMMARY = auto.UpdateSummary(
    kind="update", start_time=datetime.datetime.min, message="", environment={}, config={}, result="succeeded"
)


def _changes(events: list[auto.EngineEvent]) -> dict[str, int]:
    summary = next((event.summary_event for event in reversed(events) if event.summary_event), None)
    if summary is None:
        raise auto.errors.CommandError(_NoSummary())
    return {str(op): count for op, count in (summary.resource_changes or {}).items()}


class _NoSummary(auto.CommandResult):
    def __init__(self) -> None:
        super().__init__(stdout="", stderr="error: the engine sent no summary event for this run", code=1)


_worker_command: auto.PulumiCommand | None = None
# Stacks this worker has selected before: selecting again costs a CLI run per step for nothing.
_cached_stacks: dict[str, auto.Stack] = {}
_worker_settings: PulumiSettings | None = None
_worker_provider: LongLivedProvider | None = None


def _init_worker(settings: PulumiSettings) -> None:
    global _worker_command, _worker_settings, _worker_provider  # noqa: PLW0603 - one per worker process, set once
    os.environ.update(settings.environment())
    _worker_settings = settings
    _worker_command = auto.PulumiCommand()
    if settings.long_lived_provider:
        _worker_provider = LongLivedProvider(Path(settings.work_root) / f"provider-{os.getpid()}")


def _workspace_stack(name: str, *, create: bool) -> auto.Stack:
    assert _worker_settings is not None
    settings = _worker_settings
    work_dir = Path(settings.work_root) / name
    work_dir.mkdir(parents=True, exist_ok=True)
    workspace = auto.LocalWorkspace(
        work_dir=str(work_dir),
        pulumi_home=settings.pulumi_home,
        env_vars=settings.environment(),
        secrets_provider="passphrase",
        pulumi_command=_worker_command,
        program=lambda: None,
        project_settings=auto.ProjectSettings(
            name=PROJECT_NAME,
            runtime="python",
            main=str(work_dir),
            backend=auto.ProjectBackend(url=settings.backend_url),
        ),
    )
    return _StepStack(name, workspace, StackInitMode.CREATE_OR_SELECT if create else StackInitMode.SELECT)


def _attach_provider() -> None:
    """Points the next CLI run at this worker's long-lived provider (started when needed)."""
    if _worker_provider is not None:
        os.environ.update(_worker_provider.environment())


def _run(step: Step, name: str, desired_json: str) -> _Outcome:
    from stacks.program import build_program  # noqa: PLC0415 - imported in the worker, not the loop

    started = time.monotonic()
    events: list[auto.EngineEvent] = []
    try:
        _attach_provider()
        if step == Step.UP:
            desired = DesiredStack.from_json(desired_json)
            stack = _cached_stacks.get(name) or _workspace_stack(name, create=True)
            stack.workspace.program = build_program(desired)
            _cached_stacks[name] = stack
            stack.up(color="never", suppress_progress=True, on_output=_ignore, on_event=events.append)
        else:
            try:
                cached = _cached_stacks.pop(name) if name in _cached_stacks else None
                stack = cached or _workspace_stack(name, create=False)
            except auto.errors.StackNotFoundError:
                return _Outcome({}, time.monotonic() - started)
            stack.destroy(color="never", suppress_progress=True, on_output=_ignore, on_event=events.append)
            stack.workspace.remove_stack(name)
        changes = _changes(events)
    except auto.errors.CommandError as error:
        failure = classify_failure(error) or Failure.TRANSIENT
        if failure != Failure.BUSY:
            _cached_stacks.pop(name, None)  # select the stack afresh next time (its state may have gone)
            if _worker_provider is not None:
                _worker_provider.recycle()
        return _Outcome({}, time.monotonic() - started, failure, summarize_step_error(error))
    return _Outcome(changes, time.monotonic() - started)


def _ignore(_line: str) -> None:
    return None


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
