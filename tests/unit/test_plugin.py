"""`kubectl canaryapp`'s renderings (plugin.py) of CanaryApps as the API server stores them: the weight bar,
the status with its next step, the history and the exit code."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.core.clock import timestamp
from reconciler.core.model import CanaryApp
from reconciler.core.wire import status_body
from reconciler.plugin import exit_code, render_history, render_status, weight_bar
from tests.unit.core.statuses import revision, written

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SPEC = {
    "image": "app:v2",
    "imageListenPort": 8088,
    "prometheusQuery": "q",
    "prometheusURL": "http://p",
    "trafficShiftUpdateInterval": 10,
}


def stored(status: dict[str, Any], **spec: object) -> CanaryApp:
    """The CanaryApp as read back from the API server."""
    return CanaryApp.model_validate(
        {"metadata": {"name": "web", "namespace": "shop"}, "spec": {**SPEC, **spec}, "status": status}
    )


def running(weight: int, **more: object) -> dict[str, Any]:
    return status_body(
        written(
            phase="Progressing",
            primary="app:v1",
            canary="app:v2",
            successful="app:v1",
            canaryWeight=weight,
            lastCheckTime=timestamp(T0),
            **more,
        )
    )


@pytest.mark.parametrize(
    ("canary_weight", "bar"),
    [
        pytest.param(0, "primary 100% [####################] canary   0%", id="all primary"),
        pytest.param(30, "primary  70% [##############......] canary  30%", id="a canary step"),
        pytest.param(100, "primary   0% [....................] canary 100%", id="all canary"),
    ],
)
def test_the_weight_bar(canary_weight: int, bar: str) -> None:
    assert weight_bar(canary_weight) == bar


def test_the_weight_bar_with_a_baseline() -> None:
    assert weight_bar(20, 20) == "primary  60% [############....::::] canary  20% baseline  20%"


@pytest.mark.parametrize(
    ("app", "next_step"),
    [
        pytest.param(
            stored(running(30)),
            f"check at {timestamp(T0 + datetime.timedelta(seconds=10))} (in 5s), then 40% if clean",
            id="a check due",
        ),
        pytest.param(
            stored(running(50)),
            f"check at {timestamp(T0 + datetime.timedelta(seconds=10))} (in 5s), then promotion if clean",
            id="the last check before the promotion",
        ),
        pytest.param(
            stored(running(30, paused=True)), "none until resumed (kubectl canaryapp resume)", id="paused"
        ),
        pytest.param(
            stored(running(0)), "first step (10%) once the canary is ready", id="canary not ready yet"
        ),
        pytest.param(
            stored(
                {**running(50), **status_body(written(phase="Promoting", primary="app:v2", canary="app:v2"))}
            ),
            "traffic back to the primary once it runs app:v2",
            id="promoting",
        ),
        pytest.param(
            stored(status_body(written(phase="Succeeded", primary="app:v1", successful="app:v1"))),
            f"start a canary of app:v2 (revision {revision('app:v2')})",
            id="a new release",
        ),
        pytest.param(
            stored(status_body(written(phase="Failed", primary="app:v1", failed=["app:v2"]))),
            "nothing to do",
            id="a failed release is not retried",
        ),
        pytest.param(
            stored({"phase": "Ready", "primaryImage": "app:v1", "lastRetryToken": "1"}),
            f"start a canary of app:v2 (revision {revision('app:v2')})",
            id="a status of an earlier version",
        ),
    ],
)
def test_the_status_names_the_next_step(app: CanaryApp, next_step: str) -> None:
    assert render_status(app, T0 + datetime.timedelta(seconds=5)).splitlines()[-1] == f"next: {next_step}"


def test_the_status_shows_the_releases_images() -> None:
    text = render_status(stored(running(30)), T0)
    assert "CanaryApp shop/web: Progressing" in text
    assert "  image    app:v2 (primary app:v1, canary app:v2)" in text
    assert weight_bar(30) in text
    legacy = render_status(stored({"phase": "Ready", "primaryImage": "app:v0"}), T0)
    assert "  image    app:v2 (primary app:v0, canary -)" in legacy


@pytest.mark.parametrize(
    ("phase", "code"),
    [
        pytest.param("Failed", 1, id="the last rollout failed"),
        pytest.param("Succeeded", 0, id="promoted"),
        pytest.param("Progressing", 0, id="under way"),
    ],
)
def test_the_exit_code_says_whether_the_last_rollout_failed(phase: str, code: int) -> None:
    assert exit_code(stored({**running(0), "phase": phase})) == code


def test_the_history_lists_rollouts_with_why_they_ended_and_the_checks() -> None:
    rollouts = [
        {
            "image": "app:v2",
            "startedAt": timestamp(T0),
            "finishedAt": timestamp(T0 + datetime.timedelta(seconds=40)),
            "result": "RolledBack",
            "weights": [10, 20],
            "reason": "ChecksFailed: 5xx\x1b[2J found",
        }
    ]
    checks = [{"time": timestamp(T0), "weight": 20, "outcome": "ErrorsFound", "message": "5xx found"}]
    lines = render_history(stored({**running(0), "rollouts": rollouts, "checks": checks})).splitlines()
    assert lines[0] == "Rollouts of CanaryApp shop/web (newest last):"
    assert "app:v2" in lines[1]
    assert "RolledBack" in lines[1]
    assert "10% -> 20%" in lines[1]
    assert "\x1b" not in lines[2]
    assert lines[2].startswith("      ChecksFailed: 5xx")
    assert lines[3] == "Checks (newest last):"
    assert "ErrorsFound" in lines[4]
    assert "5xx found" in lines[4]


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
        pytest.param(lambda app: render_status(app, T0), id="status"),
        pytest.param(render_history, id="history"),
    ],
)
def test_the_plugin_prints_no_escape_sequence_from_the_status(render: Callable[[CanaryApp], str]) -> None:
    text = render(hostile_app())
    assert "Promoted" in text
    assert not any(character in text for character in "\x1b\r\x07")


# the judge's metrics ---------------------------------------------------------------------------------------

ANALYSIS = {
    "baseline": True,
    "metrics": [
        {"name": "error-rate", "counts": {"failures": "f", "trials": "t"}, "critical": True},
        {"name": "latency", "query": "q"},
        {"name": "p99-latency", "query": "q"},
    ],
}
ERROR_RATE = {
    "name": "error-rate",
    "kind": "counts",
    "verdict": "High",
    "reason": "canary failure rate 0.15 (3 of 20) against the baseline's 0 (0 of 200): +0.15, significant",
    "canarySize": 20,
    "baselineSize": 200,
    "canaryLevel": 0.15,
    "baselineLevel": 0.0,
    "estimate": 0.15,
    "low": 0.0417,
    "high": 0.3604,
    "pValue": 0.00065,
}
LATENCY = {
    "name": "latency",
    "kind": "continuous",
    "verdict": "Pass",
    "reason": "no shift beyond 10 % of the baseline's median 11.9",
    "canarySize": 150,
    "baselineSize": 148,
    "canaryLevel": 12.14,
    "baselineLevel": 11.9,
    "estimate": 0.2125,
    "low": -0.3,
    "high": 0.71,
    "pValue": 0.41,
    "spreadRatio": 1.1,
}
NO_DATA = {"name": "p99-latency", "kind": "continuous", "verdict": "NoData", "reason": "canary had 4 samples"}


def judged(*metrics: dict[str, Any], weight: int = 20) -> CanaryApp:
    check = {
        "time": timestamp(T0),
        "weight": weight,
        "outcome": "MetricsFailed",
        "message": "critical metric 'error-rate' is High",
        "score": 33.33,
        "verdict": "Fail",
        "metrics": list(metrics),
    }
    status = {**running(weight), "checks": [check]}
    return stored(status, prometheusQuery=None, analysis=ANALYSIS)


def judge_lines(app: CanaryApp) -> list[str]:
    lines = render_status(app, T0).splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("  judge "))
    return lines[start:-1]


def test_the_status_shows_the_judges_verdict_and_one_line_per_metric() -> None:
    lines = judge_lines(judged(ERROR_RATE, LATENCY, NO_DATA))
    assert lines[0] == f"  judge    Fail, score 33.3 (check at {timestamp(T0)}, weight 20%)"
    header, *rows = [line.split() for line in lines[1:]]
    assert header[:2] == ["metric", "verdict"]
    assert rows[0][:7] == ["error-rate", "High", "20/200", "0.15/0", "0.15", "[0.0417,", "0.3604]"]
    assert rows[0][7] == "0.00065"
    assert " ".join(rows[0][8:]).startswith("canary failure rate 0.15 (3 of 20)")
    assert rows[1][:8] == ["latency", "Pass", "150/148", "12.14/11.9", "0.2125", "[-0.3,", "0.71]", "0.41"]
    assert rows[2] == ["p99-latency", "NoData", "0/-", "-/-", "-", "-", "canary", "had", "4", "samples"]
    columns = [lines[1].index(title) for title in ("verdict", "n canary", "level", "shift", "reason")]
    for line in lines[2:]:
        assert all(line[column - 2 : column] == "  " for column in columns), line


def test_the_weights_show_the_baseline_while_it_runs() -> None:
    assert "canary  20% baseline  20%" in render_status(judged(LATENCY), T0)


def test_a_check_without_metric_records_shows_no_judge() -> None:
    checks = [{"time": timestamp(T0), "weight": 20, "outcome": "Clean", "message": "no errors"}]
    text = render_status(stored({**running(20), "checks": checks}), T0)
    assert "judge" not in text
    assert "baseline" not in text


def test_only_the_last_checks_metrics_are_shown() -> None:
    app = judged(ERROR_RATE)
    earlier = app.status.checks[0]
    later = earlier.model_copy(update={"time": timestamp(T0 + datetime.timedelta(seconds=10)), "metrics": ()})
    app = app.model_copy(update={"status": app.status.model_copy(update={"checks": (earlier, later)})})
    assert "judge" not in render_status(app, T0)


def test_a_long_reason_is_shortened_on_its_line() -> None:
    [row] = judge_lines(judged({**LATENCY, "reason": "x" * 500}))[2:]
    assert row.endswith("x...")
    assert len(row) < 200


def test_a_metric_record_cannot_forge_lines_or_escape_sequences() -> None:
    forged = {
        **LATENCY,
        "name": f"latency\nnext: promote{HOSTILE}",
        "reason": f"fine\n  judge    Pass{HOSTILE}",
    }
    lines = judge_lines(judged(forged, ERROR_RATE))
    assert len(lines) == 4
    assert lines[2].split()[:2] == ["latency", "next:"]
    assert not any(character in "\n".join(lines) for character in "\x1b\r\x07")
    assert sum(line.lstrip().startswith("judge") for line in lines) == 1
