"""Delivers rollout events to a notification receiver (`--notify-url`) as JSON POSTs.

A receiver must never slow down or fail a rollout: events go into a bounded in-memory queue that one
background thread drains, in order, with a few bounded retries each; a receiver that stays down costs log
lines, nothing else (the oldest events are dropped when the queue is full).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import httpx

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
ATTEMPTS = 3
TIMEOUT_SECONDS = 5.0


class WebhookNotifier:
    def __init__(
        self, url: str, transport: httpx.BaseTransport | None = None, retry_seconds: float = 1.0
    ) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_SIZE)
        self._client = httpx.Client(timeout=TIMEOUT_SECONDS, transport=transport, follow_redirects=False)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._deliver_forever, name="notify", daemon=True)
        self._thread.start()

    def notify(self, event: dict[str, Any]) -> None:
        """Queues the event; never blocks."""
        try:
            self._events.put_nowait(event)
        except queue.Full:
            log.warning("Dropped rollout notification: queue full", extra={"event": event.get("event")})

    def close(self, timeout: float = 5.0) -> None:
        """Delivers what is queued (within `timeout`), then stops."""
        self._events.put(None)
        self._thread.join(timeout)
        self._stopping.set()
        self._client.close()

    def _deliver_forever(self) -> None:
        while (event := self._events.get()) is not None:
            self._deliver(event)

    def _deliver(self, event: dict[str, Any]) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self._client.post(self.url, json=event)
                if response.status_code < 300:
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                problem = type(error).__name__
            if attempt < ATTEMPTS and self._stopping.wait(self.retry_seconds * attempt):
                break
        log.warning(
            "Failed to deliver rollout notification",
            extra={"event": event.get("event"), "canaryapp": event.get("canaryapp"), "problem": problem},
        )
