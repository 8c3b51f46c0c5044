"""The Argo CD example works: its health check, run in a real Lua 5.1 interpreter (the language of Argo CD's
gopher-lua), maps every status the reconciler writes to the right Argo CD health, argocd-cm embeds exactly
that Lua, and the AppProject and Application agree with each other and with the repository.

The manifests are validated against Argo CD's own CRDs in tests/integration/test_argocd_manifests.py."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51  # type: ignore[import-untyped]

from reconciler.core.analysis import CheckResult
from reconciler.core.conditions import with_stack_sync
from reconciler.core.decisions import Observations
from reconciler.core.machine import decide
from reconciler.core.model import CanaryAppSpec, CanaryAppStatus, CheckOutcome
from reconciler.core.readiness import DeploymentState
from reconciler.core.workload import shorthand_revision

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "argocd-app"
HEALTH_LUA = (EXAMPLE / "canaryapp-health.lua").read_text()
HEALTH_KEY = "resource.customizations.health.canary.atze.io_CanaryApp"
ARGO_HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

# Runs the script as Argo CD does, with `obj` as its only input, and lets it see a few base functions only: it
# must not depend on which libraries (string, table, os, ...) a given Argo CD version opens.
SANDBOXED_RUN = """
function(script, obj)
  local chunk = assert(loadstring(script, "canaryapp-health.lua"))
  setfenv(chunk, {obj = obj, ipairs = ipairs, pairs = pairs, tostring = tostring, tonumber = tonumber,
                  type = type, next = next})
  return chunk()
