"""The backtest's replay (reconciler/core/backtest.py) on answers the test scripts: the same decide() forward,
one check per interval, stopping at the first promotion or rollback; and the backtest command
(reconciler/commands.py), which queries nothing the reconciler would not."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Iterator
from typing import Any

import pytest

from devenv.hostile_endpoint import HostileEndpoint
from reconciler import commands
from reconciler.core import backtest
from reconciler.core.analysis import CheckResult
from reconciler.core.endpoints import CREDENTIALS_LABEL, SecretData
from reconciler.core.grants import GRANT_ANNOTATION
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


# The backtest command is a deputy too: it applies the reconciler's MetricsPolicy and Secret rules -----------

ECHO = "{echo}"  # in a spec or flag: the URL of a local endpoint that records what it is sent
LOCAL = "http://127.0.0.1:*"
TOKEN = "backtest-t0ken"


def secret(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> SecretData:
    """A Secret holding a token, marked for metric queries and granted to `web` unless told otherwise."""
    return SecretData(
        {CREDENTIALS_LABEL: "true"} if labels is None else labels,
        {"token": TOKEN},
        {GRANT_ANNOTATION: "web"} if annotations is None else annotations,
    )


class Cluster:
    """The two reads the backtest makes, with its caller's rights: the CanaryApp and its Secret `creds`."""

    def __init__(self, app: dict[str, Any], secret: SecretData) -> None:
        self.app, self.secret = app, secret

    def get_canary_app(self, namespace: str, name: str) -> dict[str, Any] | None:
        metadata = self.app["metadata"]
        return self.app if (metadata["namespace"], metadata["name"]) == (namespace, name) else None

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        return self.secret if (namespace, name) == (self.app["metadata"]["namespace"], "creds") else None


def run_command(
    echo: HostileEndpoint,
    url: str,
    argv: list[str],
    environment: dict[str, str],
    the_secret: SecretData,
    key: str = "shop/web",
) -> int:
    """`canaryapp backtest` of CanaryApp `key` (querying `url`, with the Secret `creds`) over ten minutes."""
    namespace, name = key.split("/")
    raw = app(prometheusURL=url.replace(ECHO, echo.url("echo")), minCanaryRequests=0).model_dump(
        by_alias=True, mode="json"
    )
    raw["metadata"] = {"namespace": namespace, "name": name}
    raw["spec"]["prometheusSecretRef"] = {"name": "creds"}
    parser = argparse.ArgumentParser()
    commands.add_backtest_window(parser)
    args = parser.parse_args(
        ["--from", "2026-11-28T10:00:00Z", "--to", "2026-11-28T10:10:00Z"]
        + [arg.replace(ECHO, echo.url("echo")) for arg in argv]
    )
    return commands.backtest_canary_app(Cluster(raw, the_secret), namespace, name, args, environment)


@pytest.fixture
def echo() -> Iterator[HostileEndpoint]:
    with HostileEndpoint() as endpoint:
        yield endpoint


@pytest.mark.parametrize(
    ("url", "argv", "environment", "the_secret", "key", "fragment"),
    [
        pytest.param(
            ECHO,
            [],
            {},
            secret(),
            "shop/web",
            "spec.prometheusURL: 'http://127.0.0.1:",
            id="a URL the default policy does not allow",
        ),
        pytest.param(
            ECHO,
            ["--allowed-metric-urls", "https://mimir.example.com"],
            {"CANARYAPP_ALLOWED_METRIC_URLS": LOCAL},
            secret(),
            "shop/web",
            "is not allowed: the reconciler queries only what its --allowed-metric-urls (or "
            "CANARYAPP_ALLOWED_METRIC_URLS) permits (https://mimir.example.com)",
            id="the flag before the variable",
        ),
        pytest.param(
            ECHO,
            ["--prometheus-url", ECHO],
            {},
            secret(),
            "shop/web",
            "spec.prometheusURL: 'http://127.0.0.1:",
            id="a URL of the caller's does not admit the spec's",
        ),
        pytest.param(
            "http://prometheus.istio-system:9090",
            ["--prometheus-url", ECHO],
            {},
            secret(annotations={GRANT_ANNOTATION: "prometheus"}),
            "istio-system/prometheus",
            "metadata.name: the CanaryApp's Service istio-system/prometheus would be the metric endpoint",
            id="a CanaryApp that would be the metric endpoint",
        ),
        pytest.param(
            ECHO,
            ["--allowed-metric-urls", LOCAL],
            {},
            secret(labels={}),
            "shop/web",
            "the Secret shop/creds (spec.prometheusSecretRef) is not marked for metric queries",
            id="a Secret not marked for metric queries",
        ),
        pytest.param(
            ECHO,
            [],
            {"CANARYAPP_ALLOWED_METRIC_URLS": LOCAL},
            secret(annotations={GRANT_ANNOTATION: "api"}),
            "shop/web",
            "the Secret shop/creds (spec.prometheusSecretRef) is not granted to CanaryApp shop/web: annotate "
            f"the Secret shop/creds with {GRANT_ANNOTATION}=web",
            id="a Secret granted to another CanaryApp",
        ),
    ],
)
def test_the_backtest_refuses_what_the_reconciler_refuses_before_any_request(
    echo: HostileEndpoint,
    url: str,
    argv: list[str],
    environment: dict[str, str],
    the_secret: SecretData,
    key: str,
    fragment: str,
) -> None:
    with pytest.raises(SystemExit) as refused:
        run_command(echo, url, argv, environment, the_secret, key)
    assert fragment in str(refused.value)
    assert TOKEN not in str(refused.value)
    assert echo.requests == []


@pytest.mark.parametrize(
    ("url", "argv", "environment"),
    [
        pytest.param(ECHO, ["--allowed-metric-urls", LOCAL], {}, id="allowed by the flag"),
        pytest.param(ECHO, [], {"CANARYAPP_ALLOWED_METRIC_URLS": LOCAL}, id="allowed by the variable"),
        pytest.param(
            "http://prometheus.istio-system:9090", ["--prometheus-url", ECHO], {}, id="the caller's own URL"
        ),
    ],
)
def test_the_backtest_queries_what_the_reconciler_would(
    echo: HostileEndpoint, url: str, argv: list[str], environment: dict[str, str]
) -> None:
    assert run_command(echo, url, argv, environment, secret()) == 0
    headers = echo.headers_received("echo")
    assert len(headers) == 5  # one error query per step: 10% to 50%, then promoted
    assert {received["authorization"] for received in headers} == {f"Bearer {TOKEN}"}


def test_the_backtest_follows_no_redirect_the_policy_does_not_allow(echo: HostileEndpoint) -> None:
    with HostileEndpoint() as target:
        elsewhere = target.url("echo").replace("127.0.0.1", "localhost")  # not what LOCAL allows
        redirect = echo.url("redirect", target=elsewhere)
        code = run_command(echo, redirect, ["--allowed-metric-urls", LOCAL], {}, secret())
    assert code == 1  # the failed query rolled back
    assert target.requests == []
