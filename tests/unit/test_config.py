"""`canaryapp run` settings: a shard selector, its Lease, the error for a selector that is not one, and the
pod policy from its flags and variables."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from reconciler.config import add_run_arguments, available_cpus, run_config
from reconciler.core.names import Router
from reconciler.core.pod_policy import PodPolicy


def config_of(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser.parse_args(argv)


def test_without_a_selector_the_reconciler_sees_everything_under_the_default_lease() -> None:
    config = run_config(config_of())
    assert config.shard_selector is None
    assert config.lease_name == "canaryapp-reconciler"


def test_each_shard_gets_its_own_stable_valid_lease_unless_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shard_a = run_config(config_of("--shard-selector", "canary.atze.io/shard=a"))
    shard_b = run_config(config_of("--shard-selector", "canary.atze.io/shard=b"))
    assert shard_a.shard_selector is not None
    assert shard_a.shard_selector.matches({"canary.atze.io/shard": "a"})
    assert shard_a.lease_name.startswith("canaryapp-reconciler-")
    assert shard_a.lease_name != shard_b.lease_name
    assert (
        shard_a.lease_name
        == run_config(config_of("--shard-selector", "canary.atze.io/shard == a")).lease_name
    )
    assert len(shard_a.lease_name) <= 63
    assert shard_a.lease_name.replace("-", "").isalnum()
    named = run_config(config_of("--shard-selector", "canary.atze.io/shard=a", "--lease-name", "shard-a"))
    assert named.lease_name == "shard-a"
    monkeypatch.setenv("CANARYAPP_SHARD_SELECTOR", "canary.atze.io/shard=b")
    assert run_config(config_of()).lease_name == shard_b.lease_name


def test_an_invalid_selector_stops_start_up_naming_the_flag() -> None:
    with pytest.raises(SystemExit, match=r"--shard-selector .*'shard in \(\)'.*at least one value"):
        run_config(config_of("--shard-selector", "shard in ()"))


def test_step_workers_follow_the_cpus_a_cgroup_limit_allows(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")  # a pod limit of 1.5 CPUs: one step at a time
    assert available_cpus(limit) == 1
    limit.write_text("max 100000\n")
    assert available_cpus(limit) == cpus
    assert available_cpus(tmp_path / "missing") == cpus


POD_POLICY_VARIABLES = (
    "CANARYAPP_POD_SECURITY_LEVEL",
    "CANARYAPP_ALLOWED_SERVICE_ACCOUNTS",
    "CANARYAPP_ALLOWED_SECRETS",
    "CANARYAPP_ALLOWED_PRIORITY_CLASSES",
    "CANARYAPP_ALLOWED_POD_LABELS",
    "CANARYAPP_ALLOWED_POD_ANNOTATIONS",
    "CANARYAPP_ALLOW_POD_HOSTNAME",
    "CANARYAPP_MAX_REPLICAS",
)
PERMISSIVE_POLICY = PodPolicy(
    allowed_service_accounts=("default", "build-*"),
    allowed_secrets=("shared-ca",),
    allowed_priority_classes=("high",),
    allowed_pod_labels=("team", "app.kubernetes.io/version"),
    allowed_pod_annotations=("prometheus.io/*",),
    allow_pod_hostname=True,
    max_replicas=200,
)
PERMISSIVE_FLAGS = (
    ("--allowed-service-accounts", "default, build-*"),
    ("--allowed-secrets", "shared-ca"),
    ("--allowed-priority-classes", "high"),
    ("--allowed-pod-labels", "team,app.kubernetes.io/version"),
    ("--allowed-pod-annotations", "prometheus.io/*"),
    ("--max-replicas", "200"),
)


@pytest.fixture
def no_pod_policy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in POD_POLICY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.usefixtures("no_pod_policy_variables")
def test_pods_get_the_secure_policy_unless_the_operator_permits_more() -> None:
    default = run_config(config_of())
    assert default.pod_policy == PodPolicy()
    assert default.pod_security_level == "baseline"
    assert PodPolicy().allowed_service_accounts == ("default",)
    assert PodPolicy().allowed_pod_labels == PodPolicy().allowed_pod_annotations == ()
    assert not PodPolicy().allow_pod_hostname
    flags = [part for pair in PERMISSIVE_FLAGS for part in pair]
    permissive = run_config(config_of(*flags, "--allow-pod-hostname", "--pod-security-level", "restricted"))
    assert permissive.pod_policy == PERMISSIVE_POLICY
    assert permissive.pod_security_level == "restricted"
    no_account = run_config(config_of("--allowed-service-accounts", ""))
    assert no_account.pod_policy.allowed_service_accounts == ()


def test_the_pod_policy_follows_its_variables_and_flags_override_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for flag, value in PERMISSIVE_FLAGS:
        monkeypatch.setenv("CANARYAPP_" + flag.removeprefix("--").replace("-", "_").upper(), value)
    monkeypatch.setenv("CANARYAPP_ALLOW_POD_HOSTNAME", "true")
    monkeypatch.setenv("CANARYAPP_POD_SECURITY_LEVEL", "restricted")
    assert run_config(config_of()).pod_policy == PERMISSIVE_POLICY
    assert run_config(config_of()).pod_security_level == "restricted"
    overridden = run_config(config_of("--no-allow-pod-hostname", "--allowed-secrets", ""))
    assert not overridden.pod_policy.allow_pod_hostname
    assert overridden.pod_policy.allowed_secrets == ()
    assert overridden.pod_policy.allowed_pod_labels == ("team", "app.kubernetes.io/version")


@pytest.mark.usefixtures("no_pod_policy_variables")
@pytest.mark.parametrize("flag", ["--allowed-service-accounts", "--allowed-secrets"])
def test_a_pattern_with_the_canaryapps_name_stops_start_up(flag: str) -> None:
    """A CanaryApp's author picks its name: `{name}` in a grant would let any author claim an object."""
    with pytest.raises(SystemExit, match=rf"{flag}: \{{name\}} is no longer a pattern.*allowed-canaryapps"):
        run_config(config_of(flag, "default,{name}-*"))


