"""`canaryapp run` settings: a shard selector, its Lease, and the error for a selector that is not one."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from reconciler.config import add_run_arguments, available_cpus, run_config


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
