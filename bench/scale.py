"""N CanaryApps rolling out at once on one reconciler, against the local cluster with the real engine, the
real provider and a real Prometheus (whose answer is clean).

    .venv/bin/python bench/scale.py --apps 20

Creates N CanaryApps (interval `--interval`, otherwise defaults: five 10% steps, then the promotion), waits
until all are Ready on v1, switches all of them to v2 at the same moment and waits until every one is
promoted. Prints:

- time to promotion (from the switch to `rollouts[-1].finishedAt`) p50/p95 against the ideal, which is
  (steps + 1) x interval: one interval per weight and one for the promotion, with no time for the steps;
- `stack.up` p50/p95 (the reconciler's own log of each step), ups per second over the rollout;
- peak RSS of the reconciler's whole process tree (workers, `pulumi`, providers), sampled twice a second;
- CPU-seconds of that tree and of the local cluster's processes, per step.

The reconciler runs with its default flags (`--workers 4`) unless `--reconciler-args` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes

from devenv.cluster import POD_SECURITY_LABELS, running
from devenv.kube import api_client
from devenv.processes import REPO_ROOT, tools_bin
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from reconciler.core.model import GROUP, PLURAL, VERSION

NAMESPACE = "scale"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def tree(pid: int) -> list[int]:
    """`pid` and all its live descendants."""
    found = [pid]
    try:
        threads = list(Path(f"/proc/{pid}/task").glob("*"))
    except OSError:
        return found  # gone meanwhile
    for task in threads:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += tree(int(child))
    return found


def cpu_and_rss(pids: list[int]) -> tuple[float, int]:
    """CPU seconds (own and reaped children's) and resident bytes of the given live processes."""
    cpu, rss = 0.0, 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu += sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
        rss += int(fields[21]) * PAGE_BYTES
    return cpu, rss


def own_cpu(pid: int) -> float:
    """CPU seconds of process `pid` itself, without its children's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:13]) / CLOCK_TICKS


class TreeSampler(threading.Thread):
    """Samples the RSS of a process tree twice a second; keeps the peak and, at that moment, the RSS by
    process name (`pulumi`, `pulumi-resource`, `python3`)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.by_name: dict[str, tuple[int, int]] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            by_name: dict[str, tuple[int, int]] = {}
            for pid in tree(self.pid):
                try:
                    name = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    continue
                count, rss = by_name.get(name, (0, 0))
                by_name[name] = (count + 1, rss + cpu_and_rss([pid])[1])
            total = sum(rss for _, rss in by_name.values())
            if total > self.peak:
                self.peak, self.by_name = total, by_name


def app(name: str, image: str, prometheus_url: str, interval: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryApp",
        "metadata": {"name": name},
        # Defaults otherwise; a clean query and no traffic check: the bench measures the reconciler, not the
        # analysis.
        "spec": {
            "image": image,
            "imageListenPort": 8088,
            "prometheusQuery": "vector(0) > 1",
            "prometheusURL": prometheus_url,
            "minCanaryRequests": 0,
            "trafficShiftUpdateInterval": interval,
        },
    }


def statuses(custom: kubernetes.client.CustomObjectsApi) -> dict[str, dict[str, Any]]:
    listing: Any = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
    return {item["metadata"]["name"]: item.get("status") or {} for item in listing["items"]}


def wait_all(
    custom: kubernetes.client.CustomObjectsApi, done: Any, timeout: float, what: str
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = statuses(custom)
        if seen and all(done(status) for status in seen.values()):
            return seen
        time.sleep(1.0)
    waiting = sum(1 for status in statuses(custom).values() if not done(status))
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}: {waiting} still waiting")


def promoted(status: dict[str, Any]) -> bool:
    return status.get("primaryImage") == "app:v2" and status.get("phase") == "Succeeded"


def parse(stamp: str) -> datetime.datetime:
    """An API timestamp, or a log line's (local time, to the second: this machine's clock is UTC)."""
    moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def log_records(log: str, message: str, since: datetime.datetime) -> list[dict[str, Any]]:
    """The reconciler's JSON log records with `message` from `since` on."""
    found = []
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("message") == message and parse(record["time"]) >= since.replace(microsecond=0):
            found.append(record)
    return found


def step_seconds(log: str, since: datetime.datetime) -> list[float]:
    return [float(record["seconds"]) for record in log_records(log, "Applied CanaryApp stack", since)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--apps", type=int, default=20, help="CanaryApps rolling out at once (N)")
    parser.add_argument("--interval", type=int, default=10, help="trafficShiftUpdateInterval, seconds")
    parser.add_argument("--reconciler-args", default="--workers=4", help="extra flags for `canaryapp run`")
    args = parser.parse_args()
    os.environ["PATH"] = f"{tools_bin()}:{REPO_ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"
    with tempfile.TemporaryDirectory(prefix="canaryapp-scale-") as scratch, running() as cluster:
        root = Path(scratch)
        cluster.apply_project_crds()
        client = api_client(cluster.kubeconfig)
        kubernetes.client.CoreV1Api(client).create_namespace(
            {"metadata": {"name": NAMESPACE, "labels": POD_SECURITY_LABELS}}
        )
        custom = kubernetes.client.CustomObjectsApi(client)
        prometheus = PrometheusServer(root / "prometheus", {})
        prometheus.start()
        reconciler = ReconcilerProcess(
            cluster.kubeconfig,
            NAMESPACE,
            root / "reconciler",
            "--log-format=json",
            *shlex.split(args.reconciler_args),
        )
        reconciler.start()
        try:
            figures = rollout(args, custom, cluster, prometheus.url, reconciler)
        finally:
            reconciler.stop()
            prometheus.stop()
    report(args, figures)


def rollout(
    args: argparse.Namespace,
    custom: kubernetes.client.CustomObjectsApi,
    cluster: Any,
    prometheus_url: str,
    reconciler: ReconcilerProcess,
) -> dict[str, Any]:
    names = [f"app-{index:03d}" for index in range(args.apps)]
    for name in names:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, app(name, "app:v1", prometheus_url, args.interval)
        )
    wait_all(custom, lambda status: status.get("phase") == "Ready", 60 + 10 * args.apps, "v1 Ready")
    assert reconciler.process is not None
    sampler = TreeSampler(reconciler.process.pid)
    sampler.start()
    cluster_pids = [process.pid for _, process in cluster.processes._processes]
    tree_cpu_before = cpu_and_rss(tree(reconciler.process.pid))[0]
    main_cpu_before = own_cpu(reconciler.process.pid)
    cluster_cpu_before = cpu_and_rss(cluster_pids)[0]
    switched = datetime.datetime.now(datetime.UTC)
    started = time.monotonic()
    for name in names:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name, {"spec": {"image": "app:v2"}}
        )
    ideal = 6 * args.interval
    final = wait_all(custom, promoted, 20 * ideal + 10 * args.apps, "promotion to v2")
    elapsed = time.monotonic() - started
    tree_cpu = cpu_and_rss(tree(reconciler.process.pid))[0] - tree_cpu_before
    cluster_cpu = cpu_and_rss(cluster_pids)[0] - cluster_cpu_before
    main_cpu = own_cpu(reconciler.process.pid) - main_cpu_before
    sampler.stopping.set()
    log = reconciler.log()
    ups = step_seconds(log, switched)
    failed = log_records(log, "Failed to apply CanaryApp stack", switched)
    return {
        "ideal": ideal,
        "to_promotion": [
            (parse(status["rollouts"][-1]["finishedAt"]) - switched).total_seconds()
            for status in final.values()
        ],
        "ups": ups,
        "elapsed": elapsed,
        "peak_rss": sampler.peak,
        "peak_by_name": sampler.by_name,
        "tree_cpu": tree_cpu,
        "cluster_cpu": cluster_cpu,
        "main_cpu": main_cpu,
        "failed": failed,
    }


