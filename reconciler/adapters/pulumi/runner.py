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

Every step ends: one that outlives `step_timeout` (--step-timeout) is killed with everything its worker
started, and `abort()` kills every step in flight at once (for a replica that lost leadership: the next leader
must never run `up` on a stack this one still updates). Each worker leads a session of its own, so the
`pulumi` CLI, the engine's plugins (in process groups of their own) and the long-lived provider die with it.
A Pulumi lock is deleted only when provably stale: held by a process this replica killed, or, at start,
written before this replica acquired its Lease.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import json
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from pulumi import automation as auto
from pulumi.automation._stack import StackInitMode  # not re-exported; Stack's constructor takes it

from reconciler.adapters.pulumi.provider import LongLivedProvider
from reconciler.adapters.pulumi.s3 import S3Bucket, S3UnavailableError
from reconciler.core.desired import DesiredStack
from reconciler.core.errors import (
    PermanentError,
    ReconcileError,
    StackBusyError,
    StepTimeoutError,
    TransientError,
)
from reconciler.core.names import stack_name
from reconciler.core.ports import StepReport

log = logging.getLogger(__name__)

PROJECT_NAME = "canaryapp"
_STACK_ERROR_RETRY_SECONDS = 10.0
# How long killed step processes may take to be gone before their locks are judged (SIGKILL: milliseconds).
_KILL_WAIT_SECONDS = 5.0


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
# A Pulumi lock is about 150 bytes of JSON.
_MAX_LOCK_BYTES = 64 * 1024


@dataclass(frozen=True)
class StackLock:
    """A Pulumi update lock (`.pulumi/locks/[<org>/<project>/]<stack>/<id>.json`): who holds it (the `pulumi`
    process) and since when; what cannot be read is None."""

    key: str
    locked_at: datetime.datetime | None
    pid: int | None = None
    hostname: str | None = None

    @property
    def stack(self) -> str:
        return PurePosixPath(self.key).parent.name


def parse_lock(key: str, content: bytes) -> StackLock:
    """A lock as Pulumi writes it: `{"pid", "username", "hostname", "timestamp"}`, the time in RFC 3339 with
    nanoseconds and an offset (Go's time.Time). A time without an offset is unreadable, not guessed."""
    try:
        document = json.loads(content)
    except ValueError:
        document = None
    fields = document if isinstance(document, dict) else {}
    pid, hostname, locked_at = fields.get("pid"), fields.get("hostname"), fields.get("timestamp")
    return StackLock(
        key=key,
        locked_at=_aware_time(locked_at) if isinstance(locked_at, str) else None,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        hostname=hostname if isinstance(hostname, str) else None,
    )


def _aware_time(text: str) -> datetime.datetime | None:
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def kept_at_start(lock: StackLock, acquired_at: datetime.datetime | None) -> str | None:
    """Why a lock found at start is kept; None if it is provably stale: written before this replica acquired
    the Lease (by a previous leader, which can no longer act). Without leader election (`acquired_at` None)
    this replica is the only one, so every lock of its stacks is stale."""
    if acquired_at is None:
        return None
    if lock.locked_at is None:
        return "its time cannot be read: delete it by hand once no `pulumi` update of the stack runs"
    if lock.locked_at >= acquired_at.astimezone(datetime.UTC):
        return "written after this replica acquired its Lease: an update of another replica may hold it"
    return None


def kept_after_kill(lock: StackLock, hostname: str, killed_pids: Collection[int]) -> str | None:
    """Why a lock of a killed step's stack is kept; None if one of the processes this replica killed held it
    (they are gone, so it is stale)."""
    if lock.hostname == hostname and lock.pid in killed_pids:
        return None
    return "not held by a process this replica killed"


