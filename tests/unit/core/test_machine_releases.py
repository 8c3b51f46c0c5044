"""Releases are pod template revisions: any template change is a canary, failed revisions are not retried,
statuses from before revisions (upgraded where parsed) keep their meaning, and the primary keeps its
capacity during a rollout."""

from __future__ import annotations

import datetime
from typing import Any

from reconciler.core import reasons
from reconciler.core.analysis import CheckResult
from reconciler.core.decisions import (
    AbandonCanary,
    CompletePromotion,
    Hold,
    Observations,
    Rollback,
    StartCanary,
)
from reconciler.core.desired import desired_stack
from reconciler.core.machine import decide
from reconciler.core.model import Action, CanaryApp, CanaryAppSpec, CanaryAppStatus, CheckOutcome, Phase
from reconciler.core.readiness import DeploymentState

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
ERRORS = CheckResult(CheckOutcome.ERRORS_FOUND, "5xx found")


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def spec(foo: str = "1", image: str = "app:v2", **more: Any) -> CanaryAppSpec:
    return CanaryAppSpec.model_validate(
        {
            "image": image,
            "imageListenPort": 8088,
            "template": {"spec": {"containers": [{"name": "app", "env": [{"name": "FOO", "value": foo}]}]}},
            "prometheusQuery": "up == 0",
            "prometheusURL": "http://prometheus:9090",
            "trafficShiftUpdateInterval": 10,
            "deploymentReadyWaitTime": 60,
            **more,
        }
    )


def ready(the_spec: CanaryAppSpec, replicas: int = 1) -> DeploymentState:
    return DeploymentState(the_spec.main_image, ready=True, revision=the_spec.revision, replicas=replicas)


def steady(the_spec: CanaryAppSpec) -> CanaryAppStatus:
    """A CanaryApp whose primary runs `the_spec`, promoted."""
    started = decide(the_spec, CanaryAppStatus(), Observations(), at(0)).status
    return decide(the_spec, started, Observations(primary=ready(the_spec)), at(1)).status


def test_an_env_change_alone_starts_a_canary_and_says_what_changed() -> None:
    v1, v2 = spec("1"), spec("2")
    decision = decide(v2, steady(v1), Observations(primary=ready(v1)), at(5))
    assert isinstance(decision, StartCanary)
    status = decision.status
    assert status.canary_revision == v2.revision != v1.revision
    assert status.canary_image == status.primary_image == "app:v2"
    assert "env FOO changed" in decision.message
    assert status.rollouts[-1].changes == ("env FOO changed",)
    # The stack runs the old template as the primary and the new one as the canary.
    desired = desired_stack("web", "ns", "uid", v2, status)
    assert desired.primary_template == v1.pod_template
    assert desired.canary_template == v2.pod_template


def test_a_failed_env_change_is_rolled_back_not_retried_and_the_good_image_is_not_listed_as_failed() -> None:
    v1, v2 = spec("1"), spec("2")
    started = decide(v2, steady(v1), Observations(primary=ready(v1)), at(5)).status
    advanced = decide(v2, started, Observations(primary=ready(v1), canary=ready(v2)), at(6)).status
    rolled_back = decide(
        v2, advanced, Observations(primary=ready(v1), canary=ready(v2), check=ERRORS), at(20)
    )
    assert isinstance(rolled_back, Rollback)
    failed = rolled_back.status
    assert failed.phase == Phase.FAILED
    assert failed.failed_revisions == (v2.revision,)
    assert failed.failed_images == ()  # app:v2 still serves as the primary: it is not a failed image
    assert failed.primary_revision == v1.revision
    assert failed.canary_revision is None
    assert [t.revision for t in failed.pod_templates] == [v1.revision]
    again = decide(v2, failed, Observations(primary=ready(v1)), at(30))
    assert again.reason == reasons.SKIPPED_FAILED_IMAGE
    assert "change spec.image or spec.template" in again.message
    retried = decide(
        v2, failed, Observations(primary=ready(v1), requests={Action.RETRY: "t1"}), at(40)
    ).status
    assert retried.failed_revisions == ()
    assert isinstance(decide(v2, retried, Observations(primary=ready(v1)), at(41)), StartCanary)


