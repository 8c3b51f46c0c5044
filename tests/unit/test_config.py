"""`canaryapp run` settings: a shard selector, its Lease, the error for a selector that is not one, and the
pod policy from its flags and variables."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from reconciler.config import add_run_arguments, available_cpus, run_config
from reconciler.pod_policy import PodPolicy


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
    "CANARYAPP_ALLOWED_SERVICE_ACCOUNTS",
    "CANARYAPP_ALLOW_PRIVILEGED",
    "CANARYAPP_ALLOWED_HOST_PATHS",
    "CANARYAPP_ALLOWED_CAPABILITIES",
    "CANARYAPP_ALLOWED_SECRETS",
)
PERMISSIVE_POLICY = PodPolicy(
    allowed_service_accounts=("{name}", "{name}-*"),
    allow_privileged=True,
    allowed_host_paths=("/var/log", "/data"),
    allowed_capabilities=("NET_ADMIN",),
    allowed_secrets=("{name}-*",),
)


@pytest.fixture
def no_pod_policy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in POD_POLICY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.usefixtures("no_pod_policy_variables")
def test_pods_get_the_secure_policy_unless_the_operator_permits_more() -> None:
    assert run_config(config_of()).pod_policy == PodPolicy()
    assert PodPolicy().allowed_service_accounts == ("default",)
    assert not PodPolicy().allow_privileged
    permissive = run_config(
        config_of(
            "--allowed-service-accounts",
            "{name}, {name}-*",
            "--allow-privileged",
            "--allowed-host-paths",
            "/var/log,/data",
            "--allowed-capabilities",
            "NET_ADMIN",
            "--allowed-secrets",
            "{name}-*",
        )
    )
    assert permissive.pod_policy == PERMISSIVE_POLICY
    no_account = run_config(config_of("--allowed-service-accounts", ""))
    assert no_account.pod_policy.allowed_service_accounts == ()


def test_the_pod_policy_follows_its_variables_and_flags_override_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CANARYAPP_ALLOWED_SERVICE_ACCOUNTS", "{name},{name}-*")
    monkeypatch.setenv("CANARYAPP_ALLOW_PRIVILEGED", "true")
    monkeypatch.setenv("CANARYAPP_ALLOWED_HOST_PATHS", "/var/log,/data")
    monkeypatch.setenv("CANARYAPP_ALLOWED_CAPABILITIES", "NET_ADMIN")
    monkeypatch.setenv("CANARYAPP_ALLOWED_SECRETS", "{name}-*")
    assert run_config(config_of()).pod_policy == PERMISSIVE_POLICY
    overridden = run_config(config_of("--no-allow-privileged", "--allowed-secrets", "")).pod_policy
    assert not overridden.allow_privileged
    assert overridden.allowed_secrets == ()
    assert overridden.allowed_host_paths == ("/var/log", "/data")


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        pytest.param("true", True, id="true"),
        pytest.param("TRUE", True, id="upper case"),
        pytest.param("1", True, id="1"),
        pytest.param("yes", True, id="yes"),
        pytest.param("false", False, id="false"),
        pytest.param("", False, id="empty"),
        pytest.param("on", False, id="anything else"),
    ],
)
def test_allow_privileged_variable(monkeypatch: pytest.MonkeyPatch, value: str, allowed: bool) -> None:
    monkeypatch.setenv("CANARYAPP_ALLOW_PRIVILEGED", value)
    assert run_config(config_of()).pod_policy.allow_privileged is allowed


@pytest.mark.usefixtures("no_pod_policy_variables")
def test_a_relative_host_path_stops_start_up_naming_the_flag() -> None:
    with pytest.raises(SystemExit, match=r"--allowed-host-paths .*var/log is not an absolute path"):
        run_config(config_of("--allowed-host-paths", "/data,var/log"))


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
