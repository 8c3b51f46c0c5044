"""The backtest's replay (reconciler/core/backtest.py) on answers the test scripts: the same decide() forward,
one check per interval, stopping at the first promotion or rollback."""

from __future__ import annotations

import datetime

import pytest

from reconciler.core import backtest
from reconciler.core.analysis import CheckResult
from reconciler.core.model import CanaryApp, CanaryAppStatus, CheckOutcome

START = datetime.datetime(2026, 11, 28, 10, 0, 0, tzinfo=datetime.UTC)


def app(**spec: object) -> CanaryApp:
    return CanaryApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "image": "web:v3",
                "imageListenPort": 8080,
                "prometheusQuery": "errors",
                "prometheusURL": "http://p:9090",
                "trafficShiftUpdateInterval": 30,
                **spec,
            },
        }
    )


def scripted(errors_from: datetime.datetime | None) -> backtest.Check:
    def check(the_app: CanaryApp, status: CanaryAppStatus, at: datetime.datetime) -> CheckResult:
        if errors_from is not None and at >= errors_from:
            return CheckResult(CheckOutcome.ERRORS_FOUND, "5xx found", canary_requests=40)
        return CheckResult(CheckOutcome.CLEAN, "clean", canary_requests=40)

    return check


def test_a_clean_history_promotes_after_the_last_step() -> None:
    result = backtest.replay(app(), scripted(None), START, START + datetime.timedelta(hours=1))
    assert result.promoted
    assert [step.weight for step in result.steps] == [10, 20, 30, 40, 50]
    assert result.verdict == "promoted at 2026-11-28T10:02:30Z"


def test_errors_roll_back_at_the_interval_that_saw_them() -> None:
    errors_at = START + datetime.timedelta(seconds=70)
    result = backtest.replay(app(), scripted(errors_at), START, START + datetime.timedelta(hours=1))
    assert result.rolled_back
    assert [step.weight for step in result.steps] == [10, 20, 30]
    assert result.verdict.startswith("rolled back at 2026-11-28T10:01:30Z")
    text = backtest.render(app(), result, START, START + datetime.timedelta(hours=1))
    assert "verdict: rolled back at 2026-11-28T10:01:30Z" in text
    assert text.count("\n") == len(result.steps) + 3


def test_too_short_a_window_is_inconclusive() -> None:
    result = backtest.replay(app(), scripted(None), START, START + datetime.timedelta(seconds=65))
    assert not result.promoted
    assert not result.rolled_back
    assert "weight 30%" in result.verdict


@pytest.mark.parametrize(
    ("text", "seconds"), [("1h", 3600), ("30m", 1800), ("90s", 90), ("2h30m", 9000), ("1h0m5s", 3605)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert backtest.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "1d", "h", "10", "1 h"])
def test_parse_duration_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        backtest.parse_duration(text)
