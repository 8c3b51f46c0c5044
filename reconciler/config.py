"""Settings of `canaryapp run`, from flags with environment-variable defaults (CANARYAPP_*)."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core import pod_security
from reconciler.core.grants import GRANT_ANNOTATION
from reconciler.core.names import Router
from reconciler.core.pod_policy import DEFAULT_MAX_REPLICAS, DEFAULT_SERVICE_ACCOUNT, PodPolicy
from reconciler.core.policy import (
    METRIC_URLS_FLAG,
    METRIC_URLS_SETTING,
    MetricsPolicy,
    metric_url_bounded,
    namespace_bounded,
)
from reconciler.core.selectors import LabelSelector, SelectorError, parse_selector

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
    default_router: Router = Router.ISTIO
    max_concurrent_rollouts: int | None = None
    notify_url: str | None = None
    shard_selector: LabelSelector | None = None
    provider_per_step: bool = False
    secrets_provider: str = ""
    metrics_policy: MetricsPolicy = field(default_factory=MetricsPolicy)
    pod_policy: PodPolicy = field(default_factory=PodPolicy)
    pod_security_level: str = pod_security.DEFAULT_LEVEL
    step_timeout: float = 300.0

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


# What --secrets-provider may name besides nothing (the step workers' own key service): Pulumi's passphrase
# manager (its key derived in every CLI run), or a key-management service its cloud provider opens.
_KMS_SCHEMES = ("awskms", "azurekeyvault", "gcpkms", "hashivault")


def secrets_provider_problem(provider: str) -> str | None:
    """Why `provider` cannot be the stacks' secrets provider; None if it can."""
    scheme, separator, rest = provider.partition("://")
    if provider in ("", "passphrase") or (separator and scheme in _KMS_SCHEMES and rest):
        return None
    return (
        f"--secrets-provider (or CANARYAPP_SECRETS_PROVIDER) {provider!r} is not a secrets provider: leave "
        "it empty for the reconciler's own key service (keyed by PULUMI_CONFIG_PASSPHRASE), name a "
        f"key-management service as Pulumi does ({', '.join(scheme + '://...' for scheme in _KMS_SCHEMES)}), "
        "or say 'passphrase'"
    )


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
        "--default-router",
        choices=[router.value for router in Router],
        default=_env("DEFAULT_ROUTER", Router.ISTIO.value),
        help="the router of a CanaryApp whose spec names none (spec.router): istio (a VirtualService, as the "
        "original operator) or gateway-api (an HTTPRoute); default: istio",
    )
    parser.add_argument(
        METRIC_URLS_FLAG,
        default=None,
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
        "--secrets-provider",
        default=_env("SECRETS_PROVIDER", ""),
        help="what encrypts the stacks' secrets: empty (default) for the step processes' own key service, "
        "keyed by PULUMI_CONFIG_PASSPHRASE; a key-management service's URL as Pulumi spells it (awskms://, "
        "hashivault://, gcpkms://, azurekeyvault://); or 'passphrase' (Pulumi derives its key in every run)",
    )
    parser.add_argument(
        "--step-timeout",
        type=float,
        default=_env("STEP_TIMEOUT", "300"),
        help="seconds a `pulumi up` or `destroy` may take; a longer one is killed with its engine and "
        "provider, and retried; default: 300",
    )
    parser.add_argument(
        "--identity", default=_env("IDENTITY", os.environ.get("HOSTNAME", f"pid-{os.getpid()}"))
    )


def add_pod_policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pod-security-level",
        choices=pod_security.LEVELS,
        default=_env("POD_SECURITY_LEVEL", pod_security.DEFAULT_LEVEL),
        help="the Pod Security Standard a CanaryApp's namespace must enforce (and warn at) and its templates "
        "must meet, as the API server judges them; privileged turns the check off; default: baseline",
    )
    patterns = (
        (
            "--allowed-service-accounts",
            "ALLOWED_SERVICE_ACCOUNTS",
            DEFAULT_SERVICE_ACCOUNT,
            "ServiceAccounts a CanaryApp's pods may run as without the account's grant annotation",
        ),
        (
            "--allowed-secrets",
            "ALLOWED_SECRETS",
            "",
            "Secrets a CanaryApp's pods may read without the Secret's grant annotation",
        ),
        (
            "--allowed-priority-classes",
            "ALLOWED_PRIORITY_CLASSES",
            "",
            "priority classes a template may name",
        ),
        ("--allowed-pod-labels", "ALLOWED_POD_LABELS", "", "label keys a template's metadata may carry"),
        (
            "--allowed-pod-annotations",
            "ALLOWED_POD_ANNOTATIONS",
            "",
            "annotation keys a template's metadata may carry",
        ),
    )
    for flag, variable, default, what in patterns:
        parser.add_argument(
            flag,
            default=_env(variable, default),
            help=f"comma-separated globs: {what}; default: {default or 'none'}",
        )
    parser.add_argument(
        "--allow-pod-hostname",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("ALLOW_POD_HOSTNAME"),
        help="let a template set the pods' hostname and subdomain (a DNS name of its choosing); default: no",
    )
    parser.add_argument(
        "--max-replicas",
        type=int,
        default=int(_env("MAX_REPLICAS", str(DEFAULT_MAX_REPLICAS)) or DEFAULT_MAX_REPLICAS),
        help=f"the most pods a CanaryApp may ask for (replicas, testReplicas, autoscaler.maxReplicas); "
        f"default: {DEFAULT_MAX_REPLICAS}",
    )


