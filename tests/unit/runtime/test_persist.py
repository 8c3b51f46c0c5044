"""The persist step (reconciler/runtime/persist.py): what status records a decision, whether its stack is
still to apply, and that a failed step is reported once per failure."""

from __future__ import annotations

import datetime

from reconciler.core import reasons
from reconciler.core.decisions import Hold
from reconciler.core.model import CanaryApp
from reconciler.runtime.persist import failed_step, failed_sync, recorded

URL = "http://prometheus.istio-system:9090"
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def ready_app() -> CanaryApp:
    return CanaryApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {
                "image": "app:v1",
                "imageListenPort": 8088,
                "prometheusQuery": "q",
                "prometheusURL": URL,
            },
            "status": {"phase": "Ready", "primaryImage": "app:v1"},
        }
    )


def test_a_decision_whose_stack_was_not_applied_yet_is_recorded_as_still_to_apply() -> None:
    app = ready_app()
    record = recorded(app, Hold(app.status, None, reasons.WAITING, ""), NOW)
    assert not record.in_sync
    assert record.desired.primary_image == "app:v1"
    synced = record.status.condition(reasons.CONDITION_STACK_SYNCED)
    assert synced is not None
    assert synced.status == "False"
    applied = app.status.model_copy(update={"last_applied_hash": record.desired.fingerprint()})
    again = recorded(app, Hold(applied, None, reasons.WAITING, ""), NOW)
    assert again.in_sync


def test_a_failed_step_is_recorded_once_per_failure() -> None:
    status = ready_app().status
    v1 = ready_app().spec.revision
    failed = failed_step(status, v1, NOW, reasons.STACK_UPDATE_FAILED, "Stack update failed: boom")
    assert failed is not None
    condition = failed_sync(failed)
    assert condition is not None
    assert condition.message == "Stack update failed: boom"
    reconciling = failed.condition(reasons.CONDITION_RECONCILING)
    assert reconciling is not None
    assert (reconciling.status, reconciling.reason) == ("True", reasons.RETRYING)
    assert failed_step(failed, v1, NOW, reasons.STACK_UPDATE_FAILED, "Stack update failed: boom") is None
    assert failed_step(failed, v1, NOW, reasons.NAME_CONFLICT, "Service ns/web already exists") is not None
    assert failed_sync(status) is None
