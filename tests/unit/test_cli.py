"""The command lines: `canaryapp run` refuses to start without the binaries every step needs, saying what to
do; `kubectl canaryapp` prints what the status quotes from metric endpoints without its escape sequences."""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Callable

import pytest

from reconciler import plugin
from reconciler.model import CanaryApp

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_run_names_missing_binaries_and_the_fix() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from reconciler.cli import main; raise SystemExit(main())", "run"],
        env={"PATH": "/nonexistent", "HOME": "/tmp"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "pulumi, pulumi-resource-kubernetes not found on PATH" in result.stderr
    assert "make tools" in result.stderr


HOSTILE = "\x1b[2J\x1b[H\x1b[32mPromoted\x1b[0m\r\x1b]0;owned\x07"


def hostile_app() -> CanaryApp:
    check = {
        "time": "2026-01-01T00:00:00Z",
        "weight": 10,
        "outcome": "ErrorsFound",
        "message": f"query returned 1 series: {HOSTILE}",
        "series": [{"labels": {"pod": HOSTILE}, "value": f"1{HOSTILE}"}],
    }
    rollout = {
        "image": "web:v2",
        "startedAt": "2026-01-01T00:00:00Z",
        "result": "RolledBack",
        "reason": f"errors found: {HOSTILE}",
    }
    return CanaryApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "image": "web:v2",
                "imageListenPort": 80,
                "prometheusQuery": "q",
                "prometheusURL": "http://p",
            },
            "status": {
                "phase": "Failed",
                "message": f"Rolled back: {HOSTILE}",
                "checks": [check],
                "rollouts": [rollout],
            },
        }
    )


@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda app: plugin.render_status(app, NOW), id="status"),
        pytest.param(plugin.render_history, id="history"),
    ],
)
def test_the_plugin_prints_no_escape_sequence_from_the_status(render: Callable[[CanaryApp], str]) -> None:
    text = render(hostile_app())
    assert "Promoted" in text
    assert not any(character in text for character in "\x1b\r\x07")
