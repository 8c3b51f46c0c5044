"""The readiness predicate (reconciler/core/readiness.py): when a Deployment counts as rolled out."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core.readiness import DeploymentState, deployment_state, ready_with


def deployment(replicas: int = 2, generation: int = 3, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": "app:v2"}]}}},
        "status": {
            "observedGeneration": 3,
            "replicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2,
            **status,
        },
    }


@pytest.mark.parametrize(
    ("the_deployment", "ready"),
    [
        pytest.param(deployment(), True, id="all updated and available"),
        pytest.param(deployment(generation=4), False, id="controller has not seen the latest spec"),
        pytest.param(deployment(updatedReplicas=1), False, id="a pod still runs the old template"),
        pytest.param(deployment(availableReplicas=1), False, id="a pod is not available yet"),
        pytest.param(deployment(replicas=3), False, id="an old pod is still there"),
        pytest.param(deployment(replicas=3, generation=3), False, id="scaled up, not there yet"),
        pytest.param({"spec": {}, "metadata": {}}, False, id="no status at all"),
    ],
)
def test_deployment_state(the_deployment: dict[str, Any], ready: bool) -> None:
    state = deployment_state(the_deployment)
    assert state.ready is ready
    assert state.image == ("app:v2" if the_deployment["spec"] else "")


@pytest.mark.parametrize(
    ("state", "image", "expected"),
    [
        pytest.param(None, "app:v2", False, id="missing"),
        pytest.param(DeploymentState("app:v2", ready=False, revision="r2"), "r2", False, id="not ready"),
        pytest.param(DeploymentState("app:v1", ready=True, revision="r1"), "r2", False, id="other revision"),
        pytest.param(
            DeploymentState("app:v2", ready=True, revision="r2"), "r2", True, id="ready with the revision"
        ),
        pytest.param(DeploymentState("app:v2", ready=True), "", False, id="no revision either side"),
    ],
)
def test_ready_with(state: DeploymentState | None, image: str, expected: bool) -> None:
    assert ready_with(state, image) is expected
