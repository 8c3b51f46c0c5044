"""The status's conditions (conditions.py): Progressing and Paused follow the decided phase; StackSynced and
Promoted follow whether the decided step reached the cluster; Ready, Reconciling and Stalled (kstatus) say
where the spec's release stands, with one of them True."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core import reasons
from reconciler.core.clock import timestamp
from reconciler.core.conditions import with_phase_conditions, with_stack_sync, with_standing
from reconciler.core.model import STEADY_PHASES, CanaryAppStatus, Phase
from tests.unit.core.statuses import revision, written

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
STANDING = ("Ready", "Reconciling", "Stalled")


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def summary(status: CanaryAppStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status.value, c.reason) for c in status.conditions}


def standing_of(status: CanaryAppStatus) -> tuple[str, str]:
    """The one True condition of Ready, Reconciling and Stalled, and their shared reason."""
    trio = [c for c in status.conditions if c.type in STANDING]
    assert sorted(c.type for c in trio) == sorted(STANDING)
    assert len({c.reason for c in trio}) == 1
    true = [c.type for c in trio if c.status.value == "True"]
    assert len(true) == 1, true
    return true[0], trio[0].reason


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(
            written(phase="Initializing", primary="app:v1"),
            {"Progressing": ("True", reasons.INITIALIZING), "Paused": ("False", reasons.NOT_PAUSED)},
            id="initializing",
        ),
        pytest.param(
            written(phase="Progressing", primary="app:v1", canary="app:v2", paused=True),
            {
                "Progressing": ("True", reasons.CANARY_PROGRESSING),
                "Paused": ("True", reasons.PAUSED_BY_REQUEST),
            },
            id="a paused canary",
        ),
        pytest.param(
            written(phase="Failed", primary="app:v1", failed=["app:v2"]),
            {"Progressing": ("False", reasons.ROLLED_BACK), "Paused": ("False", reasons.NOT_PAUSED)},
            id="rolled back",
        ),
    ],
)
def test_progressing_and_paused_follow_the_phase(
    status: CanaryAppStatus, expected: dict[str, tuple[str, str]]
) -> None:
    marked = with_phase_conditions(status, 3, at(1))
    assert summary(marked) == expected
    assert {c.observed_generation for c in marked.conditions} == {3}


APPLIED = (True, "")
APPLYING = (False, "")
RETRYING = (False, "Stack update failed: boom")


@pytest.mark.parametrize(
    ("status", "spec_image", "step", "expected"),
    [
        pytest.param(
            written(phase="Initializing", primary="app:v1"),
            "app:v1",
            APPLIED,
            ("Reconciling", reasons.INITIALIZING),
            id="first release starting",
        ),
        pytest.param(
            written(phase="Ready", primary="app:v1", successful="app:v1"),
            "app:v1",
            APPLIED,
            ("Ready", reasons.ROLLED_OUT),
            id="first release ready",
        ),
        pytest.param(
            written(phase="Ready", primary="app:v1", successful="app:v1"),
            "app:v1",
            APPLYING,
            ("Reconciling", reasons.APPLYING),
            id="steady but its step not applied yet",
        ),
        pytest.param(
            written(phase="Ready", primary="app:v1", successful="app:v1"),
            "app:v1",
            RETRYING,
            ("Reconciling", reasons.RETRYING),
            id="steady, its step failed and is retried",
        ),
        pytest.param(
            written(phase="Progressing", primary="app:v1", canary="app:v2"),
            "app:v2",
            APPLIED,
            ("Reconciling", reasons.CANARY_PROGRESSING),
            id="canary progressing",
        ),
        pytest.param(
            written(phase="Progressing", primary="app:v1", canary="app:v2", paused=True),
            "app:v2",
            APPLIED,
            ("Reconciling", reasons.PAUSED),
            id="paused canary",
        ),
        pytest.param(
            written(phase="Progressing", primary="app:v1", canary="app:v2"),
            "app:v2",
            RETRYING,
            ("Reconciling", reasons.RETRYING),
            id="canary step failed and is retried",
        ),
        pytest.param(
            written(phase="Promoting", primary="app:v2", canary="app:v2"),
            "app:v2",
            APPLIED,
            ("Reconciling", reasons.PROMOTING),
            id="promoting",
        ),
        pytest.param(
            written(phase="Succeeded", primary="app:v2", successful="app:v2"),
            "app:v2",
            APPLIED,
            ("Ready", reasons.ROLLED_OUT),
            id="promoted",
        ),
        pytest.param(
            written(
                phase="Succeeded", primary="app:v1", successful="app:v1", queuedAt="2026-01-01T00:00:00Z"
            ),
            "app:v2",
            APPLIED,
            ("Reconciling", reasons.WAITING_FOR_SLOT),
            id="waiting for a rollout slot",
        ),
        pytest.param(
            written(phase="Ready", primary="app:v1", successful="app:v1"),
            "app:v2",
            APPLIED,
            ("Reconciling", reasons.ROLLOUT_PENDING),
            id="a new release not started yet (a canary abandoned for it)",
        ),
        pytest.param(
            written(phase="Failed", primary="app:v1", successful="app:v1", failed=["app:v2"]),
            "app:v2",
            APPLYING,
            ("Stalled", reasons.ROLLED_BACK),
            id="rolled back: failed at once, before the rollback is applied",
        ),
        pytest.param(
            written(phase="Succeeded", primary="app:v3", successful="app:v3", failed=["app:v2"]),
            "app:v2",
            APPLIED,
            ("Stalled", reasons.ROLLED_BACK),
            id="the spec names a release rolled back before",
        ),
        pytest.param(
            written(phase="Failed", primary="app:v1", successful="app:v1", failed=["app:v2"]),
            "app:v1",
            APPLIED,
            ("Ready", reasons.ROLLED_OUT),
            id="rolled back, then the spec went back to the primary's release",
        ),
    ],
)
def test_one_of_ready_reconciling_and_stalled_says_where_the_spec_release_stands(
    status: CanaryAppStatus, spec_image: str, step: tuple[bool, str], expected: tuple[str, str]
) -> None:
    synced, failure = step
    decided = status.model_copy(update={"observed_generation": 4})
    marked = with_stack_sync(decided, revision(spec_image), synced, at(1), failure)
    assert standing_of(marked) == expected
    assert {c.observed_generation for c in marked.conditions} == {4}


def test_a_name_conflict_stalls_until_the_user_removes_the_object() -> None:
    conflict = "Left Service ns/web alone: not owned by this CanaryApp"
    ready = written(phase="Ready", primary="app:v1", successful="app:v1")
    marked = with_stack_sync(ready, revision("app:v1"), False, at(1), conflict, reasons.NAME_CONFLICT)
    assert standing_of(marked) == ("Stalled", reasons.NAME_CONFLICT)
    assert marked.condition("Stalled").message == conflict  # type: ignore[union-attr]


def test_ready_names_the_image_the_primary_serves() -> None:
    ready = written(phase="Ready", primary="app:v1", successful="app:v1")
    marked = with_stack_sync(ready, revision("app:v1"), True, at(1))
    assert marked.condition("Ready").message == "Primary serves app:v1"  # type: ignore[union-attr]


def test_a_refused_spec_stalls_its_generation_and_keeps_the_other_conditions() -> None:
    promoted = with_stack_sync(
        written(phase="Succeeded", primary="app:v1", successful="app:v1", observedGeneration=2),
        revision("app:v1"),
        True,
        at(1),
    )
    denied = "spec.gateways: not allowed"
    refused = with_standing(promoted, "Stalled", reasons.POLICY_DENIED, denied, 3, at(5))
    assert standing_of(refused) == ("Stalled", reasons.POLICY_DENIED)
    assert {c.type: c.observed_generation for c in refused.conditions if c.type in STANDING} == dict.fromkeys(
        STANDING, 3
    )
    assert refused.condition("StackSynced") == promoted.condition("StackSynced")
    assert refused.condition("Ready").last_transition_time == timestamp(at(5))  # type: ignore[union-attr]


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
    marked = with_stack_sync(succeeded, revision("app:v2"), synced, at(1), failure)
    assert summary(marked)["StackSynced"] == stack_synced
    assert summary(marked)["Promoted"] == promoted
    if synced:
        assert marked.condition("Promoted").message == "app:v2 is promoted"  # type: ignore[union-attr]


def test_a_condition_keeps_its_transition_time_until_its_value_changes() -> None:
    v1 = revision("app:v1")
    applying = with_stack_sync(written(phase="Ready", primary="app:v1"), v1, False, at(1))
    failed = with_stack_sync(applying, v1, False, at(5), "boom")
    applied = with_stack_sync(failed, v1, True, at(9))
    for condition_type, changed_at in (("StackSynced", at(9)), ("Reconciling", at(9)), ("Stalled", at(1))):
        times = [s.condition(condition_type).last_transition_time for s in (applying, failed, applied)]  # type: ignore[union-attr]
        assert times == [timestamp(at(1)), timestamp(at(1)), timestamp(changed_at)], condition_type


IMAGES = ["app:v1", "app:v2", "app:v3"]


@given(
    phase=st.sampled_from(list(Phase)),
    primary=st.sampled_from(IMAGES),
    spec_image=st.sampled_from(IMAGES),
    failed=st.lists(st.sampled_from(IMAGES), unique=True, max_size=2),
    paused=st.booleans(),
    queued=st.booleans(),
    step=st.sampled_from(
        [(True, "", reasons.STACK_UPDATE_FAILED), (False, "", reasons.STACK_UPDATE_FAILED)]
        + [(False, "it failed", reason) for reason in (reasons.STACK_UPDATE_FAILED, reasons.NAME_CONFLICT)]
    ),
    generation=st.integers(min_value=1, max_value=9),
)
def test_ready_only_for_a_rolled_out_release_and_exactly_one_of_the_three(
    phase: Phase,
    primary: str,
    spec_image: str,
    failed: list[str],
    paused: bool,
    queued: bool,
    step: tuple[bool, str, str],
    generation: int,
) -> None:
    synced, failure, failure_reason = step
    rolled_back = [image for image in failed if image != primary]
    status = written(
        phase=phase,
        primary=primary,
        failed=rolled_back,
        paused=paused,
        queuedAt="2026-01-01T00:00:00Z" if queued else None,
        observedGeneration=generation,
    )
    marked = with_stack_sync(status, revision(spec_image), synced, at(1), failure, failure_reason)
    true_condition, _ = standing_of(marked)
    trio = [c for c in marked.conditions if c.type in STANDING]
    assert {c.observed_generation for c in trio} == {marked.observed_generation}
    if true_condition == "Ready":
        assert phase in STEADY_PHASES
        assert (spec_image, synced, queued) == (primary, True, False)
    if true_condition == "Stalled":
        assert (failure_reason == reasons.NAME_CONFLICT and failure) or spec_image in rolled_back
