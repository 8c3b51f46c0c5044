"""The status's conditions (conditions.py): Ready, Progressing and Paused follow the decided phase;
StackSynced and Promoted follow whether the decided step reached the cluster."""

from __future__ import annotations

import datetime

import pytest

from reconciler.core import reasons
from reconciler.core.clock import timestamp
from reconciler.core.conditions import with_phase_conditions, with_stack_sync
from reconciler.core.model import CanaryAppStatus
from tests.unit.core.statuses import written

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def summary(status: CanaryAppStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status.value, c.reason) for c in status.conditions}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(
            written(phase="Initializing", primary="app:v1"),
            {
                "Ready": ("False", reasons.INITIALIZING),
                "Progressing": ("True", reasons.INITIALIZING),
                "Paused": ("False", reasons.NOT_PAUSED),
            },
            id="initializing",
        ),
        pytest.param(
            written(phase="Progressing", primary="app:v1", canary="app:v2", paused=True),
            {
                "Ready": ("True", reasons.PRIMARY_AVAILABLE),
                "Progressing": ("True", reasons.CANARY_PROGRESSING),
                "Paused": ("True", reasons.PAUSED_BY_REQUEST),
            },
            id="a paused canary",
        ),
        pytest.param(
            written(phase="Failed", primary="app:v1", failed=["app:v2"]),
            {
                "Ready": ("True", reasons.PRIMARY_AVAILABLE),
                "Progressing": ("False", reasons.ROLLED_BACK),
                "Paused": ("False", reasons.NOT_PAUSED),
            },
            id="rolled back",
        ),
    ],
)
def test_ready_progressing_and_paused_follow_the_phase(
    status: CanaryAppStatus, expected: dict[str, tuple[str, str]]
) -> None:
    marked = with_phase_conditions(status, 3, at(1))
    assert summary(marked) == expected
    assert {c.observed_generation for c in marked.conditions} == {3}


def test_ready_names_the_image_the_primary_serves() -> None:
    marked = with_phase_conditions(written(phase="Ready", primary="app:v1"), 1, at(1))
    assert marked.condition("Ready").message == "Primary serves app:v1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("synced", "failure", "stack_synced", "promoted"),
    [
        pytest.param(False, "", ("False", reasons.APPLYING), ("False", reasons.NOT_PROMOTED), id="applying"),
        pytest.param(
            False,
            "boom",
            ("False", reasons.STACK_UPDATE_FAILED),
            ("False", reasons.NOT_PROMOTED),
            id="failed",
        ),
        pytest.param(True, "", ("True", reasons.STACK_APPLIED), ("True", reasons.PROMOTED), id="applied"),
    ],
)
def test_promoted_needs_the_promotion_applied(
    synced: bool, failure: str, stack_synced: tuple[str, str], promoted: tuple[str, str]
) -> None:
    succeeded = written(phase="Succeeded", primary="app:v2", successful="app:v2")
    marked = with_stack_sync(succeeded, synced, at(1), failure)
    assert summary(marked) == {"StackSynced": stack_synced, "Promoted": promoted}
    if synced:
        assert marked.condition("Promoted").message == "app:v2 is promoted"  # type: ignore[union-attr]


def test_a_condition_keeps_its_transition_time_until_its_value_changes() -> None:
    applying = with_stack_sync(written(phase="Ready", primary="app:v1"), False, at(1))
    failed = with_stack_sync(applying, False, at(5), "boom")
    applied = with_stack_sync(failed, True, at(9))
    times = [s.condition("StackSynced").last_transition_time for s in (applying, failed, applied)]  # type: ignore[union-attr]
    assert times == [timestamp(at(1)), timestamp(at(1)), timestamp(at(9))]
