"""A step whose long-lived Kubernetes provider freezes during an `up` ends within --step-timeout: its
worker, `pulumi` CLI and provider are killed, the stack lock the killed `up` held is deleted, and the next
`up` runs on a new worker and provider and succeeds (real engine and provider, real local cluster)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from devenv.cluster import LocalCluster
from devenv.kube import read_weights
from reconciler.adapters.pulumi.runner import PulumiStacks
from reconciler.core.errors import StepTimeoutError
from tests.integration.helpers import wait_for
from tests.integration.test_step_provider import desired, providers_of, stacks_for
from tests.unit.adapters.pulumi.test_runner import alive

pytestmark = pytest.mark.integration

FROZEN_STEP_TIMEOUT = 5.0


@pytest.fixture
def stacks(cluster: LocalCluster, tmp_path: Path) -> Iterator[PulumiStacks]:
    runner = stacks_for(cluster, tmp_path, long_lived=True)
    yield runner
    runner.abort("the test ended")
    runner.close()


def locks_of(root: Path, stack: str) -> list[Path]:
    return list((root / "state" / ".pulumi" / "locks").rglob(f"{stack}/*.json"))


def test_an_up_on_a_frozen_provider_is_killed_its_lock_deleted_and_the_next_up_succeeds(
    stacks: PulumiStacks, kube: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube)
    assert stacks.apply(desired(namespace, 0)).changes == {"create": 6}
    worker = next(iter(stacks._pool._processes))  # type: ignore[attr-defined]
    [provider] = providers_of(worker)
    stack = desired(namespace, 10).stack_name

    os.kill(provider, signal.SIGSTOP)
    stacks.step_timeout = FROZEN_STEP_TIMEOUT
    failures: list[Exception] = []

    def frozen_up() -> None:
        try:
            stacks.apply(desired(namespace, 10))
        except Exception as error:
            failures.append(error)

    frozen = threading.Thread(target=frozen_up)
    frozen.start()
    wait_for(lambda: locks_of(tmp_path, stack), FROZEN_STEP_TIMEOUT, "the frozen `up` holds the stack lock")
    frozen.join(FROZEN_STEP_TIMEOUT * 6)
    assert not frozen.is_alive(), "the step outlived its time limit"

    [error] = failures
    assert isinstance(error, StepTimeoutError)
    assert str(error) == (
        f"`pulumi up` of stack {stack} took longer than 5 s (--step-timeout): its engine and provider were "
        "stopped; the step is retried"
    )
    assert locks_of(tmp_path, stack) == [], "the killed `up`'s lock is deleted"
    assert not alive(worker)
    assert not alive(provider), "the frozen provider is killed"
    assert read_weights(custom, namespace, "steps") == (100, 0)

    stacks.step_timeout = 300.0
    assert stacks.apply(desired(namespace, 10)).changes == {"same": 5, "update": 1}
    assert read_weights(custom, namespace, "steps") == (90, 10)
    new_worker = next(iter(stacks._pool._processes))  # type: ignore[attr-defined]
    assert new_worker != worker
    assert len(providers_of(new_worker)) == 1
