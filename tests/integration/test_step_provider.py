"""Steps through the adapter (`PulumiStacks`) with the real engine and Kubernetes provider: one long-lived
provider serves many `up`s (the engine's end-of-run Cancel does not break it), a provider that died is
replaced before the next step, and the per-step fallback still works."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from devenv.cluster import LocalCluster
from devenv.kube import read_weights
from reconciler.adapters.pulumi.provider import BINARY
from reconciler.adapters.pulumi.runner import PulumiStacks
from reconciler.adapters.pulumi.settings import PulumiSettings
from reconciler.core.desired import DesiredStack
from reconciler.core.errors import TransientError
from reconciler.core.workload import effective_template

pytestmark = pytest.mark.integration


def desired(namespace: str, weight: int) -> DesiredStack:
    return DesiredStack(
        name="steps",
        namespace=namespace,
        owner_uid="",
        port=8088,
        replicas=1,
        test_replicas=1,
        hosts=("steps",),
        gateways=(),
        primary_image="app:v1",
        canary_image="app:v2",
        canary_weight=weight,
        primary_template=effective_template(None, "app:v1", 8088),
        primary_revision="r1",
        canary_template=effective_template(None, "app:v2", 8088),
        canary_revision="r2",
    )


def stacks_for(cluster: LocalCluster, root: Path, *, long_lived: bool) -> PulumiStacks:
    (root / "state").mkdir(parents=True)
    os.environ.setdefault("PULUMI_CONFIG_PASSPHRASE", "test")
    settings = PulumiSettings(
        backend_url=f"file://{root / 'state'}",
        work_root=str(root / "workspaces"),
        pulumi_home=str(root / "pulumi-home"),
        extra_env={"KUBECONFIG": str(cluster.kubeconfig)},
        long_lived_provider=long_lived,
    )
    return PulumiStacks(settings, workers=1)


def providers_of(pid: int) -> list[int]:
    """Pids of the provider processes that are children of `pid`."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child) for child in children if Path(f"/proc/{child}/comm").read_text().strip() == BINARY[:15]
    ]


@pytest.fixture
def long_lived(cluster: LocalCluster, tmp_path: Path) -> Iterator[PulumiStacks]:
    stacks = stacks_for(cluster, tmp_path, long_lived=True)
    yield stacks
    stacks.close()


def test_one_provider_serves_every_step_and_a_dead_one_is_replaced(
    long_lived: PulumiStacks, kube: kubernetes.client.ApiClient, namespace: str
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube)
    assert long_lived.apply(desired(namespace, 0)).changes == {"create": 6}
    worker = next(iter(long_lived._pool._processes))  # type: ignore[attr-defined]
    provider = providers_of(worker)
    assert len(provider) == 1
    for weight in (10, 20, 30):
        report = long_lived.apply(desired(namespace, weight))
        assert report.changes == {"same": 5, "update": 1}
        assert read_weights(custom, namespace, "steps") == (100 - weight, weight)
    assert providers_of(worker) == provider, "every step attached to the same provider"

    # A provider that dies between steps costs at most one failed step, whose error says why; the provider is
    # replaced for the next one. (Whether the worker sees it dead before its next step is a race.)
    os.kill(provider[0], signal.SIGKILL)
    try:
        report = long_lived.apply(desired(namespace, 40))
    except TransientError as error:
        failed = str(error)
        report = long_lived.apply(desired(namespace, 40))
        assert "provider is not answering" in failed
    assert report.changes == {"same": 5, "update": 1}
    assert read_weights(custom, namespace, "steps") == (60, 40)
    replaced = providers_of(worker)
    assert len(replaced) == 1
    assert replaced != provider


def test_a_provider_per_step_still_works(
    cluster: LocalCluster, kube: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    stacks = stacks_for(cluster, tmp_path, long_lived=False)
    try:
        stacks.apply(desired(namespace, 0))
        worker = next(iter(stacks._pool._processes))  # type: ignore[attr-defined]
        assert stacks.apply(desired(namespace, 10)).changes == {"same": 5, "update": 1}
        assert providers_of(worker) == []
        custom = kubernetes.client.CustomObjectsApi(kube)
        assert read_weights(custom, namespace, "steps") == (90, 10)
    finally:
        stacks.close()
