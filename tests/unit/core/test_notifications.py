"""Rollout events (reconciler/core/notifications.py) and their delivery (adapters/webhook.py): in order, with
bounded retries, never blocking, and a dead receiver changes nothing but a log line; text from outside
reaches Slack inert."""

from __future__ import annotations

import datetime
import json
import threading
import time

import httpx
import pytest

from reconciler.adapters.webhook import WebhookNotifier
from reconciler.core.decisions import Decision, Hold, Rollback, StartCanary
from reconciler.core.notifications import rollout_event
from tests.unit.core.statuses import written

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def decision(kind: type[Decision], message: str = "what happened", **status: object) -> Decision:
    return kind(written(**status), None, "Reason", message)


def test_rollout_events_and_their_text() -> None:
    started = rollout_event("shop", "web", decision(StartCanary, canary="web:v2"), "T")
    assert started is not None
    assert (started["event"], started["image"], started["canaryapp"]) == ("started", "web:v2", "shop/web")
    assert started["text"] == "CanaryApp shop/web started: what happened"
    aborted = decision(
        Rollback,
        phase="Failed",
        rollouts=[
            {"image": "web:v2", "startedAt": "T", "result": "RolledBack", "reason": "Aborted: on request"}
        ],
    )
    assert rollout_event("shop", "web", aborted, "T")["event"] == "aborted"  # type: ignore[index]
    assert rollout_event("shop", "web", decision(Hold), "T") is None


@pytest.mark.parametrize(
    ("message", "text"),
    [
        pytest.param(
            "query rejected: <!channel> roll back now",
            "query rejected: &lt;!channel&gt; roll back now",
            id="mention everyone",
        ),
        pytest.param("errors: {user=<@U0ADMIN>}=1", "errors: {user=&lt;@U0ADMIN&gt;}=1", id="mention a user"),
        pytest.param(
            "see <http://evil.example/login|the runbook>",
            "see &lt;http://evil.example/login|the runbook&gt;",
            id="disguised link",
        ),
        pytest.param("a & b", "a &amp; b", id="ampersand"),
        pytest.param("red \x1b[31malert\x1b[0m\r", "red alert", id="escape sequences"),
    ],
)
def test_text_from_outside_reaches_slack_inert(message: str, text: str) -> None:
    event = rollout_event("shop", "web", decision(Rollback, message, phase="Failed"), "T")
    assert event is not None
    assert event["text"] == f"CanaryApp shop/web rolled back: {text}"
    assert "\x1b" not in event["message"]
    assert "\r" not in event["message"]


def test_events_are_delivered_in_order_without_blocking() -> None:
    received: list[dict[str, object]] = []
    release = threading.Event()

    def receiver(request: httpx.Request) -> httpx.Response:
        release.wait(5)
        received.append(json.loads(request.content))
        return httpx.Response(200)

    notifier = WebhookNotifier("http://receiver/hook", transport=httpx.MockTransport(receiver))
    started = time.monotonic()
    for number in range(5):
        notifier.notify({"event": f"e{number}"})
    assert time.monotonic() - started < 1.0  # queued, not sent inline: a slow receiver blocks nothing
    release.set()
    notifier.close()
    assert [event["event"] for event in received] == ["e0", "e1", "e2", "e3", "e4"]


def test_a_failing_receiver_gets_bounded_retries_then_is_skipped() -> None:
    attempts: list[str] = []

    def down(request: httpx.Request) -> httpx.Response:
        attempts.append(json.loads(request.content)["event"])
        return httpx.Response(503)

    notifier = WebhookNotifier(
        "http://receiver/hook", transport=httpx.MockTransport(down), retry_seconds=0.01
    )
    notifier.notify({"event": "a"})
    notifier.notify({"event": "b"})
    notifier.close()
    assert attempts == ["a", "a", "a", "b", "b", "b"]


def test_a_full_queue_drops_the_oldest_event_and_neither_notify_nor_close_blocks() -> None:
    received: list[str] = []
    release = threading.Event()

    def stuck(request: httpx.Request) -> httpx.Response:
        release.wait(5)
        received.append(json.loads(request.content)["event"])
        return httpx.Response(200)

    notifier = WebhookNotifier(
        "http://receiver/hook", transport=httpx.MockTransport(stuck), retry_seconds=0.01, queue_size=3
    )
    notifier.notify({"event": "first"})
    deadline = time.monotonic() + 5
    while notifier._events and time.monotonic() < deadline:  # the thread takes "first" and hangs on it
        time.sleep(0.01)
    for number in range(5):
        notifier.notify({"event": f"e{number}"})
    assert [event["event"] for event in notifier._events] == ["e2", "e3", "e4"]
    assert notifier.dropped == 2
    release.set()
    notifier.close()
    assert received == ["first", "e2", "e3", "e4"]


def test_close_returns_in_bounded_time_with_a_receiver_that_never_answers() -> None:
    def never(request: httpx.Request) -> httpx.Response:
        time.sleep(0.5)
        raise httpx.ReadTimeout("no answer", request=request)

    notifier = WebhookNotifier("http://receiver/hook", transport=httpx.MockTransport(never), retry_seconds=10)
    for number in range(50):
        notifier.notify({"event": f"e{number}"})
    started = time.monotonic()
    notifier.close(timeout=0.2)
    assert time.monotonic() - started < 0.2 + 5.0 + 1.0  # the timeout plus one request's timeout
