"""The local mesh's load generator (devenv/mesh/load.py): the exact, deterministic request mix and the
spikes, on a fake clock."""

from __future__ import annotations

from collections import Counter

import pytest

from devenv.mesh.load import LoadGenerator, Mix, is_nothello, request_path
from devenv.mesh.routing import SmoothWeightedRoundRobin


@pytest.mark.parametrize(
    ("fraction", "requests", "expected"),
    [
        pytest.param(0.0, 100, 0, id="none"),
        pytest.param(0.5, 100, 50, id="half"),
        pytest.param(0.1, 100, 10, id="tenth"),
        pytest.param(0.29, 100, 29, id="float-rounding"),
        pytest.param(1 / 3, 99, 33, id="third"),
        pytest.param(1.0, 40, 40, id="all"),
    ],
)
def test_nothello_pattern_gives_the_exact_fraction(fraction: float, requests: int, expected: int) -> None:
    assert sum(is_nothello(sequence, fraction) for sequence in range(requests)) == expected


@pytest.mark.parametrize(("fraction", "block"), [(0.5, 2), (0.1, 10), (0.25, 4)])
def test_nothello_pattern_is_exact_in_every_block(fraction: float, block: int) -> None:
    for start in range(0, 50 * block, block):
        assert sum(is_nothello(sequence, fraction) for sequence in range(start, start + block)) == 1


def test_nothello_pattern_is_deterministic() -> None:
    assert [is_nothello(sequence, 0.3) for sequence in range(200)] == [
        is_nothello(sequence, 0.3) for sequence in range(200)
    ]


@pytest.mark.parametrize(
    ("weights", "fraction"),
    [
        pytest.param([50, 50], 0.5, id="50-50-half"),
        pytest.param([90, 10], 0.1, id="90-10-tenth"),
        pytest.param([80, 20], 0.2, id="80-20-fifth"),
        pytest.param([60, 40], 0.2, id="60-40-fifth"),
    ],
)
def test_nothello_pattern_does_not_fall_into_step_with_the_round_robin(
    weights: list[int], fraction: float
) -> None:
    balancer = SmoothWeightedRoundRobin()
    canary_paths = [
        is_nothello(sequence, fraction) for sequence in range(2000) if balancer.pick(weights) == 1
    ]
    canary_share = sum(canary_paths) / len(canary_paths)
    assert fraction / 2 < canary_share < fraction * 1.5


def test_load_generator_mix_restarts_exactly_on_change() -> None:
    generator = LoadGenerator(rate=0, nothello_fraction=0.0)
    assert [generator.next_path() for _ in range(3)] == ["/hello"] * 3
    generator.set_mix(0.5)
    paths = [generator.next_path() for _ in range(6)]
    assert [sorted(paths[index : index + 2]) for index in range(0, 6, 2)] == [["/hello", "/nothello"]] * 3


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_load_generator_rejects_a_fraction_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        LoadGenerator(rate=1, nothello_fraction=fraction)


def test_load_generator_only_targets_loopback() -> None:
    with pytest.raises(ValueError, match=r"only targets 127\.0\.0\.1"):
        LoadGenerator(rate=1, nothello_fraction=0).start("http://example.com:80")


@pytest.mark.parametrize(
    ("mix", "requests", "expected"),
    [
        pytest.param(Mix(heavy_fraction=0.2), 100, {"/hello": 80, "/heavy": 20}, id="heavy-fifth"),
        pytest.param(
            Mix(nothello_fraction=0.5, heavy_fraction=0.2),
            100,
            {"/hello": 30, "/nothello": 50, "/heavy": 20},
            id="both",
        ),
        pytest.param(
            Mix(nothello_fraction=0.001, heavy_fraction=0.003),
            1000,
            {"/hello": 996, "/nothello": 1, "/heavy": 3},
            id="per-mille",
        ),
        pytest.param(
            Mix(nothello_fraction=1 / 7, heavy_fraction=1 / 11),
            77 * 3,
            {"/hello": 177, "/nothello": 33, "/heavy": 21},
            id="common-denominator",
        ),
        pytest.param(
            Mix(nothello_fraction=1 / 999, heavy_fraction=1 / 7),
            1000,
            {"/hello": 856, "/nothello": 1, "/heavy": 143},
            id="per-mille-past-1000",
        ),
        pytest.param(Mix(heavy_fraction=1.0), 30, {"/heavy": 30}, id="all-heavy"),
    ],
)
def test_request_path_gives_the_exact_shares(mix: Mix, requests: int, expected: dict[str, int]) -> None:
    assert Counter(request_path(sequence, mix) for sequence in range(requests)) == expected


