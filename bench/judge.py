"""Prints what one check of the statistical judge costs: 5 continuous metrics, canary and baseline 600
samples each (a 10-minute window at a 1 s step), some passing, one shifted, one with a grown spread, one with
ties (a quantised latency), with the pairwise differences, the interval's search and the tests each time.

    .venv/bin/python bench/judge.py            (or: --repeat 50 --samples 600)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from reconciler.core.judge import JudgeConfig, SampleMetric, judge


def metrics(samples: int, seed: int) -> list[SampleMetric]:
    generator = np.random.default_rng(seed)

    def window(location: float, scale: float) -> tuple[float, ...]:
        return tuple(generator.lognormal(np.log(location), scale, samples).tolist())

    return [
        SampleMetric(name="latency p50", canary=window(100, 0.2), baseline=window(100, 0.2)),
        SampleMetric(name="latency p99", canary=window(260, 0.2), baseline=window(200, 0.2)),
        SampleMetric(name="cpu", canary=window(0.4, 0.6), baseline=window(0.4, 0.2)),
        SampleMetric(name="memory", canary=window(512, 0.05), baseline=window(510, 0.05)),
        SampleMetric(
            name="latency quantised",
            canary=tuple(np.round(window(100, 0.3), -1).tolist()),
            baseline=tuple(np.round(window(100, 0.3), -1).tolist()),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--samples", type=int, default=600)
    arguments = parser.parse_args()
    config = JudgeConfig()
    judge(metrics(arguments.samples, seed=0), config)  # scipy's first call imports and compiles lazily
    durations, cpu_times = [], []
    for seed in range(arguments.repeat):
        checked = metrics(arguments.samples, seed)
        started, cpu_started = time.perf_counter(), time.process_time()
        judgement = judge(checked, config)
        durations.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    print(
        f"judge: 5 metrics x 2 x {arguments.samples} samples, {arguments.repeat} checks: median "
        f"{statistics.median(durations) * 1000:.0f} ms wall, "
        f"{statistics.median(cpu_times) * 1000:.0f} ms CPU, "
        f"max {max(durations) * 1000:.0f} ms wall per check; last verdict {judgement.verdict} "
        f"(score {judgement.score:.0f}: "
        + ", ".join(f"{result.name} {result.verdict}" for result in judgement.metrics)
        + ")"
    )


if __name__ == "__main__":
    main()
