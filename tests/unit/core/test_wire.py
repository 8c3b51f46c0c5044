"""The status body written to the API server (wire.py): the status's fields, and the original operator's
fields derived from the releases the status records."""

from __future__ import annotations

import datetime

import pytest

from reconciler.core.analysis import CheckResult
from reconciler.core.decisions import Observations
from reconciler.core.machine import decide, wants_check
from reconciler.core.model import CanaryApp, CanaryAppSpec, CanaryAppStatus, CheckOutcome
from reconciler.core.readiness import DeploymentState
from reconciler.core.wire import status_body
from tests.unit.core.statuses import PORT, revision, written

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SPEC = {"image": "app:v2", "imageListenPort": PORT, "prometheusQuery": "q", "prometheusURL": "http://p"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(
            CanaryAppStatus(),
            {
                "primaryImage": None,
                "canaryImage": None,
                "successfulRelease": None,
                "testRunning": False,
                "trafficShift": 0,
                "lastRetryToken": None,
            },
            id="a new CanaryApp",
        ),
        pytest.param(
            written(
                phase="Progressing", primary="app:v1", canary="app:v2", successful="app:v1", canaryWeight=30
            ),
            {
                "primaryImage": "app:v1",
                "canaryImage": "app:v2",
                "successfulRelease": "app:v1",
                "testRunning": True,
                "trafficShift": 30,
                "primaryRevision": revision("app:v1"),
                "canaryRevision": revision("app:v2"),
            },
            id="a canary running",
        ),
        pytest.param(
            written(
                phase="Failed",
                primary="app:v1",
                successful="app:v1",
                failed=["app:v2"],
                lastFailedTag="app:v2",
            ),
            {
                "canaryImage": None,
                "testRunning": False,
                "trafficShift": 0,
                "failedImages": ["app:v2"],
                "failedRevisions": [revision("app:v2")],
                "lastFailedTag": "app:v2",
            },
            id="rolled back",
        ),
    ],
)
def test_the_original_operators_fields_follow_the_releases(
    status: CanaryAppStatus, expected: dict[str, object]
) -> None:
    body = status_body(status)
    assert {field: body[field] for field in expected} == expected


def test_every_status_a_rollout_writes_reads_back_as_itself() -> None:
    """The wire format and the parser agree: what a pass writes, the next pass reads unchanged."""
    spec = CanaryAppSpec.model_validate(SPEC)
    status = written(phase="Ready", primary="app:v1", successful="app:v1")
    ready = DeploymentState("app:v2", ready=True, revision=revision("app:v2"))
    moment, kinds = T0, []
    for _ in range(12):
        check = CheckResult(CheckOutcome.CLEAN) if wants_check(spec, status, moment) else None
        decision = decide(spec, status, Observations(primary=ready, canary=ready, check=check), moment)
        kinds.append(decision.kind)
        status = decision.status
        assert (
            CanaryApp.model_validate(
                {"metadata": {"name": "web"}, "spec": SPEC, "status": status_body(status)}
            ).status
            == status
        )
        moment += datetime.timedelta(seconds=decision.requeue_after or 30)
    assert {"StartCanary", "Advance", "Promote", "CompletePromotion"} <= set(kinds)
