"""When a Deployment counts as rolled out: the predicate that decides when a canary gets traffic and when a
promotion completes. Pure (a Deployment as the API server serves it, in, a small value out), so it is
table-tested on its own (tests/unit/core/test_readiness.py), as Argo Rollouts tests its replica predicates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.names import REVISION_ANNOTATION


@dataclass(frozen=True)
class DeploymentState:
    """What the loop saw of a Deployment: its main image, the pod template revision it was given
    (`canary.atze.io/revision`; empty on a Deployment from before revisions), whether all its pods run that
    template and are ready, and how many replicas it asks for."""

    image: str
    ready: bool
    revision: str = ""
    replicas: int = 0


def deployment_state(deployment: Mapping[str, Any]) -> DeploymentState:
    """Ready means: the controller saw the latest spec, every pod runs it, and all of them are available (no
    old pod is left either). `deployment` is the API object as JSON (camelCase keys)."""
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    metadata = deployment.get("metadata") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    wanted = spec.get("replicas", 1)
    ready = (
        (status.get("observedGeneration") or 0) >= (metadata.get("generation") or 0)
        and (status.get("updatedReplicas") or 0) == wanted
        and (status.get("availableReplicas") or 0) == wanted
        and (status.get("replicas") or 0) == wanted
    )
    return DeploymentState(
        image=containers[0].get("image", ""),
        ready=ready,
        revision=(metadata.get("annotations") or {}).get(REVISION_ANNOTATION, ""),
        replicas=wanted,
    )


def ready_with(state: DeploymentState | None, revision: str | None) -> bool:
    """The Deployment exists, is ready, and runs the pod template `revision`."""
    return state is not None and state.ready and bool(revision) and state.revision == revision