def test_request_path_without_heavy_is_the_nothello_pattern_of_before() -> None:
    """A /heavy share of 0 leaves every existing mix as it was: the same requests go to /nothello."""
    for fraction in (0.1, 0.3, 0.5):
        assert [request_path(sequence, Mix(fraction)) == "/nothello" for sequence in range(300)] == [
            is_nothello(sequence, fraction) for sequence in range(300)
        ]


@pytest.mark.parametrize("weights", [[80, 10, 10], [60, 20, 20], [90, 10]])
def test_heavy_share_reaches_every_destination_alike(weights: list[int]) -> None:
    """Baseline and canary at equal weights see the same /heavy share, whatever the round-robin's cycle."""
    balancer = SmoothWeightedRoundRobin()
    heavy: Counter[int] = Counter()
    picked: Counter[int] = Counter()
    for sequence in range(4000):
        destination = balancer.pick(weights)
        assert destination is not None
        picked[destination] += 1
        heavy[destination] += request_path(sequence, Mix(heavy_fraction=0.2)) == "/heavy"
    for destination in range(len(weights)):
        assert 0.15 < heavy[destination] / picked[destination] < 0.25


@pytest.mark.parametrize(
    ("nothello", "heavy", "message"),
    [
        pytest.param(0.0, -0.1, "heavy_fraction must be between 0 and 1", id="negative"),
        pytest.param(0.0, 1.5, "heavy_fraction must be between 0 and 1", id="above-one"),
        pytest.param(0.6, 0.5, "add up to more than 1", id="sum-above-one"),
    ],
)
def test_mix_rejects_shares_that_do_not_fit(nothello: float, heavy: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Mix(nothello, heavy)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_spike_raises_the_rate_and_the_heavy_share_for_its_time_then_calms() -> None:
    clock = FakeClock()
    generator = LoadGenerator(rate=10, nothello_fraction=0.0, clock=clock)
    generator.spike(30, rate=25, heavy_fraction=0.5)
    assert generator.spiking()
    assert generator.current_rate() == 25
    spiked = Counter(generator.next_path() for _ in range(100))
    assert spiked == {"/hello": 50, "/heavy": 50}

    clock.now += 30
    assert not generator.spiking()
    assert generator.current_rate() == 10
    assert Counter(generator.next_path() for _ in range(20)) == {"/hello": 20}


def test_spike_keeps_the_nothello_share_and_the_steady_rate_unless_given() -> None:
    generator = LoadGenerator(rate=10, nothello_fraction=0.5, clock=FakeClock())
    generator.spike(5, heavy_fraction=0.25)
    assert generator.current_rate() == 10
    assert Counter(generator.next_path() for _ in range(40)) == {
        "/nothello": 20,
        "/heavy": 10,
        "/hello": 10,
    }
    generator.calm()
    assert Counter(generator.next_path() for _ in range(40)) == {"/nothello": 20, "/hello": 20}


@pytest.mark.parametrize(
    ("rate", "seconds", "heavy", "message"),
    [
        pytest.param(0.0, 10.0, 0.0, "rate above 0", id="no-rate"),
        pytest.param(20.0, 0.0, 0.0, "a duration", id="no-duration"),
        pytest.param(20.0, 10.0, 0.6, "add up to more than 1", id="shares"),
    ],
)
def test_spike_rejects_what_cannot_be_sent(rate: float, seconds: float, heavy: float, message: str) -> None:
    generator = LoadGenerator(rate=10, nothello_fraction=0.5, clock=FakeClock())
    with pytest.raises(ValueError, match=message):
        generator.spike(seconds, rate=rate, heavy_fraction=heavy)
    assert not generator.spiking()


def test_spike_needs_a_generator_that_sends() -> None:
    with pytest.raises(ValueError, match="sends no traffic"):
        LoadGenerator(rate=0, nothello_fraction=0).spike(10, rate=20)
