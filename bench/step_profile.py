"""Where one weight-only step's time and CPU go: a `stack.up` of the reconciler's inline program through
its own adapter (`PulumiStacks`), on the local cluster with the real engine and Kubernetes provider.

    .venv/bin/python bench/step_profile.py [--steps 8] [--secrets-provider passphrase]

Two measurements:

1. CPU and wall per process kind, over `--steps` weight steps: every `pulumi` command the Automation API
   runs and the provider are started through a small recorder (a wrapper that waits for the real binary and
   notes its user+system CPU); the adapter's worker process (the Python program and the Automation API) and
   the API server with etcd are read from /proc. The recorder adds its own start-up to the wall time only.
2. The phases of one `pulumi up`, from the engine's own structured log (`--logflow -v=7`, run once more):
   CLI start and secrets manager (with the passphrase, its key derivation), program run, provider launch,
   provider Configure, per-resource Check/Diff/Update, checkpoint writes. Verbose logging slows the run it
   observes: read these as shares of one step, not as absolute figures.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import stat
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from devenv.cluster import running
from devenv.processes import REPO_ROOT, tools_bin
from reconciler.adapters.pulumi.keys import KeyService
from reconciler.adapters.pulumi.provider import LongLivedProvider
from reconciler.adapters.pulumi.runner import PulumiStacks
from reconciler.adapters.pulumi.settings import PROJECT_NAME, PulumiSettings
from reconciler.core.desired import DesiredStack
from reconciler.core.workload import effective_template
from stacks.program import build_program

RECORDED = ("pulumi", "pulumi-resource-kubernetes")

# A wrapper with the real binary's name: runs it as a child, waits, appends one JSON line (argv, wall, CPU).
RECORDER = """#!{python}
import json, os, sys, time
real = {real!r}
started = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execv(real, [real, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
with open({log!r}, "a") as log:
    log.write(json.dumps({{"tool": {name!r}, "args": sys.argv[1:4], "wall": time.monotonic() - started,
                          "cpu": usage.ru_utime + usage.ru_stime}}) + "\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""

# The engine kills a provider's process and its children when a run ends, so the provider's recorder becomes
# the provider (exec, same pid), leaving a detached watcher that reads the pid's CPU until it is gone.
PROVIDER_RECORDER = """#!{python}
import json, os, sys, time
real = {real!r}
pid = os.getpid()
if os.fork() == 0:
    if os.fork() == 0:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        started, cpu = time.monotonic(), 0.0
        while True:
            try:
                with open(f"/proc/{{pid}}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                break
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if fields[0] == "Z":
                break
            time.sleep(0.01)
        with open({log!r}, "a") as log:
            log.write(json.dumps({{"tool": {name!r}, "args": [], "wall": time.monotonic() - started,
                                  "cpu": cpu}}) + "\\n")
    os._exit(0)
os.wait()
os.execv(real, [real, *sys.argv[1:]])
"""


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU of a process and its live descendants (the adapter's worker and the language server threads)."""
    total = process_cpu(pid)
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            total += tree_cpu(int(child))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def install_recorders(directory: Path, log: Path) -> None:
    directory.mkdir()
    for name in RECORDED:
        wrapper = directory / name
        template = PROVIDER_RECORDER if name.startswith("pulumi-resource-") else RECORDER
        wrapper.write_text(
            template.format(python=sys.executable, real=str(tools_bin() / name), log=str(log), name=name)
        )
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)


def command_kind(record: dict[str, object]) -> str:
    if record["tool"] != "pulumi":
        return PROVIDER_KIND
    words = [str(arg) for arg in record["args"] if not str(arg).startswith("-")]  # type: ignore[attr-defined]
    return "pulumi " + " ".join(words[:2])


def desired_at(weight: int) -> DesiredStack:
    return DesiredStack(
        name="bench",
        namespace="default",
        owner_uid="",
        port=8088,
        replicas=2,
        test_replicas=1,
        hosts=("bench",),
        gateways=(),
        primary_image="app:v1",
        canary_image="app:v2",
        canary_weight=weight,
        primary_template=effective_template(None, "app:v1", 8088),
        primary_revision="r1",
        canary_template=effective_template(None, "app:v2", 8088),
        canary_revision="r2",
    )


def bench_settings(
    root: Path, kubeconfig: Path, *, long_lived_provider: bool = True, secrets_provider: str = ""
) -> PulumiSettings:
    """Pulumi state, workspaces and plugin home in `root`, for the cluster of `kubeconfig`."""
    (root / "state").mkdir()
    return PulumiSettings(
        backend_url=f"file://{root / 'state'}",
        work_root=str(root / "workspaces"),
        pulumi_home=str(root / "pulumi-home"),
        extra_env={"KUBECONFIG": str(kubeconfig)},
        long_lived_provider=long_lived_provider,
        secrets_provider=secrets_provider,
    )


def weights(steps: int) -> Iterator[int]:
    for step in range(steps):
        yield 10 + 10 * (step % 5)


# Phases of `pulumi up` in its structured log: (name, message that starts it, message that ends it).
PHASES = (
    ("CLI start and secrets manager", None, re.compile(r"\*\*\* Starting Update")),
    (
        "program run, to its last registration (waits for the provider)",
        re.compile(r"langhost\[client\]\.Run"),
        re.compile(r"registering resource: ty=kubernetes.*VirtualService"),
    ),
    (
        "provider launch",
        re.compile(r"GetPluginPath\(resource, kubernetes"),
        re.compile(r"Handshake: "),
    ),
    (
        "provider Configure (API discovery)",
        re.compile(r"\]\.Configure\(\) executing"),
        re.compile(r"^loaded provider"),
    ),
    (
        "resources: Check, Diff (SSA dry runs), Update",
        re.compile(r"^loaded provider"),
        re.compile(r"Update\(preview=false\) complete"),
    ),
)


def up_phases(lines: list[str]) -> list[tuple[str, float]]:
    events: list[tuple[float, str]] = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        moment = datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00")[:26] + "+00:00")
        events.append((moment.timestamp(), str(record.get("msg", ""))))
    if not events:
        return []
    first, last = events[0][0], events[-1][0]
    found: list[tuple[str, float]] = []
    for name, start, end in PHASES:
        ended = next((t for t, m in events if end.search(m)), None)
        # A phase starts at the last start message before its end (the engine looks a plugin up twice).
        starts = [t for t, m in events if start is not None and start.search(m) and t <= (ended or last)]
        began = first if start is None else (starts[-1] if starts else None)
        if began is not None and ended is not None:
            found.append((name, ended - began))
    checkpoints = sum(1 for _, message in events if message.startswith("Saved stack"))
    rpcs = collections.Counter(
        match.group(1)
        for _, m in events
        if (match := re.search(r"Provider\[0x\w+\]\.(Check|Diff|Update|Read)\(", m))
    )
    found.append((f"(checkpoint writes: {checkpoints}; provider calls: {dict(rpcs)})", 0.0))
    found.append(("whole `pulumi up`", last - first))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=8, help="weight steps to measure")
    parser.add_argument(
        "--provider-per-step",
        action="store_true",
        help="start a provider for every `up`, as the Pulumi CLI does on its own (the reconciler's fallback)",
    )
    parser.add_argument(
        "--secrets-provider",
        default="",
        help="the stacks' secrets provider: empty for the step workers' key service (the default), "
        "'passphrase' for Pulumi's passphrase manager (its key derived in every run)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="canaryapp-profile-") as scratch, running() as cluster:
        root = Path(scratch)
        log = root / "commands.jsonl"
        install_recorders(root / "recorders", log)
        os.environ["PATH"] = (
            f"{root / 'recorders'}:{tools_bin()}:{REPO_ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"
        )
        os.environ.setdefault("PULUMI_CONFIG_PASSPHRASE", "bench")
        settings = bench_settings(
            root,
            cluster.kubeconfig,
            long_lived_provider=not args.provider_per_step,
            secrets_provider=args.secrets_provider,
        )
        cluster_pids = [process.pid for _, process in cluster.processes._processes]
        stacks = PulumiStacks(settings, workers=1)
        try:
            stacks.apply(desired_at(0))
            stacks.apply(desired_at(5))  # warm: the worker has selected the stack
            worker = next(iter(stacks._pool._processes))  # type: ignore[attr-defined]
            log.write_text("")
            worker_before = tree_cpu(worker)
            cluster_before = sum(process_cpu(pid) for pid in cluster_pids)
            walls = []
            for weight in weights(args.steps):
                started = time.perf_counter()
                stacks.apply(desired_at(weight))
                walls.append(time.perf_counter() - started)
            worker_cpu = (tree_cpu(worker) - worker_before) / args.steps
            cluster_cpu = (sum(process_cpu(pid) for pid in cluster_pids) - cluster_before) / args.steps
            records = [json.loads(line) for line in log.read_text().splitlines()]
            phases = up_phases(verbose_up(settings, cluster.kubeconfig))
        finally:
            stacks.close()

    mode = "a provider per step" if args.provider_per_step else "long-lived provider"
    mode += f", secrets: {args.secrets_provider or 'key service'}"
    report(args.steps, mode, walls, records, worker_cpu, cluster_cpu, phases)


PROVIDER_KIND = "provider (pulumi-resource-kubernetes)"


def row(part: str, runs: float | None, wall: float | None, cpu: float) -> str:
    runs_text = "" if runs is None else f"{runs:.1f}"
    wall_text = "" if wall is None else f"{wall * 1000:.0f}"
    return f"{part:<48}{runs_text:>10}{wall_text:>10}{cpu * 1000:>10.0f}"


def report(
    steps: int,
    mode: str,
    walls: list[float],
    records: list[dict[str, Any]],
    worker_cpu: float,
    cluster_cpu: float,
    phases: list[tuple[str, float]],
) -> None:
    print(f"one weight-only step through PulumiStacks.apply, mean of {steps} steps ({mode})")
    print(f"wall per step: median {statistics.median(walls) * 1000:.0f} ms")
    print(f"{'part':<48}{'runs/step':>10}{'wall ms':>10}{'CPU ms':>10}")
    kinds: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for record in records:
        kinds[command_kind(record)].append(record)
    provider = kinds.pop(PROVIDER_KIND, [])
    total = 0.0
    for kind, runs in sorted(kinds.items()):
        cpu = sum(r["cpu"] for r in runs) / steps
        total += cpu
        print(row(kind, len(runs) / steps, statistics.mean(r["wall"] for r in runs), cpu))
        if kind == "pulumi up" and provider:
            # The engine reaps the provider it started: its CPU is part of the up's, shown again on its own.
            cpu = sum(r["cpu"] for r in provider) / steps
            print(row(f"  of which {PROVIDER_KIND}", len(provider) / steps, None, cpu))
    print(row("worker process (program, Automation API)", None, None, worker_cpu))
    print(row("kube-apiserver, etcd, controllers", None, None, cluster_cpu))
    print(row("CPU per step, all of the above", None, None, total + worker_cpu + cluster_cpu))
    print()
    print("phases of one `pulumi up` (from its -v=7 log; logging slows it, read as shares)")
    for name, seconds in phases:
        print(f"  {name:<70}{seconds * 1000:>8.0f} ms" if seconds else f"  {name}")


def verbose_up(settings: PulumiSettings, kubeconfig: Path) -> list[str]:
    """One more weight step with the engine's structured log on, run in this process."""
    passphrase = settings.environment()["PULUMI_CONFIG_PASSPHRASE"]
    keys = (
        None if settings.secrets_provider else KeyService.for_work_root(passphrase, Path(settings.work_root))
    )
    environment = {**settings.run_environment(), **(keys.environment() if keys is not None else {})}
    os.environ.update(environment)
    options = auto.LocalWorkspaceOptions(
        work_dir=str(Path(settings.work_root) / "default.bench"),
        pulumi_home=settings.pulumi_home,
        env_vars={**environment, "KUBECONFIG": str(kubeconfig)},
        project_settings=auto.ProjectSettings(
            name=PROJECT_NAME, runtime="python", backend=auto.ProjectBackend(url=settings.backend_url)
        ),
    )
    stack = auto.select_stack(
        stack_name="default.bench", project_name=PROJECT_NAME, program=lambda: None, opts=options
    )
    stack.workspace.program = build_program(desired_at(35))
    lines: list[str] = []
    provider = (
        LongLivedProvider(Path(settings.work_root) / "verbose") if settings.long_lived_provider else None
    )
    if provider is not None:
        # The provider's first run pays for its start, as a worker's first step does: measure the second.
        os.environ.update(provider.environment())
        stack.up(color="never", suppress_progress=True, on_output=lambda _line: None)
        stack.workspace.program = build_program(desired_at(45))
    stack.up(
        color="never",
        suppress_progress=True,
        on_output=lambda _line: None,
        on_error=lines.append,
        log_verbosity=7,
        log_to_std_err=True,
        log_flow=True,
    )
    if provider is not None:
        provider.stop()
        os.environ.pop("PULUMI_DEBUG_PROVIDERS")
    if keys is not None:
        keys.stop()
    return lines


if __name__ == "__main__":
    main()
