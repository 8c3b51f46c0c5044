"""The environment of a step's `pulumi` runs (settings.py)."""

from __future__ import annotations

import pytest

from reconciler.adapters.pulumi.settings import DISABLE_CHECKPOINT_BACKUPS, PULUMI_RUN_GOGC, PulumiSettings

SETTINGS = PulumiSettings("file:///state", "/work", "/home", extra_env={"KUBECONFIG": "/kube"})


def test_a_run_gets_the_settings_with_its_go_collector_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOGC", raising=False)
    assert SETTINGS.run_environment() == {**SETTINGS.environment(), "GOGC": PULUMI_RUN_GOGC}
    assert "GOGC" not in SETTINGS.environment()  # what the long-lived provider is started with


def test_an_operators_own_gogc_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOGC", "100")
    assert SETTINGS.run_environment()["GOGC"] == "100"
    settings = PulumiSettings("file:///state", "/work", "/home", extra_env={"GOGC": "off"})
    assert settings.run_environment()["GOGC"] == "off"


def test_runs_write_no_backup_copy_of_the_checkpoint_unless_the_operator_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DISABLE_CHECKPOINT_BACKUPS, raising=False)
    assert SETTINGS.run_environment()["PULUMI_DIY_BACKEND_DISABLE_CHECKPOINT_BACKUPS"] == "true"
    monkeypatch.setenv(DISABLE_CHECKPOINT_BACKUPS, "false")
    assert SETTINGS.run_environment()[DISABLE_CHECKPOINT_BACKUPS] == "false"
