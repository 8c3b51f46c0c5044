"""Every step ends: one that outlives --step-timeout is killed with everything its worker started (the
`pulumi` CLI, plugins in process groups of their own), the lock its `pulumi` held is deleted, the steps killed
with it fail to be retried, and the pool runs the next step; `abort()` from another thread stops a step in
flight; the fence is checked right before a step is submitted.

The workers are real (spawned, each in a session of its own); what they run stands in for `run_step`
(`stand_in_step`), so these tests need no Pulumi CLI."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pytest

from reconciler.adapters.pulumi import worker
from reconciler.adapters.pulumi.runner import PulumiStacks
from reconciler.adapters.pulumi.settings import PulumiSettings
from reconciler.adapters.pulumi.worker import Outcome, Step
from reconciler.config import add_run_arguments, run_config
from reconciler.core.errors import StepTimeoutError, TransientError

# A start-up budget for a spawned worker on a busy machine: never reached when things work.
WAIT_SECONDS = 60.0


def lock_path(root: Path, stack: str, lock_id: str) -> Path:
    return root / ".pulumi" / "locks" / "organization" / "canaryapp" / stack / f"{lock_id}.json"


def stand_in_step(step: Step, name: str, desired_json: str) -> Outcome:
    """In a worker: answers at once, except for stacks `*.hang` and `*.slow`, which never end. A `*.hang` step
    first does what a frozen `pulumi up` did: it started the CLI (here in the worker's process group), which
    took the stack's lock and started a plugin (in a process group of its own, as the engine starts them)."""
    if name.endswith(".hang"):
        settings = worker.current().settings
        assert settings.file_backend_path is not None
        cli = subprocess.Popen(["sleep", "3600"])
        plugin = subprocess.Popen(["sleep", "3600"], process_group=0)
        lock = {
            "pid": cli.pid,
            "username": "canaryapp",
            "hostname": socket.gethostname(),
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        path = lock_path(settings.file_backend_path, name, "running")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(lock))
        started = Path(settings.work_root) / f"{name}.pids"
        started.with_suffix(".tmp").write_text(json.dumps([os.getpid(), cli.pid, plugin.pid]))
        started.with_suffix(".tmp").rename(started)
    if name.endswith((".hang", ".slow")):
        time.sleep(3600)
    return Outcome({"same": 1}, 0.0)


class StandInStacks(PulumiStacks):
    def apply_stand_in(self, name: str) -> None:
        """A step of stack `name` (run by `stand_in_step`), as the loop would ask for it."""
        self._step(Step.UP, name, "")

    def _submit_run(
        self, executor: ProcessPoolExecutor, step: Step, name: str, desired_json: str
    ) -> Future[Outcome]:
        return executor.submit(stand_in_step, step, name, desired_json)


def settings(root: Path) -> PulumiSettings:
    (root / "state").mkdir(exist_ok=True)
    (root / "work").mkdir(exist_ok=True)
    return PulumiSettings(f"file://{root / 'state'}", str(root / "work"), str(root / "home"))


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[StandInStacks]:
    runner = StandInStacks(settings(tmp_path), workers=2, step_timeout=WAIT_SECONDS)
    yield runner
    runner.abort("the test ended")
    runner.close()


class InThread:
    """Runs a step in a thread of its own and keeps what it raised."""

    def __init__(self, step: Callable[[], object]) -> None:
        self.error: BaseException | None = None
        self._step = step
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._step()
        except BaseException as error:
            self.error = error

    def raised(self) -> BaseException | None:
        self._thread.join(WAIT_SECONDS)
        assert not self._thread.is_alive(), "the step never ended"
        return self.error


def started_pids(root: Path, stack: str) -> list[int]:
    """The pids a `*.hang` step wrote once it hung: its worker, the CLI stand-in, the plugin stand-in."""
    path = root / "work" / f"{stack}.pids"
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        assert time.monotonic() < deadline, f"the step of {stack} never started"
        time.sleep(0.02)
    pids: list[int] = json.loads(path.read_text())
    return pids


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def test_a_step_that_hangs_is_killed_with_what_it_started_and_the_pool_runs_the_next_step(
    stacks: StandInStacks, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    another_holders = lock_path(state, "ns.hang", "another")
    another_holders.parent.mkdir(parents=True)
    another_holders.write_text(
        json.dumps({"pid": 1, "hostname": "elsewhere", "timestamp": "2026-12-01T15:00:00Z"})
    )
    assert stacks.destroy("ns", "web").changes == {"same": 1}

    stacks.step_timeout = 3.0
    hanging = InThread(lambda: stacks.destroy("ns", "hang"))
    pids = started_pids(tmp_path, "ns.hang")
    assert all(alive(pid) for pid in pids)
    stacks.step_timeout = WAIT_SECONDS  # the next step is stopped with the hanging one, not by its own limit
    killed_with_it = InThread(lambda: stacks.destroy("ns", "slow"))

    error = hanging.raised()
    assert isinstance(error, StepTimeoutError)
    assert str(error) == (
        "`pulumi destroy` of stack ns.hang took longer than 3 s (--step-timeout): its engine and provider "
        "were stopped; the step is retried"
    )
    other = killed_with_it.raised()
    assert isinstance(other, TransientError)
    assert not isinstance(other, StepTimeoutError)
    assert str(other) == (
        "`pulumi destroy` of stack ns.slow was stopped: `pulumi destroy` of stack ns.hang took longer than "
        "3 s (--step-timeout); the step is retried"
    )
    assert [pid for pid in pids if alive(pid)] == []
    assert not lock_path(state, "ns.hang", "running").exists(), "the killed CLI's lock is deleted"
    assert another_holders.exists(), "a lock the killed processes did not hold is kept"
    assert stacks.destroy("ns", "web").changes == {"same": 1}


def test_abort_from_another_thread_stops_a_step_in_flight_and_leaves_its_lock_to_the_next_leader(
    stacks: StandInStacks, tmp_path: Path
) -> None:
    hanging = InThread(lambda: stacks.destroy("ns", "hang"))
    pids = started_pids(tmp_path, "ns.hang")

    aborts = [InThread(stacks.abort) for _ in range(2)]
    assert [abort.raised() for abort in aborts] == [None, None]
    assert [pid for pid in pids if alive(pid)] == [], "everything the step started is gone once abort returns"
    error = hanging.raised()
    assert isinstance(error, TransientError)
    assert not isinstance(error, StepTimeoutError)
    assert str(error) == (
        "`pulumi destroy` of stack ns.hang was stopped: this replica stopped every step in flight (it lost "
        "leadership); the step is retried"
    )
    assert lock_path(tmp_path / "state", "ns.hang", "running").exists()
    stacks.abort()
    assert stacks.destroy("ns", "web").changes == {"same": 1}


class LostLeaseError(Exception):
    pass


def test_the_fences_error_propagates_unchanged_and_nothing_runs(tmp_path: Path) -> None:
    def fence() -> None:
        raise LostLeaseError("no longer leads")

    stacks = StandInStacks(settings(tmp_path), workers=1, fence=fence)
    try:
        with pytest.raises(LostLeaseError, match="no longer leads"):
            stacks.destroy("ns", "web")
        assert stacks._pool.started_workers == {}
    finally:
        stacks.close()


def test_a_step_whose_fence_passed_as_its_steps_were_aborted_never_runs(tmp_path: Path) -> None:
    stacks = StandInStacks(settings(tmp_path), workers=1)
    stacks._fence = stacks.abort  # leadership was lost (and the steps aborted) right after the fence passed
    try:
        with pytest.raises(TransientError, match=r"`pulumi destroy` of stack ns\.web was stopped"):
            stacks.destroy("ns", "web")
        assert stacks._pool.started_workers == {}
    finally:
        stacks.close()


def config_of(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser.parse_args(argv)


def test_the_step_timeout_defaults_to_five_minutes_and_follows_its_variable_and_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CANARYAPP_STEP_TIMEOUT", raising=False)
    assert run_config(config_of()).step_timeout == 300.0
    monkeypatch.setenv("CANARYAPP_STEP_TIMEOUT", "42.5")
    assert run_config(config_of()).step_timeout == 42.5
    assert run_config(config_of("--step-timeout", "7")).step_timeout == 7.0


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_step_timeout_that_bounds_nothing_stops_start_up_naming_the_flag(value: str) -> None:
    with pytest.raises(SystemExit, match="--step-timeout"):
        run_config(config_of("--step-timeout", value))


def test_a_step_timeout_that_is_not_a_number_stops_start_up_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        config_of("--step-timeout", "five minutes")
    assert "--step-timeout: invalid float value" in capsys.readouterr().err


RECONCILER_THAT_DIES = """
import sys, threading
from pathlib import Path
from tests.unit.adapters.pulumi.test_runner import StandInStacks, settings
stacks = StandInStacks(settings(Path(sys.argv[1])), workers=1, step_timeout=3600)
threading.Thread(target=stacks.apply_stand_in, args=("ns.hang",), daemon=True).start()
threading.Event().wait()
"""


def test_a_reconciler_killed_outright_takes_its_workers_and_their_pulumi_runs_with_it(tmp_path: Path) -> None:
    """The workers lead sessions of their own (so a step can be killed with all it started), which takes them
    out of the reconciler's process group: they watch their parent and end with it."""
    reconciler = subprocess.Popen(
        [sys.executable, "-c", RECONCILER_THAT_DIES, str(tmp_path)], cwd=Path(__file__).parents[4]
    )
    started = tmp_path / "work" / "ns.hang.pids"
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not started.exists() and time.monotonic() < deadline and reconciler.poll() is None:
            time.sleep(0.1)
        worker, cli, _ = json.loads(started.read_text())
        assert alive(worker)
        assert alive(cli)
    finally:
        reconciler.kill()
        reconciler.wait()
    deadline = time.monotonic() + WAIT_SECONDS
    while (alive(worker) or alive(cli)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker)
    assert not alive(cli)
