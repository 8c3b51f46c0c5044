"""The local mesh's load generator (devenv/mesh/load.py): the exact, deterministic request mix."""

from __future__ import annotations

import pytest

from devenv.mesh.load import LoadGenerator, is_nothello
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
