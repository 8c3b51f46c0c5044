"""The load generator: real requests through the proxy's own URL at a steady rate, with an exact,
deterministic share of /nothello and of /heavy, and spikes (a higher rate, a share of /heavy) for a while."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import httpx

from devenv.mesh.labels import GENERATOR_WORKLOAD, SOURCE_HEADER

log = logging.getLogger(__name__)

# Requests in flight at most: past it the generator waits for an answer rather than opening more.
MAX_IN_FLIGHT = 64
MAX_DENOMINATOR = 1000


@dataclass(frozen=True)
class Mix:
    """The shares of the generated requests sent to /nothello and to /heavy; the rest go to /hello."""

    nothello_fraction: float = 0.0
    heavy_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name, fraction in (
            ("nothello_fraction", self.nothello_fraction),
            ("heavy_fraction", self.heavy_fraction),
        ):
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {fraction}")
        if self.nothello_fraction + self.heavy_fraction > 1.0:
            raise ValueError(
                f"nothello_fraction ({self.nothello_fraction}) and heavy_fraction ({self.heavy_fraction}) "
                "add up to more than 1: lower one of them"
            )


def _block(mix: Mix) -> tuple[int, int, int]:
    """The shares as counts per block: (/nothello, /heavy, block size), the block at most 1000 requests."""
    nothello = Fraction(mix.nothello_fraction).limit_denominator(MAX_DENOMINATOR)
    heavy = Fraction(mix.heavy_fraction).limit_denominator(MAX_DENOMINATOR)
    size = math.lcm(nothello.denominator, heavy.denominator)
    if size > MAX_DENOMINATOR:
        size = MAX_DENOMINATOR
        return round(mix.nothello_fraction * size), round(mix.heavy_fraction * size), size
    return int(nothello * size), int(heavy * size), size


def request_path(sequence: int, mix: Mix) -> str:
    """The path of generated request `sequence` (0-based) under `mix`.

    Exact and deterministic: the shares are applied per block of requests (p/q with q ≤ 1000, or one
    common denominator of both), so 0.5 /nothello gives exactly one of every two and 0.2 /heavy one of every
    five. Within a block the positions are shuffled with the block's number as seed, because a regular
    pattern (every 10th) falls into step with the proxy's equally regular round-robin: a 90/10 split would
    send none of them to the canary, a 50/50 split all of them.
    """
    nothello, heavy, size = _block(mix)
    block, position = divmod(sequence, size)
    pattern = ["/nothello"] * nothello + ["/heavy"] * heavy + ["/hello"] * (size - nothello - heavy)
    random.Random(block).shuffle(pattern)
    return pattern[position]


def is_nothello(sequence: int, nothello_fraction: float) -> bool:
    """Whether generated request `sequence` goes to /nothello when that is the only share (`request_path`)."""
    return request_path(sequence, Mix(nothello_fraction)) == "/nothello"


@dataclass(frozen=True)
class _Spike:
    until: float  # on the generator's clock
    rate: float
    mix: Mix


class LoadGenerator:
    """Sends `rate` real requests a second to a loopback URL, /nothello and /heavy for exact fractions of
    them (`request_path`). Requests go out on schedule while earlier ones are still answered (up to
    MAX_IN_FLIGHT), so a slow backend lowers neither the rate nor the other backends' share."""

    def __init__(
        self,
        rate: float,
        nothello_fraction: float,
        heavy_fraction: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0:
            raise ValueError(f"request rate must be 0 (no generated traffic) or more, got {rate}")
        self.rate = rate
        self._mix = Mix(nothello_fraction, heavy_fraction)
        self._spike: _Spike | None = None
        # When a spike ends; the schedule of the requests keeps to time.monotonic.
        self._clock = clock
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

    def set_mix(self, nothello_fraction: float, heavy_fraction: float = 0.0) -> None:
        mix = Mix(nothello_fraction, heavy_fraction)
        with self._lock:
            self._mix = mix
            # Restarting the blocks makes the new fraction exact from this request on.
            self._sequence = 0

    def spike(self, seconds: float, *, rate: float | None = None, heavy_fraction: float = 0.0) -> None:
        """For `seconds` from now, sends `rate` requests a second (default: the steady rate) with
        `heavy_fraction` of them to /heavy (the /nothello share stays); then the steady traffic again.
        A new spike replaces one still running; `calm` ends it early."""
        spike_rate = self.rate if rate is None else rate
        if spike_rate <= 0 or seconds <= 0:
            raise ValueError(
                f"a spike needs a rate above 0 and a duration, got {spike_rate}/s for {seconds}s"
            )
        if self.rate <= 0:
            raise ValueError("this generator sends no traffic (rate 0): start it with a rate to spike it")
        with self._lock:
            mix = Mix(self._mix.nothello_fraction, heavy_fraction)
            self._spike = _Spike(self._clock() + seconds, spike_rate, mix)
            self._sequence = 0
        log.info(
            "Started traffic spike",
            extra={"seconds": seconds, "rate": spike_rate, "heavy_fraction": heavy_fraction},
        )

    def calm(self) -> None:
        """Ends a running spike now."""
        with self._lock:
            self._spike = None
            self._sequence = 0

    def spiking(self) -> bool:
        with self._lock:
            return self._current_spike() is not None

    def requests_sent(self) -> int:
        """Requests sent and answered (or failed)."""
        with self._lock:
            return self._sent

    def next_path(self) -> str:
        with self._lock:
            spike = self._current_spike()
            mix = self._mix if spike is None else spike.mix
            path = request_path(self._sequence, mix)
            self._sequence += 1
        return path

    def _current_spike(self) -> _Spike | None:
        """The running spike; one past its time ends here, with the blocks restarted (called under the
        lock)."""
        if self._spike is not None and self._clock() >= self._spike.until:
            self._spike = None
            self._sequence = 0
        return self._spike

    def current_rate(self) -> float:
        """Requests a second now: the spike's while one runs, else the steady rate."""
        with self._lock:
            spike = self._current_spike()
        return self.rate if spike is None else spike.rate

    def _run(self, url: str) -> None:
        headers = {SOURCE_HEADER: GENERATOR_WORKLOAD}
        in_flight = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
        with (
            httpx.Client(
                base_url=url, headers=headers, timeout=5.0, trust_env=False, limits=limits
            ) as client,
            ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix="mesh-load") as senders,
        ):
            due = time.monotonic()
            while not self._stopping.is_set():
                # All requests in flight: wait for an answer rather than burst to catch up later.
                if not in_flight.acquire(timeout=0.1):
                    continue
                senders.submit(self._send, client, self.next_path(), in_flight)
                due = max(due + 1.0 / self.current_rate(), time.monotonic())
                self._stopping.wait(due - time.monotonic())

    def _send(self, client: httpx.Client, path: str, in_flight: threading.BoundedSemaphore) -> None:
        try:
            client.get(path)
        except httpx.HTTPError as error:
            log.debug("Failed to send generated request", extra={"error": str(error)})
        finally:
            with self._lock:
                self._sent += 1
            in_flight.release()
