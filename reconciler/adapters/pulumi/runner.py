"""The StackRunner port: each step of a CanaryApp's stack runs in a step worker (`worker`, `pool`), and every
step ends.

A step that outlives `step_timeout` (--step-timeout) is killed with everything its worker started, and
`abort()` kills every step in flight at once (for a replica that lost leadership: the next leader must never
run `up` on a stack this one still updates). Before each step the fence confirms this replica still leads. A
Pulumi lock is deleted only when provably stale (`locks`).
"""

from __future__ import annotations

import datetime
import json
import logging
import socket
import threading
from collections.abc import Callable, Collection
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from reconciler.adapters.pulumi import locks
from reconciler.adapters.pulumi.failures import (
    Failure,
    stopped_error,
    time_limit,
    timed_out_error,
)
from reconciler.adapters.pulumi.pool import StepPool
from reconciler.adapters.pulumi.settings import PulumiSettings
from reconciler.adapters.pulumi.worker import Outcome, Step, run_step
from reconciler.core.desired import DesiredStack
from reconciler.core.errors import StepTimeoutError, TransientError
from reconciler.core.names import stack_name
from reconciler.core.ports import StepReport

log = logging.getLogger(__name__)


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

    def _new_pool(self) -> StepPool:
        return StepPool(self.settings, self.workers)

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
        return locks.clear_locks(
            self.settings.backend_url, stack_names, lambda lock: locks.kept_at_start(lock, acquired_at)
        )

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
                raise stopped_error(step, name, reason) from error
            finally:
                with self._lock:
                    pool.running.remove(name)
        if outcome.failure == Failure.BUSY:
            # A lock whose `pulumi` run died without releasing it would keep the stack busy forever.
            hostname = socket.gethostname()
            locks.clear_locks(
                self.settings.backend_url, [name], lambda lock: locks.kept_while_holder_lives(lock, hostname)
            )
        failed = outcome.error(step, name)
        if failed is not None:
            raise failed
        return StepReport(changes=outcome.changes, seconds=outcome.seconds)

    def _submit(self, pool: StepPool, step: Step, name: str, desired_json: str) -> Future[Outcome]:
        """Submits the step to `pool`, unless it was stopped meanwhile (while the fence was checked, say).
        Under the lock `_stop` takes, so a stopped pool never starts another worker or step."""
        with self._lock:
            if pool.stopped_because is not None:
                raise stopped_error(step, name, pool.stopped_because)
            future = self._submit_run(pool, step, name, desired_json)
            pool.note_workers()
            pool.running.append(name)
        return future

    def _submit_run(
        self, executor: ProcessPoolExecutor, step: Step, name: str, desired_json: str
    ) -> Future[Outcome]:
        return executor.submit(run_step, step, name, desired_json)

    def _timed_out(self, pool: StepPool, step: Step, name: str, timeout: float) -> StepTimeoutError:
        limit = time_limit(step, name, timeout)
        self._stop(pool, limit, clear_locks=True)
        return timed_out_error(limit)

    def _lost(self, pool: StepPool, step: Step, name: str) -> TransientError:
        """The error of a step whose worker is gone: killed by `_stop`, or dead on its own. In the second case
        the rest of its pool is stopped too: the `pulumi` run of a dead worker would go on without it."""
        self._stop(pool, "a Pulumi step worker died", clear_locks=True)
        return stopped_error(step, name, pool.stopped_because or "")

    def _stop(self, pool: StepPool, reason: str, *, clear_locks: bool) -> None:
        """Kills the workers of `pool` with everything they started and puts a new pool in its place (once:
        the first reason given is kept), then deletes the locks the killed processes held if the first
        caller asked to. Returns once they are all gone."""
        with self._lock:
            if pool.stopped_because is None:
                pool.stopped_because, pool.clears_locks = reason, clear_locks
                pool.stopped_stacks = tuple(pool.running)
                if self._pool is pool:
                    self._pool = self._new_pool()
        killed = pool.kill()
        if killed is None:
            return
        log.warning(
            "Stopped Pulumi steps",
            extra={
                "reason": pool.stopped_because,
                "stacks": list(pool.stopped_stacks),
                "processes": len(killed),
            },
        )
        if pool.clears_locks and pool.stopped_stacks:
            hostname = socket.gethostname()
            locks.clear_locks(
                self.settings.backend_url,
                pool.stopped_stacks,
                lambda lock: locks.kept_after_kill(lock, hostname, killed),
            )