def report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    promotion, ups, ideal = figures["to_promotion"], figures["ups"], figures["ideal"]
    p50, p95 = statistics.median(promotion), percentile(promotion, 0.95)
    print(f"N = {args.apps} CanaryApps, interval {args.interval} s, reconciler flags: {args.reconciler_args}")
    print(f"all {len(promotion)} promoted; ideal time to promotion {ideal} s")
    if figures["failed"]:
        # Retried steps slow the rollouts: the figures below are not the reconciler's cost alone.
        print(f"WARNING: {len(figures['failed'])} ups failed; first: {figures['failed'][0].get('detail')}")
    print(
        f"time to promotion   p50 {p50:6.1f} s ({p50 / ideal:.2f}x ideal)"
        f"   p95 {p95:6.1f} s ({p95 / ideal:.2f}x)"
    )
    print(
        f"stack.up            p50 {statistics.median(ups):6.2f} s   p95 {percentile(ups, 0.95):6.2f} s"
        f"   {len(ups)} ups, {len(ups) / figures['elapsed']:.2f} per second"
    )
    parts = ", ".join(
        f"{name} {count}x {rss / 2**20:.0f} MiB"
        for name, (count, rss) in sorted(figures["peak_by_name"].items())
    )
    print(f"peak RSS of the reconciler's process tree: {figures['peak_rss'] / 2**20:.0f} MiB ({parts})")
    print(
        f"CPU per step: reconciler tree {figures['tree_cpu'] / len(ups):.2f} s, "
        f"local cluster {figures['cluster_cpu'] / len(ups):.2f} s"
    )
    print(
        f"  of which the reconciler's main process {figures['main_cpu'] / len(ups) * 1000:.0f} ms "
        "(the rest: its step processes, their `pulumi` runs and providers)"
    )


if __name__ == "__main__":
    main()
