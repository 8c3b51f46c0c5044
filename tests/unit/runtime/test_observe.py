"""Rollout slots as a pass counts them from the cached CanaryApps (reconciler/runtime/observe.py): who holds a
slot, and who queued first."""

from __future__ import annotations

from typing import Any

from reconciler.core.model import CanaryApp
from reconciler.runtime.observe import rollout_slots

URL = "http://prometheus.istio-system:9090"


def cached(name: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "generation": 2}, "status": status}


def waiting_app(queued_at: str | None) -> CanaryApp:
    return CanaryApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {
                "image": "app:v2",
                "imageListenPort": 8088,
                "prometheusQuery": "q",
                "prometheusURL": URL,
            },
            "status": {"phase": "Ready", "primaryImage": "app:v1", "queuedAt": queued_at},
        }
    )


def test_slots_count_active_rollouts_and_those_queued_earlier_but_never_the_app_itself() -> None:
    items = [
        cached("web", phase="Progressing"),  # the app itself, as the cache holds it
        cached("a", phase="Progressing"),
        cached("b", phase="Promoting"),
        cached("paused", phase="Progressing", conditions=[{"type": "Paused", "status": "True"}]),
        cached("invalid", phase="Progressing", invalidGeneration=2),
        cached("ready", phase="Ready"),
        cached("earlier", phase="Ready", queuedAt="2026-01-01T00:00:00Z"),
        cached("later", phase="Ready", queuedAt="2026-01-01T00:05:00Z"),
    ]
    slots = rollout_slots(waiting_app("2026-01-01T00:01:00Z"), items, limit=2)
    assert (slots.limit, slots.active, slots.waiting_before) == (2, 2, 1)
    not_queued_yet = rollout_slots(waiting_app(None), items, limit=2)
    assert not_queued_yet.waiting_before == 2