def pod_policy(args: argparse.Namespace) -> PodPolicy:
    named = [
        flag
        for flag, value in (
            ("--allowed-service-accounts", args.allowed_service_accounts),
            ("--allowed-secrets", args.allowed_secrets),
        )
        if "{name}" in (value or "")
    ]
    if named:
        raise SystemExit(
            f"{', '.join(named)}: {{name}} is no longer a pattern: a CanaryApp's author chooses its name, "
            "so it cannot grant anything; let the owner of the ServiceAccount or Secret grant it with the "
            f"annotation {GRANT_ANNOTATION}=<CanaryApp names>"
        )
    if args.max_replicas < 1:
        raise SystemExit("--max-replicas must be at least 1")
    return PodPolicy(
        allowed_service_accounts=_patterns(args.allowed_service_accounts),
        allowed_secrets=_patterns(args.allowed_secrets),
        allowed_priority_classes=_patterns(args.allowed_priority_classes),
        allowed_pod_labels=_patterns(args.allowed_pod_labels),
        allowed_pod_annotations=_patterns(args.allowed_pod_annotations),
        allow_pod_hostname=args.allow_pod_hostname,
        max_replicas=args.max_replicas,
    )


def _metrics_policy(flag: str | None) -> MetricsPolicy:
    policy = MetricsPolicy.configured(flag, os.environ)
    _bounded(METRIC_URLS_SETTING, policy.allowed_urls, metric_url_bounded)
    return policy


def _bounded(setting: str, patterns: tuple[str, ...], bounded: Callable[[str], bool]) -> tuple[str, ...]:
    """The patterns of a setting; one whose {namespace} could stand for another namespace's prefix (namespace
    `a` matching `a-b-public`) stops start-up, naming it and the fix."""
    unbounded = [pattern for pattern in patterns if not bounded(pattern)]
    if unbounded:
        raise SystemExit(
            f"{setting}: {', '.join(unbounded)}: {{namespace}} must be a whole name or path segment (between "
            "'.', '/' or the ends) with no glob on one side, or it would match other namespaces' objects "
            "(namespace a matching a-b-...); write e.g. '{namespace}/*' or '*.{namespace}.example.com'"
        )
    return patterns


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
    if not 0 < args.step_timeout < math.inf:
        raise SystemExit(
            f"--step-timeout (or CANARYAPP_STEP_TIMEOUT) must be a number of seconds above 0, e.g. 300, "
            f"not {args.step_timeout}"
        )
    if (problem := secrets_provider_problem(args.secrets_provider)) is not None:
        raise SystemExit(problem)
    if args.default_router not in {router.value for router in Router}:
        raise SystemExit(
            f"--default-router (or CANARYAPP_DEFAULT_ROUTER) must be one of "
            f"{', '.join(router.value for router in Router)}, not {args.default_router!r}"
        )
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
        allowed_gateways=_bounded("--allowed-gateways", _patterns(args.allowed_gateways), namespace_bounded),
        allowed_hosts=_bounded("--allowed-hosts", _patterns(args.allowed_hosts), namespace_bounded),
        default_router=Router(args.default_router),
        max_concurrent_rollouts=args.max_concurrent_rollouts or None,
        notify_url=args.notify_url or None,
        shard_selector=shard_selector,
        provider_per_step=args.provider_per_step,
        secrets_provider=args.secrets_provider,
        pod_policy=pod_policy(args),
        pod_security_level=args.pod_security_level,
        metrics_policy=_metrics_policy(args.allowed_metric_urls),
        step_timeout=args.step_timeout,
    )