@pytest.mark.usefixtures("no_pod_policy_variables")
def test_an_unknown_pod_security_level_stops_start_up() -> None:
    with pytest.raises(SystemExit):
        run_config(config_of("--pod-security-level", "strict"))


def test_metric_urls_default_to_istios_prometheus_and_follow_the_flag_or_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = run_config(config_of()).metrics_policy
    assert default.allows("shop", "http://prometheus.istio-system:9090")
    assert not default.allows("shop", "http://10.0.0.1:9090")
    flagged = run_config(config_of("--allowed-metric-urls", "https://mimir.example.com, http://127.0.0.1:*"))
    assert flagged.metrics_policy.allowed_urls == ("https://mimir.example.com", "http://127.0.0.1:*")
    monkeypatch.setenv("CANARYAPP_ALLOWED_METRIC_URLS", "http://prometheus.{namespace}.svc:9090")
    from_env = run_config(config_of()).metrics_policy
    assert from_env.allows("shop", "http://prometheus.shop.svc:9090")
    assert not from_env.allows("shop", "http://prometheus.istio-system:9090")


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        pytest.param("--allowed-gateways", "istio-system/{namespace}-*", id="gateway"),
        pytest.param("--allowed-hosts", "{namespace}-*.example.com", id="host"),
        pytest.param("--allowed-metric-urls", "http://{namespace}-*.monitoring.svc:9090", id="metric url"),
    ],
)
def test_a_pattern_whose_namespace_has_no_boundary_stops_start_up(flag: str, value: str) -> None:
    """Namespace `a` must never match namespace `a-b`'s objects: such a pattern is refused at start."""
    with pytest.raises(SystemExit, match=r"\{namespace\} must be a whole name or path segment"):
        run_config(config_of(flag, value))


def test_bounded_namespace_patterns_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARYAPP_ALLOWED_METRIC_URLS", "http://prometheus.{namespace}.svc:9090")
    config = run_config(
        config_of("--allowed-gateways", "{namespace}/*", "--allowed-hosts", "*.{namespace}.example.com")
    )
    assert config.allowed_gateways == ("{namespace}/*",)
    assert config.metrics_policy.allowed_urls == ("http://prometheus.{namespace}.svc:9090",)


def test_the_default_router_is_istio_unless_the_flag_or_variable_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CANARYAPP_DEFAULT_ROUTER", raising=False)
    assert run_config(config_of()).default_router == Router.ISTIO
    assert run_config(config_of("--default-router", "gateway-api")).default_router == Router.GATEWAY_API
    monkeypatch.setenv("CANARYAPP_DEFAULT_ROUTER", "gateway-api")
    assert run_config(config_of()).default_router == Router.GATEWAY_API
    monkeypatch.setenv("CANARYAPP_DEFAULT_ROUTER", "linkerd")
    with pytest.raises(SystemExit, match=r"--default-router \(or CANARYAPP_DEFAULT_ROUTER\) must be one of"):
        run_config(config_of())


@pytest.mark.parametrize(
    "provider",
    [
        pytest.param("", id="the step processes' key service (default)"),
        pytest.param("passphrase", id="the passphrase"),
        pytest.param("awskms://alias/canaryapp?region=eu-west-1", id="AWS KMS"),
        pytest.param("hashivault://canaryapp", id="a Vault of the operator's"),
        pytest.param("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", id="Google Cloud KMS"),
        pytest.param("azurekeyvault://vault.vault.azure.net/keys/k", id="Azure Key Vault"),
    ],
)
def test_the_stacks_secrets_provider_is_the_key_service_unless_the_operator_names_one(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CANARYAPP_SECRETS_PROVIDER", raising=False)
    assert run_config(config_of()).secrets_provider == ""
    assert run_config(config_of("--secrets-provider", provider)).secrets_provider == provider
    monkeypatch.setenv("CANARYAPP_SECRETS_PROVIDER", provider)
    assert run_config(config_of()).secrets_provider == provider


@pytest.mark.parametrize("provider", ["default", "awskms://", "vault://key", "base64key://c2VjcmV0", "kms"])
def test_a_secrets_provider_pulumi_cannot_open_stops_the_reconciler_naming_the_choices(provider: str) -> None:
    with pytest.raises(
        SystemExit,
        match=r"--secrets-provider \(or CANARYAPP_SECRETS_PROVIDER\) .* not a secrets provider: .*\(awskms://",
    ):
        run_config(config_of("--secrets-provider", provider))
