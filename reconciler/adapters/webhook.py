"""Delivers rollout events to a notification receiver (`--notify-url`) as JSON POSTs.

A receiver must never slow down or fail a rollout: events go into a bounded in-memory queue that one
background thread drains, in order, with a few bounded retries each; a receiver that stays down costs log
lines, nothing else. When the queue is full the oldest event is dropped (logged and counted) to make room
for the newest: the latest state of a rollout matters more than its history. Neither `notify` nor `close`
ever blocks on a full queue.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

import httpx

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
ATTEMPTS = 3
TIMEOUT_SECONDS = 5.0


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        transport: httpx.BaseTransport | None = None,
        retry_seconds: float = 1.0,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self.queue_size = queue_size
        self.dropped = 0
        self._events: collections.deque[dict[str, Any]] = collections.deque()
        self._ready = threading.Condition()
        self._closing = False
        self._client = httpx.Client(timeout=TIMEOUT_SECONDS, transport=transport, follow_redirects=False)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._deliver_forever, name="notify", daemon=True)
        self._thread.start()

    def notify(self, event: dict[str, Any]) -> None:
        """Queues the event, dropping the oldest queued one when the queue is full; never blocks."""
        with self._ready:
            if self._closing:
                log.warning("Dropped rollout notification: stopping", extra={"event": event.get("event")})
                return
            if len(self._events) >= self.queue_size:
                oldest = self._events.popleft()
                self.dropped += 1
                log.warning(
                    "Dropped the oldest rollout notification: queue full",
                    extra={"event": oldest.get("event"), "canaryapp": oldest.get("canaryapp")},
                )
            self._events.append(event)
            self._ready.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Delivers what is queued within `timeout`, then stops retrying and returns; never blocks longer
        than `timeout` plus one request's timeout."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(timeout)
        self._stopping.set()
        self._thread.join(TIMEOUT_SECONDS)
        self._client.close()

    def _deliver_forever(self) -> None:
        while True:
            with self._ready:
                while not self._events and not self._closing:
                    self._ready.wait()
                if not self._events or self._stopping.is_set():
                    return
                event = self._events.popleft()
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
