"""Rollout events for notification receivers (`canaryapp run --notify-url`): which decisions are events and
what a receiver gets. Pure; the adapter in `adapters/webhook.py` delivers them.

A decision's message can quote text from outside (a metric endpoint's error, a series' labels), so the Slack
`text` escapes everything but its own wording (`<!channel>` must not notify a channel), and no field carries
a control character."""

from __future__ import annotations

from typing import Any

from reconciler.core import reasons
from reconciler.core.decisions import (
    Advance,
    CompletePromotion,
    Decision,
    Pause,
    Resume,
    Rollback,
    StartCanary,
)
from reconciler.core.model import RolloutResult
from reconciler.core.text import printable, slack_escaped

_EVENTS: tuple[tuple[type[Decision], str], ...] = (
    (StartCanary, "started"),
    (Advance, "advanced"),
    (Pause, "paused"),
    (Resume, "resumed"),
    (CompletePromotion, "promoted"),
    (Rollback, "rolled_back"),
)


def rollout_event(namespace: str, name: str, decision: Decision, time: str) -> dict[str, Any] | None:
    """The JSON document for a decision that is a rollout event (None for the others). `text` makes it a
    valid Slack incoming-webhook message as it is."""
    event = next((label for kind, label in _EVENTS if isinstance(decision, kind)), None)
    if event is None:
        return None
    status = decision.status
    last = status.rollouts[-1] if status.rollouts else None
    if event == "rolled_back" and last and last.result == RolloutResult.ROLLED_BACK:
        event = "aborted" if last.reason.startswith(reasons.ABORTED) else event
    image = status.canary_image or (last.image if last else status.primary_image)
    revision = status.canary_revision or (last.revision if last else status.primary_revision)
    message = printable(decision.message)
    return {
        "event": event,
        "canaryapp": f"{namespace}/{name}",
        "namespace": namespace,
        "name": name,
        "image": image,
        "revision": revision,
        "weight": status.canary_weight,
        "phase": str(status.phase),
        "message": message,
        "time": time,
        "text": f"CanaryApp {slack_escaped(f'{namespace}/{name}')} {event.replace('_', ' ')}: "
        + slack_escaped(message),
    }
