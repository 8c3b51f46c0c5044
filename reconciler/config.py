"""Settings of `canaryapp run`, from flags with environment-variable defaults (CANARYAPP_*)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.pod_policy import PodPolicy
from reconciler.policy import DEFAULT_METRIC_URLS, MetricsPolicy
from reconciler.selectors import LabelSelector, SelectorError, parse_selector

DEFAULT_LEASE_NAME = "canaryapp-reconciler"


@dataclass(frozen=True)
class RunConfig:
    kubeconfig: str | None
    namespace: str | None
    workers: int
    state_dir: Path
    backend_url: str
    log_format: str
    log_level: str
    resync_seconds: float
    metrics_address: str
    leader_elect: bool
    lease_namespace: str
    lease_name: str
    identity: str
    allowed_gateways: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_concurrent_rollouts: int | None = None
    notify_url: str | None = None
    shard_selector: LabelSelector | None = None
    provider_per_step: bool = False
    metrics_policy: MetricsPolicy = field(default_factory=MetricsPolicy)
    pod_policy: PodPolicy = field(default_factory=PodPolicy)

    @property
    def step_workers(self) -> int:
        """Processes that run Pulumi steps: one per CPU this process may use, at most `workers` and 4. A step
        is CPU-bound (the CLI, the engine, the provider), so more of them than CPUs only makes each slower and
        holds more memory (bench/scale.py: on 2 CPUs, 4 step processes promoted 20 CanaryApps later than 2 and
        held 1.5 GiB against 0.8)."""
        return max(1, min(self.workers, 4, available_cpus()))

    @property
    def pulumi_home(self) -> Path:
        return self.state_dir / "pulumi-home"

    @property
    def work_root(self) -> Path:
        return self.state_dir / "workspaces"


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may use: its affinity, lowered by a cgroup v2 CPU quota (a pod's CPU limit)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cgroup.read_text().split()
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, int(int(quota) // int(period))))


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"CANARYAPP_{name}", default)


def _env_flag(name: str) -> bool:
    return (_env(name, "") or "").lower() in ("1", "true", "yes")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=_env("KUBECONFIG"), help="kubeconfig (default: in-cluster)")
    parser.add_argument("--namespace", default=_env("NAMESPACE"), help="only this namespace (default: all)")
    parser.add_argument("--workers", type=int, default=int(_env("WORKERS", "4") or 4))
    parser.add_argument(
        "--state-dir",
        default=_env("STATE_DIR", str(Path.home() / ".canaryapp")),
        help="folder for Pulumi workspaces, plugins home and the default file backend",
    )
    parser.add_argument(
        "--backend-url",
        default=_env("BACKEND_URL"),
        help="Pulumi backend URL (file://, s3://, ...); default file://<state-dir>/state",
    )
    parser.add_argument("--log-format", choices=("text", "json"), default=_env("LOG_FORMAT", "text"))
    parser.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    parser.add_argument("--resync-seconds", type=float, default=float(_env("RESYNC_SECONDS", "300") or 300))
    parser.add_argument(
        "--metrics-address", default=_env("METRICS_ADDRESS", "127.0.0.1:8080"), help="host:port of /metrics"
    )
    parser.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("LEADER_ELECT"),
    )
    parser.add_argument("--lease-namespace", default=_env("LEASE_NAMESPACE", "canaryapp-system"))
    parser.add_argument(
        "--lease-name",
        default=_env("LEASE_NAME"),
        help=f"default: {DEFAULT_LEASE_NAME}; with --shard-selector, {DEFAULT_LEASE_NAME}-<selector hash>",
    )
    parser.add_argument(
        "--shard-selector",
        default=_env("SHARD_SELECTOR"),
        help="only CanaryApps with matching labels, e.g. 'canary.atze.io/shard=a' (Kubernetes label selector "
        "syntax); each shard has its own Lease; default: all CanaryApps",
    )
    parser.add_argument(
        "--allowed-gateways",
        default=_env("ALLOWED_GATEWAYS", ""),
        help="comma-separated <namespace>/<gateway> globs CanaryApps may bind besides the mesh "
        "({namespace} = the CanaryApp's namespace); default: none (mesh only)",
    )
    parser.add_argument(
        "--allowed-hosts",
        default=_env("ALLOWED_HOSTS", ""),
        help="comma-separated host globs CanaryApps may claim besides their own service names "
        "(e.g. '*.{namespace}.example.com'); default: none",
    )
    parser.add_argument(
        "--allowed-metric-urls",
        default=_env("ALLOWED_METRIC_URLS", ",".join(DEFAULT_METRIC_URLS)),
        help="comma-separated URL patterns the reconciler may query for CanaryApps (host globs, ':*' for any "
        "port, a path prefix, {namespace}); default: Istio's Prometheus add-on",
    )
    add_pod_policy_arguments(parser)
    parser.add_argument(
        "--max-concurrent-rollouts",
        type=int,
        default=int(_env("MAX_CONCURRENT_ROLLOUTS", "0") or 0),
        help="at most this many rollouts progress at once; others wait in order (default 0: unlimited)",
    )
    parser.add_argument(
        "--notify-url",
        default=_env("NOTIFY_URL"),
        help="POST one JSON document per rollout event here (Slack-compatible `text`); default: none",
    )
    parser.add_argument(
        "--provider-per-step",
        action="store_true",
        default=_env_flag("PROVIDER_PER_STEP"),
        help="start the Kubernetes provider for every step, as `pulumi up` does on its own, instead of one "
        "long-lived provider per worker (slower: a fallback)",
    )
    parser.add_argument(
        "--identity", default=_env("IDENTITY", os.environ.get("HOSTNAME", f"pid-{os.getpid()}"))
    )


def add_pod_policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allowed-service-accounts",
        default=_env("ALLOWED_SERVICE_ACCOUNTS", "default"),
        help="comma-separated ServiceAccount globs a CanaryApp's pods may run as ({name} = the CanaryApp's "
        "name); default: default",
    )
    parser.add_argument(
        "--allow-privileged",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("ALLOW_PRIVILEGED"),
        help="let a CanaryApp's pods be privileged, escalate privileges, use host namespaces, host ports, an "
        "unmasked /proc or Windows host processes; default: no",
    )
    parser.add_argument(
        "--allowed-host-paths",
        default=_env("ALLOWED_HOST_PATHS", ""),
        help="comma-separated absolute path prefixes a CanaryApp's hostPath volumes may mount; default: none",
    )
    parser.add_argument(
        "--allowed-capabilities",
        default=_env("ALLOWED_CAPABILITIES", ""),
        help="comma-separated Linux capabilities a CanaryApp's containers may add (NET_ADMIN, or ALL for "
        "any); default: none",
    )
    parser.add_argument(
        "--allowed-secrets",
        default=_env("ALLOWED_SECRETS", ""),
        help="comma-separated Secret globs a CanaryApp's pods may mount or read into env ({name} = the "
        "CanaryApp's name); default: none",
    )


def pod_policy(args: argparse.Namespace) -> PodPolicy:
    host_paths = _patterns(args.allowed_host_paths)
    relative = [path for path in host_paths if not path.startswith("/")]
    if relative:
        raise SystemExit(
            f"--allowed-host-paths (or CANARYAPP_ALLOWED_HOST_PATHS): {', '.join(relative)} is not an "
            "absolute path; write it from the node's root, e.g. /var/log"
        )
    return PodPolicy(
        allowed_service_accounts=_patterns(args.allowed_service_accounts),
        allow_privileged=args.allow_privileged,
        allowed_host_paths=host_paths,
        allowed_capabilities=_patterns(args.allowed_capabilities),
        allowed_secrets=_patterns(args.allowed_secrets),
    )


def _patterns(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def shard_lease_name(selector: LabelSelector | None) -> str:
    """The Lease of a shard: one per selection, the same however the selector is spelled, a valid name."""
    return f"{DEFAULT_LEASE_NAME}-{selector.digest()}" if selector else DEFAULT_LEASE_NAME


def _shard_selector(text: str | None) -> LabelSelector | None:
    if not text or not text.strip():
        return None
    try:
        return parse_selector(text)
    except SelectorError as error:
        raise SystemExit(
            f"--shard-selector (or CANARYAPP_SHARD_SELECTOR) {text!r} is not a label selector: {error}"
        ) from error


def run_config(args: argparse.Namespace) -> RunConfig:
    state_dir = Path(args.state_dir).expanduser().resolve()
    shard_selector = _shard_selector(args.shard_selector)
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    if args.max_concurrent_rollouts < 0:
        raise SystemExit("--max-concurrent-rollouts must be 0 (unlimited) or more")
    return RunConfig(
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        workers=args.workers,
        state_dir=state_dir,
        backend_url=args.backend_url or f"file://{state_dir / 'state'}",
        log_format=args.log_format,
        log_level=args.log_level,
        resync_seconds=args.resync_seconds,
        metrics_address=args.metrics_address,
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name or shard_lease_name(shard_selector),
        identity=args.identity,
        allowed_gateways=_patterns(args.allowed_gateways),
        allowed_hosts=_patterns(args.allowed_hosts),
        max_concurrent_rollouts=args.max_concurrent_rollouts or None,
        notify_url=args.notify_url or None,
        shard_selector=shard_selector,
        provider_per_step=args.provider_per_step,
        pod_policy=pod_policy(args),
        metrics_policy=MetricsPolicy(_patterns(args.allowed_metric_urls)),
    )
