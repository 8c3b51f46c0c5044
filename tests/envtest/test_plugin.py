"""The kubectl plugin (`kubectl canaryapp`, reconciler/plugin.py) as kubectl finds it on PATH, against the
local API server: its errors name the object and what to do. tests/integration/test_control.py drives real
rollouts with it."""

from __future__ import annotations

import pytest

from devenv.cluster import LocalCluster
from tests.integration.helpers import plugin

pytestmark = pytest.mark.envtest


def test_errors_name_the_problem(cluster: LocalCluster, namespace: str) -> None:
    missing = plugin(cluster.kubeconfig, "status", "nothing-here", "--namespace", namespace)
    assert missing.returncode == 1
    assert f"could not read CanaryApp {namespace}/nothing-here: not found" in missing.stderr
