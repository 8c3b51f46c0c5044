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


def test_with_a_baseline_the_replay_sees_it_ready_and_promotes_a_clean_history() -> None:
    result = backtest.replay(
        app(analysis={"baseline": True}), scripted(None), START, START + datetime.timedelta(hours=1)
    )
    assert result.promoted
    assert [step.weight for step in result.steps] == [10, 20, 30, 40, 50]


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


# --- recorded checks judged again ---------------------------------------------------------------------------

JUDGED_SPEC = {
    "prometheusQuery": None,
    "analysis": {"baseline": True, "metrics": [{"name": "latency", "query": 'p99{w="{{ target }}"}'}]},
}


def stamp(seconds: float) -> str:
    return (START + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(
    seconds: float, weight: int, outcome: str, verdict: str | None, score: float | None = None
) -> dict:
    return {"time": stamp(seconds), "weight": weight, "outcome": outcome, "verdict": verdict, "score": score}


def judged_app(checks: list[dict], rollouts: list[float]) -> CanaryApp:
    raw = app(**JUDGED_SPEC).model_dump(by_alias=True, mode="json", exclude_none=True)
    raw["status"] = {
        "phase": "Progressing",
        "checks": checks,
        "rollouts": [{"image": "web:v3", "startedAt": stamp(seconds)} for seconds in rollouts],
    }
    return CanaryApp.model_validate(raw)


HISTORY = judged_app(
    [
        record(35, 10, "MetricsFailed", "Fail", 0.0),  # an earlier rollout, rolled back at weight 10
        record(130, 10, "Clean", "Pass", 100.0),
        record(160, 20, "MetricsFailed", "Fail", 0.0),
        record(190, 20, "Clean", "Pass", 100.0),
        record(220, 30, "ErrorsFound", None),  # the legacy query's: no verdict of the judge's
    ],
    rollouts=[0, 95],
)


def test_each_recorded_checks_window_starts_at_the_weight_change_before_it() -> None:
    windows = backtest.check_windows(HISTORY.status, datetime.timedelta(seconds=30))
    assert [(item.time, start) for item, start in windows] == [
        (stamp(35), START + datetime.timedelta(seconds=5)),  # first of its rollout: one interval before
        (stamp(130), START + datetime.timedelta(seconds=100)),  # not the other rollout's check at 10 %
        (stamp(160), START + datetime.timedelta(seconds=130)),  # the check that advanced to 20 %
        (stamp(190), START + datetime.timedelta(seconds=130)),  # held at 20 %: still that change
        (stamp(220), START + datetime.timedelta(seconds=190)),
    ]


def test_recorded_verdicts_are_judged_again_over_their_windows_and_compared() -> None:
    asked: list[tuple[str | None, int, datetime.datetime]] = []

    def check(the_app: CanaryApp, status: CanaryAppStatus, at: datetime.datetime) -> CheckResult:
        asked.append((status.last_traffic_shift, status.canary_weight, at))
        return CheckResult(
            CheckOutcome.CLEAN, "score 100.0: every metric passed", score=100.0, verdict="Pass"
        )

    rejudged = backtest.rejudge(HISTORY, check)
    assert asked == [
        (stamp(5), 10, START + datetime.timedelta(seconds=35)),
        (stamp(100), 10, START + datetime.timedelta(seconds=130)),
        (stamp(130), 20, START + datetime.timedelta(seconds=160)),
        (stamp(130), 20, START + datetime.timedelta(seconds=190)),
    ]
    assert [item.agrees for item in rejudged] == [False, True, False, True]
    replay = backtest.replay(HISTORY, check, START, START + datetime.timedelta(seconds=40))
    text = backtest.render(HISTORY, replay, START, START + datetime.timedelta(seconds=40), rejudged)
    assert f"{stamp(160)}     20%     30s  MetricsFailed Fail 0.0   Clean Pass 100.0         NO" in text
    assert "  replayed: score 100.0: every metric passed" in text
    assert text.endswith("recorded verdicts reproduced: 2 of 4")
    assert "error query (last check)" not in text  # no legacy query


def test_a_canaryapp_without_metrics_has_nothing_to_judge_again() -> None:
    assert backtest.rejudge(app(), scripted(None)) == ()
