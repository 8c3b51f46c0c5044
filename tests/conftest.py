"""Fixtures the envtest and e2e tiers share: one local cluster per test process (pytest-xdist worker), the
admin's client, a fresh namespace per test and the limited user. Session fixtures start only when a test asks
for them, so the unit tier (tests/unit, tests/stacks, tests/devenv) needs no tool."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from devenv.cluster import POD_SECURITY_LABELS, LocalCluster, running
from devenv.kube import api_client
from devenv.processes import REPO_ROOT, tools_bin
from tests.integration.helpers import LIMITED_USER, LIMITED_USER_EXAMPLE, kubectl

TESTS = Path(__file__).resolve().parent
# The order in which make test's workers take modules (--dist loadscope --no-loadscope-reorder hands them out
# in collection order): longest first, as one packs bins. The fault suite (minutes, a cluster of its own)
# starts at once on one worker, the other e2e modules of two minutes or more (their durations in clean-clone
# runs of `make test`: rollouts 216-229 s, analysis 156-261, judge 175-177, control 140-177, demo 92-105)
# on the others, then the shorter e2e modules; the envtest and unit tiers' short modules come last and even
# out the workers' ends. In alphabetical order, test_rollouts started last and its worker ended a minute
# after the others.
LONGEST_FIRST = (
    "integration/test_faults.py",
    "integration/test_rollouts.py",
    "integration/test_analysis.py",
    "integration/test_judge.py",
    "integration/test_control.py",
    "integration/test_demo.py",
    "integration",
    "envtest",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=start_order)


def start_order(item: pytest.Item) -> int:
    """The index of the first entry of LONGEST_FIRST that is a prefix of the item's path under tests/."""
    path = item.path.relative_to(TESTS).as_posix()
    return next(
        (index for index, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST)
    )


@pytest.fixture(scope="session")
def tools_on_path() -> None:
    venv_bin = REPO_ROOT / ".venv" / "bin"
    os.environ["PATH"] = f"{tools_bin()}:{venv_bin}:{os.environ['PATH']}"


@pytest.fixture(scope="session")
def cluster(tools_on_path: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running(tmp_path_factory.mktemp("cluster")) as local:
        local.apply_project_crds()
        yield local


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster) -> kubernetes.client.ApiClient:
    return api_client(cluster.kubeconfig)


@pytest.fixture
def namespace(kube: kubernetes.client.ApiClient) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    body = {"metadata": {"name": name, "labels": POD_SECURITY_LABELS}}
    kubernetes.client.CoreV1Api(kube).create_namespace(body)
    return name


@pytest.fixture(scope="module")
def limited_user(cluster: LocalCluster) -> Iterator[kubernetes.client.ApiClient]:
    """An API client that acts as examples/limited-user's user (impersonated by the admin), with the example
    applied: it may manage CanaryApps in `default` and nothing else."""
    example = str(LIMITED_USER_EXAMPLE / "rbac.yaml")
    applied = kubectl(cluster.kubeconfig, "apply", "-f", example)
    assert applied.returncode == 0, applied.stderr
    client = api_client(cluster.kubeconfig)
    client.set_default_header("Impersonate-User", LIMITED_USER)
    yield client
    client.close()
    deleted = kubectl(cluster.kubeconfig, "delete", "-f", example, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