def kept_while_holder_lives(lock: StackLock, hostname: str) -> str | None:
    """Why a lock of a busy stack is kept; None if a process of this host held it and is gone (a `pulumi`
    run killed from outside, or one that died when the backend vanished): no update can hold it any more.
    A pid that now belongs to another process keeps the lock, on the safe side."""
    if lock.hostname != hostname or lock.pid is None:
        return "held by a process of another host (or of unknown pid)"
    try:
        os.kill(lock.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "its holder still runs"


class _FileLocks:
    """The same calls as S3Bucket, on a `file://` backend's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def keys(self, prefix: str) -> Iterator[str]:
        folder = self.root / prefix
        return (
            (path.relative_to(self.root).as_posix() for path in folder.rglob("*.json"))
            if folder.exists()
            else iter(())
        )

    def get(self, key: str, max_bytes: int) -> bytes:
        with (self.root / key).open("rb") as file:
            content = file.read(max_bytes + 1)
        if len(content) > max_bytes:
            raise OSError(f"{key} holds more than {max_bytes} bytes")
        return content

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def close(self) -> None:
        pass


def _read_lock(store: _FileLocks | S3Bucket, key: str) -> StackLock:
    try:
        return parse_lock(key, store.get(key, max_bytes=_MAX_LOCK_BYTES))
    except (OSError, S3UnavailableError) as error:
        log.warning("Failed to read stack lock", extra={"key": key, "detail": str(error)})
        return StackLock(key=key, locked_at=None)


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
    global _worker_settings, _worker_provider  # noqa: PLW0603 - one per worker process, set once
    # A session of its own, so that stopping a step (`_kill_workers`) kills everything this worker started.
    os.setsid()
    # ...which also takes it out of the reconciler's process group: it must still die with the reconciler.
    threading.Thread(target=_die_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    os.environ.update(settings.environment())
    _worker_settings = settings
    if settings.long_lived_provider:
        _worker_provider = LongLivedProvider(Path(settings.work_root) / f"provider-{os.getpid()}")


PARENT_WATCH_SECONDS = 1.0


def _die_with_parent(parent: int) -> None:
    """In a worker: once the reconciler that spawned it is gone (killed outright, say), kills this worker's
    session — its `pulumi` run and itself (the provider dies with the worker) — within a second, so no step
    of a dead reconciler goes on."""
    while os.getppid() == parent:
        time.sleep(PARENT_WATCH_SECONDS)
    os.killpg(0, signal.SIGKILL)


def _pulumi_command() -> auto.PulumiCommand:
    """This worker's `pulumi` command, made (it runs `pulumi version`) at its first step."""
    global _worker_command  # noqa: PLW0603 - one per worker process, set once
    if _worker_command is None:
        _worker_command = auto.PulumiCommand()
    return _worker_command


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
        pulumi_command=_pulumi_command(),
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
            keep = {(str(kind), str(object_name)) for kind, object_name in json.loads(desired_json or "[]")}
            targets = _destroy_targets(stack, keep) if keep else None
            if targets != []:
                stack.destroy(
                    color="never",
                    suppress_progress=True,
                    on_output=_ignore,
                    on_event=events.append,
                    target=targets,
                )
            else:
                events.append(_NOTHING_DESTROYED)
            stack.workspace.remove_stack(name, force=bool(keep))
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


def _destroy_targets(stack: auto.Stack, keep: set[tuple[str, str]]) -> list[str]:
    """The URNs of the stack's Kubernetes objects except those in `keep` ((kind, name)): a destroy of
    these leaves someone else's object with one of the stack's names alone (the stack is then removed with
    what remains in its state)."""
    resources = (stack.export_stack().deployment or {}).get("resources") or []
    targets = []
    for resource in resources:
        outputs = resource.get("outputs") or {}
        kind, metadata = outputs.get("kind"), outputs.get("metadata") or {}
        if not resource.get("custom") or str(resource.get("type", "")).startswith("pulumi:"):
            continue
        if (kind, metadata.get("name")) not in keep:
            targets.append(str(resource["urn"]))
    return targets


# A destroy that had nothing of its own to delete still reports its (empty) changes.
_NOTHING_DESTROYED = auto.EngineEvent(
    sequence=0,
    timestamp=0,
    summary_event=auto.events.SummaryEvent(
        maybe_corrupt=False, duration_seconds=0, resource_changes={}, policy_packs={}
    ),
)


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
    started = [worker for worker in workers if worker.pid is not None]
    for worker in started:
        worker.kill()  # through its Process: never signals the pid once it is reaped (and maybe reused)
    sessions = {worker.pid for worker in started if worker.pid is not None}
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


class _StepPool(ProcessPoolExecutor):
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


def _stopped_error(step: Step, name: str, reason: str) -> TransientError:
    return TransientError(f"`pulumi {step}` of stack {name} was stopped: {reason}; the step is retried")


class PulumiStacks:
    """The StackRunner port: one Pulumi stack per CanaryApp, named `<namespace>.<name>`.

    `fence`, if given, is called right before each step is submitted and raises if this replica may no
    longer act (its exception propagates unchanged). A step waits at most `step_timeout` seconds for its
    result, counted from when a worker is free for it."""

    def __init__(
        self,
        settings: PulumiSettings,
        workers: int = 2,
        step_timeout: float = 300.0,
        fence: Callable[[], None] | None = None,
    ) -> None:
        if not step_timeout > 0:
            raise ValueError(f"step_timeout must be above 0 seconds, not {step_timeout}")
        self.settings = settings
        self.workers = workers
        self.step_timeout = step_timeout
        self._fence = fence
        self._lock = threading.Lock()
        # No step waits inside the executor behind others: its time limit runs while a worker runs it.
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = self._new_pool()

    def _new_pool(self) -> _StepPool:
        return _StepPool(self.settings, self.workers)

    def close(self) -> None:
        """A clean stop: waits for the steps in flight (each ends within `step_timeout`)."""
        with self._lock:
            pool = self._pool
        pool.shutdown(wait=True, cancel_futures=True)

    def abort(self, reason: str = "this replica stopped every step in flight (it lost leadership)") -> None:
        """Kills every step in flight at once (its worker, `pulumi` CLI, engine and provider) and puts a new
        pool in place; each of those steps raises TransientError saying it was stopped. When this returns,
        nothing those steps started runs any more. Safe from any thread, and more than once.

        The killed steps' locks are left alone: a replica that lost leadership writes nothing more, and the
        next leader removes them (`clear_stale_locks`: they were written before it acquired the Lease)."""
        with self._lock:
            pool = self._pool
        self._stop(pool, reason, clear_locks=False)

    def clear_stale_locks(
        self, stack_names: Collection[str], *, acquired_at: datetime.datetime | None = None
    ) -> int:
        """Removes update locks of these stacks that a reconciler killed mid-`up` left, in a `file://` or an
        `s3://` backend (another backend: logged and left alone); returns how many it removed.

        Only the leader of a shard runs steps, one per stack at a time, and every shard has its own stacks;
        other shards' locks sharing the backend are never touched. A lock of this shard is removed only if it
        was written before `acquired_at`, when this replica acquired the shard's Lease: a later one may be a
        live update of another replica that still believes it leads. `acquired_at` None (only without leader
        election, where this replica is the only one) removes every lock of these stacks.
        """
        return self._clear_locks(stack_names, lambda lock: kept_at_start(lock, acquired_at))

    def _clear_locks(self, stack_names: Collection[str], kept: Callable[[StackLock], str | None]) -> int:
        """Deletes the locks of these stacks for which `kept` gives no reason to keep them; logs each."""
        try:
            store = _lock_store(self.settings.backend_url)
        except S3UnavailableError as error:
            log.warning(
                "Left stale stack locks alone: cannot reach the backend's lock objects",
                extra={"detail": str(error)},
            )
            return 0
        deleted = 0
        try:
            keys = [key for key in store.keys(_LOCKS_PREFIX) if PurePosixPath(key).parent.name in stack_names]
            for key in keys:
                lock = _read_lock(store, key)
                reason = kept(lock)
                fields = {
                    "stack": lock.stack,
                    "locked_at": lock.locked_at.isoformat() if lock.locked_at else None,
                    "key": key,
                }
                if reason is None:
                    store.delete(key)
                    deleted += 1
                    log.info("Deleted stale stack lock", extra=fields)
                else:
                    log.warning("Kept stack lock", extra={**fields, "reason": reason})
        except S3UnavailableError as error:
            log.warning("Failed to clear stale stack locks", extra={"detail": str(error)})
        finally:
            store.close()
        return deleted

    def apply(self, desired: DesiredStack) -> StepReport:
        return self._step(Step.UP, desired.stack_name, desired.to_json())

    def destroy(self, namespace: str, name: str, keep: Collection[tuple[str, str]] = ()) -> StepReport:
        return self._step(Step.DESTROY, stack_name(namespace, name), json.dumps(sorted(keep)) if keep else "")

    def _step(self, step: Step, name: str, desired_json: str) -> StepReport:
        """Runs one step in a worker and waits for it at most `step_timeout` seconds.

        A step that takes longer is killed, engine and provider included, and raises StepTimeoutError. A
        worker cannot be killed alone without breaking its pool, so every other step in flight is killed with
        it: those raise TransientError, and the loop retries them. The locks the killed `pulumi` processes
        held are then deleted (this replica's processes held them, and they are gone), so the retries do not
        find their stacks busy.
        """
        timeout = self.step_timeout
        with self._slots:
            with self._lock:
                pool = self._pool
            if self._fence is not None:
                self._fence()
            try:
                future = self._submit(pool, step, name, desired_json)
            except BrokenProcessPool as error:
                raise self._lost(pool, step, name) from error
            try:
                outcome = future.result(timeout=timeout)
            except TimeoutError:
                raise self._timed_out(pool, step, name, timeout) from None
            except BrokenProcessPool as error:
                raise self._lost(pool, step, name) from error
            except CancelledError as error:  # by `_stop`, or by `close()` before a worker took it
                reason = pool.stopped_because or "the reconciler is stopping"
                raise _stopped_error(step, name, reason) from error
            finally:
                with self._lock:
                    pool.running.remove(name)
        if outcome.failure == Failure.BUSY:
            # A lock whose `pulumi` run died without releasing it would keep the stack busy forever.
            self._clear_locks([name], lambda lock: kept_while_holder_lives(lock, socket.gethostname()))
        failed = outcome_error(step, name, outcome)
        if failed is not None:
            raise failed
        return StepReport(changes=outcome.changes, seconds=outcome.seconds)

    def _submit(self, pool: _StepPool, step: Step, name: str, desired_json: str) -> Future[_Outcome]:
        """Submits the step to `pool`, unless it was stopped meanwhile (while the fence was checked, say).
        Under the lock `_stop` takes, so a stopped pool never starts another worker or step."""
        with self._lock:
            if pool.stopped_because is not None:
                raise _stopped_error(step, name, pool.stopped_because)
            future = self._submit_run(pool, step, name, desired_json)
            pool.started_workers.update(_worker_processes(pool))
            pool.running.append(name)
        return future

    def _submit_run(
        self, executor: ProcessPoolExecutor, step: Step, name: str, desired_json: str
    ) -> Future[_Outcome]:
        return executor.submit(_run, step, name, desired_json)

    def _timed_out(self, pool: _StepPool, step: Step, name: str, timeout: float) -> StepTimeoutError:
        limit = f"`pulumi {step}` of stack {name} took longer than {timeout:g} s (--step-timeout)"
        self._stop(pool, limit, clear_locks=True)
        return StepTimeoutError(
            f"{limit}: its engine and provider were stopped; the step is retried",
            retry_after=_STACK_ERROR_RETRY_SECONDS,
        )

    def _lost(self, pool: _StepPool, step: Step, name: str) -> TransientError:
        """The error of a step whose worker is gone: killed by `_stop`, or dead on its own. In the second case
        the rest of its pool is stopped too: the `pulumi` run of a dead worker would go on without it."""
        self._stop(pool, "a Pulumi step worker died", clear_locks=True)
        return _stopped_error(step, name, pool.stopped_because or "")

    def _stop(self, pool: _StepPool, reason: str, *, clear_locks: bool) -> None:
        """Kills the workers of `pool` with everything they started and puts a new pool in its place (once:
        the first reason given is kept), then deletes the locks the killed processes held if the first
        caller asked to. Returns once they are all gone."""
        with self._lock:
            if pool.stopped_because is None:
                pool.stopped_because, pool.clears_locks = reason, clear_locks
                pool.stopped_stacks = tuple(pool.running)
                if self._pool is pool:
                    self._pool = self._new_pool()
        with pool.stopping:
            if pool.killed is not None:
                return
            pool.killed = _kill_workers(pool.started_workers.values())
            pool.shutdown(wait=False, cancel_futures=True)
            log.warning(
                "Stopped Pulumi steps",
                extra={
                    "reason": pool.stopped_because,
                    "stacks": list(pool.stopped_stacks),
                    "processes": len(pool.killed),
                },
            )
        if pool.clears_locks and pool.stopped_stacks:
            hostname, killed = socket.gethostname(), pool.killed
            self._clear_locks(pool.stopped_stacks, lambda lock: kept_after_kill(lock, hostname, killed))
