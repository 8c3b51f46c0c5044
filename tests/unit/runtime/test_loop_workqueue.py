"""The work queue: de-duplication, delays, one worker per key, and no change lost while a key is worked on."""

from __future__ import annotations

from reconciler.runtime.loop import WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_duplicates_collapse_and_earliest_due_wins() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock)
    queue.add(("ns", "a"), 10)
    queue.add(("ns", "a"), 2)
    queue.add(("ns", "a"), 5)
    assert len(queue) == 1
    clock.now = 2
    assert queue.get() == ("ns", "a")


def test_key_added_while_processing_comes_back_after_done() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock)
    queue.add(("ns", "a"))
    key = queue.get()
    queue.add(("ns", "a"))
    assert len(queue) == 0  # not handed to a second worker while the first works on it
    assert key is not None
    queue.done(key)
    assert queue.get() == ("ns", "a")


def test_close_releases_waiting_workers() -> None:
    queue = WorkQueue()
    queue.close()
    assert queue.get() is None