def test_a_new_image_that_fails_is_listed_in_failed_images_as_before() -> None:
    v1, v3 = spec("1"), spec("1", image="app:v3")
    started = decide(v3, steady(v1), Observations(primary=ready(v1)), at(5)).status
    advanced = decide(v3, started, Observations(primary=ready(v1), canary=ready(v3)), at(6)).status
    failed = decide(
        v3, advanced, Observations(primary=ready(v1), canary=ready(v3), check=ERRORS), at(20)
    ).status
    assert failed.failed_images == ("app:v3",)
    assert failed.failed_revisions == (v3.revision,)
    assert failed.last_failed_tag == "app:v3"


def test_a_newer_template_change_abandons_the_running_canary_and_names_the_change() -> None:
    v1, v2, v3 = spec("1"), spec("2"), spec("3")
    started = decide(v2, steady(v1), Observations(primary=ready(v1)), at(5)).status
    abandoned = decide(v3, started, Observations(primary=ready(v1)), at(6))
    assert isinstance(abandoned, AbandonCanary)
    assert "env FOO changed" in abandoned.message
    assert abandoned.status.canary_revision is None
    restarted = decide(v3, abandoned.status, Observations(primary=ready(v1)), at(7))
    assert isinstance(restarted, StartCanary)
    assert restarted.status.canary_revision == v3.revision


def test_a_status_from_before_revisions_keeps_its_meaning() -> None:
    """An original manifest's status (images only), as read from the API server: the same image is no
    change, a failed image stays failed, and the legacy primary's template is the shorthand one."""
    app = CanaryApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {
                "image": "app:v1",
                "imageListenPort": 8088,
                "prometheusQuery": "up == 0",
                "prometheusURL": "http://prometheus:9090",
            },
            "status": {
                "phase": "Failed",
                "primaryImage": "app:v1",
                "successfulRelease": "app:v1",
                "failedImages": ["app:v2"],
            },
        }
    )
    original, legacy = app.spec, app.status
    held = decide(original, legacy, Observations(), at(0))
    assert isinstance(held, Hold)
    assert held.status.primary_revision == original.revision
    failed_v2 = original.model_copy(update={"image": "app:v2"})
    skipped = decide(failed_v2, legacy, Observations(), at(0))
    assert skipped.reason == reasons.SKIPPED_FAILED_IMAGE
    assert desired_stack("web", "ns", "uid", original, held.status).primary_template == original.pod_template


def test_the_primary_keeps_its_replicas_as_the_autoscalers_floor_during_a_rollout() -> None:
    scaled = {"autoscaler": {"minReplicas": 2, "maxReplicas": 10}}
    v1, v2 = spec("1", **scaled), spec("2", **scaled)
    before = steady(v1)
    assert desired_stack("web", "ns", "uid", v1, before).primary_autoscaler.min_replicas == 2  # type: ignore[union-attr]
    started = decide(v2, before, Observations(primary=ready(v1, replicas=6)), at(5)).status
    assert started.primary_min_replicas == 6
    during = desired_stack("web", "ns", "uid", v2, started)
    assert during.primary_autoscaler is not None
    assert during.primary_autoscaler.min_replicas == 6
    assert during.canary_autoscaler is not None
    assert during.canary_autoscaler.min_replicas == 2
    promoted = decide(
        v2,
        started.model_copy(update={"phase": Phase.PROMOTING, "primary_revision": v2.revision}),
        Observations(primary=ready(v2, replicas=6)),
        at(50),
    )
    assert isinstance(promoted, CompletePromotion)
    after = desired_stack("web", "ns", "uid", v2, promoted.status)
    assert after.primary_autoscaler is not None
    assert after.primary_autoscaler.min_replicas == 2
    assert after.canary_autoscaler is None
    assert after.primary_template == v2.pod_template


def test_a_rolled_back_promotion_returns_the_primary_to_the_last_good_template() -> None:
    v1, v2 = spec("1"), spec("2")
    started = decide(v2, steady(v1), Observations(primary=ready(v1)), at(5)).status
    promoting = decide(
        v2,
        started,
        Observations(primary=ready(v1), canary=ready(v2), requests={Action.PROMOTE: "p"}),
        at(6),
    ).status
    assert promoting.primary_revision == v2.revision
    aborted = decide(
        v2,
        promoting,
        Observations(primary=ready(v1), canary=ready(v2), requests={Action.ABORT: "a"}),
        at(7),
    ).status
    assert aborted.primary_revision == v1.revision
    assert desired_stack("web", "ns", "uid", v2, aborted).primary_template == v1.pod_template
