"""The load generator: real requests through the proxy's own URL, with an exact, deterministic share of
/nothello."""

from __future__ import annotations

import logging
import random
import threading
import time
from fractions import Fraction

import httpx

from devenv.mesh.labels import GENERATOR_WORKLOAD, SOURCE_HEADER

log = logging.getLogger(__name__)


def is_nothello(sequence: int, nothello_fraction: float) -> bool:
    """Whether generated request `sequence` (0-based) goes to /nothello.

    Exact and deterministic: the fraction p/q (q ≤ 1000) is applied per block of q requests, p of them
    /nothello, so 0.5 gives exactly one of every two and 0.1 one of every ten. Within a block the positions
    are shuffled with the block's number as seed, because a regular pattern (every 10th) falls into step
    with the proxy's equally regular round-robin: a 90/10 split would send none of them to the canary, a
    50/50 split all of them.
    """
    fraction = Fraction(nothello_fraction).limit_denominator(1000)
    block, position = divmod(sequence, fraction.denominator)
    pattern = [index < fraction.numerator for index in range(fraction.denominator)]
    random.Random(block).shuffle(pattern)
    return pattern[position]


def _check_fraction(nothello_fraction: float) -> float:
    if not 0.0 <= nothello_fraction <= 1.0:
        raise ValueError(f"nothello_fraction must be between 0 and 1, got {nothello_fraction}")
    return nothello_fraction


class LoadGenerator:
    """Sends `rate` real requests a second to a loopback URL, /nothello for an exact fraction of them
    (`is_nothello`)."""

    def __init__(self, rate: float, nothello_fraction: float) -> None:
        if rate < 0:
            raise ValueError(f"request rate must be 0 (no generated traffic) or more, got {rate}")
        self.rate = rate
        self._nothello_fraction = _check_fraction(nothello_fraction)
        self._lock = threading.Lock()
        self._sequence = 0
        self._sent = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, url: str) -> None:
        if not url.startswith("http://127.0.0.1:"):
            raise ValueError(f"the load generator only targets 127.0.0.1, got {url}")
        if self.rate > 0:
            self._thread = threading.Thread(target=self._run, args=(url,), name="mesh-load", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def set_mix(self, nothello_fraction: float) -> None:
        with self._lock:
            self._nothello_fraction = _check_fraction(nothello_fraction)
            # Restarting the blocks makes the new fraction exact from this request on.
            self._sequence = 0

    def requests_sent(self) -> int:
        with self._lock:
            return self._sent

    def next_path(self) -> str:
        with self._lock:
            nothello = is_nothello(self._sequence, self._nothello_fraction)
            self._sequence += 1
        return "/nothello" if nothello else "/hello"

    def _run(self, url: str) -> None:
        interval = 1.0 / self.rate
        headers = {SOURCE_HEADER: GENERATOR_WORKLOAD}
        with httpx.Client(base_url=url, headers=headers, timeout=5.0, trust_env=False) as client:
            due = time.monotonic()
            while not self._stopping.is_set():
                try:
                    client.get(self.next_path())
                except httpx.HTTPError as error:
                    log.debug("Failed to send generated request", extra={"error": str(error)})
                with self._lock:
                    self._sent += 1
                # A slow answer delays the next request rather than causing a burst to catch up.
                due = max(due + interval, time.monotonic())
                self._stopping.wait(due - time.monotonic())
