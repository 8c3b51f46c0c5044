"""Prints how long one weight-only step takes as a Pulumi `stack.up` (the reconciler's way) compared with a
direct PATCH of the same VirtualService, on the local cluster with the real engine and provider.

    make bench            (or: .venv/bin/python bench/step_latency.py --steps 15)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import kubernetes
from step_profile import bench_settings, desired_at

from devenv.cluster import running
from devenv.kube import api_client
from devenv.processes import REPO_ROOT, tools_bin
from reconciler.adapters.pulumi.runner import PulumiStacks


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def describe(label: str, values: list[float]) -> str:
    return (
        f"{label:<34} n={len(values):<3} median={statistics.median(values) * 1000:8.1f} ms"
        f"   p95={percentile(values, 0.95) * 1000:8.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=12, help="weight steps to time each way")
    args = parser.parse_args()
    os.environ["PATH"] = f"{tools_bin()}:{REPO_ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"
    with tempfile.TemporaryDirectory(prefix="canaryapp-bench-") as scratch, running() as cluster:
        root = Path(scratch)
        stacks = PulumiStacks(bench_settings(root, cluster.kubeconfig), workers=1)
        desired = desired_at(0)
        try:
            first = stacks.apply(desired)
            print(f"first up (creates 6 objects): {first.seconds * 1000:.0f} ms")
            weight_steps = []
            for step in range(args.steps):
                weighted = desired_at(10 + 10 * (step % 5))
                started = time.perf_counter()
                stacks.apply(weighted)
                weight_steps.append(time.perf_counter() - started)
            unchanged = []
            for _ in range(max(3, args.steps // 3)):
                started = time.perf_counter()
                stacks.apply(weighted)
                unchanged.append(time.perf_counter() - started)
        finally:
            stacks.close()

        custom = kubernetes.client.CustomObjectsApi(api_client(cluster.kubeconfig))
        patches = []
        for step in range(args.steps):
            canary = 10 + 10 * (step % 5)
            vs = custom.get_namespaced_custom_object(
                "networking.istio.io", "v1", "default", "virtualservices", "bench"
            )
            route = vs["spec"]["http"][0]["route"]
            route[0]["weight"], route[1]["weight"] = 100 - canary, canary
            started = time.perf_counter()
            custom.patch_namespaced_custom_object(
                "networking.istio.io",
                "v1",
                "default",
                "virtualservices",
                "bench",
                {"spec": {"http": vs["spec"]["http"]}},
            )
            patches.append(time.perf_counter() - started)

    print(describe("weight step as stack.up", weight_steps))
    print(describe("stack.up with unchanged inputs", unchanged))
    print(describe("direct PATCH of the VirtualService", patches))
    ratio = statistics.median(weight_steps) / statistics.median(patches)
    print(f"ratio of medians (stack.up / PATCH): {ratio:.0f}x")


if __name__ == "__main__":
    main()