end
"""


def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    result = lua.eval(SANDBOXED_RUN)(HEALTH_LUA, lua.table_from(obj, recursive=True))
    health = dict(result.items())
    assert set(health) == {"status", "message"}
    assert health["status"] in ARGO_HEALTH_STATUSES
    return health


def canaryapp(status: CanaryAppStatus | dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "canary.atze.io/v1",
        "kind": "CanaryApp",
        "metadata": {"name": "web", "namespace": "canaryapps", "generation": generation},
        "spec": {"image": "web:v1"},
    }
    if isinstance(status, CanaryAppStatus):
        obj["status"] = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    elif status is not None:
        obj["status"] = status
    return obj


def spec(image: str) -> CanaryAppSpec:
    return CanaryAppSpec.model_validate(
        {
            "image": image,
            "imageListenPort": 8088,
            "prometheusQuery": "up == 0",
            "prometheusURL": "http://prometheus:9090",
            "stepWeight": 50,
            "maxWeight": 50,
        }
    )


@dataclasses.dataclass
class Rollout:
    """Drives the real decide() tick by tick, each step applied, so the health check sees the statuses the
    reconciler writes."""

    status: CanaryAppStatus = dataclasses.field(default_factory=CanaryAppStatus)
    generation: int = 1
    seconds: float = 0

    def tick(self, image: str, **observed: Any) -> dict[str, str]:
        self.seconds += 100
        now = T0 + datetime.timedelta(seconds=self.seconds)
        observations = Observations(generation=self.generation, **observed)
        decided = decide(spec(image), self.status, observations, now).status
        self.status = with_stack_sync(decided, spec(image).revision, True, now)
        return argocd_health(canaryapp(self.status, self.generation))


def ready(image: str) -> DeploymentState:
    return DeploymentState(image=image, ready=True, revision=shorthand_revision(image, 8088))


def test_a_promoted_rollout_is_progressing_until_it_is_healthy() -> None:
    rollout = Rollout()
    assert rollout.tick("web:v1")["status"] == "Progressing"
    healthy = rollout.tick("web:v1", primary=ready("web:v1"))
    assert healthy == {"status": "Healthy", "message": "Primary serves web:v1"}

    rollout.generation = 2
    assert argocd_health(canaryapp(rollout.status, generation=2)) == waiting_for_generation(2)
    started = rollout.tick("web:v2", primary=ready("web:v1"))
    assert started == {"status": "Progressing", "message": rollout.status.message}
    assert "web:v2" in started["message"]
    assert rollout.tick("web:v2", primary=ready("web:v1"), canary=ready("web:v2"))["status"] == "Progressing"
    clean = CheckResult(CheckOutcome.CLEAN)
    promoting = rollout.tick("web:v2", primary=ready("web:v1"), canary=ready("web:v2"), check=clean)
    assert rollout.status.phase == "Promoting"
    assert promoting["status"] == "Progressing"
    promoted = rollout.tick("web:v2", primary=ready("web:v2"), canary=ready("web:v2"))
    assert rollout.status.phase == "Succeeded"
    assert promoted == {"status": "Healthy", "message": "Promoted web:v2"}


def test_a_paused_rollout_is_suspended() -> None:
    rollout = Rollout()
    rollout.tick("web:v1")
    rollout.tick("web:v1", primary=ready("web:v1"))
    rollout.tick("web:v2", primary=ready("web:v1"))
    rollout.status = rollout.status.model_copy(update={"paused": True})
    assert rollout.tick("web:v2", primary=ready("web:v1"))["status"] == "Suspended"


def test_a_rolled_back_rollout_is_degraded_and_names_the_image_and_the_reason() -> None:
    rollout = Rollout()
    rollout.tick("web:v1")
    rollout.tick("web:v1", primary=ready("web:v1"))
    rollout.tick("web:v2", primary=ready("web:v1"))
    rollout.tick("web:v2", primary=ready("web:v1"), canary=ready("web:v2"))
    errors = CheckResult(CheckOutcome.ERRORS_FOUND, "5xx answers of web-canary")
    degraded = rollout.tick("web:v2", primary=ready("web:v1"), canary=ready("web:v2"), check=errors)
    assert rollout.status.phase == "Failed"
    assert degraded["status"] == "Degraded"
    assert "web:v2" in degraded["message"]
    assert "5xx answers of web-canary" in degraded["message"]


def waiting_for_generation(generation: int) -> dict[str, str]:
    return {
        "status": "Progressing",
        "message": f"Waiting for the canaryapp reconciler to observe generation {generation}",
    }


def condition(status: str) -> dict[str, str]:
    return {
        "type": "Ready",
        "status": status,
        "reason": "PrimaryUnavailable",
        "message": "web-primary has 0/2 available pods",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def standing(condition_type: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {
        "type": condition_type,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        pytest.param(
            None,
            1,
            {"status": "Progressing", "message": "Waiting for the canaryapp reconciler to report a status"},
            id="no-status",
        ),
        pytest.param(
            {"message": "only a message"},
            1,
            {"status": "Progressing", "message": "Waiting for the canaryapp reconciler to report a status"},
            id="no-phase",
        ),
        pytest.param(
            {"phase": "Ready", "message": "Primary serves web:v1"},
            1,
            waiting_for_generation(1),
            id="no-observed-generation",
        ),
        pytest.param(
            {"phase": "Failed", "message": "Rolled back web:v2: check failed", "observedGeneration": 3},
            4,
            waiting_for_generation(4),
            id="failed-but-spec-changed-since",
        ),
        pytest.param(
            {"phase": "Ready", "observedGeneration": 1, "message": "Primary serves web:v1"},
            1,
            {"status": "Healthy", "message": "Primary serves web:v1"},
            id="ready-without-conditions",
        ),
        pytest.param(
            {"phase": "Succeeded", "observedGeneration": 1, "conditions": [condition("False")]},
            1,
            {"status": "Degraded", "message": "Primary not ready: web-primary has 0/2 available pods"},
            id="ready-condition-false",
        ),
        pytest.param(
            {"phase": "Ready", "observedGeneration": 1, "conditions": [condition("Unknown")]},
            1,
            {"status": "Progressing", "message": "Waiting for the primary to become ready"},
            id="ready-condition-unknown",
        ),
        pytest.param(
            {"phase": "Failed", "observedGeneration": 1},
            1,
            {"status": "Degraded", "message": "The last rollout was rolled back"},
            id="failed-without-message",
        ),
        pytest.param(
            {
                "phase": "Ready",
                "observedGeneration": 2,
                "message": "Primary serves web:v1",
                "conditions": [
                    standing("Ready", "False", "PolicyDenied", "spec.gateways: not allowed"),
                    standing("Stalled", "True", "PolicyDenied", "spec.gateways: not allowed"),
                ],
            },
            2,
            {"status": "Degraded", "message": "spec.gateways: not allowed"},
            id="stalled-in-a-steady-phase",
        ),
        pytest.param(
            {
                "phase": "Succeeded",
                "observedGeneration": 1,
                "message": "Promoted web:v1",
                "conditions": [
                    standing("Ready", "False", "WaitingForSlot", "web:v2 waits for a rollout slot"),
                    standing("Reconciling", "True", "WaitingForSlot", "web:v2 waits for a rollout slot"),
                ],
            },
            1,
            {"status": "Progressing", "message": "web:v2 waits for a rollout slot"},
            id="reconciling-in-a-steady-phase",
        ),
        pytest.param(
            {
                "phase": "Ready",
                "observedGeneration": 1,
                "message": "Primary serves web:v1",
                "conditions": [standing("Reconciling", "False", "Applying", "m")],
            },
            1,
            {"status": "Progressing", "message": "Primary serves web:v1"},
            id="neither-ready-nor-reconciling-nor-stalled",
        ),
        pytest.param(
            {"phase": "Paused", "observedGeneration": 1, "message": "m"},
            1,
            {"status": "Unknown", "message": "Unknown CanaryApp phase Paused"},
            id="unknown-phase",
        ),
    ],
)
def test_health_of_hand_written_statuses(
    status: dict[str, Any] | None, generation: int, expected: dict[str, str]
) -> None:
    assert argocd_health(canaryapp(status, generation)) == expected


def test_the_argocd_cm_patch_embeds_the_health_check_verbatim() -> None:
    patch = yaml.safe_load((EXAMPLE / "argocd-cm-patch.yaml").read_text())
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
    }
    assert patch["data"] == {HEALTH_KEY: HEALTH_LUA}


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLE / name).read_text())
    return document


def test_the_project_allows_only_canaryapps_in_one_namespace() -> None:
    project = load("appproject.yaml")
    assert project["kind"] == "AppProject"
    assert project["metadata"] == {"name": "canaryapps", "namespace": "argocd"}
    assert project["spec"]["destinations"] == [
        {"server": "https://kubernetes.default.svc", "namespace": "canaryapps"}
    ]
    assert project["spec"]["namespaceResourceWhitelist"] == [{"group": "canary.atze.io", "kind": "CanaryApp"}]
    assert project["spec"]["clusterResourceWhitelist"] == []


def test_the_application_fits_its_project_and_points_at_the_canaryapps_folder() -> None:
    project = load("appproject.yaml")["spec"]
    application = load("application.yaml")
    assert application["kind"] == "Application"
    assert application["metadata"]["namespace"] == "argocd"
    assert application["spec"]["project"] == "canaryapps"
    assert application["spec"]["source"]["repoURL"] in project["sourceRepos"]
    assert application["spec"]["destination"] in project["destinations"]
    folder = ROOT / application["spec"]["source"]["path"]
    assert folder == EXAMPLE / "canaryapps"
    manifests = sorted(folder.glob("*.yaml"))
    assert len(manifests) == 2
    for path in manifests:
        for document in yaml.safe_load_all(path.read_text()):
            assert document["apiVersion"] == "canary.atze.io/v1", path
            assert document["kind"] == "CanaryApp", path
            assert document["metadata"]["namespace"] == "canaryapps", path
            canary_workload = f'destination_workload="{document["metadata"]["name"]}-canary"'
            assert canary_workload in document["spec"]["prometheusQuery"], path
